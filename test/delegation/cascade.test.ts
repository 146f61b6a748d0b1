import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { decodeJwt, type CryptoKey, type JWK } from 'jose';
import { randomBytes } from 'node:crypto';
import { createLeashVerifier, createRevocationFollower, LeashVerifyError, type RevocationFollower } from '../../src/client/index.js';
import { verifyLeashToken } from '../../src/issuance/jwt/verify-leash-token.js';
import { signJwt } from '../../src/keys/jws.js';
import { CRM_API, OPS_KEY } from '../support/broker.js';
import { waitFor } from '../support/wait.js';
import { CRM_RS_SECRET, basic, endpointsFor, postForm, ticketsKey, withResourceServers } from '../http/introspect-support.js';
import { delegate, expectDenied, harness, rootToken, type Harness } from './chain-harness.js';

/**
 * The revocation cascade over HTTP: a delegated token carries `chain_jti`, the jtis of every
 * upstream token, so revoking an upstream token by jti (RFC 7009 or the admin API) makes
 * every token derived from it inactive, with one revocation record and nothing per
 * downstream token. Real broker, SQLite, ES256 tokens; the SDK verifier follows the real feed.
 */

const jtiOf = (token: string) => decodeJwt(token).jti as string;

describe('revoking an upstream token revokes what was delegated from it', () => {
  let h: Harness;
  let tickets: { privateKey: CryptoKey; jwk: JWK };
  let introspectUrl: string;
  let revokeUrl: string;

  beforeAll(async () => {
    tickets = await ticketsKey();
    h = await harness(withResourceServers(tickets));
    ({ introspect: introspectUrl, revoke: revokeUrl } = endpointsFor(h.tb));
  });
  afterAll(async () => h.tb.close());

  /** /introspect as the CRM API (client_secret_basic). */
  async function active(token: string): Promise<boolean> {
    const res = await postForm(introspectUrl, { token }, { authorization: basic('crm-api', CRM_RS_SECRET) });
    if (res.status !== 200) throw new Error(`introspect: ${res.status} ${res.text}`);
    return res.body.active === true;
  }

  async function adminRevoke(jti: string): Promise<void> {
    const res = await fetch(`${h.tb.url}/admin/revocations`, {
      method: 'POST',
      headers: { authorization: `Bearer ${OPS_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ scope: 'token', id: jti, reason: 'test: cascade' }),
    });
    expect(res.status).toBe(201);
  }

  const revocationCount = async () => (await h.tb.broker.testing.store.revocationsSince(0, 100_000, h.clock.now())).length;

  /** A → B (→ C): root token for crm-reader, delegated to summarizer (and on to notifier). */
  async function chain(hops: 2 | 3): Promise<string[]> {
    const a = await rootToken(h, 'crm-reader', CRM_API, { scope: 'contacts:read contacts:search' });
    const resB = await delegate(h, 'summarizer', a, CRM_API, { scope: 'contacts:read contacts:search' });
    expect(resB.status).toBe(200);
    const b = resB.body.access_token as string;
    if (hops === 2) return [a, b];
    const resC = await delegate(h, 'notifier', b, CRM_API, { scope: 'contacts:search' });
    expect(resC.status).toBe(200);
    return [a, b, resC.body.access_token as string];
  }

  it('a delegated token names every upstream jti in chain_jti, root first; a root token has none', async () => {
    const [a, b, c] = await chain(3);
    expect(decodeJwt(a!).chain_jti).toBeUndefined();
    expect(decodeJwt(b!).chain_jti).toEqual([jtiOf(a!)]);
    expect(decodeJwt(c!).chain_jti).toEqual([jtiOf(a!), jtiOf(b!)]);
  });

  it('two hops: the holder revokes A over RFC 7009 → B inactive at /introspect, with one revocation record', async () => {
    const [a, b] = await chain(2);
    expect(await active(a!)).toBe(true);
    expect(await active(b!)).toBe(true);
    const before = await revocationCount();
    const res = await postForm(revokeUrl, { token: a!, client_id: 'crm-reader' });
    expect(res.status).toBe(200);
    expect(await active(a!)).toBe(false);
    expect(await active(b!)).toBe(false);
    // The cascade is read from B's claim, not written per downstream token.
    expect(await revocationCount()).toBe(before + 1);
    // B can no longer extend the chain either.
    await expectDenied(h, await delegate(h, 'notifier', b!, CRM_API), 'invalid_request', 'ERR_UPSTREAM_TOKEN_REVOKED');
  });

  it('three hops: revoking A through POST /admin/revocations makes B and C inactive', async () => {
    const [a, b, c] = await chain(3);
    for (const t of [a, b, c]) expect(await active(t!)).toBe(true);
    await adminRevoke(jtiOf(a!));
    for (const t of [a, b, c]) expect(await active(t!)).toBe(false);
  });

  it('revoking B (the middle hop) makes C inactive and leaves A active; A can still delegate anew', async () => {
    const [a, b, c] = await chain(3);
    await adminRevoke(jtiOf(b!));
    expect(await active(b!)).toBe(false);
    expect(await active(c!)).toBe(false);
    expect(await active(a!)).toBe(true);
    const fresh = await delegate(h, 'summarizer', a!, CRM_API);
    expect(fresh.status).toBe(200);
    expect(await active(fresh.body.access_token as string)).toBe(true);
  });

  it('a sibling branch is untouched: revoking B1 leaves B2 (same upstream A) active', async () => {
    const a = await rootToken(h, 'crm-reader', CRM_API, { scope: 'contacts:read contacts:search' });
    const b1 = (await delegate(h, 'summarizer', a, CRM_API)).body.access_token as string;
    const b2 = (await delegate(h, 'summarizer', a, CRM_API)).body.access_token as string;
    await adminRevoke(jtiOf(b1));
    expect(await active(b1)).toBe(false);
    expect(await active(b2)).toBe(true);
  });

  it('RFC 7009 on a token whose upstream is revoked answers 200 and writes no second record', async () => {
    const [a, b] = await chain(2);
    await adminRevoke(jtiOf(a!));
    const before = await revocationCount();
    const res = await postForm(revokeUrl, { token: b!, client_id: 'summarizer' });
    expect(res.status).toBe(200);
    expect(await revocationCount()).toBe(before);
  });

  it('the SDK verifier following the revocation feed rejects B and C once A is revoked', async () => {
    const follower: RevocationFollower = createRevocationFollower({ issuer: h.tb.url, clientId: 'crm-api', clientSecret: CRM_RS_SECRET, reconnectDelayMs: 20 });
    try {
      await follower.ready();
      const verifier = createLeashVerifier({ issuer: h.tb.url, audience: CRM_API, revocations: follower });
      const call = (token: string) => verifier.verify({ authorization: `Bearer ${token}`, method: 'GET', url: `${CRM_API}/contacts` });
      const [a, b, c] = await chain(3);
      await expect(call(b!)).resolves.toMatchObject({ plugin: 'summarizer', sub: 'crm-reader' });
      await expect(call(c!)).resolves.toMatchObject({ plugin: 'notifier' });
      await adminRevoke(jtiOf(a!));
      await waitFor(async () => follower.isRevoked({ jti: jtiOf(a!), plugin: 'crm-reader', iat: 0 }), 5000);
      for (const t of [b, c]) {
        const err = await call(t!).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(LeashVerifyError);
        expect(err).toMatchObject({ error: 'invalid_token', error_description: 'token revoked' });
      }
      // A token of another chain is still good.
      const [, other] = await chain(2);
      await expect(call(other!)).resolves.toMatchObject({ plugin: 'summarizer' });
    } finally {
      follower.close();
    }
  });

  describe('chain_jti is shape-checked by verifyLeashToken (a Leash-signed token with a bad claim is not one Leash wrote)', () => {
    const deps = () => ({ issuer: h.tb.url, keys: h.tb.broker.testing.keys, clock: h.clock, clockSkewSeconds: 30 });
    const mint = (extra: Record<string, unknown>) => {
      const now = Math.floor(h.clock.now() / 1000);
      const base = {
        iss: h.tb.url,
        sub: 'crm-reader',
        aud: CRM_API,
        exp: now + 120,
        iat: now,
        nbf: now,
        jti: randomBytes(16).toString('base64url'),
        client_id: 'summarizer',
        scope: 'contacts:read',
        plugin: 'summarizer',
        task: h.task,
        act: { sub: 'summarizer' },
        chain_effects: ['read'],
      };
      return signJwt(h.tb.broker.testing.keys.current(), { typ: 'at+jwt' }, { ...base, ...extra });
    };
    const deep = (n: number) => {
      let act: Record<string, unknown> | undefined;
      for (let i = n; i >= 1; i--) act = act ? { sub: `p${i}`, act } : { sub: `p${i}` };
      return act!;
    };

    it('well-formed: one jti per earlier actor is accepted and returned', async () => {
      const claims = await verifyLeashToken(await mint({ chain_jti: ['up-1'] }), deps());
      expect(claims?.chain_jti).toEqual(['up-1']);
      const three = await verifyLeashToken(await mint({ act: deep(3), chain_jti: ['u1', 'u2', 'u3'] }), deps());
      expect(three?.chain_jti).toEqual(['u1', 'u2', 'u3']);
    });

    it.each([
      ['a string, not an array', 'up-1'],
      ['an object', { 0: 'up-1' }],
      ['null', null],
      ['a non-string item', [42]],
      ['an empty string item', ['']],
      ['an over-long jti', ['x'.repeat(257)]],
      ['empty', []],
      ['longer than the act depth', ['u1', 'u2']],
      ['duplicates', ['u1', 'u1']],
    ])('malformed chain_jti (%s) → undefined', async (_name, value) => {
      expect(await verifyLeashToken(await mint({ chain_jti: value }), deps())).toBeUndefined();
    });

    it('too long for any chain (11 jtis), and on a root token (no act) → undefined', async () => {
      const eleven = Array.from({ length: 11 }, (_, i) => `u${i}`);
      expect(await verifyLeashToken(await mint({ act: deep(10), chain_jti: eleven }), deps())).toBeUndefined();
      expect(await verifyLeashToken(await mint({ act: deep(10), chain_jti: eleven.slice(0, 10) }), deps())).toBeDefined();
      expect(await verifyLeashToken(await mint({ act: undefined, plugin: 'crm-reader', client_id: 'crm-reader', chain_jti: ['u1'] }), deps())).toBeUndefined();
    });

    it('naming its own jti as an upstream → undefined; at /introspect → inactive', async () => {
      const jti = 'self-jti-0123456789';
      const token = await mint({ jti, chain_jti: [jti] });
      expect(await verifyLeashToken(token, deps())).toBeUndefined();
      expect(await active(await mint({ chain_jti: 'up-1' }))).toBe(false);
      expect(await active(await mint({ chain_jti: ['up-1'] }))).toBe(true);
    });

    it('a delegated token without chain_jti (signed before the claim existed) is active but cannot extend a chain', async () => {
      const legacy = await mint({});
      expect(await active(legacy)).toBe(true);
      const res = await delegate(h, 'notifier', legacy, CRM_API);
      const event = await expectDenied(h, res, 'invalid_request', 'ERR_UPSTREAM_TOKEN_INVALID');
      expect(event.detail).toMatchObject({ reason: 'no_chain_jti' });
    });
  });
});

describe("revoking a chain's root or an earlier actor's plugin revokes what was delegated", () => {
  let h: Harness;
  let introspectUrl: string;

  beforeAll(async () => {
    h = await harness(withResourceServers(await ticketsKey()));
    ({ introspect: introspectUrl } = endpointsFor(h.tb));
  });
  afterAll(async () => h.tb.close());

  async function active(token: string): Promise<boolean> {
    const res = await postForm(introspectUrl, { token }, { authorization: basic('crm-api', CRM_RS_SECRET) });
    if (res.status !== 200) throw new Error(`introspect: ${res.status} ${res.text}`);
    return res.body.active === true;
  }

  it('the kill switch on the root plugin (scope plugin) makes B and C inactive; the plugin in the middle likewise reaches C', async () => {
    const a = await rootToken(h, 'crm-reader', CRM_API, { scope: 'contacts:read contacts:search' });
    const b = (await delegate(h, 'summarizer', a, CRM_API, { scope: 'contacts:read contacts:search' })).body.access_token as string;
    const c = (await delegate(h, 'notifier', b, CRM_API, { scope: 'contacts:search' })).body.access_token as string;
    for (const t of [a, b, c]) expect(await active(t)).toBe(true);

    // Revoke the middle actor's plugin first: C (derived through it) goes, A stays.
    const middle = await fetch(`${h.tb.url}/admin/revocations`, {
      method: 'POST',
      headers: { authorization: `Bearer ${OPS_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ scope: 'plugin', id: 'summarizer', reason: 'test: middle of the chain' }),
    });
    expect(middle.status).toBe(201);
    expect(await active(a)).toBe(true);
    expect(await active(b)).toBe(false);
    expect(await active(c)).toBe(false);

    // A fresh chain, then the root's kill switch: every token delegated from A's goes.
    h.clock.advance(2);
    const a2 = await rootToken(h, 'crm-reader', CRM_API, { scope: 'contacts:read' });
    const b2res = await delegate(h, 'summarizer', a2, CRM_API, { scope: 'contacts:read' });
    expect(b2res.status).toBe(200);
    const b2 = b2res.body.access_token as string;
    expect(await active(b2)).toBe(true);
    const root = await fetch(`${h.tb.url}/admin/revocations`, {
      method: 'POST',
      headers: { authorization: `Bearer ${OPS_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ scope: 'plugin', id: 'crm-reader', reason: 'test: root kill switch' }),
    });
    expect(root.status).toBe(201);
    expect(await active(a2)).toBe(false);
    expect(await active(b2)).toBe(false);
  });
});
