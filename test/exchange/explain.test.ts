import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { stringify } from 'yaml';
import { ManualClock } from '../../src/time/clock.js';
import { CRM_API, EXCHANGE, JWT_TYPE, OPS_KEY, ORCHESTRATOR_KEY, TICKETS_API, startTestBroker, testConfigInput, type TestBroker } from '../support/broker.js';
import { createDpopKey } from '../../src/client/index.js';

/**
 * `POST /admin/explain` on a real broker over HTTP: the exchange pipeline run dry. Every
 * answer is checked against what the store holds afterwards: nothing issued, nothing
 * counted, no approval opened, one `policy.explained` event.
 */

type Json = Record<string, any>;

describe('explain', () => {
  let tb: TestBroker;
  let task: string;
  const clock = new ManualClock(Date.now());
  beforeAll(async () => {
    tb = await startTestBroker({
      broker: { clock },
      patch: (cfg) => {
        // A quota, so a dry run that counted would show in the window.
        cfg.plugins[0].quotas = { exchanges_per_minute: 2, on_breach: 'refuse' };
      },
    });
    task = await tb.openTask({ plugins: ['crm-reader'], ttl_seconds: 1800 });
  });
  afterAll(async () => tb.close());

  const explain = async (body: unknown, key = OPS_KEY): Promise<{ status: number; body: Json }> => {
    const res = await fetch(`${tb.url}/admin/explain`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
    return { status: res.status, body: (await res.json()) as Json };
  };
  const request = async (extra: Record<string, string> = {}, sa = 'crm-reader') => ({
    grant_type: EXCHANGE,
    subject_token: await tb.cluster.saToken({ sa, nowSeconds: Math.floor(clock.now() / 1000) }),
    subject_token_type: JWT_TYPE,
    resource: CRM_API,
    task,
    ...extra,
  });
  const events = async () => tb.broker.testing.store.read(1, 1_000_000);

  it('answers the decision with every step, issues nothing, counts nothing, and records one policy.explained', async () => {
    const before = await events();
    const params = await request({ scope: 'contacts:read' });
    // Three times over a quota of two a minute: a dry run does not count.
    for (let i = 0; i < 3; i++) {
      const { status, body } = await explain({ request: params });
      expect(status).toBe(200);
      expect(body).toMatchObject({ decision: 'issue', reason: 'OK', attestation: 'token', policy: { source: 'current' }, plugin: 'crm-reader', issued: false });
      expect(body.would_issue).toMatchObject({ kind: 'jwt', scopes: ['contacts:read'], dpop_bound: false });
      expect(body.would_issue.ttl).toBeGreaterThan(0);
      const outcomes = Object.fromEntries((body.steps as Json[]).map((s) => [s.step, s.outcome]));
      expect(outcomes).toMatchObject({
        parse: 'passed',
        attest: 'passed',
        resolve_plugin: 'passed',
        task: 'passed',
        quotas: 'passed',
        policy: 'passed',
        approval: 'passed',
        issue: 'not_run',
        record: 'not_run',
      });
      expect(body.steps.find((s: Json) => s.step === 'attest').detail).toContain("verified kubernetes attestation: issuer 'test-cluster'");
    }
    const fresh = (await events()).slice(before.length);
    expect(fresh.map((e) => e.type)).toEqual(['policy.explained', 'policy.explained', 'policy.explained']);
    expect(fresh[0]!.event).toMatchObject({ actor: 'apikey:ops', input: 'token', policy: 'current', decision: 'issue', reason: 'OK', plugin: 'crm-reader', audience: CRM_API });
    expect(JSON.stringify(fresh[0]!.event)).not.toContain(params.subject_token);
    expect(await tb.broker.testing.store.listIssuedForTask(task)).toEqual([]);
    // The live exchange still has its whole quota: two pass, the third is refused.
    expect((await tb.exchange(await request())).status).toBe(200);
    expect((await tb.exchange(await request())).status).toBe(200);
    expect((await tb.exchange(await request())).body.error_description).toMatch(/ERR_QUOTA_EXCEEDED/);
    // And explain now sees the spent window, without adding to it.
    expect((await explain({ request: await request() })).body).toMatchObject({ decision: 'deny', reason: 'ERR_QUOTA_EXCEEDED' });
    clock.advance(61); // a fresh quota window for the tests below
  });

  it('takes claims instead of a token (saying so) and a task stated by its attributes: conditions held or failed, and what would pass', async () => {
    const claims = { issuer: 'test-cluster', subject: 'system:serviceaccount:plugins:prod-only' };
    const params = { grant_type: EXCHANGE, resource: 'https://deploy.example.com' };
    const dev = await explain({ request: params, claims, task: { attributes: { env: 'dev' } } });
    expect(dev.status).toBe(200);
    expect(dev.body).toMatchObject({ decision: 'deny', reason: 'ERR_CONDITION_FAILED', attestation: 'claims', plugin: 'prod-only', error: { status: 400, error: 'invalid_request' } });
    expect(dev.body.conditions).toEqual([{ condition: "task.env must equal 'prod'", holds: false, failure: "task.env must equal 'prod'" }]);
    expect(dev.body.fix[0]).toBe("make this condition hold: task.env must equal 'prod'");
    expect(dev.body.steps.find((s: Json) => s.step === 'attest').detail).toContain('claims given (not verified)');
    expect(dev.body.steps.find((s: Json) => s.step === 'policy')).toMatchObject({ outcome: 'failed', code: 'ERR_CONDITION_FAILED' });
    const prod = await explain({ request: params, claims, task: { attributes: { env: 'prod' } } });
    expect(prod.body).toMatchObject({ decision: 'issue', reason: 'OK', conditions: [{ condition: "task.env must equal 'prod'", holds: true }] });
    // A stated task that does not admit the plugin is refused as a stored one would be.
    expect((await explain({ request: params, claims, task: { attributes: { env: 'prod' }, plugins: ['crm-reader'] } })).body.reason).toBe('ERR_TASK_PLUGIN_NOT_ALLOWED');
    const last = (await events()).at(-1)!;
    expect(last.event).toMatchObject({ input: 'claims', decision: 'deny', reason: 'ERR_TASK_PLUGIN_NOT_ALLOWED' });
  });

  it('a grant needing a human: explain says approval, and opens no approval', async () => {
    const claims = { issuer: 'test-cluster', subject: 'system:serviceaccount:plugins:prod-only' };
    const pending = async () => (await tb.broker.testing.store.listApprovals({ state: 'pending', now: Date.now(), limit: 1000 })).length;
    const before = await pending();
    const { body } = await explain({ request: { grant_type: EXCHANGE, resource: 'https://audit.example.com' }, claims, task: {} });
    expect(body).toMatchObject({ decision: 'approval', reason: 'ERR_APPROVAL_PENDING', error: { error: 'authorization_pending' } });
    expect(body.would_issue).toMatchObject({ approval: 'grant' });
    expect(await pending()).toBe(before);
  });

  it('checks an approval without redeeming it: the exchange after explain still redeems it', async () => {
    const prodTask = await tb.openTask({ plugins: ['prod-only'], ttl_seconds: 1800 });
    const params = { ...(await request({}, 'prod-only')), resource: 'https://audit.example.com', task: prodTask };
    const first = await tb.exchange(params);
    expect(first.body.error).toBe('authorization_pending');
    const id = String(first.body.approval_id);
    const approved = await fetch(`${tb.url}/admin/approvals/${id}/approve`, {
      method: 'POST',
      headers: { authorization: `Bearer ${OPS_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ reason: 'explain test' }),
    });
    expect(approved.status).toBe(200);
    const withId = { ...params, approval_id: id };
    const { body } = await explain({ request: withId });
    expect(body).toMatchObject({ decision: 'approval', reason: 'OK' });
    expect(body.steps.find((s: Json) => s.step === 'approval')).toMatchObject({ outcome: 'passed', detail: 'approved by apikey:ops: the exchange would redeem it' });
    expect((await tb.exchange(withId)).status).toBe(200);
    expect((await explain({ request: withId })).body).toMatchObject({ decision: 'approval', reason: 'ERR_APPROVAL_USED' });
  });

  it('checks a DPoP proof without spending it: the exchange after explain binds to it; explain after it sees the replay', async () => {
    const ticketTask = await tb.openTask({ plugins: ['ticket-writer'], ttl_seconds: 1800 });
    const params = { ...(await request({}, 'ticket-writer-1')), resource: TICKETS_API, task: ticketTask };
    const key = await createDpopKey('ES256', { clock });
    const proof = await key.proof({ method: 'POST', url: `${tb.url}/token` });
    const without = (await explain({ request: params })).body;
    expect(without).toMatchObject({ decision: 'deny', reason: 'ERR_DPOP_REQUIRED' });
    expect(without.fix[0]).toBe('send a DPoP proof (RFC 9449) for POST on the token endpoint');
    const { body } = await explain({ request: params, dpop: proof });
    expect(body).toMatchObject({ decision: 'issue', reason: 'OK', would_issue: { dpop_bound: true } });
    expect((await tb.exchange(params, { dpop: proof })).status).toBe(200);
    expect((await explain({ request: params, dpop: proof })).body).toMatchObject({ decision: 'deny', reason: 'ERR_DPOP_REPLAY' });
  });

  it('decides with a given policy instead of the running one (loaded and compiled like a config file)', async () => {
    const params = await request({ scope: 'contacts:delete' });
    expect((await explain({ request: params })).body).toMatchObject({ decision: 'deny', reason: 'ERR_SCOPE_NOT_GRANTED' });
    const input = testConfigInput({ issuer: tb.url, dir: tb.dir, cluster: tb.cluster }) as Json;
    input.plugins[0].grants[0].scopes.push('contacts:delete');
    const { body } = await explain({ request: params, policy: stringify(input) });
    expect(body).toMatchObject({ decision: 'issue', reason: 'OK', policy: { source: 'given' } });
    expect(body.policy.digest).toMatch(/^[0-9a-f]{64}$/);
    const bad = await explain({ request: params, policy: 'plugins: 3' });
    expect(bad.status).toBe(400);
    expect(bad.body.error_description).toMatch(/the given policy does not load/);
  });

  it('replays a denial of the audit log (--event): the same reason as recorded', async () => {
    const res = await tb.exchange(await request({ scope: 'contacts:admin', task }));
    expect(res.status).toBe(400);
    const denied = (await events()).filter((e) => e.type === 'exchange.denied').at(-1)!;
    expect(denied.event.reason).toBe('ERR_SCOPE_NOT_GRANTED');
    const { status, body } = await explain({ event: denied.seq });
    expect(status).toBe(200);
    expect(body).toMatchObject({ event: { seq: denied.seq, type: 'exchange.denied', reason: 'ERR_SCOPE_NOT_GRANTED' }, replayed: true, same_reason: true });
    expect(body.explanation).toMatchObject({ decision: 'deny', reason: 'ERR_SCOPE_NOT_GRANTED', attestation: 'claims' });
    expect((await events()).at(-1)!.event).toMatchObject({ input: 'event', event_seq: denied.seq, reason: 'ERR_SCOPE_NOT_GRANTED' });
    // A refusal before the workload was known cannot be re-run: said so, with the recorded reason.
    await tb.exchange({ ...(await request()), subject_token: 'not-a-jwt' });
    const early = (await events()).filter((e) => e.type === 'exchange.denied').at(-1)!;
    expect((await explain({ event: early.seq })).body).toMatchObject({ event: { reason: 'ERR_ATTESTATION_MALFORMED' }, replayed: false, same_reason: false });
    // Not an exchange, or no such event.
    expect((await explain({ event: 1 })).status).toBe(400);
    expect((await explain({ event: 9_999_999 })).status).toBe(404);
  });

  it('is for the security role, and takes exactly one of request and event', async () => {
    expect((await explain({ request: await request() }, ORCHESTRATOR_KEY)).status).toBe(403);
    expect((await explain({})).status).toBe(400);
    expect((await explain({ request: {}, event: 3 })).status).toBe(400);
    expect((await explain({ request: {}, claims: { issuer: 'nobody', subject: 'x' } })).body.error_description).toMatch(/not a trusted issuer/);
    expect((await explain({ request: {}, extra: 1 })).status).toBe(400);
  });
});
