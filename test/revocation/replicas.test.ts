import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CRM_API, EXCHANGE, JWT_TYPE, ORCHESTRATOR_KEY, freePort, testConfigInput } from '../support/broker.js';
import { TestCluster } from '../support/cluster.js';
import { redisAvailable, startRedis, type RedisServer } from '../support/redis.js';
import { waitFor } from '../support/wait.js';
import { spawnServe } from '../support/serve.js';

const RUN = redisAvailable('two-replica integration test');
const RS_SECRET = 'crm-api-introspection-secret';

/**
 * Two real `leash serve` processes on one real redis-server: what one replica revokes,
 * the other refuses within a second, and both fail closed while Redis is gone.
 */
(RUN ? describe : describe.skip)('two replicas on one Redis', () => {
  let redis: RedisServer;
  let dir: string;
  let cluster: TestCluster;
  const replicas: Array<{ url: string; managementUrl: string; proc: ChildProcess }> = [];
  let issuer: string;

  beforeAll(async () => {
    redis = await startRedis();
    dir = await mkdtemp(join(tmpdir(), 'leash-replicas-'));
    cluster = await TestCluster.create();
    const ports = [await freePort(), await freePort()];
    issuer = `http://127.0.0.1:${ports[0]}`;
    const input = testConfigInput({ issuer, dir, cluster }) as Record<string, any>;
    input.settings.store = { kind: 'redis', url: redis.url, key_prefix: 'replicas:' };
    input.settings.revocation = { sync_interval_ms: 200, max_staleness_ms: 2000, sweep_interval_ms: 500 };
    input.resource_servers = [{ id: 'crm-api', audiences: [CRM_API], client_secret_sha256: createHash('sha256').update(RS_SECRET).digest('hex') }];
    const configPath = join(dir, 'leash.json');
    await writeFile(configPath, JSON.stringify(input));
    // One after the other: the second replica loads the keys the first generated (shared folder).
    for (const port of ports) {
      const managementPort = await freePort();
      const proc = spawnServe(configPath, port, managementPort);
      const url = `http://127.0.0.1:${port}`;
      const managementUrl = `http://127.0.0.1:${managementPort}`;
      replicas.push({ url, managementUrl, proc });
      await waitFor(async () => (await fetch(`${managementUrl}/readyz`)).ok, 30000);
    }
  }, 90000);

  afterAll(async () => {
    for (const r of replicas) r.proc.kill('SIGKILL');
    await redis?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  const [A, B] = [0, 1];
  const openTask = async (on: number) => {
    const res = await fetch(`${replicas[on]!.url}/tasks`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ORCHESTRATOR_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ plugins: ['crm-reader'] }),
    });
    return ((await res.json()) as { id: string }).id;
  };
  const exchange = async (on: number, task: string) => {
    const body = new URLSearchParams({ grant_type: EXCHANGE, client_id: 'crm-reader', subject_token: await cluster.saToken(), subject_token_type: JWT_TYPE, resource: CRM_API, task });
    const res = await fetch(`${replicas[on]!.url}/token`, { method: 'POST', body });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };
  const introspect = async (on: number, token: string) => {
    const res = await fetch(`${replicas[on]!.url}/introspect`, {
      method: 'POST',
      headers: { authorization: `Basic ${Buffer.from(`crm-api:${RS_SECRET}`).toString('base64')}` },
      body: new URLSearchParams({ token }),
    });
    return { status: res.status, body: (await res.json()) as { active?: boolean; error?: string } };
  };

  it('a token revoked on replica A is inactive at replica B (introspection and feed) within 1 second', async () => {
    const task = await openTask(A);
    const issued = await exchange(A, task);
    expect(issued.status).toBe(200);
    const token = issued.body.access_token as string;
    expect((await introspect(B, token)).body.active).toBe(true);
    const feedBefore = (await (await fetch(`${replicas[B]!.url}/revocations`, { headers: { authorization: `Basic ${Buffer.from(`crm-api:${RS_SECRET}`).toString('base64')}` } })).json()) as {
      cursor: number;
    };

    const t0 = performance.now();
    const revoked = await fetch(`${replicas[A]!.url}/revoke`, { method: 'POST', body: new URLSearchParams({ token, client_id: 'crm-reader' }) });
    expect(revoked.status).toBe(200);
    await waitFor(async () => (await introspect(B, token)).body.active === false, 1000);
    const elapsed = performance.now() - t0;
    expect(elapsed).toBeLessThan(1000);
    if (process.env.LEASH_REPORT) process.stderr.write(`propagation A->B (revoke call + first inactive introspection at B): ${elapsed.toFixed(1)} ms\n`);

    const feed = (await (
      await fetch(`${replicas[B]!.url}/revocations?since=${feedBefore.cursor}`, { headers: { authorization: `Basic ${Buffer.from(`crm-api:${RS_SECRET}`).toString('base64')}` } })
    ).json()) as { revocations: Array<{ scope: string }> };
    expect(feed.revocations.map((r) => r.scope)).toContain('token');
  });

  it('a task ended on replica B is dead on both', async () => {
    const task = await openTask(A);
    const token = (await exchange(A, task)).body.access_token as string;
    const ended = await fetch(`${replicas[B]!.url}/tasks/${task}`, { method: 'DELETE', headers: { authorization: `Bearer ${ORCHESTRATOR_KEY}` } });
    expect(ended.status).toBe(200);
    await waitFor(async () => (await introspect(A, token)).body.active === false, 1000);
    const again = await exchange(A, task);
    expect({ status: again.status, error: again.body.error }).toEqual({ status: 400, error: 'invalid_grant' });
  });

  it('a revocation acknowledged by a replica killed right after is still in force on the other', async () => {
    const task = await openTask(A);
    const token = (await exchange(A, task)).body.access_token as string;
    const res = await fetch(`${replicas[A]!.url}/admin/revocations`, {
      method: 'POST',
      headers: { authorization: 'Bearer test-ops-key-0123456789', 'content-type': 'application/json' },
      body: JSON.stringify({ scope: 'task', id: task, reason: 'kill test' }),
    });
    expect(res.status).toBe(201);
    replicas[A]!.proc.kill('SIGKILL');
    expect((await introspect(B, token)).body.active).toBe(false);
    // bring A back on the same port: it loads the revocation from Redis
    const port = new URL(replicas[A]!.url).port;
    const configPath = join(dir, 'leash.json');
    replicas[A]!.proc = spawnServe(configPath, port, new URL(replicas[A]!.managementUrl).port);
    await waitFor(async () => (await fetch(`${replicas[A]!.managementUrl}/readyz`)).ok, 30000);
    expect((await introspect(A, token)).body.active).toBe(false);
  }, 60000);

  it('with Redis stopped both replicas fail closed, and recover without a restart', async () => {
    const task = await openTask(A);
    const token = (await exchange(A, task)).body.access_token as string;
    await redis.stop();
    try {
      const ex = await exchange(A, task);
      expect({ status: ex.status, error: ex.body.error }).toEqual({ status: 503, error: 'temporarily_unavailable' });
      expect(ex.body.access_token).toBeUndefined();
      await waitFor(async () => (await introspect(B, token)).status === 503, 3000);
      const intro = await introspect(B, token);
      expect(intro.body.active).toBeUndefined();
    } finally {
      await redis.restart();
    }
    await waitFor(async () => (await exchange(A, task)).status === 200, 15000);
    await waitFor(async () => (await introspect(B, token)).body.active === true, 15000);
  }, 60000);
});
