import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import express from 'express';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CryptoKey, JWK } from 'jose';
import { createDpopKey, createLeashVerifier, createUsageReporter, requireLeashToken, type DpopKey, type UsageReporter } from '../../src/client/index.js';
import type { AuditRecord } from '../../src/store/records.js';
import { openSqliteStore, type SqliteStore } from '../../src/store/sqlite/sqlite-store.js';
import { ManualClock } from '../../src/time/clock.js';
import { listen } from '../client/fixtures.js';
import { CRM_RS_SECRET, basic, clientAssertion, postForm, ticketsKey, withResourceServers } from '../http/introspect-support.js';
import { CRM_API, EXCHANGE, JWT_TYPE, OPS_KEY, TICKETS_API, startTestBroker, type TestBroker } from '../support/broker.js';

/**
 * SDK → Leash → anomalies → revocation, over HTTP: a real resource server (express with
 * requireLeashToken and createUsageReporter) reports to a real broker, which ingests,
 * finds the anomalies and answers with revocations.
 */
describe('usage end to end: resource-server SDK → POST /usage → anomalies → revocation', () => {
  let dir: string;
  let tb: TestBroker;
  let clock: ManualClock;
  let store: SqliteStore;
  let tickets: { privateKey: CryptoKey; jwk: JWK };
  const closers: Array<() => Promise<void>> = [];
  let reporters: UsageReporter[] = [];

  beforeAll(async () => {
    clock = new ManualClock(Date.now());
    dir = await mkdtemp(join(tmpdir(), 'leash-usage-'));
    store = openSqliteStore({ path: join(dir, 'leash.db'), clock });
    tickets = await ticketsKey();
    tb = await startTestBroker({
      dir,
      broker: { clock, store },
      patch: withResourceServers(tickets, (cfg) => {
        cfg.settings.revocation = { max_staleness_ms: 300000 };
        cfg.settings.usage = { shared_token: { response: 'revoke' }, drift: { min_token_age: 60, min_history_calls: 3 } };
      }),
    });
  });
  afterEach(async () => {
    for (const r of reporters) await r.close();
    reporters = [];
  });
  afterAll(async () => {
    for (const c of closers.reverse()) await c();
    await tb.close();
    await rm(dir, { recursive: true, force: true });
  });

  const nowS = () => Math.floor(clock.now() / 1000);

  async function token(opts: { plugin?: string; resource?: string; scope?: string; task?: string; dpop?: DpopKey } = {}): Promise<{ token: string; task: string; jti: string }> {
    const plugin = opts.plugin ?? 'crm-reader';
    const task = opts.task ?? (await tb.openTask({ plugins: [plugin] }));
    const res = await tb.exchange(
      {
        grant_type: EXCHANGE,
        client_id: plugin,
        subject_token: await tb.cluster.saToken({ sa: plugin === 'crm-reader' ? 'crm-reader' : 'ticket-writer-1', nowSeconds: nowS() }),
        subject_token_type: JWT_TYPE,
        resource: opts.resource ?? CRM_API,
        scope: opts.scope ?? 'contacts:read contacts:search',
        task,
      },
      opts.dpop ? { dpop: await opts.dpop.proof({ method: 'POST', url: `${tb.url}/token` }) } : {},
    );
    if (res.status !== 200) throw new Error(`exchange failed: ${JSON.stringify(res.body)}`);
    const t = res.body.access_token as string;
    const jti = JSON.parse(Buffer.from(t.split('.')[1]!, 'base64url').toString()).jti as string;
    return { token: t, task, jti };
  }

  /** A resource server for `audience`, reporting as `id`. */
  async function resourceServer(id: 'crm-api' | 'tickets-api', audience: string): Promise<{ url: string; reporter: UsageReporter }> {
    const reporter = createUsageReporter(
      id === 'crm-api'
        ? { issuer: tb.url, clientId: id, clientSecret: CRM_RS_SECRET, flushIntervalMs: 20, clock }
        : { issuer: tb.url, clientId: id, clientAssertion: (aud) => clientAssertion(tickets.privateKey, aud, nowS()), flushIntervalMs: 20, clock },
    );
    reporters.push(reporter);
    const verifier = createLeashVerifier({ issuer: tb.url, audience, clock });
    const app = express();
    // The caller's address as this server sees it comes from the proxy header in these tests.
    app.set('trust proxy', true);
    app.get('/contacts/:id', requireLeashToken(verifier, { usage: reporter, requiredScopes: ['contacts:read'] }), (req, res) => {
      res.json({ id: req.params.id, name: 'Ada' });
    });
    app.get('/contacts/:id/export', requireLeashToken(verifier, { usage: reporter }), (_req, res) => {
      res.json({ rows: 42 });
    });
    app.get('/tickets/:id', requireLeashToken(verifier, { usage: reporter }), (_req, res) => {
      res.json({ ok: true });
    });
    const srv = await listen(app);
    closers.push(srv.close);
    return { url: srv.url, reporter };
  }

  async function events(type: string, match: (e: Record<string, unknown>) => boolean = () => true): Promise<AuditRecord[]> {
    await tb.broker.usage.idle();
    const all = await store.read(1, 100_000);
    return all.filter((r) => r.type === type && match(r.event as Record<string, unknown>));
  }

  async function introspect(t: string): Promise<Record<string, unknown>> {
    return (await postForm(`${tb.url}/introspect`, { token: t }, { authorization: basic('crm-api', CRM_RS_SECRET) })).body;
  }

  it('reports every verified call: aggregated per jti/route/minute in the store; one token.first_use, not one event per call', async () => {
    const rs = await resourceServer('crm-api', CRM_API);
    const { token: t, task, jti } = await token();
    for (const id of ['1', '2', '3']) {
      const res = await fetch(`${rs.url}/contacts/${id}`, { headers: { authorization: `Bearer ${t}`, 'x-forwarded-for': '198.51.100.7' } });
      expect(res.status).toBe(200);
    }
    // A refusal is reported too: a token without the route's scope.
    const narrow = await token({ scope: 'contacts:search', task });
    expect((await fetch(`${rs.url}/contacts/9`, { headers: { authorization: `Bearer ${narrow.token}` } })).status).toBe(403);
    await rs.reporter.flush();
    expect(rs.reporter.stats()).toMatchObject({ sent: 4, dropped: 0, rejected: 0 });

    // The per-minute call counts are held for the volume write (settings.usage.flush_interval_ms).
    await tb.broker.usage.idle();
    const rows = await store.listTaskUsage(task, 100);
    const served = rows.find((r) => r.jti === jti)!;
    expect(served).toMatchObject({ plugin: 'crm-reader', task, server: 'crm-api', audience: CRM_API, method: 'GET', route: '/contacts/:id', outcome: 'ok', calls: 3, errors: 0 });
    expect(served.bytes).toBeGreaterThan(3 * 20);
    expect(rows.find((r) => r.jti === narrow.jti)).toMatchObject({ outcome: 'missing_scope', calls: 1, errors: 1 });
    // No raw path with ids anywhere.
    expect(rows.every((r) => !/\/contacts\/\d/.test(r.route))).toBe(true);

    const first = await events('token.first_use', (e) => e.jti === jti);
    expect(first).toHaveLength(1);
    expect(first[0]!.event).toMatchObject({ plugin: 'crm-reader', task, server: 'crm-api', route: '/contacts/:id', source: '198.51.100.7' });
    // The evidence the review reads: last used per grant, route and scope.
    const evidence = await store.usageEvidence({ plugin: 'crm-reader', now: clock.now(), retentionMs: 86400_000 });
    expect(evidence.map((e) => `${e.kind}:${e.name}`)).toEqual(expect.arrayContaining(['grant:', 'route:GET /contacts/:id', 'scope:contacts:read']));
    expect(evidence.find((e) => e.kind === 'scope' && e.name === 'contacts:search')).toBeUndefined();
  });

  it('a bearer token from a second address is a shared token: token.shared, then revoked (response: revoke)', async () => {
    const rs = await resourceServer('crm-api', CRM_API);
    const { token: t, jti } = await token();
    const from = (ip: string) => fetch(`${rs.url}/contacts/1`, { headers: { authorization: `Bearer ${t}`, 'x-forwarded-for': ip } });
    expect((await from('198.51.100.7')).status).toBe(200);
    expect((await from('198.51.100.7')).status).toBe(200);
    await rs.reporter.flush();
    expect(await events('token.shared', (e) => e.jti === jti)).toHaveLength(0);
    expect((await introspect(t)).active).toBe(true);

    expect((await from('203.0.113.66')).status).toBe(200);
    await rs.reporter.flush();
    const shared = await events('token.shared', (e) => e.jti === jti);
    expect(shared).toHaveLength(1);
    expect(shared[0]!.event).toMatchObject({ plugin: 'crm-reader', cause: 'address', source: '203.0.113.66', response: 'revoke', sources: 2 });
    expect((await introspect(t)).active).toBe(false);
    expect(await events('token.revoked', (e) => e.id === jti && e.actor === 'system:usage')).toHaveLength(1);
    // Each new source is one event: a third address is a second one (the token is already revoked).
    expect((await from('192.0.2.1')).status).toBe(200);
    await rs.reporter.flush();
    expect(await events('token.shared', (e) => e.jti === jti)).toHaveLength(2);
  });

  it('a DPoP-bound token presented with another key is a shared token (cause dpop_key)', async () => {
    const rs = await resourceServer('crm-api', CRM_API);
    const owner = await createDpopKey('ES256');
    const thief = await createDpopKey('ES256');
    const { token: t, jti } = await token({ dpop: owner });
    const call = async (key: DpopKey) =>
      fetch(`${rs.url}/contacts/1`, { headers: { authorization: `DPoP ${t}`, dpop: await key.proof({ method: 'GET', url: `${rs.url}/contacts/1`, accessToken: t }) } });
    expect((await call(owner)).status).toBe(200);
    expect((await call(thief)).status).toBe(401);
    await rs.reporter.flush();
    const shared = await events('token.shared', (e) => e.jti === jti);
    expect(shared).toHaveLength(1);
    expect(shared[0]!.event).toMatchObject({ cause: 'dpop_key', outcome: 'bad_dpop', jkt: thief.jkt });
  });

  it('a token used at a server that does not answer for its audience: token.audience_mismatch', async () => {
    const rs = await resourceServer('tickets-api', TICKETS_API);
    const { token: t, jti } = await token();
    expect((await fetch(`${rs.url}/tickets/1`, { headers: { authorization: `Bearer ${t}` } })).status).toBe(401);
    await rs.reporter.flush();
    const mismatch = await events('token.audience_mismatch', (e) => e.jti === jti);
    expect(mismatch).toHaveLength(1);
    expect(mismatch[0]!.event).toMatchObject({ server: 'tickets-api', audience: CRM_API, server_audience: TICKETS_API, outcome: 'wrong_audience', refused: true });
  });

  it('use after revocation and after the task ended: someone holds a dead token and tries it', async () => {
    // This server does not follow the revocation feed: it still serves the dead token, and Leash notices.
    const rs = await resourceServer('crm-api', CRM_API);
    const { token: t, task, jti } = await token();
    const use = () => fetch(`${rs.url}/contacts/1`, { headers: { authorization: `Bearer ${t}` } });
    expect((await use()).status).toBe(200);
    await rs.reporter.flush();
    expect(await events('token.used_after_revocation', (e) => e.jti === jti)).toHaveLength(0);

    const end = await fetch(`${tb.url}/tasks/${task}`, { method: 'DELETE', headers: { authorization: `Bearer ${OPS_KEY}` } });
    expect(end.status).toBe(200);
    clock.advance(1);
    expect((await use()).status).toBe(200);
    expect((await use()).status).toBe(200);
    await rs.reporter.flush();
    const after = await events('token.used_after_revocation', (e) => e.jti === jti);
    expect(after).toHaveLength(1);
    expect(after[0]!.event).toMatchObject({ refused: false, task });
    const outside = await events('token.used_outside_task', (e) => e.jti === jti);
    expect(outside).toHaveLength(1);
    expect(outside[0]!.event).toMatchObject({ cause: 'task_ended' });
  });

  it('introspection counts as use: recorded as INTROSPECT /introspect, first use included', async () => {
    const { token: t, task, jti } = await token();
    expect((await introspect(t)).active).toBe(true);
    expect((await introspect(t)).active).toBe(true);
    await tb.broker.usage.idle();
    const rows = await store.listTaskUsage(task, 10);
    expect(rows).toEqual([expect.objectContaining({ jti, server: 'crm-api', method: 'INTROSPECT', route: '/introspect', outcome: 'ok', calls: 2 })]);
    expect(await events('token.first_use', (e) => e.jti === jti && e.method === 'INTROSPECT')).toHaveLength(1);
  });

  it('a token used long after issuance at a route its plugin never used: usage.route_drift', async () => {
    const rs = await resourceServer('crm-api', CRM_API);
    const { token: t, jti } = await token();
    for (let i = 0; i < 3; i++) expect((await fetch(`${rs.url}/contacts/${i}`, { headers: { authorization: `Bearer ${t}` } })).status).toBe(200);
    await rs.reporter.flush();
    clock.advance(90);
    expect((await fetch(`${rs.url}/contacts/1/export`, { headers: { authorization: `Bearer ${t}` } })).status).toBe(200);
    await rs.reporter.flush();
    const drift = await events('usage.route_drift', (e) => e.jti === jti);
    expect(drift).toHaveLength(1);
    expect(drift[0]!.event).toMatchObject({ route: '/contacts/:id/export', plugin: 'crm-reader' });
    expect(drift[0]!.event.token_age_ms as number).toBeGreaterThanOrEqual(90_000);
  });

  describe('POST /usage', () => {
    const record = (over: Record<string, unknown> = {}) => ({ at: clock.now(), audience: CRM_API, method: 'GET', route: '/contacts/:id', status: 200, ...over });
    const post = (body: unknown, headers: Record<string, string> = { authorization: basic('crm-api', CRM_RS_SECRET) }) =>
      fetch(`${tb.url}/usage`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });

    it("accepts records only for the server's own audiences, refusing bad ones one by one", async () => {
      const res = await post({ records: [record(), record({ audience: TICKETS_API }), record({ status: 42 }), record({ route: '' }), record({ at: clock.now() + 3600_000 }), record({ extra: 1 })] });
      expect(res.status).toBe(200);
      const body = (await res.json()) as { accepted: number; rejected: number; problems: Array<{ index: number; field: string }> };
      expect(body.accepted).toBe(1);
      expect(body.rejected).toBe(5);
      expect(body.problems.map((p) => [p.index, p.field])).toEqual([
        [1, 'audience'],
        [2, 'status'],
        [3, 'route'],
        [4, 'at'],
        [5, 'extra'],
      ]);
    });

    it('authenticates as the resource server: Basic, or a client assertion in the body; never anonymous', async () => {
      expect((await post({ records: [record()] }, {})).status).toBe(401);
      expect((await post({ records: [record()] }, { authorization: basic('crm-api', 'wrong') })).status).toBe(401);
      const assertion = await clientAssertion(tickets.privateKey, `${tb.url}/usage`, nowS());
      const ok = await post({ records: [record({ audience: TICKETS_API })], client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer', client_assertion: assertion }, {});
      expect(ok.status).toBe(200);
      expect(((await ok.json()) as { accepted: number }).accepted).toBe(1);
    });

    it('refuses malformed bodies with invalid_request, never a 500', async () => {
      for (const body of [[], { records: [] }, { records: 'x' }, { nope: [record()] }, { records: Array.from({ length: 1001 }, () => record()) }]) {
        const res = await post(body);
        expect([JSON.stringify(body).slice(0, 40), res.status, ((await res.json()) as { error: string }).error]).toEqual([JSON.stringify(body).slice(0, 40), 400, 'invalid_request']);
      }
      const notJson = await fetch(`${tb.url}/usage`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: basic('crm-api', CRM_RS_SECRET) }, body: '{"records": [' });
      expect(notJson.status).toBe(400);
      const form = await fetch(`${tb.url}/usage`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basic('crm-api', CRM_RS_SECRET) },
        body: 'records=1',
      });
      expect(form.status).toBe(400);
      expect((await fetch(`${tb.url}/usage`, { method: 'GET' })).status).toBe(405);
    });
  });
});
