import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { ManualClock } from '../../src/time/clock.js';
import { EXCHANGE, JWT_TYPE, OPS_KEY, startTestBroker, type TestBroker } from '../support/broker.js';

const AUDIT_API = 'https://audit.example.com';

/**
 * Approval flooding: one attestation must not be able to fill the approvers' queue. The
 * same request asked again (whatever `expires_in`) gets the approval already pending; past
 * the plugin's or the task's limit of pending approvals the answer is `slow_down`, audited.
 */
describe('approval flooding', () => {
  let tb: TestBroker;
  let clock: ManualClock;
  const nowS = () => Math.floor(clock.now() / 1000);

  beforeAll(async () => {
    clock = new ManualClock(Date.now());
    tb = await startTestBroker({
      broker: { clock },
      patch: (cfg) => {
        cfg.settings.approvals = { poll_interval: 5, max_pending_per_plugin: 4, max_pending_per_task: 3 };
        // Two more plugins needing a person, to share a task.
        for (const id of ['auditor', 'auditor-b']) {
          cfg.plugins.push({
            id,
            owner: 'team-audit@example.com',
            risk: 'low',
            bindings: [{ issuer: 'test-cluster', subject: `system:serviceaccount:plugins:${id}` }],
            grants: [{ audience: AUDIT_API, scopes: ['audit:write', 'audit:read'], kind: 'jwt', effect: 'write', approval: 'human', max_ttl: 60 }],
          });
        }
      },
    });
  }, 30000);
  afterAll(async () => tb?.close());

  const request = async (plugin: string, task: string, extra: Record<string, string> = {}) =>
    tb.exchange({
      grant_type: EXCHANGE,
      client_id: plugin,
      subject_token: await tb.cluster.saToken({ sa: plugin, nowSeconds: nowS() }),
      subject_token_type: JWT_TYPE,
      resource: AUDIT_API,
      task,
      ...extra,
    });
  const pendingIds = async () => {
    const res = await fetch(`${tb.url}/admin/approvals?state=pending`, { headers: { authorization: `Bearer ${OPS_KEY}` } });
    return ((await res.json()) as { approvals: Array<{ id: string; plugin: string; task: string }> }).approvals;
  };
  const events = async (type: string) => (await tb.broker.testing.store.read(1, 100_000)).filter((e) => e.type === type);

  it('120 requests varying expires_in from one attestation make one pending approval', async () => {
    const task = await tb.openTask({ plugins: ['prod-only'] });
    const answers = [];
    for (let i = 0; i < 120; i++) answers.push(await request('prod-only', task, { expires_in: String(1 + (i % 60)) }));
    const ids = new Set(answers.map((a) => a.body.approval_id));
    expect(answers.every((a) => a.status === 400 && a.body.error === 'authorization_pending')).toBe(true);
    expect(ids.size).toBe(1);
    expect((await pendingIds()).filter((a) => a.task === task)).toHaveLength(1);
    expect((await events('approval.requested')).filter((e) => e.event.task === task)).toHaveLength(1);
  });

  it('past the per-plugin limit a new request gets slow_down, audited with the counts', async () => {
    // prod-only already has one pending (the test above); three more tasks fill its limit of 4.
    const tasks = [];
    for (let i = 0; i < 4; i++) tasks.push(await tb.openTask({ plugins: ['prod-only'] }));
    for (const t of tasks.slice(0, 3)) expect((await request('prod-only', t)).body.error).toBe('authorization_pending');

    const refused = await request('prod-only', tasks[3]!);
    expect(refused.status).toBe(400);
    expect(refused.body).toMatchObject({ error: 'slow_down', interval: 10 });
    expect(refused.body.approval_id).toBeUndefined();
    expect(String(refused.body.error_description)).toContain('this plugin');
    expect((await pendingIds()).filter((a) => a.plugin === 'prod-only')).toHaveLength(4);

    const denied = (await events('exchange.denied')).filter((e) => e.event.reason === 'ERR_APPROVAL_LIMIT');
    expect(denied.at(-1)!.event).toMatchObject({ plugin: 'prod-only', task: tasks[3], detail: { limit_scope: 'plugin', pending: 4, limit: 4 } });

    // A request already pending is still answered with its approval, not slow_down.
    expect((await request('prod-only', tasks[0]!, { expires_in: '7' })).body.error).toBe('authorization_pending');

    // One decision frees a slot.
    const [first] = (await pendingIds()).filter((a) => a.plugin === 'prod-only');
    const deny = await fetch(`${tb.url}/admin/approvals/${first!.id}/deny`, {
      method: 'POST',
      headers: { authorization: `Bearer ${OPS_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ reason: 'not now' }),
    });
    expect(deny.status).toBe(200);
    expect((await request('prod-only', tasks[3]!)).body.error).toBe('authorization_pending');
  });

  it('past the per-task limit (all plugins of the task together) a new request gets slow_down', async () => {
    const task = await tb.openTask({ plugins: ['auditor', 'auditor-b'] });
    // Three distinct requests of one plugin fill the task's limit of 3 (the plugin's is 4).
    for (const scope of ['audit:write', 'audit:read', 'audit:write audit:read']) expect((await request('auditor', task, { scope })).body.error).toBe('authorization_pending');
    // The same request again with another TTL is the approval already pending, not a new one.
    expect((await request('auditor', task, { scope: 'audit:read', expires_in: '30' })).body.error).toBe('authorization_pending');

    const refused = await request('auditor-b', task);
    expect(refused.body).toMatchObject({ error: 'slow_down', interval: 10 });
    expect(String(refused.body.error_description)).toContain('this task');
    const denied = (await events('exchange.denied')).filter((e) => e.event.reason === 'ERR_APPROVAL_LIMIT' && e.event.task === task);
    expect(denied.map((e) => e.event.detail)).toEqual([{ limit_scope: 'task', pending: 3, limit: 3 }]);

    // The same plugin in another task is not limited.
    const other = await tb.openTask({ plugins: ['auditor-b'] });
    expect((await request('auditor-b', other)).body.error).toBe('authorization_pending');
    expect((await pendingIds()).filter((a) => a.task === task)).toHaveLength(3);
  });
});
