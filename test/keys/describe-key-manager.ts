import { describe, it, expect, beforeAll, afterAll } from '@jest/globals';
import { createLocalJWKSet, jwtVerify, decodeProtectedHeader } from 'jose';
import { SIGNING_ALGORITHMS, type KeysSettingsConfig } from '../../src/config/schema.js';
import { isLeashError } from '../../src/errors/leash-error.js';
import { KeyOperationError, type KeyManager } from '../../src/keys/key-manager.js';
import { signJwt } from '../../src/keys/jws.js';
import type { ManualClock } from '../../src/time/clock.js';

export interface KeyManagerFixture {
  /** A manager whose init() has NOT been called yet. */
  readonly manager: KeyManager;
  readonly close?: () => Promise<void> | void;
}

const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'k', 'oth'];

/**
 * The contract every KeyManager backend meets (local files, Vault KV, Vault Transit), run
 * against each, as SPIRE's keymanagertest is: same tests, different factories.
 */
export function describeKeyManager(name: string, factory: () => Promise<KeyManagerFixture> | KeyManagerFixture): void {
  describe(`KeyManager contract: ${name}`, () => {
    let fixture: KeyManagerFixture;
    let km: KeyManager;

    beforeAll(async () => {
      fixture = await factory();
      km = fixture.manager;
    });
    afterAll(async () => {
      await fixture?.close?.();
    });

    it('refuses to sign before init with ERR_SIGNING_UNAVAILABLE', () => {
      let caught: unknown;
      try {
        km.current();
      } catch (err) {
        caught = err;
      }
      expect(isLeashError(caught) && caught.code).toBe('ERR_SIGNING_UNAVAILABLE');
    });

    it('has a current key after init, described by its public JWK', async () => {
      await km.init();
      expect(typeof km.backend).toBe('string');
      expect(km.backend.length).toBeGreaterThan(0);
      const key = km.current();
      expect(key.kid.length).toBeGreaterThan(0);
      expect(SIGNING_ALGORITHMS).toContain(key.alg);
      expect(key.publicJwk).toMatchObject({ kid: key.kid, alg: key.alg, use: 'sig' });
    });

    it('publishes the current key in the JWKS with public members only', () => {
      const { keys } = km.jwks();
      const kid = km.current().kid;
      expect(keys.map((k) => k.kid)).toContain(kid);
      expect(new Set(keys.map((k) => k.kid)).size).toBe(keys.length);
      for (const jwk of keys) {
        for (const m of PRIVATE_MEMBERS) expect(jwk).not.toHaveProperty(m);
        expect(jwk.use).toBe('sig');
        expect(typeof jwk.alg).toBe('string');
      }
    });

    it('lists every published key with its state and backend', () => {
      const list = km.list();
      const current = list.filter((k) => k.state === 'current');
      expect(current).toHaveLength(1);
      expect(current[0]?.kid).toBe(km.current().kid);
      for (const info of list) {
        expect(info.backend).toBe(km.backend);
        expect(Number.isFinite(info.createdAt)).toBe(true);
      }
      const listed = new Set(list.map((k) => k.kid));
      for (const jwk of km.jwks().keys) expect(listed.has(jwk.kid as string)).toBe(true);
    });

    it('signs at+jwt tokens that jose verifies against the JWKS', async () => {
      const key = km.current();
      const token = await signJwt(key, { typ: 'at+jwt' }, { iss: 'https://leash.test', sub: 'p1', aud: 'api', exp: 4102444800 });
      expect(decodeProtectedHeader(token)).toEqual({ alg: key.alg, kid: key.kid, typ: 'at+jwt' });
      const { payload, protectedHeader } = await jwtVerify(token, createLocalJWKSet(km.jwks()), {
        typ: 'at+jwt',
        issuer: 'https://leash.test',
        audience: 'api',
        algorithms: [key.alg],
      });
      expect(payload.sub).toBe('p1');
      expect(protectedHeader.kid).toBe(key.kid);
    });

    it('produces signatures that fail verification once the payload is altered', async () => {
      const token = await signJwt(km.current(), { typ: 'at+jwt' }, { sub: 'p1' });
      const [h, , s] = token.split('.');
      const forged = `${h}.${Buffer.from(JSON.stringify({ sub: 'admin' })).toString('base64url')}.${s}`;
      await expect(jwtVerify(forged, createLocalJWKSet(km.jwks()))).rejects.toMatchObject({
        code: 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED',
      });
    });
  });
}

