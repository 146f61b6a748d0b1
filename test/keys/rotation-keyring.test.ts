import { describe, it, expect } from '@jest/globals';
import { KeyOperationError } from '../../src/keys/key-manager.js';
import {
  addKey,
  currentKey,
  dropped,
  genesis,
  missing,
  nextKey,
  plan,
  promote,
  retire,
  revoke,
  type NewKey,
  type Ring,
  type RingChange,
  type RotationPolicy,
} from '../../src/keys/rotation/keyring.js';

// Plain numbers: hours as ms from a zero epoch.
const H = 3_600_000;
const policy: RotationPolicy = {
  keyLifetimeMs: 24 * H,
  prepublishMs: 1 * H,
  maxPublished: 4,
  maxTokenLifeMs: 2 * H,
  marginMs: 20_000,
  rotateOnSchedule: true,
};
let n = 0;
const fresh = (): NewKey => ({ kid: `k${++n}`, alg: 'ES256' });
const states = (ring: Ring) => Object.fromEntries(ring.keys.map((k) => [k.kid, k.state]));

function refusal(fn: () => unknown): KeyOperationError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(KeyOperationError);
    return err as KeyOperationError;
  }
  throw new Error('expected a KeyOperationError');
}

/** Creates whatever `need` asks, as the manager does. */
function complete(change: RingChange, now: number, p: RotationPolicy = policy): RingChange {
  let out = change;
  for (let i = 0; out.need && i < 2; i++) {
    const added = addKey(out.ring, fresh(), out.need, now, p);
    out = { ring: added.ring, transitions: [...out.transitions, ...added.transitions], need: added.need };
  }
  return out;
}

function start(): Ring {
  n = 0;
  return genesis(fresh(), fresh(), 0).ring; // k1 current, k2 next at t=0
}

describe('keyring state machine: genesis and plan', () => {
  it('starts with a current key signing at once and a prepublished next', () => {
    const g = genesis({ kid: 'a', alg: 'EdDSA' }, { kid: 'b', alg: 'EdDSA', ref: 2 }, 5);
    expect(g.ring.keys).toEqual([
      { kid: 'a', alg: 'EdDSA', state: 'current', createdAt: 5, activatedAt: 5 },
      { kid: 'b', alg: 'EdDSA', state: 'next', createdAt: 5, ref: 2 },
    ]);
    expect(g.transitions.map((t) => `${t.action}:${t.kid}:${t.to}`)).toEqual(['created:a:current', 'created:b:next']);
    expect(g.need).toBeUndefined();
  });

  it('does nothing before the current key reaches its lifetime', () => {
    const ring = start();
    for (const t of [0, 1 * H, 24 * H - 1]) {
      const p = plan(ring, t, policy);
      expect(p.transitions).toEqual([]);
      expect(p.ring).toEqual(ring);
      expect(p.need).toBeUndefined();
    }
  });

  it('promotes on schedule at exactly activated_at + key_lifetime and retires the old key until the longest token expires', () => {
    const ring = start();
    const p = plan(ring, 24 * H, policy);
    expect(p.transitions).toEqual([
      { action: 'promoted', kid: 'k2', from: 'next', to: 'current' },
      { action: 'retired', kid: 'k1', from: 'current', to: 'retired' },
    ]);
    expect(states(p.ring)).toEqual({ k1: 'retired', k2: 'current' });
    expect(p.ring.keys.find((k) => k.kid === 'k1')).toMatchObject({ retiredAt: 24 * H, removeAt: 24 * H + 2 * H + 20_000 });
    expect(currentKey(p.ring)).toMatchObject({ kid: 'k2', activatedAt: 24 * H });
    expect(p.need).toBe('next');
  });

  it('does not promote on schedule a next published for less than prepublish (it waits, then promotes)', () => {
    n = 0;
    const ring = genesis(fresh(), undefined, 0).ring;
    const withNext = addKey(ring, fresh(), 'next', 23.5 * H, policy).ring; // published at 23.5 h
    expect(plan(withNext, 24 * H, policy).transitions).toEqual([]);
    expect(plan(withNext, 24.5 * H - 1, policy).transitions).toEqual([]);
    expect(plan(withNext, 24.5 * H, policy).transitions.map((t) => t.action)).toEqual(['promoted', 'retired']);
  });

  it('never promotes on schedule when rotate_on_schedule is off', () => {
    const p = plan(start(), 1000 * H, { ...policy, rotateOnSchedule: false });
    expect(p.transitions).toEqual([]);
  });

  it('removes a retired key at remove_at, not before', () => {
    const rotated = complete(plan(start(), 24 * H, policy), 24 * H).ring; // k1 retired, k2 current, k3 next
    const removeAt = 26 * H + 20_000;
    expect(plan(rotated, removeAt - 1, policy).transitions).toEqual([]);
    const p = plan(rotated, removeAt, policy);
    expect(p.transitions).toEqual([{ action: 'removed', kid: 'k1', from: 'retired', to: 'removed' }]);
    expect(states(p.ring)).toEqual({ k2: 'current', k3: 'next' });
    expect(dropped(rotated, p.ring).map((k) => k.kid)).toEqual(['k1']);
  });

  it('runs a 10-rotation timeline with at most 3 published keys and every key published prepublish before it signs', () => {
    let ring = start();
    const published = new Map<string, number>([['k1', 0], ['k2', 0]]);
    let rotations = 0;
    for (let t = 0; t <= 250 * H; t += H / 2) {
      const before = new Set(ring.keys.map((k) => k.kid));
      const c = complete(plan(ring, t, policy), t);
      for (const k of c.ring.keys) if (!before.has(k.kid)) published.set(k.kid, t);
      for (const tr of c.transitions) {
        if (tr.action === 'promoted') {
          rotations++;
          expect(t - (published.get(tr.kid) as number)).toBeGreaterThanOrEqual(policy.prepublishMs);
        }
      }
      ring = c.ring;
      expect(ring.keys.length).toBeLessThanOrEqual(3);
      expect(ring.keys.filter((k) => k.state === 'current')).toHaveLength(1);
    }
    expect(rotations).toBe(10);
  });
});

