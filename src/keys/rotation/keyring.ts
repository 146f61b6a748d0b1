import type { SigningAlgorithm } from '../../config/schema.js';
import { KeyOperationError, type KeyState, type KeyTransition } from '../key-manager.js';

/**
 * The rotation state machine, pure: every function takes a keyring and the time and returns
 * a new keyring plus what changed. No I/O, so every timeline is a unit test with numbers;
 * the manager around it does the loading, key creation and compare-and-set saving.
 *
 *   next (published, not signing) → current (signs) → retired (published until every token
 *   it signed has expired) → removed. Revocation removes a key from any state at once.
 */

/** One key of the keyring. Times are ms since the epoch (the stored document uses ISO-8601). */
export interface RingKey {
  readonly kid: string;
  readonly alg: SigningAlgorithm;
  readonly state: KeyState;
  readonly createdAt: number;
  readonly activatedAt?: number | undefined;
  readonly retiredAt?: number | undefined;
  readonly removeAt?: number | undefined;
  /** Backend data: the Transit key version that holds this key. */
  readonly ref?: number | undefined;
}

export interface Ring {
  readonly keys: readonly RingKey[];
}

export interface RotationPolicy {
  /** How long a key signs before the scheduled rotation. */
  readonly keyLifetimeMs: number;
  /** How long a next key is published before it may sign. */
  readonly prepublishMs: number;
  /** Most keys the JWKS may hold. */
  readonly maxPublished: number;
  /** Longest life of a token any key signs (tokens, AWS web identity tokens, plus clock skew). */
  readonly maxTokenLifeMs: number;
  /**
   * Extra time a retired key stays published: replicas that have not yet re-read the keyring
   * may still sign with it for up to a refresh interval (the manager passes 2 × refresh).
   */
  readonly marginMs: number;
  /** Promote on schedule (false: only on request). */
  readonly rotateOnSchedule: boolean;
}

/** A key the manager must create (material first, then `addKey`) to complete an operation. */
export type KeyNeed = 'next' | 'current' | undefined;

export interface RingChange {
  readonly ring: Ring;
  readonly transitions: readonly KeyTransition[];
  /** What is missing afterwards: no current (emergency), or no next while there is room. */
  readonly need: KeyNeed;
}

/** A freshly created key (its material exists already). */
export interface NewKey {
  readonly kid: string;
  readonly alg: SigningAlgorithm;
  readonly ref?: number | undefined;
}

export function currentKey(ring: Ring): RingKey | undefined {
  return ring.keys.find((k) => k.state === 'current');
}

export function nextKey(ring: Ring): RingKey | undefined {
  return ring.keys.find((k) => k.state === 'next');
}

/** Earliest moment a next key may sign. */
export function signsFrom(key: RingKey, policy: Pick<RotationPolicy, 'prepublishMs'>): number {
  return key.createdAt + policy.prepublishMs;
}

/** What must be created for the ring to be complete: a current first, then a next if there is room. */
export function missing(ring: Ring, policy: Pick<RotationPolicy, 'maxPublished'>): KeyNeed {
  if (!currentKey(ring)) return 'current';
  if (!nextKey(ring) && ring.keys.length < policy.maxPublished) return 'next';
  return undefined;
}

function change(ring: Ring, transitions: KeyTransition[], policy: RotationPolicy): RingChange {
  return { ring, transitions, need: missing(ring, policy) };
}

function retiredNow(key: RingKey, now: number, policy: RotationPolicy): RingKey {
  return { ...key, state: 'retired', retiredAt: now, removeAt: now + policy.maxTokenLifeMs + policy.marginMs };
}

/** next → current; the old current (if any) retires. No checks: callers decide whether it is allowed. */
function swap(ring: Ring, now: number, policy: RotationPolicy): { ring: Ring; transitions: KeyTransition[] } {
  const next = nextKey(ring);
  if (!next) throw new Error('swap: no next key');
  const transitions: KeyTransition[] = [{ action: 'promoted', kid: next.kid, from: 'next', to: 'current' }];
  const keys = ring.keys.map((k) => {
    if (k.kid === next.kid) return { ...k, state: 'current' as const, activatedAt: now };
    if (k.state === 'current') {
      transitions.push({ action: 'retired', kid: k.kid, from: 'current', to: 'retired' });
      return retiredNow(k, now, policy);
    }
    return k;
  });
  return { ring: { keys }, transitions };
}

/**
 * A new ring on first start: one key that signs at once (nothing can be prepublished before
 * the first start) and, when `next` is given, one prepublished successor.
 */
export function genesis(current: NewKey, next: NewKey | undefined, now: number): RingChange {
  const keys: RingKey[] = [{ ...current, state: 'current', createdAt: now, activatedAt: now }];
  const transitions: KeyTransition[] = [{ action: 'created', kid: current.kid, from: undefined, to: 'current' }];
  if (next) {
    keys.push({ ...next, state: 'next', createdAt: now });
    transitions.push({ action: 'created', kid: next.kid, from: undefined, to: 'next' });
  }
  return { ring: { keys }, transitions, need: undefined };
}

/**
 * Adds a freshly created key. As `next` it waits out the prepublish interval; as `current`
 * (the emergency path, when no current key is left, or a forced rotation without a next)
 * it signs at once and an existing current retires.
 */
