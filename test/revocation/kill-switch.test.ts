import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { decodeJwt } from 'jose';
import { ManualClock } from '../../src/time/clock.js';
import { CRM_API, EXCHANGE, JWT_TYPE, OPS_KEY, ORCHESTRATOR_KEY, startTestBroker, type TestBroker } from '../support/broker.js';

const facts = (token: string) => {
  const c = decodeJwt(token) as { jti: string; plugin: string; task?: string; iat: number };
  const kid = JSON.parse(Buffer.from(token.split('.')[0]!, 'base64url').toString()).kid as string;
  return { jti: c.jti, plugin: c.plugin, task: c.task, kid, iat: c.iat };
};

describe('task end, expiry sweeper, kill switch and quotas', () => {
  let tb: TestBroker;
  let clock: ManualClock;
  beforeAll(async () => {
    clock = new ManualClock(Date.now());
    tb = await startTestBroker({
      broker: { clock },
      patch: (cfg) => {
        // The test drives the sweeper itself.
        cfg.settings.revocation = { sweep_interval_ms: 60000 };
        cfg.plugins.push({
          id: 'spender',
          owner: 'team-billing@example.com',
          risk: 'low',
          quotas: { exchanges_per_minute: 3, on_breach: 'suspend' },
          bindings: [{ issuer: 'test-cluster', subject: 'system:serviceaccount:plugins:spender' }],
          grants: [{ audience: 'https://billing.example.com', scopes: ['bill:read'], kind: 'jwt', effect: 'read', task_required: false }],
        });
        cfg.plugins.push({
          id: 'hoarder',
          owner: 'team-billing@example.com',
          risk: 'low',
          quotas: { live_tokens: 2 },
          bindings: [{ issuer: 'test-cluster', subject: 'system:serviceaccount:plugins:hoarder' }],
          grants: [{ audience: 'https://billing.example.com', scopes: ['bill:read'], kind: 'jwt', effect: 'read', task_required: false }],
        });
        cfg.plugins.push({
          id: 'capped',
          owner: 'team-billing@example.com',
          risk: 'low',
          quotas: { tokens_per_task: 2 },
          bindings: [{ issuer: 'test-cluster', subject: 'system:serviceaccount:plugins:capped' }],
          grants: [{ audience: 'https://billing.example.com', scopes: ['bill:read'], kind: 'jwt', effect: 'read' }],
        });
      },
    });
  });
  afterAll(async () => tb.close());

  const nowS = () => Math.floor(clock.now() / 1000);
  const exchange = async (task: string | undefined, sa = 'crm-reader', client = sa, resource = CRM_API) =>
    tb.exchange({
      grant_type: EXCHANGE,
      client_id: client,
      subject_token: await tb.cluster.saToken({ sa, nowSeconds: nowS() }),
      subject_token_type: JWT_TYPE,
      resource,
      ...(task ? { task } : {}),
    });
  const admin = (path: string, body: unknown, key = OPS_KEY) =>
    fetch(`${tb.url}${path}`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });

  it('ending a task revokes every token issued for it', async () => {
    const task = await tb.openTask({ plugins: ['crm-reader'] });
    const res = await exchange(task);
    const token = res.body.access_token as string;
    expect(tb.broker.revocation.isRevoked(facts(token))).toBe(false);
    await fetch(`${tb.url}/tasks/${task}`, { method: 'DELETE', headers: { authorization: `Bearer ${ORCHESTRATOR_KEY}` } });
    expect(tb.broker.revocation.isRevoked(facts(token))).toBe(true);
    const events = await tb.broker.testing.store.read(1, 100000);
    expect(events.filter((e) => e.type === 'task.ended' && e.event.task === task)).toHaveLength(1);
    expect(events.some((e) => e.type === 'token.revoked' && e.event.scope === 'task' && e.event.id === task)).toBe(true);
  });

  it('the sweeper ends an expired task and revokes its tokens, once', async () => {
    const task = await tb.openTask({ plugins: ['crm-reader'], ttl_seconds: 30 });
    const token = (await exchange(task)).body.access_token as string;
    clock.advance(31);
    expect(await tb.broker.sweeper.sweep()).toBe(1);
    expect(await tb.broker.sweeper.sweep()).toBe(0);
    expect((await tb.broker.testing.store.getTask(task))?.state).toBe('ended');
    expect(tb.broker.revocation.isRevoked(facts(token))).toBe(true);
    const ended = (await tb.broker.testing.store.read(1, 100000)).filter((e) => e.type === 'task.ended' && e.event.task === task);
    expect(ended.map((e) => e.event.cause)).toEqual(['expired']);
  });

  it('suspend revokes live tokens and refuses exchanges until resume; both audited with who and why', async () => {
    const task = await tb.openTask({ plugins: ['crm-reader'] });
    const token = (await exchange(task)).body.access_token as string;
    const noReason = await admin('/admin/plugins/crm-reader/suspend', {});
    expect(noReason.status).toBe(400);
    const forbidden = await admin('/admin/plugins/crm-reader/suspend', { reason: 'leaked token' }, ORCHESTRATOR_KEY);
    expect(forbidden.status).toBe(403);
    const s = await admin('/admin/plugins/crm-reader/suspend', { reason: 'token found in a public gist' });
    expect(s.status).toBe(200);
    expect(tb.broker.revocation.isRevoked(facts(token))).toBe(true);
    const refused = await exchange(task);
    expect({ status: refused.status, error: refused.body.error }).toEqual({ status: 400, error: 'unauthorized_client' });
    clock.advance(2);
    const r = await admin('/admin/plugins/crm-reader/resume', { reason: 'rotated, investigated' });
    expect(r.status).toBe(200);
    const again = await exchange(task);
    expect(again.status).toBe(200);
    expect(tb.broker.revocation.isRevoked(facts(again.body.access_token as string))).toBe(false);
    const events = await tb.broker.testing.store.read(1, 100000);
    expect(events.find((e) => e.type === 'plugin.suspended')?.event).toMatchObject({ plugin: 'crm-reader', actor: 'apikey:ops', reason: 'token found in a public gist' });
    expect(events.find((e) => e.type === 'plugin.resumed')?.event).toMatchObject({ plugin: 'crm-reader', actor: 'apikey:ops' });
  });

  it('unknown plugins are 404 on suspend', async () => {
    expect((await admin('/admin/plugins/nobody/suspend', { reason: 'because' })).status).toBe(404);
  });

  it('a body with a member the route does not take is refused (a typo never passes silently), and nothing changes', async () => {
    for (const [path, body] of [
      ['/admin/plugins/crm-reader/suspend', { reason: 'because', plugin: 'x' }],
      ['/admin/plugins/crm-reader/resume', { reasons: 'because' }],
      ['/admin/revocations', { scope: 'plugin', id: 'crm-reader', reason: 'because', until: 'tomorrow' }],
    ] as const) {
      const res = await admin(path, body);
      const json = (await res.json()) as { error: string; error_description: string };
      expect([path, res.status, json.error]).toEqual([path, 400, 'invalid_request']);
      expect(json.error_description).toMatch(/unknown key '(plugin|reasons|until)'/);
    }
    const list = (await (await fetch(`${tb.url}/admin/plugins/suspended`, { headers: { authorization: `Bearer ${OPS_KEY}` } })).json()) as { suspended: Array<{ plugin: string }> };
    expect(list.suspended.map((s) => s.plugin)).not.toContain('crm-reader');
  });

  it('a per-minute quota breach refuses with 429 and, per policy, suspends the plugin', async () => {
    for (let i = 0; i < 3; i++) expect((await exchange(undefined, 'spender', 'spender', 'https://billing.example.com')).status).toBe(200);
    const breach = await exchange(undefined, 'spender', 'spender', 'https://billing.example.com');
    expect({ status: breach.status, error: breach.body.error }).toEqual({ status: 429, error: 'invalid_request' });
    clock.advance(61);
    const stillOut = await exchange(undefined, 'spender', 'spender', 'https://billing.example.com');
    expect(stillOut.status).toBe(400); // suspended, not merely rate limited
    const list = (await (await fetch(`${tb.url}/admin/plugins/suspended`, { headers: { authorization: `Bearer ${OPS_KEY}` } })).json()) as { suspended: Array<{ plugin: string; actor: string }> };
    expect(list.suspended).toContainEqual(expect.objectContaining({ plugin: 'spender', actor: 'system:quota' }));
  });

  it('a tokens-per-task quota refuses the extra token without suspending', async () => {
    const task = await tb.openTask({ plugins: ['capped'] });
    expect((await exchange(task, 'capped', 'capped', 'https://billing.example.com')).status).toBe(200);
    expect((await exchange(task, 'capped', 'capped', 'https://billing.example.com')).status).toBe(200);
    const third = await exchange(task, 'capped', 'capped', 'https://billing.example.com');
    expect(third.status).toBe(429);
    const otherTask = await tb.openTask({ plugins: ['capped'] });
    expect((await exchange(otherTask, 'capped', 'capped', 'https://billing.example.com')).status).toBe(200);
  });

  it('a tokens-per-task quota holds for concurrent exchanges in one process (check and record are one uninterrupted run)', async () => {
    const task = await tb.openTask({ plugins: ['capped'] });
    const results = await Promise.all(Array.from({ length: 8 }, () => exchange(task, 'capped', 'capped', 'https://billing.example.com')));
    expect(results.filter((r) => r.status === 200)).toHaveLength(2);
    expect(results.filter((r) => r.status === 429)).toHaveLength(6);
    expect((await tb.broker.testing.store.listIssuedForTask(task)).length).toBe(2);
  });

  it('a live-tokens quota counts only unexpired, unrevoked tokens', async () => {
    const one = (await exchange(undefined, 'hoarder', 'hoarder', 'https://billing.example.com')).body.access_token as string;
    expect((await exchange(undefined, 'hoarder', 'hoarder', 'https://billing.example.com')).status).toBe(200);
    const third = await exchange(undefined, 'hoarder', 'hoarder', 'https://billing.example.com');
    expect({ status: third.status, error: third.body.error }).toEqual({ status: 429, error: 'invalid_request' });
    // revoking one frees a slot
    await admin('/admin/revocations', { scope: 'token', id: facts(one).jti, reason: 'free a slot' });
    expect((await exchange(undefined, 'hoarder', 'hoarder', 'https://billing.example.com')).status).toBe(200);
    // and so does expiry (grant max_ttl 300 s)
    clock.advance(301);
    expect((await exchange(undefined, 'hoarder', 'hoarder', 'https://billing.example.com')).status).toBe(200);
  });

  it('an admin revokes a single token by jti', async () => {
    const task = await tb.openTask({ plugins: ['crm-reader'] });
    const a = (await exchange(task)).body.access_token as string;
    const b = (await exchange(task)).body.access_token as string;
    const res = await admin('/admin/revocations', { scope: 'token', id: facts(a).jti, reason: 'seen in logs' });
    expect(res.status).toBe(201);
    expect(tb.broker.revocation.isRevoked(facts(a))).toBe(true);
    expect(tb.broker.revocation.isRevoked(facts(b))).toBe(false);
  });
});