/** Settings every rotation fixture uses (seconds unless said). */
export const ROTATION_SETTINGS = {
  key_lifetime: 86_400,
  prepublish: 3_600,
  max_published: 4,
  refresh_interval_ms: 1_000,
  max_vault_outage: 300,
  rotate_on_schedule: true,
} as const;
/** `settings.keys` for the fixtures. */
export function keysSettings(over: Partial<KeysSettingsConfig> = {}): KeysSettingsConfig {
  return {
    backend: 'local',
    dir: './keys',
    algorithm: 'ES256',
    ...ROTATION_SETTINGS,
    vault_kv: { mount: 'secret', path: 'leash/signing' },
    vault_transit: { mount: 'transit', key: 'leash-signing' },
    ...over,
  };
}

/** Longest token life the fixtures pass (1 h tokens + 60 s skew). */
export const MAX_TOKEN_LIFE_MS = 3_660_000;
/** How long a retired key stays: longest token + 2 refresh intervals. */
const RETIRED_FOR_MS = MAX_TOKEN_LIFE_MS + 2 * ROTATION_SETTINGS.refresh_interval_ms;

export interface RotationFixture {
  readonly clock: ManualClock;
  /** A new manager over the same shared keyring (another replica, or this one restarted); init() not called. */
  replica(): KeyManager;
  /**
   * Vault backends: make Vault unreachable and reachable again. `bounded`: loaded keys sign
   * until max_vault_outage, then refuse (vault-kv); `per-sign`: every signature needs Vault (transit).
   */
  readonly outage?: { readonly kind: 'bounded' | 'per-sign'; down(): Promise<void>; up(): Promise<void> };
  close?(): Promise<void> | void;
}

async function codeOf(p: Promise<unknown> | (() => unknown)): Promise<string | undefined> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (err) {
    if (err instanceof KeyOperationError) return err.code;
    if (isLeashError(err)) return err.code;
    throw err;
  }
  return undefined;
}

const kids = (km: KeyManager) => km.jwks().keys.map((k) => k.kid as string).sort();
const byState = (km: KeyManager) => Object.fromEntries(km.list().map((k) => [k.kid, k.state]));
const who = { actor: 'test' };

async function token(km: KeyManager, sub = 'p1'): Promise<string> {
  return signJwt(km.current(), { typ: 'at+jwt' }, { sub, exp: 4102444800 });
}

async function verifies(km: KeyManager, jwt: string): Promise<boolean> {
  try {
    await jwtVerify(jwt, createLocalJWKSet(km.jwks()));
    return true;
  } catch {
    return false;
  }
}

/**
 * The rotation contract (state machine over a shared keyring, replicas, outages), run against
 * every backend: each test starts from an empty store.
 */