describe('keyring state machine: rotation on request', () => {
  it('refuses (not_ready) to promote a next published for less than prepublish, unless forced', () => {
    const ring = start();
    const err = refusal(() => promote(ring, H - 1, policy));
    expect(err.code).toBe('not_ready');
    expect(err.message).toContain(new Date(H).toISOString());
    const forced = promote(ring, H - 1, policy, { force: true });
    expect(states(forced.ring)).toEqual({ k1: 'retired', k2: 'current' });
    const ready = promote(ring, H, policy);
    expect(ready.transitions.map((t) => t.action)).toEqual(['promoted', 'retired']);
  });

  it('without a next key: not_ready while there is room, jwks_full when there is none; force creates a key that signs at once', () => {
    n = 0;
    const lone = genesis(fresh(), undefined, 0).ring;
    expect(refusal(() => promote(lone, 10 * H, policy)).code).toBe('not_ready');
    const forced = complete(promote(lone, 10 * H, policy, { force: true }), 10 * H);
    expect(forced.transitions.map((t) => `${t.action}:${t.kid}:${t.to}`)).toEqual(['created:k2:current', 'retired:k1:retired', 'created:k3:next']);

    // Full: current + 3 retired, max 4.
    const full: Ring = {
      keys: [
        { kid: 'c', alg: 'ES256', state: 'current', createdAt: 0, activatedAt: 0 },
        ...['r1', 'r2', 'r3'].map((kid) => ({ kid, alg: 'ES256' as const, state: 'retired' as const, createdAt: 0, retiredAt: 0, removeAt: 100 * H })),
      ],
    };
    expect(missing(full, policy)).toBeUndefined();
    const e = refusal(() => promote(full, 10 * H, policy, { force: true }));
    expect(e.code).toBe('jwks_full');
  });

  it('still rotates when the JWKS bound leaves no room for a new next, and reports that none was created', () => {
    const tight = { ...policy, maxPublished: 2 };
    const ring = start();
    const r = promote(ring, 2 * H, tight);
    expect(r.need).toBeUndefined(); // k1 retired + k2 current = 2 = max
    expect(r.ring.keys).toHaveLength(2);
    expect(nextKey(r.ring)).toBeUndefined();
    // The next rotation is refused until the retired key has left.
    expect(refusal(() => promote(r.ring, 3 * H, tight)).code).toBe('jwks_full');
    const later = plan(r.ring, 2 * H + 2 * H + 20_000, tight);
    expect(later.transitions.map((t) => t.action)).toEqual(['removed']);
    expect(later.need).toBe('next');
  });

  it('never lets the keyring exceed max_published through plan + create', () => {
    const tight = { ...policy, maxPublished: 3, keyLifetimeMs: H, prepublishMs: 0, maxTokenLifeMs: 10 * H };
    let ring = start();
    for (let t = 0; t < 40 * H; t += H / 4) {
      ring = complete(plan(ring, t, tight), t, tight).ring;
      expect(ring.keys.length).toBeLessThanOrEqual(3);
    }
  });
});

