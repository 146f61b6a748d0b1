import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { JWK } from 'jose';
import { signJwt } from '../../src/keys/jws.js';
import type { KeyManager } from '../../src/keys/key-manager.js';
import { createLocalKeyManager } from '../../src/keys/local/local-key-manager.js';
import { createJwtIssuer } from '../../src/issuance/jwt/jwt-issuer.js';
import type { IssueRequest } from '../../src/issuance/credential-issuer.js';
import { verifyLeashToken } from '../../src/issuance/jwt/verify-leash-token.js';
import { ManualClock } from '../../src/time/clock.js';

const ISSUER = 'https://leash.test';

/** A KeyManager whose published set the test can shrink (a withdrawn key) or break. */
function withdrawable(inner: KeyManager): KeyManager & { hidden: Set<string>; broken: boolean } {
  const km = {
    hidden: new Set<string>(),
    broken: false,
    backend: inner.backend,
    init: () => inner.init(),
    current: () => inner.current(),
    list: () => inner.list(),
    rotate: (by: Parameters<KeyManager['rotate']>[0]) => inner.rotate(by),
    retire: (kid: string, by: Parameters<KeyManager['retire']>[1]) => inner.retire(kid, by),
    revoke: (kid: string, by: Parameters<KeyManager['revoke']>[1]) => inner.revoke(kid, by),
    tick: () => inner.tick(),
    onChange: (listener: () => void) => inner.onChange(listener),
    close: () => inner.close(),
    jwks(): { keys: JWK[] } {
      if (km.broken) throw new Error('backend down');
      return { keys: inner.jwks().keys.filter((k) => !km.hidden.has(k.kid as string)) };
    },
  };
  return km;
}