export function addKey(ring: Ring, key: NewKey, state: 'next' | 'current', now: number, policy: RotationPolicy): RingChange {
  if (ring.keys.some((k) => k.kid === key.kid)) throw new Error(`addKey: kid ${key.kid} is already in the keyring`);
  if (state === 'next' && nextKey(ring)) throw new Error('addKey: the keyring already has a next key');
  const transitions: KeyTransition[] = [];
  const keys = ring.keys.map((k) => {
    if (state === 'current' && k.state === 'current') {
      transitions.push({ action: 'retired', kid: k.kid, from: 'current', to: 'retired' });
      return retiredNow(k, now, policy);
    }
    return k;
  });
  keys.push(state === 'current' ? { ...key, state, createdAt: now, activatedAt: now } : { ...key, state, createdAt: now });
  transitions.unshift({ action: 'created', kid: key.kid, from: undefined, to: state });
  return change({ keys }, transitions, policy);
}

/**
 * What is due at `now`: retired keys past `removeAt` leave; the scheduled promotion happens
 * when the current key has signed for its lifetime and next has been published long enough;
 * `need` says whether a next key should be created.
 */
export function plan(ring: Ring, now: number, policy: RotationPolicy): RingChange {
  const transitions: KeyTransition[] = [];
  const keys = ring.keys.filter((k) => {
    if (k.state === 'retired' && k.removeAt !== undefined && k.removeAt <= now) {
      transitions.push({ action: 'removed', kid: k.kid, from: 'retired', to: 'removed' });
      return false;
    }
    return true;
  });
  let out: Ring = { keys };
  const current = currentKey(out);
  const next = nextKey(out);
  if (
    policy.rotateOnSchedule &&
    current &&
    next &&
    (current.activatedAt ?? current.createdAt) + policy.keyLifetimeMs <= now &&
    signsFrom(next, policy) <= now
  ) {
    const swapped = swap(out, now, policy);
    out = swapped.ring;
    transitions.push(...swapped.transitions);
  }
  return change(out, transitions, policy);
}

/**
 * Rotation on request: next → current, the old current retires. Refused while next has been
 * published for less than the prepublish interval (verifiers may not have it yet) unless
 * `force`. Without a next key: `jwks_full` when there is no room to create one, else
 * `not_ready` (the refresh creates one), or with `force` a new key signs at once (need: current).
 */
export function promote(ring: Ring, now: number, policy: RotationPolicy, opts: { force?: boolean | undefined } = {}): RingChange {
  const next = nextKey(ring);
  if (!next) {
    if (ring.keys.length >= policy.maxPublished) {
      throw new KeyOperationError(
        'jwks_full',
        `no next key and the JWKS already holds ${ring.keys.length} keys (max_published ${policy.maxPublished}); wait until a retired key leaves or revoke one`,
      );
    }
    if (!opts.force) throw new KeyOperationError('not_ready', 'there is no next key yet (the next refresh creates one); force rotates to a new, unpublished key');
    // Forced: the old current retires when the new one is added (addKey 'current').
    return { ring, transitions: [], need: 'current' };
  }
  const from = signsFrom(next, policy);
  if (from > now && !opts.force) {
    throw new KeyOperationError(
      'not_ready',
      `next key ${next.kid} has been published for less than the prepublish interval; it may sign from ${new Date(from).toISOString()} (force skips the wait)`,
    );
  }
  const swapped = swap(ring, now, policy);
  return change(swapped.ring, swapped.transitions, policy);
}

function find(ring: Ring, kid: string): RingKey {
  const key = ring.keys.find((k) => k.kid === kid);
  if (!key) throw new KeyOperationError('unknown_kid', `no key ${kid} in the keyring`);
  return key;
}

/**
 * Stops a key signing. current: next is promoted at once (prepublished or not) and it
 * retires, or, without a next, a new key is created to sign (need: current; refused with
 * `jwks_full` when there is no room for it). next: removed (it never signed). retired: refused.
 */
export function retire(ring: Ring, kid: string, now: number, policy: RotationPolicy): RingChange {
  const key = find(ring, kid);
  if (key.state === 'retired') throw new KeyOperationError('invalid_state', `key ${kid} is already retired`);
  if (key.state === 'next') {
    const keys = ring.keys.filter((k) => k.kid !== kid);
    return change({ keys }, [{ action: 'removed', kid, from: 'next', to: 'removed' }], policy);
  }
  if (nextKey(ring)) return promote(ring, now, policy, { force: true });
  if (ring.keys.length >= policy.maxPublished) {
    throw new KeyOperationError('jwks_full', `cannot retire ${kid}: no next key and no room in the JWKS (max_published ${policy.maxPublished}) for a new one`);
  }
  return { ring, transitions: [], need: 'current' };
}

/**
 * Emergency: the key leaves the keyring (and the JWKS) at once, whatever its state. A revoked
 * current key is replaced by next at once; without a next, `need` is 'current' and the
 * manager creates a key that signs at once.
 */
export function revoke(ring: Ring, kid: string, now: number, policy: RotationPolicy): RingChange {
  const key = find(ring, kid);
  const transitions: KeyTransition[] = [{ action: 'revoked', kid, from: key.state, to: 'removed' }];
  let out: Ring = { keys: ring.keys.filter((k) => k.kid !== kid) };
  if (key.state === 'current' && nextKey(out)) {
    const next = nextKey(out) as RingKey;
    out = { keys: out.keys.map((k) => (k.kid === next.kid ? { ...k, state: 'current' as const, activatedAt: now } : k)) };
    transitions.push({ action: 'promoted', kid: next.kid, from: 'next', to: 'current' });
  }
  return change(out, transitions, policy);
}

/** Keys `before` had and `after` has not: their material can be destroyed. */
export function dropped(before: Ring, after: Ring): RingKey[] {
  const kept = new Set(after.keys.map((k) => k.kid));
  return before.keys.filter((k) => !kept.has(k.kid));
}