describe('keyring state machine: retire and revoke', () => {
  it('retire(current) promotes next at once (prepublished or not) and retires the current key', () => {
    const r = retire(start(), 'k1', 10, policy);
    expect(states(r.ring)).toEqual({ k1: 'retired', k2: 'current' });
    expect(r.ring.keys[0]?.removeAt).toBe(10 + 2 * H + 20_000);
  });

  it('retire(current) without a next creates a key that signs now; refused when the JWKS is full', () => {
    n = 0;
    const lone = genesis(fresh(), undefined, 0).ring;
    const r = retire(lone, 'k1', 5, policy);
    expect(r.need).toBe('current');
    expect(states(complete(r, 5).ring)).toEqual({ k1: 'retired', k2: 'current', k3: 'next' });
    const full: Ring = { keys: [lone.keys[0]!, ...['r1', 'r2', 'r3'].map((kid) => ({ kid, alg: 'ES256' as const, state: 'retired' as const, createdAt: 0, removeAt: H }))] };
    expect(refusal(() => retire(full, 'k1', 5, policy)).code).toBe('jwks_full');
  });

  it('retire(next) removes it (it never signed) and asks for a new next', () => {
    const r = retire(start(), 'k2', 10, policy);
    expect(r.transitions).toEqual([{ action: 'removed', kid: 'k2', from: 'next', to: 'removed' }]);
    expect(states(r.ring)).toEqual({ k1: 'current' });
    expect(r.need).toBe('next');
  });

  it('refuses to retire a retired key (invalid_state) and an unknown kid (unknown_kid)', () => {
    const rotated = promote(start(), 2 * H, policy).ring;
    expect(refusal(() => retire(rotated, 'k1', 3 * H, policy)).code).toBe('invalid_state');
    expect(refusal(() => retire(rotated, 'nope', 3 * H, policy)).code).toBe('unknown_kid');
    expect(refusal(() => revoke(rotated, 'nope', 3 * H, policy)).code).toBe('unknown_kid');
  });

  it('revoke(current) removes it at once and promotes next', () => {
    const r = revoke(start(), 'k1', 7, policy);
    expect(r.transitions).toEqual([
      { action: 'revoked', kid: 'k1', from: 'current', to: 'removed' },
      { action: 'promoted', kid: 'k2', from: 'next', to: 'current' },
    ]);
    expect(r.ring.keys.map((k) => k.kid)).toEqual(['k2']);
    expect(currentKey(r.ring)?.activatedAt).toBe(7);
    expect(r.need).toBe('next');
  });

  it('revoke(current) without a next asks for an emergency current key', () => {
    n = 0;
    const lone = genesis(fresh(), undefined, 0).ring;
    const r = revoke(lone, 'k1', 7, policy);
    expect(r.ring.keys).toEqual([]);
    expect(r.need).toBe('current');
    const done = complete(r, 7);
    expect(states(done.ring)).toEqual({ k2: 'current', k3: 'next' });
    expect(currentKey(done.ring)?.activatedAt).toBe(7);
  });

  it('revoke(retired) and revoke(next) remove just that key', () => {
    const rotated = promote(start(), 2 * H, policy).ring; // k1 retired, k2 current
    expect(states(revoke(rotated, 'k1', 3 * H, policy).ring)).toEqual({ k2: 'current' });
    const r = revoke(start(), 'k2', 1, policy);
    expect(states(r.ring)).toEqual({ k1: 'current' });
    expect(r.transitions).toEqual([{ action: 'revoked', kid: 'k2', from: 'next', to: 'removed' }]);
  });

  it('addKey refuses a duplicate kid and a second next', () => {
    const ring = start();
    expect(() => addKey(ring, { kid: 'k1', alg: 'ES256' }, 'next', 0, policy)).toThrow('already');
    expect(() => addKey(ring, { kid: 'zz', alg: 'ES256' }, 'next', 0, policy)).toThrow('next');
  });

  it('is pure: the input ring is never modified', () => {
    const ring = start();
    const copy = JSON.parse(JSON.stringify(ring));
    plan(ring, 48 * H, policy);
    promote(ring, 2 * H, policy);
    retire(ring, 'k1', 2 * H, policy);
    revoke(ring, 'k1', 2 * H, policy);
    expect(ring).toEqual(copy);
  });
});