describe('verifyLeashToken', () => {
  let dir: string;
  const clock = new ManualClock();
  let keys: ReturnType<typeof withdrawable>;
  let foreign: KeyManager;
  const now = () => Math.floor(clock.now() / 1000);
  const deps = () => ({ issuer: ISSUER, keys, clock, clockSkewSeconds: 30 });
  const claims = (over: Record<string, unknown> = {}) => {
    const c: Record<string, unknown> = {
      iss: ISSUER,
      sub: 'crm-reader',
      aud: 'https://crm',
      exp: now() + 300,
      iat: now(),
      nbf: now(),
      jti: 'j-1',
      client_id: 'crm-reader',
      scope: 'contacts:read',
      plugin: 'crm-reader',
      task: 'tsk_abcdefghijkl',
      ...over,
    };
    for (const [k, v] of Object.entries(c)) if (v === undefined) delete c[k];
    return c;
  };
  const sign = (payload: Record<string, unknown>, header: Record<string, unknown> = { typ: 'at+jwt' }, km: KeyManager = keys) => signJwt(km.current(), header, payload);

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'leash-verify-'));
    const inner = createLocalKeyManager({ dir: join(dir, 'k1'), algorithm: 'ES256', clock });
    await inner.init();
    keys = withdrawable(inner);
    foreign = createLocalKeyManager({ dir: join(dir, 'k2'), algorithm: 'ES256', clock });
    await foreign.init();
  });
  afterAll(async () => rm(dir, { recursive: true, force: true }));

  it('returns the typed claims of a token createJwtIssuer issued', async () => {
    const issuer = createJwtIssuer({ issuer: ISSUER, keys });
    const req = {
      plugin: { id: 'crm-reader' },
      grant: {},
      identity: { issuer: 'test-cluster', subject: 'system:serviceaccount:plugins:crm-reader' },
      task: { id: 'tsk_abcdefghijkl' },
      audience: 'https://crm',
      scopes: ['contacts:read', 'contacts:search'],
      ttl: 120,
      jkt: 'thumb-1',
      now: clock.now(),
    } as unknown as IssueRequest;
    const { body, record } = await issuer.issue(req);
    const got = await verifyLeashToken(body.access_token, deps());
    expect(got).toEqual({
      iss: ISSUER,
      jti: record.jti,
      sub: 'crm-reader',
      plugin: 'crm-reader',
      client_id: 'crm-reader',
      aud: 'https://crm',
      scope: 'contacts:read contacts:search',
      task: 'tsk_abcdefghijkl',
      exp: now() + 120,
      iat: now(),
      nbf: now(),
      cnf: { jkt: 'thumb-1' },
      workload: { issuer: 'test-cluster', sub: 'system:serviceaccount:plugins:crm-reader' },
      kid: keys.current().kid,
    });
  });

  it('accepts a token within the clock skew after exp, and not beyond', async () => {
    const token = await sign(claims({ exp: now() + 10 }));
    clock.advance(35);
    expect(await verifyLeashToken(token, deps())).toBeDefined();
    clock.advance(10);
    expect(await verifyLeashToken(token, deps())).toBeUndefined();
  });

  it.each<[string, () => Promise<string> | string]>([
    ['an expired token', () => sign(claims({ exp: now() - 31, iat: now() - 100, nbf: now() - 100 }))],
    ['another issuer', () => sign(claims({ iss: 'https://evil.test' }))],
    ['typ JWT instead of at+jwt', () => sign(claims(), { typ: 'JWT' })],
    ['no typ', () => sign(claims(), {})],
    ['iat in the future', () => sign(claims({ iat: now() + 120, nbf: undefined }))],
    ['nbf in the future', () => sign(claims({ nbf: now() + 120 }))],
    ['no plugin claim', () => sign(claims({ plugin: undefined }))],
    ['no jti', () => sign(claims({ jti: undefined }))],
    ['an array aud', () => sign(claims({ aud: ['https://crm'] }))],
    ['a numeric scope', () => sign(claims({ scope: 7 }))],
    ['a malformed cnf', () => sign(claims({ cnf: { jkt: 5 } }))],
    ['a malformed workload', () => sign(claims({ workload: 'x' }))],
    ['a string exp', () => sign(claims({ exp: String(now() + 60) }))],
    ['a jwk header', async () => sign(claims(), { typ: 'at+jwt', jwk: keys.current().publicJwk })],
    ['a token signed by a foreign key', () => sign(claims(), { typ: 'at+jwt' }, foreign)],
    [
      'an unsigned (alg none) token',
      () => `${Buffer.from(JSON.stringify({ alg: 'none', typ: 'at+jwt', kid: keys.current().kid })).toString('base64url')}.${Buffer.from(JSON.stringify(claims())).toString('base64url')}.`,
    ],
    [
      'an HS256 token',
      () => `${Buffer.from(JSON.stringify({ alg: 'HS256', typ: 'at+jwt', kid: keys.current().kid })).toString('base64url')}.${Buffer.from(JSON.stringify(claims())).toString('base64url')}.c2ln`,
    ],
    ['garbage', () => 'not-a-token'],
    ['three dots of nothing', () => 'a.b.c'],
    ['an empty string', () => ''],
    ['a huge string', () => `${'a'.repeat(9000)}.b.c`],
    ['a header that is not JSON', () => `${Buffer.from('{nope').toString('base64url')}.e30.c2ln`],
  ])('answers undefined for %s', async (_name, make) => {
    const token = await make();
    await expect(verifyLeashToken(token, deps())).resolves.toBeUndefined();
  });

  it('answers undefined for a tampered payload', async () => {
    const token = await sign(claims());
    const [h, , s] = token.split('.');
    const forged = `${h}.${Buffer.from(JSON.stringify(claims({ scope: 'admin' }))).toString('base64url')}.${s}`;
    await expect(verifyLeashToken(forged, deps())).resolves.toBeUndefined();
  });

  it('answers undefined for non-string input', async () => {
    await expect(verifyLeashToken(undefined as unknown as string, deps())).resolves.toBeUndefined();
    await expect(verifyLeashToken({ a: 1 } as unknown as string, deps())).resolves.toBeUndefined();
  });

  it('follows the published set: a withdrawn key stops verifying, a republished one verifies again', async () => {
    const token = await sign(claims());
    expect(await verifyLeashToken(token, deps())).toBeDefined();
    keys.hidden.add(keys.current().kid);
    expect(await verifyLeashToken(token, deps())).toBeUndefined();
    keys.hidden.clear();
    expect(await verifyLeashToken(token, deps())).toBeDefined();
  });

  it('throws ERR_BACKEND_UNAVAILABLE, not undefined, when the keys cannot be read', async () => {
    const token = await sign(claims());
    keys.broken = true;
    try {
      await expect(verifyLeashToken(token, deps())).rejects.toMatchObject({ code: 'ERR_BACKEND_UNAVAILABLE' });
    } finally {
      keys.broken = false;
    }
  });
});