export function describeRotation(name: string, factory: () => Promise<RotationFixture>): void {
  describe(`KeyManager rotation: ${name}`, () => {
    const open: RotationFixture[] = [];
    const managers: KeyManager[] = [];
    afterAll(async () => {
      for (const m of managers) await m.close();
      for (const f of open) await f.close?.();
    });
    async function fresh(): Promise<{ f: RotationFixture; km: KeyManager; clock: ManualClock; replica: () => Promise<KeyManager> }> {
      const f = await factory();
      open.push(f);
      const replica = async () => {
        const m = f.replica();
        managers.push(m);
        await m.init();
        return m;
      };
      return { f, km: await replica(), clock: f.clock, replica };
    }

    it('starts with a current key and a prepublished next key, both in the JWKS', async () => {
      const { km, clock } = await fresh();
      const list = km.list();
      expect(list.map((k) => k.state).sort()).toEqual(['current', 'next']);
      const next = list.find((k) => k.state === 'next');
      expect(next?.signsFrom).toBe(clock.now() + ROTATION_SETTINGS.prepublish * 1000);
      expect(list.find((k) => k.state === 'current')?.activatedAt).toBe(clock.now());
      expect(kids(km)).toEqual(list.map((k) => k.kid).sort());
      expect(await verifies(km, await token(km))).toBe(true);
    });

    it('rotates on schedule: next signs after key_lifetime, the old key verifies until every token it signed has expired', async () => {
      const { km, clock } = await fresh();
      const changes: number[] = [];
      km.onChange(() => changes.push(clock.now()));
      const [a, b] = [km.current().kid, km.list().find((k) => k.state === 'next')?.kid];
      const old = await token(km);
      clock.advance(ROTATION_SETTINGS.key_lifetime - 1);
      expect(await km.tick()).toEqual([]);
      expect(km.current().kid).toBe(a);
      clock.advance(1);
      const done = await km.tick();
      expect(done.filter((t) => t.action !== 'created')).toEqual([
        { action: 'promoted', kid: b, from: 'next', to: 'current' },
        { action: 'retired', kid: a, from: 'current', to: 'retired' },
      ]);
      expect(done.filter((t) => t.action === 'created')).toHaveLength(1);
      expect(km.current().kid).toBe(b);
      expect(changes).toHaveLength(1);
      const retired = km.list().find((k) => k.kid === a);
      expect(retired).toMatchObject({ state: 'retired', retiredAt: clock.now(), removeAt: clock.now() + RETIRED_FOR_MS });
      expect(await verifies(km, old)).toBe(true);
      expect(await verifies(km, await token(km))).toBe(true);
      expect(km.jwks().keys).toHaveLength(3);

      clock.set((retired?.removeAt as number) - 1);
      expect(await km.tick()).toEqual([]);
      expect(await verifies(km, old)).toBe(true);
      clock.advance(0.001);
      expect(await km.tick()).toEqual([{ action: 'removed', kid: a, from: 'retired', to: 'removed' }]);
      expect(kids(km)).not.toContain(a);
      expect(await verifies(km, old)).toBe(false);
      expect(changes).toHaveLength(2);
    });

    it('refuses a rotation before next has been published for prepublish (not_ready), unless forced', async () => {
      const { km, clock } = await fresh();
      const a = km.current().kid;
      clock.advance(ROTATION_SETTINGS.prepublish - 1);
      expect(await codeOf(km.rotate({ ...who }))).toBe('not_ready');
      expect(km.current().kid).toBe(a);
      const forced = await km.rotate({ ...who, force: true });
      expect(forced.map((t) => t.action)).toEqual(['promoted', 'retired', 'created']);
      expect(km.current().kid).not.toBe(a);
      expect(await verifies(km, await token(km))).toBe(true);
      clock.advance(ROTATION_SETTINGS.prepublish);
      expect((await km.rotate({ ...who })).map((t) => t.action)).toEqual(['promoted', 'retired', 'created']);
    });

    it('never publishes more than max_published keys and reports jwks_full when nothing can be created', async () => {
      const { km, clock } = await fresh();
      const counts: number[] = [];
      for (let i = 0; i < 3; i++) {
        clock.advance(60);
        await km.rotate({ ...who, force: true });
        counts.push(km.jwks().keys.length);
      }
      expect(counts).toEqual([3, 4, 4]);
      expect(km.list().filter((k) => k.state === 'next')).toHaveLength(0); // the third rotation could not keep a next
      expect(await codeOf(km.rotate({ ...who, force: true }))).toBe('jwks_full');
      // Once the oldest retired key has left, a next is created again.
      clock.advance(RETIRED_FOR_MS / 1000);
      const t = await km.tick();
      expect(t.map((x) => x.action).sort()).toEqual(['created', 'removed', 'removed', 'removed']);
      expect(km.jwks().keys.length).toBeLessThanOrEqual(ROTATION_SETTINGS.max_published);
    });

    it('retire: current hands over to next at once; next is replaced; a retired or unknown key is refused', async () => {
      const { km } = await fresh();
      const a = km.current().kid;
      const b = km.list().find((k) => k.state === 'next')?.kid as string;
      const t = await km.retire(a, who);
      expect(t.slice(0, 2)).toEqual([
        { action: 'promoted', kid: b, from: 'next', to: 'current' },
        { action: 'retired', kid: a, from: 'current', to: 'retired' },
      ]);
      expect(km.current().kid).toBe(b);
      expect(kids(km)).toContain(a);
      expect(await codeOf(km.retire(a, who))).toBe('invalid_state');
      expect(await codeOf(km.retire('x'.repeat(43), who))).toBe('unknown_kid');
      const c = km.list().find((k) => k.state === 'next')?.kid as string;
      const r = await km.retire(c, who);
      expect(r[0]).toEqual({ action: 'removed', kid: c, from: 'next', to: 'removed' });
      expect(kids(km)).not.toContain(c);
      expect(km.list().filter((k) => k.state === 'next')).toHaveLength(1);
    });

    it('revoke: the key leaves the JWKS at once, its tokens stop verifying, next signs', async () => {
      const { km } = await fresh();
      const a = km.current().kid;
      const b = km.list().find((k) => k.state === 'next')?.kid as string;
      const old = await token(km);
      const t = await km.revoke(a, { ...who, reason: 'leaked' });
      expect(t.slice(0, 2)).toEqual([
        { action: 'revoked', kid: a, from: 'current', to: 'removed' },
        { action: 'promoted', kid: b, from: 'next', to: 'current' },
      ]);
      expect(kids(km)).not.toContain(a);
      expect(await verifies(km, old)).toBe(false);
      expect(km.current().kid).toBe(b);
      expect(await verifies(km, await token(km))).toBe(true);
      expect(byState(km)).toEqual(expect.objectContaining({ [b]: 'current' }));
      expect(km.list().filter((k) => k.state === 'next')).toHaveLength(1);
    });

    it('revoke of the current key without a next creates a key that signs at once (emergency path)', async () => {
      const { km, clock } = await fresh();
      for (let i = 0; i < 3; i++) {
        clock.advance(60);
        await km.rotate({ ...who, force: true });
      }
      expect(km.list().filter((k) => k.state === 'next')).toHaveLength(0); // full: no next
      const a = km.current().kid;
      const old = await token(km);
      const t = await km.revoke(a, { ...who, reason: 'leaked' });
      expect(t.map((x) => `${x.action}:${x.to}`)).toEqual(['revoked:removed', 'created:current']);
      expect(km.current().kid).not.toBe(a);
      expect(kids(km)).not.toContain(a);
      expect(await verifies(km, old)).toBe(false);
      expect(await verifies(km, await token(km))).toBe(true);
      expect(km.jwks().keys).toHaveLength(ROTATION_SETTINGS.max_published);
    });

    it('a restarted manager sees the same keyring, and tokens signed before verify after', async () => {
      const { km, clock, replica } = await fresh();
      clock.advance(ROTATION_SETTINGS.prepublish);
      await km.rotate({ ...who });
      const jwt = await token(km);
      await km.close();
      const again = await replica();
      expect(again.list()).toEqual(km.list());
      expect(again.current().kid).toBe(km.current().kid);
      expect(await verifies(again, jwt)).toBe(true);
      // Closed: a late timer tick is a no-op; operations are refused.
      expect(await km.tick()).toEqual([]);
      expect(await codeOf(km.rotate({ ...who, force: true }))).toBe('ERR_BACKEND_UNAVAILABLE');
      expect(again.list()).toEqual(km.list());
    });

    it('two replicas starting at once share one keyring', async () => {
      const f = await factory();
      open.push(f);
      const [a, b] = [f.replica(), f.replica()];
      managers.push(a, b);
      await Promise.all([a.init(), b.init()]);
      expect(a.current().kid).toBe(b.current().kid);
      expect(kids(a)).toEqual(kids(b));
      expect(kids(a)).toHaveLength(2);
    });

    it('two replicas racing a due rotation promote once; the other follows and is notified', async () => {
      const { km: a, clock, replica } = await fresh();
      const b = await replica();
      const notified = { a: 0, b: 0 };
      a.onChange(() => notified.a++);
      b.onChange(() => notified.b++);
      clock.advance(ROTATION_SETTINGS.key_lifetime);
      const [ta, tb] = await Promise.all([a.tick(), b.tick()]);
      const all = [...ta, ...tb];
      expect(all.filter((t) => t.action === 'promoted')).toHaveLength(1);
      expect(all.filter((t) => t.action === 'retired')).toHaveLength(1);
      expect(all.filter((t) => t.action === 'created')).toHaveLength(1);
      expect(a.current().kid).toBe(b.current().kid);
      expect(kids(a)).toEqual(kids(b));
      expect(kids(a)).toHaveLength(3);
      expect(notified).toEqual({ a: 1, b: 1 });
    });

    it('a replica sees another replica\'s rotation on its next refresh', async () => {
      const { km: a, replica } = await fresh();
      const b = await replica();
      let seen = 0;
      b.onChange(() => seen++);
      await a.rotate({ ...who, force: true });
      expect(b.current().kid).not.toBe(a.current().kid);
      expect(await b.tick()).toEqual([]);
      expect(seen).toBe(1);
      expect(b.current().kid).toBe(a.current().kid);
      expect(await verifies(b, await token(a))).toBe(true);
    });

    it('outage: signing is bounded or refused while the store is down, nothing changes, and it recovers without a restart', async () => {
      const { f, km, clock } = await fresh();
      if (!f.outage) {
        expect(f.outage).toBeUndefined(); // the local backend has no remote store
        return;
      }
      const before = km.list();
      await f.outage.down();
      try {
        expect(await codeOf(km.tick())).toBe('ERR_BACKEND_UNAVAILABLE');
        expect(await codeOf(km.rotate({ ...who, force: true }))).toBe('ERR_BACKEND_UNAVAILABLE');
        expect(await codeOf(km.revoke(km.current().kid, who))).toBe('ERR_BACKEND_UNAVAILABLE');
        if (f.outage.kind === 'bounded') {
          clock.advance(ROTATION_SETTINGS.max_vault_outage);
          expect(await verifies(km, await token(km))).toBe(true); // still within the bound
          clock.advance(1);
          expect(await codeOf(() => km.current())).toBe('ERR_SIGNING_UNAVAILABLE');
        } else {
          let caught: unknown;
          try {
            await token(km);
          } catch (err) {
            caught = err;
          }
          expect(isLeashError(caught) && caught.code).toBe('ERR_SIGNING_UNAVAILABLE');
          expect(isLeashError(caught) && caught.description).toBe('the signing service is unavailable');
        }
      } finally {
        await f.outage.up();
      }
      if (f.outage.kind === 'bounded') expect(await codeOf(() => km.current())).toBe('ERR_SIGNING_UNAVAILABLE');
      expect(await km.tick()).toEqual([]);
      expect(km.list()).toEqual(before); // the refused operations changed nothing
      expect(await verifies(km, await token(km))).toBe(true);
    });
  });
}
