import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeJwt, type CryptoKey, type JWK } from 'jose';
import { openSqliteStore } from '../../src/store/sqlite/sqlite-store.js';
import { ManualClock } from '../../src/time/clock.js';
import { CRM_API, EXCHANGE, JWT_TYPE, OPS_KEY, ORCHESTRATOR_KEY, startTestBroker, type TestBroker } from '../support/broker.js';
import { CRM_RS_SECRET, assertionForm, basic, clientAssertion, cuttableStore, endpointsFor, postForm, ticketsKey, withResourceServers } from './introspect-support.js';

describe('POST /revoke (RFC 7009)', () => {
  let dir: string;
  let tb: TestBroker;
  let clock: ManualClock;
  let store: ReturnType<typeof cuttableStore>;
  let tickets: { privateKey: CryptoKey; jwk: JWK };
  let revokeUrl: string;
  let introspectUrl: string;

  beforeAll(async () => {
    clock = new ManualClock(Date.now());
    dir = await mkdtemp(join(tmpdir(), 'leash-revoke-'));
    store = cuttableStore(openSqliteStore({ path: join(dir, 'leash.db'), clock }));
    tickets = await ticketsKey();
    tb = await startTestBroker({ dir, broker: { clock, store }, patch: withResourceServers(tickets) });
    ({ revoke: revokeUrl, introspect: introspectUrl } = endpointsFor(tb));
  });
  afterAll(async () => {
    await tb.close();
    await rm(dir, { recursive: true, force: true });
  });

  const nowS = () => Math.floor(clock.now() / 1000);
  async function crmToken(): Promise<string> {
    const task = await tb.openTask({ plugins: ['crm-reader'] });
    const res = await tb.exchange({
      grant_type: EXCHANGE,
      client_id: 'crm-reader',
      subject_token: await tb.cluster.saToken({ sa: 'crm-reader', nowSeconds: nowS() }),
      subject_token_type: JWT_TYPE,
      resource: CRM_API,
      task,
    });
    if (res.status !== 200) throw new Error(`exchange failed: ${JSON.stringify(res.body)}`);
    return res.body.access_token as string;
  }
  const active = async (token: string) => (await postForm(introspectUrl, { token }, { authorization: basic('crm-api', CRM_RS_SECRET) })).body.active;
  const jtiOf = (token: string) => decodeJwt(token).jti as string;
  async function revocationsOf(jti: string) {
    const all = await tb.broker.testing.store.revocationsSince(0, 10000, clock.now());
    return all.filter((r) => r.scope === 'token' && r.id === jti);
  }
  async function auditFor(jti: string) {
    const records = await tb.broker.testing.store.read(1, 100000);
    return records.filter((r) => r.type === 'token.revoked' && r.event.id === jti).map((r) => r.event);
  }

  describe('the holder (a plugin, public client) revokes its own token', () => {
    it('answers 200 with an empty body, and introspection then says inactive', async () => {
      const token = await crmToken();
      expect(await active(token)).toBe(true);
      const res = await postForm(revokeUrl, { token, client_id: 'crm-reader', token_type_hint: 'access_token' });
      expect(res.status).toBe(200);
      expect(res.text).toBe('');
      expect(res.headers.get('cache-control')).toBe('no-store');
      expect(await active(token)).toBe(false);
      const [rev] = await revocationsOf(jtiOf(token));
      expect(rev).toMatchObject({ actor: 'plugin:crm-reader', reason: 'rfc7009' });
      expect(await auditFor(jtiOf(token))).toEqual([expect.objectContaining({ scope: 'token', actor: 'plugin:crm-reader', reason: 'rfc7009' })]);
    });

    it('revoking twice is one revocation', async () => {
      const token = await crmToken();
      expect((await postForm(revokeUrl, { token, client_id: 'crm-reader' })).status).toBe(200);
      expect((await postForm(revokeUrl, { token, client_id: 'crm-reader' })).status).toBe(200);
      expect(await revocationsOf(jtiOf(token))).toHaveLength(1);
    });

    it('is refused with 400 unauthorized_client when the client_id is not the one the token was issued to', async () => {
      const token = await crmToken();
      const res = await postForm(revokeUrl, { token, client_id: 'ticket-writer' });
      expect(res).toMatchObject({ status: 400, body: { error: 'unauthorized_client' } });
      expect(await active(token)).toBe(true);
      expect(await revocationsOf(jtiOf(token))).toHaveLength(0);
    });
  });

  describe('a resource server revokes a token meant for it', () => {
    it('client_secret_basic, token for its audience: revoked', async () => {
      const token = await crmToken();
      const res = await postForm(revokeUrl, { token }, { authorization: basic('crm-api', CRM_RS_SECRET) });
      expect(res.status).toBe(200);
      expect(await active(token)).toBe(false);
      expect((await revocationsOf(jtiOf(token)))[0]?.actor).toBe('resource_server:crm-api');
    });

    it('private_key_jwt (aud = the revocation endpoint), token for another API: 400 unauthorized_client, not revoked', async () => {
      const token = await crmToken();
      const a = await clientAssertion(tickets.privateKey, `${tb.url}/revoke`, nowS());
      const res = await postForm(revokeUrl, { token, ...assertionForm(a) });
      expect(res).toMatchObject({ status: 400, body: { error: 'unauthorized_client' } });
      expect(await active(token)).toBe(true);
    });

    it('a wrong secret: 401 invalid_client with a Basic challenge, not revoked', async () => {
      const token = await crmToken();
      const res = await postForm(revokeUrl, { token }, { authorization: basic('crm-api', 'wrong') });
      expect(res).toMatchObject({ status: 401, body: { error: 'invalid_client' } });
      expect(res.headers.get('www-authenticate')).toBe('Basic realm="leash"');
      expect(await active(token)).toBe(true);
    });
  });

  describe('an admin with the security role revokes any token', () => {
    it('Bearer <API key with security>: revoked, actor is the key', async () => {
      const token = await crmToken();
      const res = await postForm(revokeUrl, { token }, { authorization: `Bearer ${OPS_KEY}` });
      expect(res.status).toBe(200);
      expect(await active(token)).toBe(false);
      expect((await revocationsOf(jtiOf(token)))[0]?.actor).toBe('apikey:ops');
    });

    it('a key without the security role: 403 insufficient_scope, not revoked, audited as admin.denied', async () => {
      const token = await crmToken();
      const res = await postForm(revokeUrl, { token }, { authorization: `Bearer ${ORCHESTRATOR_KEY}` });
      expect(res).toMatchObject({ status: 403, body: { error: 'insufficient_scope' } });
      expect(res.headers.get('www-authenticate')).toContain('error="insufficient_scope"');
      expect(await active(token)).toBe(true);
      const denied = (await tb.broker.testing.store.read(1, 100000)).filter((r) => r.type === 'admin.denied' && r.event.route === 'revoke');
      expect(denied.at(-1)?.event).toMatchObject({ reason: 'ERR_ADMIN_FORBIDDEN', actor: 'apikey:orchestrator' });
    });

    it('an unknown key: 401 invalid_token', async () => {
      const token = await crmToken();
      const res = await postForm(revokeUrl, { token }, { authorization: 'Bearer not-a-real-admin-key-123' });
      expect(res).toMatchObject({ status: 401, body: { error: 'invalid_token' } });
      expect(await active(token)).toBe(true);
    });

    it('a bearer credential and client authentication together: 400 invalid_request', async () => {
      const res = await postForm(revokeUrl, { token: 'x', client_id: 'crm-api', client_secret: CRM_RS_SECRET }, { authorization: `Bearer ${OPS_KEY}` });
      expect(res).toMatchObject({ status: 400, body: { error: 'invalid_request' } });
    });
  });

  describe('tokens that are not live Leash tokens answer 200 and change nothing (RFC 7009 §2.2)', () => {
    it.each<[string, () => Promise<string>]>([
      ['garbage', async () => 'not-a-token'],
      ["a foreign issuer's JWT", async () => tb.cluster.saToken({ nowSeconds: nowS(), alg: 'ES256' })],
      [
        'a tampered token',
        async () => {
          const [h, p, s] = (await crmToken()).split('.') as [string, string, string];
          return `${h}.${p.slice(0, -2)}AA.${s}`;
        },
      ],
    ])('%s', async (_n, make) => {
      const before = (await tb.broker.testing.store.revocationsSince(0, 10000, clock.now())).length;
      const res = await postForm(revokeUrl, { token: await make(), client_id: 'crm-reader' });
      expect(res.status).toBe(200);
      expect(res.text).toBe('');
      expect((await tb.broker.testing.store.revocationsSince(0, 10000, clock.now())).length).toBe(before);
    });

    it('an expired token', async () => {
      const token = await crmToken();
      clock.advance(400);
      try {
        const res = await postForm(revokeUrl, { token, client_id: 'crm-reader' });
        expect(res.status).toBe(200);
        expect(await revocationsOf(jtiOf(token))).toHaveLength(0);
      } finally {
        // Back within the staleness window of the revocation view.
        clock.advance(-400);
      }
    });
  });

  describe('bad input', () => {
    it.each<[string, () => Promise<{ status: number; body: Record<string, unknown> }>, number, string]>([
      ['no client identification at all', async () => postForm(revokeUrl, { token: 'x' }), 401, 'invalid_client'],
      ['an unsupported Authorization scheme', async () => postForm(revokeUrl, { token: 'x', client_id: 'crm-reader' }, { authorization: 'DPoP abc' }), 401, 'invalid_client'],
      ['a missing token', async () => postForm(revokeUrl, { client_id: 'crm-reader' }), 400, 'invalid_request'],
      ['a repeated token', async () => postForm(revokeUrl, { client_id: 'crm-reader', token: ['a', 'b'] }), 400, 'invalid_request'],
      [
        'a JSON body',
        async () => {
          const res = await fetch(revokeUrl, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token: 'x', client_id: 'crm-reader' }) });
          return { status: res.status, body: (await res.json()) as Record<string, unknown> };
        },
        400,
        'invalid_request',
      ],
      ['a huge body', async () => postForm(revokeUrl, { client_id: 'crm-reader', token: 'x'.repeat(200_000) }), 413, 'invalid_request'],
    ])('%s', async (_n, send, status, error) => {
      const res = await send();
      expect(res.status).toBe(status);
      expect(res.body.error).toBe(error);
    });
  });

  it('503 temporarily_unavailable when the revocation state cannot be confirmed; nothing half-done', async () => {
    const token = await crmToken();
    store.cut = true;
    try {
      const res = await postForm(revokeUrl, { token, client_id: 'crm-reader' });
      expect(res).toMatchObject({ status: 503, body: { error: 'temporarily_unavailable' } });
    } finally {
      store.cut = false;
    }
    expect(await active(token)).toBe(true);
    expect((await postForm(revokeUrl, { token, client_id: 'crm-reader' })).status).toBe(200);
    expect(await active(token)).toBe(false);
  });
});
