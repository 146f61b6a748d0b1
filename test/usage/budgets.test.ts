import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import express from 'express';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeJwt, type CryptoKey, type JWK } from 'jose';
import { createDpopKey, createLeashVerifier, createUsageReporter, requireLeashToken, type UsageReporter } from '../../src/client/index.js';
import { openSqliteStore, type SqliteStore } from '../../src/store/sqlite/sqlite-store.js';
import { ALL_AUDIENCES } from '../../src/store/usage-store.js';
import { ManualClock } from '../../src/time/clock.js';
import { listen } from '../client/fixtures.js';
import { CRM_RS_SECRET, basic, postForm, ticketsKey, withResourceServers } from '../http/introspect-support.js';
import { CRM_API, EXCHANGE, JWT_TYPE, ORCHESTRATOR_KEY, TICKETS_API, freePort, startTestBroker, type TestBroker } from '../support/broker.js';

describe('per-task budgets', () => {
  let dir: string;
  let tb: TestBroker;
  let clock: ManualClock;
  let store: SqliteStore;
  let tickets: { privateKey: CryptoKey; jwk: JWK };
  const closers: Array<() => Promise<void>> = [];
  let reporters: UsageReporter[] = [];

  beforeAll(async () => {
    clock = new ManualClock(Date.now());
    dir = await mkdtemp(join(tmpdir(), 'leash-budgets-'));
    store = openSqliteStore({ path: join(dir, 'leash.db'), clock });
    tickets = await ticketsKey();
    tb = await startTestBroker({
      dir,
      broker: { clock, store },
      patch: withResourceServers(tickets, (cfg) => {
        cfg.settings.revocation = { max_staleness_ms: 300000 };
        // One write per turn: the counts each budget event reports are those of one report, not of a 20 ms window.
        cfg.settings.usage = { ...cfg.settings.usage, commit_window_ms: 0 };
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
  async function openTask(body: Record<string, unknown>): Promise<{ status: number; body: Record<string, unknown> }> {
    const res = await fetch(`${tb.url}/tasks`, { method: 'POST', headers: { authorization: `Bearer ${ORCHESTRATOR_KEY}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  }
  async function exchange(task: string, plugin = 'crm-reader', resource = CRM_API, scope = 'contacts:read', headers: Record<string, string> = {}) {
    return tb.exchange(
      {
        grant_type: EXCHANGE,
        client_id: plugin,
        subject_token: await tb.cluster.saToken({ sa: plugin === 'crm-reader' ? 'crm-reader' : 'ticket-writer-1', nowSeconds: nowS() }),
        subject_token_type: JWT_TYPE,
        resource,
        scope,
        task,
      },
      headers,
    );
  }
  async function token(task: string): Promise<string> {
    const res = await exchange(task);
    if (res.status !== 200) throw new Error(`exchange failed: ${JSON.stringify(res.body)}`);
    return res.body.access_token as string;
  }
  async function crmServer(opts: { enforce?: boolean; issuer?: string } = {}): Promise<{ url: string; reporter: UsageReporter }> {
    const reporter = createUsageReporter({ issuer: opts.issuer ?? tb.url, clientId: 'crm-api', clientSecret: CRM_RS_SECRET, flushIntervalMs: 20, clock, maxAttempts: 1 });
    reporters.push(reporter);
    const app = express();
    app.get(
      '/contacts/:id',
      requireLeashToken(createLeashVerifier({ issuer: tb.url, audience: CRM_API, clock }), { usage: reporter, ...(opts.enforce ? { budget: 'enforce' as const } : {}) }),
      (_req, res) => {
        res.json({ name: 'x'.repeat(40) });
      },
    );
    const srv = await listen(app);
    closers.push(srv.close);
    return { url: srv.url, reporter };
  }
  const active = async (t: string) => (await postForm(`${tb.url}/introspect`, { token: t }, { authorization: basic('crm-api', CRM_RS_SECRET) })).body.active;
  const budgetEvents = async (task: string) => {
    await tb.broker.usage.idle();
    return (await store.read(1, 100_000)).filter((r) => r.type === 'task.budget_exceeded' && r.event.task === task);
  };

  it('a task opens with budgets (shown in its view) and bad budgets are refused with what to fix', async () => {
    const ok = await openTask({ plugins: ['crm-reader'], budgets: { calls: 10, bytes: 1000, audiences: { [CRM_API]: { calls: 5 } } } });
    expect(ok.status).toBe(201);
    expect(ok.body.budgets).toEqual({ calls: 10, bytes: 1000, audiences: { [CRM_API]: { calls: 5 } } });
    expect((await store.getTask(ok.body.id as string))?.budgets).toEqual({ calls: 10, bytes: 1000, audiences: { [CRM_API]: { calls: 5 } } });
    for (const budgets of [{}, { calls: 0 }, { calls: 1.5 }, { seconds: 3 }, { audiences: { [CRM_API]: { calls: -1 } } }, { audiences: [] }, 'lots']) {
      const bad = await openTask({ plugins: ['crm-reader'], budgets });
      expect([JSON.stringify(budgets), bad.status, bad.body.error]).toEqual([JSON.stringify(budgets), 400, 'invalid_request']);
    }
  });

  it('the budget goes into the token as task_budget: the tightest limits at its audience', async () => {
    const task = (await openTask({ plugins: ['crm-reader'], budgets: { calls: 10, bytes: 5000, audiences: { [CRM_API]: { calls: 4 } } } })).body.id as string;
    expect(decodeJwt(await token(task)).task_budget).toEqual({ calls: 4, bytes: 5000 });
    const plain = (await openTask({ plugins: ['crm-reader'] })).body.id as string;
    expect(decodeJwt(await token(plain)).task_budget).toBeUndefined();
  });

  it('past the call budget (from the usage stream): budget_exceeded, live tokens revoked, new exchanges refused', async () => {
    const rs = await crmServer();
    const task = (await openTask({ plugins: ['crm-reader'], budgets: { calls: 3 } })).body.id as string;
    const t1 = await token(task);
    const t2 = await token(task);
    for (let i = 0; i < 2; i++) expect((await fetch(`${rs.url}/contacts/${i}`, { headers: { authorization: `Bearer ${t1}` } })).status).toBe(200);
    await rs.reporter.flush();
    expect(await budgetEvents(task)).toHaveLength(0);
    expect(await active(t2)).toBe(true);
    expect((await fetch(`${rs.url}/contacts/9`, { headers: { authorization: `Bearer ${t1}` } })).status).toBe(200);
    await rs.reporter.flush();
    const events = await budgetEvents(task);
    expect(events).toHaveLength(1);
    expect(events[0]!.event).toMatchObject({ budget: 'total', kind: 'calls', limit: 3, used: 3, credentials_revoked: 2 });
    expect(await active(t1)).toBe(false);
    expect(await active(t2)).toBe(false);
    const refused = await exchange(task);
    expect([refused.status, refused.body.error]).toEqual([400, 'access_denied']);
    expect(String(refused.body.error_description)).toMatch(/budget/);
    // More reports of the same task do not repeat the event.
    expect((await fetch(`${rs.url}/contacts/10`, { headers: { authorization: `Bearer ${t1}` } })).status).toBe(200);
    await rs.reporter.flush();
    expect(await budgetEvents(task)).toHaveLength(1);
  });

  it('a per-audience budget closes that audience only; a bytes budget counts response bytes', async () => {
    const rs = await crmServer();
    const task = (await openTask({ plugins: ['crm-reader', 'ticket-writer'], budgets: { audiences: { [CRM_API]: { bytes: 100 } } } })).body.id as string;
    const t = await token(task);
    expect((await fetch(`${rs.url}/contacts/1`, { headers: { authorization: `Bearer ${t}` } })).status).toBe(200);
    await rs.reporter.flush();
    expect(await budgetEvents(task)).toHaveLength(0);
    expect((await fetch(`${rs.url}/contacts/2`, { headers: { authorization: `Bearer ${t}` } })).status).toBe(200);
    await rs.reporter.flush();
    const events = await budgetEvents(task);
    expect(events.map((e) => [e.event.budget, e.event.kind, e.event.limit])).toEqual([[CRM_API, 'bytes', 100]]);
    expect(await active(t)).toBe(false);
    expect((await exchange(task)).body.error).toBe('access_denied');
    // Another audience of the same task is still open.
    const key = await createDpopKey('ES256');
    const other = await exchange(task, 'ticket-writer', TICKETS_API, 'tickets:write', { dpop: await key.proof({ method: 'POST', url: `${tb.url}/token` }) });
    expect([other.status, other.body.error_description]).toEqual([200, undefined]);
    expect(await store.budgetExhaustions(task)).toEqual({ [CRM_API]: expect.any(Number) });
  });

  it("budget: 'enforce' asks Leash on every call: the call past the budget is refused (429) and the charged calls are not counted twice", async () => {
    const rs = await crmServer({ enforce: true });
    const task = (await openTask({ plugins: ['crm-reader'], budgets: { calls: 2 } })).body.id as string;
    const t = await token(task);
    const call = () => fetch(`${rs.url}/contacts/1`, { headers: { authorization: `Bearer ${t}` } });
    expect((await call()).status).toBe(200);
    expect((await call()).status).toBe(200);
    const third = await call();
    expect(third.status).toBe(429);
    expect(((await third.json()) as { error: string }).error).toBe('budget_exceeded');
    await rs.reporter.flush();
    await tb.broker.usage.idle();
    const totals = await store.taskUsageTotals(task);
    expect(totals.find((x) => x.audience === ALL_AUDIENCES)?.calls).toBe(2);
    const rows = await store.listTaskUsage(task, 10);
    expect(rows.map((r) => [r.outcome, r.calls])).toEqual(
      expect.arrayContaining([
        ['ok', 2],
        ['budget_exceeded', 1],
      ]),
    );
    expect(await budgetEvents(task)).toHaveLength(1);
    expect(await active(t)).toBe(false);
  });

  it("budget: 'enforce' fails closed (503) when Leash cannot be asked", async () => {
    const rs = await crmServer({ enforce: true, issuer: `http://127.0.0.1:${await freePort()}` });
    const task = (await openTask({ plugins: ['crm-reader'], budgets: { calls: 2 } })).body.id as string;
    const res = await fetch(`${rs.url}/contacts/1`, { headers: { authorization: `Bearer ${await token(task)}` } });
    expect(res.status).toBe(503);
    expect(((await res.json()) as { error: string }).error).toBe('temporarily_unavailable');
  });

  it("POST /usage/budget: authenticated, for the token's own audience only", async () => {
    const task = (await openTask({ plugins: ['crm-reader'], budgets: { calls: 5 } })).body.id as string;
    const jti = decodeJwt(await token(task)).jti as string;
    const ask = (body: unknown, auth = basic('crm-api', CRM_RS_SECRET)) =>
      fetch(`${tb.url}/usage/budget`, { method: 'POST', headers: { 'content-type': 'application/json', ...(auth ? { authorization: auth } : {}) }, body: JSON.stringify(body) });
    expect((await ask({ jti, audience: CRM_API }, '')).status).toBe(401);
    expect(await (await ask({ jti, audience: CRM_API })).json()).toMatchObject({ allowed: true, task, used: { calls: 1, audience_calls: 1 } });
    expect(await (await ask({ jti, audience: TICKETS_API })).json()).toEqual({ allowed: false, reason: 'wrong_audience' });
    expect(await (await ask({ jti: 'nope', audience: CRM_API })).json()).toEqual({ allowed: false, reason: 'unknown_token' });
    expect((await ask({ audience: CRM_API })).status).toBe(400);
    expect((await ask({ jti, audience: CRM_API, more: 1 })).status).toBe(400);
  });
});
