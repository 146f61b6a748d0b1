import { afterAll, describe, expect, it } from '@jest/globals';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeJwt } from 'jose';
import { verifyAuditLog } from '../../src/audit/verify.js';
import { CRM_API, EXCHANGE, JWT_TYPE, OPS_KEY, ORCHESTRATOR_KEY, freePort, startTestBroker, testConfigInput } from '../support/broker.js';
import { TestCluster } from '../support/cluster.js';
import { ManualClock } from '../../src/time/clock.js';
import { waitFor } from '../support/wait.js';
import { spawnServe } from '../support/serve.js';

describe('durability across restarts', () => {
  const dirs: string[] = [];
  afterAll(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  it('a restarted broker still has its tasks, issued-token index, audit chain and signing key', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'leash-restart-'));
    dirs.push(dir);
    const cluster = await TestCluster.create();
    const first = await startTestBroker({ dir, cluster });
    const task = await first.openTask({ plugins: ['crm-reader'], ttl_seconds: 600 });
    const res = await first.exchange({ grant_type: EXCHANGE, client_id: 'crm-reader', subject_token: await cluster.saToken(), subject_token_type: JWT_TYPE, resource: CRM_API, task });
    expect(res.status).toBe(200);
    const jti = decodeJwt(res.body.access_token as string).jti!;
    const kid = first.broker.testing.keys.current().kid;
    const eventsBefore = (await first.broker.testing.store.read(1, 100000)).length;
    await first.close({ keepDir: true });

    const second = await startTestBroker({ dir, cluster });
    try {
      expect((await second.broker.testing.store.getTask(task))?.state).toBe('active');
      expect(await second.broker.testing.store.getIssued(jti)).toMatchObject({ plugin: 'crm-reader', task });
      expect(second.broker.testing.keys.current().kid).toBe(kid);
      // the chain continues across the restart and still verifies
      const res2 = await second.exchange({ grant_type: EXCHANGE, client_id: 'crm-reader', subject_token: await cluster.saToken(), subject_token_type: JWT_TYPE, resource: CRM_API, task });
      expect(res2.status).toBe(200);
      const check = await verifyAuditLog(second.broker.testing.store);
      expect(check.ok).toBe(true);
      expect(check.count).toBeGreaterThan(eventsBefore);
    } finally {
      await second.close({ keepDir: true });
    }
  });

  it('a task that expired while the broker was down is ended, and its tokens revoked, at the next start', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'leash-expiry-'));
    dirs.push(dir);
    const cluster = await TestCluster.create();
    const clock = new ManualClock(Date.now());
    const first = await startTestBroker({ dir, cluster, broker: { clock } });
    const task = await first.openTask({ plugins: ['crm-reader'], ttl_seconds: 60 });
    const res = await first.exchange({
      grant_type: EXCHANGE,
      client_id: 'crm-reader',
      subject_token: await cluster.saToken({ nowSeconds: Math.floor(clock.now() / 1000) }),
      subject_token_type: JWT_TYPE,
      resource: CRM_API,
      task,
    });
    const claims = decodeJwt(res.body.access_token as string);
    await first.close({ keepDir: true });

    clock.advance(120); // down across the task's expiry
    const second = await startTestBroker({ dir, cluster, broker: { clock } });
    try {
      expect((await second.broker.testing.store.getTask(task))?.state).toBe('ended');
      expect(second.broker.revocation.isRevoked({ jti: claims.jti!, plugin: 'crm-reader', task, kid: undefined, iat: claims.iat! })).toBe(true);
      const ended = (await second.broker.testing.store.read(1, 100000)).filter((e) => e.type === 'task.ended');
      expect(ended.map((e) => e.event.cause)).toEqual(['expired']);
    } finally {
      await second.close({ keepDir: true });
    }
  });

  it('an acknowledged task and revocation survive SIGKILL of the serving process', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'leash-kill-'));
    dirs.push(dir);
    const cluster = await TestCluster.create();
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const input = testConfigInput({ issuer: url, dir, cluster }) as Record<string, any>;
    input.settings.listen.port = port;
    const managementPort = await freePort();
    input.settings.management.listen.port = managementPort;
    const configPath = join(dir, 'leash.json');
    await writeFile(configPath, JSON.stringify(input));
    const child = spawnServe(configPath);
    try {
      await waitFor(async () => (await fetch(`http://127.0.0.1:${managementPort}/healthz`)).ok);
      const opened = await fetch(`${url}/tasks`, {
        method: 'POST',
        headers: { authorization: `Bearer ${ORCHESTRATOR_KEY}`, 'content-type': 'application/json' },
        body: JSON.stringify({ plugins: ['crm-reader'] }),
      });
      expect(opened.status).toBe(201);
      const { id } = (await opened.json()) as { id: string };
      // an acknowledged revocation, then SIGKILL right after the 201
      const revoked = await fetch(`${url}/admin/revocations`, {
        method: 'POST',
        headers: { authorization: `Bearer ${OPS_KEY}`, 'content-type': 'application/json' },
        body: JSON.stringify({ scope: 'plugin', id: 'ticket-writer', reason: 'kill test' }),
      });
      expect(revoked.status).toBe(201);
      child.kill('SIGKILL');
      await new Promise((r) => child.once('exit', r));

      const after = await startTestBroker({ dir, cluster });
      try {
        expect((await after.broker.testing.store.getTask(id))?.state).toBe('active');
        expect(after.broker.revocation.isRevoked({ jti: 'any', plugin: 'ticket-writer', task: undefined, kid: undefined, iat: Math.floor(Date.now() / 1000) - 5 })).toBe(true);
        expect((await verifyAuditLog(after.broker.testing.store)).ok).toBe(true);
      } finally {
        await after.close({ keepDir: true });
      }
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  }, 60000);
});
