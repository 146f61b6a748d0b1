import { afterAll, describe, expect, it } from '@jest/globals';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeJwt } from 'jose';
import { ManualClock } from '../../src/time/clock.js';
import { TestCluster } from '../support/cluster.js';
import { EXCHANGE, JWT_TYPE, OPS_KEY, startTestBroker, type TestBroker } from '../support/broker.js';
import { redisAvailable, startRedis, type RedisServer } from '../support/redis.js';

const AUDIT_API = 'https://audit.example.com';

async function request(tb: TestBroker, clock: ManualClock, task: string, approvalId?: string) {
  return tb.exchange({
    grant_type: EXCHANGE,
    client_id: 'prod-only',
    subject_token: await tb.cluster.saToken({ sa: 'prod-only', nowSeconds: Math.floor(clock.now() / 1000) }),
    subject_token_type: JWT_TYPE,
    resource: AUDIT_API,
    task,
    ...(approvalId ? { approval_id: approvalId } : {}),
  });
}

async function approve(tb: TestBroker, id: string) {
  const res = await fetch(`${tb.url}/admin/approvals/${id}/approve`, { method: 'POST', headers: { authorization: `Bearer ${OPS_KEY}` } });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

/** Pending approvals live in the Store: they survive a restart and are shared by replicas. */
describe('approvals are durable and shared', () => {
  const cleanup: Array<() => Promise<void>> = [];
  afterAll(async () => {
    for (const c of cleanup.reverse()) await c().catch(() => undefined);
  });

  it('restart while pending: a new broker over the same SQLite file approves and redeems it', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'leash-approval-restart-'));
    cleanup.push(() => rm(dir, { recursive: true, force: true }));
    const cluster = await TestCluster.create();
    const clock = new ManualClock(Date.now());
    const first = await startTestBroker({ dir, cluster, broker: { clock } });
    const task = await first.openTask({ plugins: ['prod-only'] });
    const res = await request(first, clock, task);
    expect(res.body.error).toBe('authorization_pending');
    const id = String(res.body.approval_id);
    await first.close();

    const second = await startTestBroker({ dir, cluster, broker: { clock } });
    cleanup.push(() => second.close());
    const listed = (await (await fetch(`${second.url}/admin/approvals?state=pending`, { headers: { authorization: `Bearer ${OPS_KEY}` } })).json()) as { approvals: Array<{ id: string }> };
    expect(listed.approvals.map((a) => a.id)).toEqual([id]);
    expect((await approve(second, id)).status).toBe(200);
    clock.advance(6);
    const redeemed = await request(second, clock, task, id);
    expect(redeemed.status).toBe(200);
    expect(decodeJwt(String(redeemed.body.access_token)).approval).toMatchObject({ id, approver: 'apikey:ops' });
  }, 30000);

  const RUN = redisAvailable('approvals on two brokers sharing Redis');
  (RUN ? it : it.skip)(
    'two brokers on one Redis: created on A, approved on B, redeemed on A, then used on B',
    async () => {
      const redis: RedisServer = await startRedis();
      cleanup.push(() => redis.cleanup());
      const dir = await mkdtemp(join(tmpdir(), 'leash-approval-replicas-'));
      cleanup.push(() => rm(dir, { recursive: true, force: true }));
      const cluster = await TestCluster.create();
      const clock = new ManualClock(Date.now());
      const patch = (cfg: Record<string, any>) => {
        cfg.settings.store = { kind: 'redis', url: redis.url, key_prefix: 'approvals-e2e:' };
      };
      // Sequential start: B loads the signing keys A generated in the shared folder.
      const a = await startTestBroker({ dir, cluster, patch, broker: { clock } });
      cleanup.push(() => a.close());
      const b = await startTestBroker({ dir, cluster, patch, broker: { clock } });
      cleanup.push(() => b.close());
      const task = await a.openTask({ plugins: ['prod-only'] });
      const res = await request(a, clock, task);
      expect(res.body.error).toBe('authorization_pending');
      const id = String(res.body.approval_id);
      clock.advance(6);
      expect((await request(b, clock, task, id)).body).toMatchObject({ error: 'authorization_pending', approval_id: id });
      expect((await approve(b, id)).status).toBe(200);
      expect((await approve(a, id)).status).toBe(409);
      clock.advance(6);
      const redeemed = await request(a, clock, task, id);
      expect(redeemed.status).toBe(200);
      expect((await request(b, clock, task, id)).body.error).toBe('invalid_grant');
    },
    60000,
  );
});
