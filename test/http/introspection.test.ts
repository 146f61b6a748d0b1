import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeJwt, type CryptoKey, type JWK } from 'jose';
import { createDpopKey } from '../../src/client/index.js';
import { signJwt } from '../../src/keys/jws.js';
import { createLocalKeyManager } from '../../src/keys/local/local-key-manager.js';
import { openSqliteStore } from '../../src/store/sqlite/sqlite-store.js';
import { ManualClock } from '../../src/time/clock.js';
import { CRM_API, EXCHANGE, JWT_TYPE, OPS_KEY, ORCHESTRATOR_KEY, TICKETS_API, startTestBroker, type TestBroker } from '../support/broker.js';
import { CRM_RS_SECRET, assertionForm, basic, clientAssertion, cuttableStore, endpointsFor, postForm, ticketsKey, withResourceServers } from './introspect-support.js';

describe('POST /introspect (RFC 7662)', () => {
  let dir: string;
  let tb: TestBroker;
  let clock: ManualClock;
  let store: ReturnType<typeof cuttableStore>;
  let tickets: { privateKey: CryptoKey; jwk: JWK };
  let url: string;

  beforeAll(async () => {
    clock = new ManualClock(Date.now());
    dir = await mkdtemp(join(tmpdir(), 'leash-introspect-'));
    store = cuttableStore(openSqliteStore({ path: join(dir, 'leash.db'), clock }));
    tickets = await ticketsKey();
    tb = await startTestBroker({
      dir,
      broker: { clock, store },
      patch: withResourceServers(tickets, (cfg) => {
        // The test moves the clock by minutes; staleness is exercised by cutting the store instead.
        cfg.settings.revocation = { max_staleness_ms: 300000 };
      }),
    });
    url = endpointsFor(tb).introspect;
  });
  afterAll(async () => {
    await tb.close();
    await rm(dir, { recursive: true, force: true });
  });

  const nowS = () => Math.floor(clock.now() / 1000);
  async function crmToken(task?: string): Promise<string> {
    const t = task ?? (await tb.openTask({ plugins: ['crm-reader'] }));
    const res = await tb.exchange({
      grant_type: EXCHANGE,
      client_id: 'crm-reader',
      subject_token: await tb.cluster.saToken({ sa: 'crm-reader', nowSeconds: nowS() }),
      subject_token_type: JWT_TYPE,
      resource: CRM_API,
      scope: 'contacts:read contacts:search',
      task: t,
    });
    if (res.status !== 200) throw new Error(`exchange failed: ${JSON.stringify(res.body)}`);
    return res.body.access_token as string;
  }
  const asCrm = (form: Record<string, string | string[]>, extra: Record<string, string> = {}) => postForm(url, form, { authorization: basic('crm-api', CRM_RS_SECRET), ...extra });
  const asTickets = async (form: Record<string, string | string[]>) => postForm(url, { ...form, ...assertionForm(await clientAssertion(tickets.privateKey, `${tb.url}/introspect`, nowS())) });

  describe('active tokens', () => {
    it('answers active with the claims a resource server decides on (client_secret_basic)', async () => {
      const task = await tb.openTask({ plugins: ['crm-reader'] });
      const token = await crmToken(task);
      const claims = decodeJwt(token);
      const res = await asCrm({ token, token_type_hint: 'access_token' });
      expect(res.status).toBe(200);
      expect(res.headers.get('cache-control')).toBe('no-store');
      expect(res.headers.get('content-type')).toMatch(/^application\/json/);
      expect(res.body).toEqual({
        active: true,
        iss: tb.url,
        sub: 'crm-reader',
        aud: CRM_API,
        scope: 'contacts:read contacts:search',
        client_id: 'crm-reader',
        token_type: 'Bearer',
        exp: claims.exp,
        iat: claims.iat,
        nbf: claims.nbf,
        jti: claims.jti,
        plugin: 'crm-reader',
        task,
        workload: { issuer: 'test-cluster', sub: 'system:serviceaccount:plugins:crm-reader' },
      });
    });

    it('accepts client_secret_post too', async () => {
      const res = await postForm(url, { token: await crmToken(), client_id: 'crm-api', client_secret: CRM_RS_SECRET });
      expect(res.body.active).toBe(true);
    });

    it('reports a DPoP-bound token as token_type DPoP with its cnf (private_key_jwt caller)', async () => {
      const task = await tb.openTask({ plugins: ['ticket-writer'] });
      const key = await createDpopKey('ES256');
      const res = await tb.exchange(
        {
          grant_type: EXCHANGE,
          client_id: 'ticket-writer',
          subject_token: await tb.cluster.saToken({ sa: 'ticket-writer-7', nowSeconds: nowS() }),
          subject_token_type: JWT_TYPE,
          resource: TICKETS_API,
          task,
        },
        { dpop: await key.proof({ method: 'POST', url: `${tb.url}/token` }) },
      );
      expect(res.status).toBe(200);
      const out = await asTickets({ token: res.body.access_token as string });
      expect(out.status).toBe(200);
      expect(out.body).toMatchObject({ active: true, token_type: 'DPoP', cnf: { jkt: key.jkt }, aud: TICKETS_API, plugin: 'ticket-writer', task });
    });
  });

  describe('inactive tokens answer exactly { active: false }', () => {
    const inactive = async (res: Promise<{ status: number; body: Record<string, unknown>; headers: Headers }>) => {
      const r = await res;
      expect(r.status).toBe(200);
      expect(r.body).toEqual({ active: false });
      expect(r.headers.get('cache-control')).toBe('no-store');
    };

    it("a token meant for another API (audience not among the caller's)", async () => {
      const token = await crmToken();
      expect((await asCrm({ token })).body.active).toBe(true);
      await inactive(asTickets({ token }));
    });

    it('a token revoked by jti', async () => {
      const token = await crmToken();
      expect((await asCrm({ token })).body.active).toBe(true);
      await tb.broker.revocation.revokeToken(decodeJwt(token).jti as string, { actor: 'apikey:ops', reason: 'test' });
      await inactive(asCrm({ token }));
    });

    it('a token whose task was ended (DELETE /tasks/{id})', async () => {
      const task = await tb.openTask({ plugins: ['crm-reader'] });
      const token = await crmToken(task);
      expect((await asCrm({ token })).body.active).toBe(true);
      const del = await fetch(`${tb.url}/tasks/${task}`, { method: 'DELETE', headers: { authorization: `Bearer ${ORCHESTRATOR_KEY}` } });
      expect(del.status).toBe(200);
      await inactive(asCrm({ token }));
    });

    it('a token of a plugin that was suspended (kill switch), even after resume', async () => {
      const token = await crmToken();
      expect((await asCrm({ token })).body.active).toBe(true);
      const admin = (action: string) =>
        fetch(`${tb.url}/admin/plugins/crm-reader/${action}`, {
          method: 'POST',
          headers: { authorization: `Bearer ${OPS_KEY}`, 'content-type': 'application/json' },
          body: JSON.stringify({ reason: 'leaked token drill' }),
        });
      expect((await admin('suspend')).status).toBeLessThan(300);
      await inactive(asCrm({ token }));
      expect((await admin('resume')).status).toBeLessThan(300);
      await inactive(asCrm({ token }));
      // A plugin revocation covers tokens issued in the same second; a later one is live.
      clock.advance(2);
      expect((await asCrm({ token: await crmToken() })).body.active).toBe(true);
    });

    it('an expired token (past exp plus the clock skew)', async () => {
      const token = await crmToken();
      const { exp } = decodeJwt(token) as { exp: number };
      clock.set((exp + tb.config.settings.tokens.clock_skew + 1) * 1000);
      // The jump is longer than the view's staleness bound; its periodic sync would catch up
      // within sync_interval_ms, done here at once so the check is about expiry, not staleness.
      await tb.broker.revocation.sync();
      await inactive(asCrm({ token }));
    });

    it('a token signed by a key Leash does not publish (same claims, same kid)', async () => {
      const genuine = await crmToken();
      const foreignKeys = createLocalKeyManager({ dir: join(dir, 'foreign-keys'), algorithm: 'ES256', clock });
      await foreignKeys.init();
      const [h, p] = genuine.split('.') as [string, string];
      const header = JSON.parse(Buffer.from(h, 'base64url').toString()) as Record<string, unknown>;
      const forged = await signJwt(foreignKeys.current(), { typ: header.typ }, JSON.parse(Buffer.from(p, 'base64url').toString()) as Record<string, unknown>);
      await inactive(asCrm({ token: forged }));
      // The same payload, a different kid: the genuine kid with a foreign signature.
      const [, fp, fs] = forged.split('.');
      await inactive(asCrm({ token: `${h}.${fp}.${fs}` }));
    });

    it("a foreign issuer's JWT (the cluster's own service-account token)", async () => {
      await inactive(asCrm({ token: await tb.cluster.saToken({ nowSeconds: nowS(), alg: 'ES256' }) }));
    });

    it.each([
      ['garbage', 'not-a-token'],
      ['three empty-ish parts', 'a.b.c'],
      ['longer than any Leash token', `${'x'.repeat(8200)}.y.z`],
    ])('a malformed token: %s', async (_n, token) => {
      await inactive(asCrm({ token }));
    });
  });

  describe('client authentication', () => {
    it('401 invalid_client with a Basic challenge when no credentials are sent', async () => {
      const res = await postForm(url, { token: await crmToken() });
      expect(res.status).toBe(401);
      expect(res.body.error).toBe('invalid_client');
      expect(res.headers.get('www-authenticate')).toBe('Basic realm="leash"');
      expect(res.body.active).toBeUndefined();
    });

    it('401 invalid_client for a wrong secret, before the token is looked at', async () => {
      const res = await postForm(url, { token: 'x' }, { authorization: basic('crm-api', 'wrong-secret') });
      expect(res.status).toBe(401);
      expect(res.body.error).toBe('invalid_client');
    });

    it('401 for a replayed client assertion', async () => {
      const a = await clientAssertion(tickets.privateKey, `${tb.url}/introspect`, nowS());
      const token = await crmToken();
      expect((await postForm(url, { token, ...assertionForm(a) })).status).toBe(200);
      expect(await postForm(url, { token, ...assertionForm(a) })).toMatchObject({ status: 401, body: { error: 'invalid_client' } });
    });

    it('401 for a client assertion addressed to another endpoint', async () => {
      const a = await clientAssertion(tickets.privateKey, `${tb.url}/token`, nowS());
      expect(await postForm(url, { token: 'x', ...assertionForm(a) })).toMatchObject({ status: 401, body: { error: 'invalid_client' } });
    });

    it('400 invalid_request for two methods at once', async () => {
      const res = await asCrm({ token: 'x', client_id: 'crm-api', client_secret: CRM_RS_SECRET });
      expect(res).toMatchObject({ status: 400, body: { error: 'invalid_request' } });
    });
  });

  describe('bad input: the RFC error, never a 500', () => {
    it.each<[string, () => Promise<{ status: number; body: Record<string, unknown> }>, number]>([
      [
        'a JSON body',
        async () => {
          const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', authorization: basic('crm-api', CRM_RS_SECRET) }, body: JSON.stringify({ token: 'x' }) });
          return { status: res.status, body: (await res.json()) as Record<string, unknown> };
        },
        400,
      ],
      [
        'no body at all',
        async () => {
          const res = await fetch(url, { method: 'POST', headers: { authorization: basic('crm-api', CRM_RS_SECRET) } });
          return { status: res.status, body: (await res.json()) as Record<string, unknown> };
        },
        400,
      ],
      ['a repeated token', async () => asCrm({ token: ['a.b.c', 'd.e.f'] }), 400],
      ['a repeated client_id', async () => postForm(url, { token: 'x', client_id: ['crm-api', 'crm-api'], client_secret: CRM_RS_SECRET }), 400],
      ['a missing token', async () => asCrm({ token_type_hint: 'access_token' }), 400],
      ['an empty token', async () => asCrm({ token: '' }), 400],
      ['a huge body', async () => asCrm({ token: 'x'.repeat(200_000) }), 413],
      ['too many parameters', async () => asCrm(Object.fromEntries(Array.from({ length: 100 }, (_, i) => [`p${i}`, 'v']))), 400],
      [
        'an unsupported charset',
        async () => {
          const res = await fetch(url, {
            method: 'POST',
            headers: { 'content-type': 'application/x-www-form-urlencoded; charset=latin1', authorization: basic('crm-api', CRM_RS_SECRET) },
            body: 'token=x',
          });
          return { status: res.status, body: (await res.json()) as Record<string, unknown> };
        },
        400,
      ],
    ])('%s', async (_n, send, status) => {
      const res = await send();
      expect(res.status).toBe(status);
      expect(res.body.error).toBe('invalid_request');
      expect(typeof res.body.error_description).toBe('string');
      expect(res.body.active).toBeUndefined();
    });

    it('GET is 405, not served by anything else', async () => {
      const res = await fetch(url);
      expect(res.status).toBe(405);
      expect(res.headers.get('allow')).toBe('POST');
    });
  });

  describe('fail closed', () => {
    it('503 temporarily_unavailable (never active: true) while the revocation view cannot prove it is fresh; recovers', async () => {
      const token = await crmToken();
      expect((await asCrm({ token })).body.active).toBe(true);
      store.cut = true;
      try {
        const res = await asCrm({ token });
        expect(res.status).toBe(503);
        expect(res.body).toEqual({ error: 'temporarily_unavailable', error_description: expect.any(String) });
        expect(res.text).not.toContain('active');
      } finally {
        store.cut = false;
      }
      expect((await asCrm({ token })).body.active).toBe(true);
    });
  });
});
