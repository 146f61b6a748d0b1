import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { loadConfigFile } from '../../src/config/load.js';
import type { ReviewReport } from '../../src/review/review.js';
import { CRM_API, EXCHANGE, JWT_TYPE, OPS_KEY, ORCHESTRATOR_KEY, loadedFrom, startTestBroker, testConfigInput, type TestBroker } from '../support/broker.js';

/** The review on a running broker: the admin route, the scheduled pass, its events and gauge. */
describe('GET /admin/review and the scheduled review', () => {
  let tb: TestBroker;
  beforeAll(async () => {
    tb = await startTestBroker();
  });
  afterAll(async () => tb?.close());

  const get = async (key: string | undefined, query = '') => {
    const res = await fetch(`${tb.url}/admin/review${query}`, { headers: key ? { authorization: `Bearer ${key}` } : {} });
    return { status: res.status, body: (await res.json()) as ReviewReport & { error?: string } };
  };
  const events = async (type: string) => (await tb.broker.testing.store.read(1, 10_000)).filter((r) => r.type === type);
  const gauge = async () => (await (await fetch(`${tb.managementUrl}/metrics`)).text()).split('\n').filter((l) => l.startsWith('leash_review_findings{'));

  it('needs the security role: 401 anonymous, 403 orchestrator (audited), 400 bad window', async () => {
    expect((await get(undefined)).status).toBe(401);
    expect((await get(ORCHESTRATOR_KEY)).status).toBe(403);
    expect((await events('admin.denied')).some((e) => e.event.route === 'review.get')).toBe(true);
    const bad = await get(OPS_KEY, '?window_days=week');
    expect([bad.status, bad.body.error]).toEqual([400, 'invalid_request']);
  });

  it("returns the review of the policy in force and of the store's history, as leash review --format json", async () => {
    const task = await tb.openTask({ plugins: ['crm-reader'] });
    const ex = await tb.exchange({ grant_type: EXCHANGE, client_id: 'crm-reader', subject_token: await tb.cluster.saToken(), subject_token_type: JWT_TYPE, audience: CRM_API, task });
    expect(ex.status).toBe(200);
    const { status, body } = await get(OPS_KEY, '?window_days=7');
    expect(status).toBe(200);
    expect(body.tool).toBe('leash review');
    expect(body.policy).toMatchObject({ plugins: 3, digest: expect.any(String) });
    // A store younger than the window: evidence is reported, absence-of-use rules stay quiet.
    expect(body.evidence).toMatchObject({ sources: ['issuance'], covers_window: false });
    expect(body.findings.find((f) => f.rule === 'approval-none-risky')).toMatchObject({ plugin: 'ticket-writer', pointer: '/plugins/1/grants/0/approval' });
    expect(body.findings.some((f) => f.rule.startsWith('unused-'))).toBe(false);
    expect(body.summary.total).toBe(body.findings.length);
  });

  it('a scheduled pass emits review.finding for new findings, review.resolved for gone ones, and sets the gauge', async () => {
    const first = await tb.broker.review.pass();
    const found = await events('review.finding');
    expect(found).toHaveLength(first);
    expect(found.map((e) => e.event.rule)).toContain('approval-none-risky');
    expect(await gauge()).toContain('leash_review_findings{severity="high",rule="approval-none-risky"} 1');
    // Nothing changed: nothing new to say.
    expect(await tb.broker.review.pass()).toBe(0);

    // The owner fixes the grant; the next pass reports it resolved and the gauge drops it.
    const input = testConfigInput({ issuer: tb.url, dir: tb.dir, cluster: tb.cluster }) as Record<string, any>;
    input.plugins[1].grants[0].approval = 'human';
    expect(await tb.broker.reload(loadedFrom(input, tb.dir))).toEqual({ ok: true });
    expect(await tb.broker.review.pass()).toBeGreaterThanOrEqual(1);
    const resolved = await events('review.resolved');
    expect(resolved.map((e) => e.event.rule)).toContain('approval-none-risky');
    expect((await gauge()).some((l) => l.includes('rule="approval-none-risky"'))).toBe(false);
  });

  it('a policy loaded from a file: findings point at its lines', async () => {
    const input = testConfigInput({ issuer: tb.url, dir: tb.dir, cluster: tb.cluster });
    const file = join(tb.dir, 'policy.json');
    await writeFile(file, JSON.stringify(input, null, 2));
    expect(await tb.broker.reload(await loadConfigFile(file))).toEqual({ ok: true });
    const { body } = await get(OPS_KEY);
    const f = body.findings.find((x) => x.rule === 'approval-none-risky')!;
    expect(f.file).toBe(file);
    const lines = JSON.stringify(input, null, 2).split('\n');
    expect(lines[f.line! - 1]).toContain('"approval": "none"');
  });
});
