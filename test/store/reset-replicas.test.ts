import { afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { Broker } from '../../src/broker.js';
import { CRM_API, EXCHANGE, JWT_TYPE, ORCHESTRATOR_KEY, loadedFrom, startTestBroker, testConfigInput, type TestBroker } from '../support/broker.js';
import { TestCluster } from '../support/cluster.js';
import { redisAvailable, startRedis, type RedisServer } from '../support/redis.js';
import { waitFor } from '../support/wait.js';

const RUN = redisAvailable('store reset (replicas on one Redis)');
const RS_SECRET = 'crm-api-introspection-secret';
const RS_AUTH = `Basic ${Buffer.from(`crm-api:${RS_SECRET}`).toString('base64')}`;

const leash = (args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], { encoding: 'utf8', timeout: 60000 });

/**
 * What happens to replicas when their Redis loses everything (FLUSHALL, a restart without
 * AOF): they notice (the store epoch), refuse instead of answering from an empty store, say
 * so, and serve again once an operator accepts the reset. Real brokers, real redis-server,
 * the real `leash` CLI.
 */
(RUN ? describe : describe.skip)('a reset Redis store', () => {
  let cluster: TestCluster;
  let redis: RedisServer;
  let dir: string;
  const brokers: TestBroker[] = [];
  const lines = new Map<TestBroker, string[]>();

  beforeAll(async () => {
    cluster = await TestCluster.create();
  });
  afterEach(async () => {
    for (const b of brokers.splice(0)) await b.close({ keepDir: true }).catch(() => undefined);
    await redis?.cleanup();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  function patch(prefix: string, extra: (cfg: Record<string, any>) => void = () => undefined) {
    return (cfg: Record<string, any>) => {
      cfg.settings.store = { kind: 'redis', url: redis.url, key_prefix: prefix };
      cfg.settings.revocation = { sync_interval_ms: 100, max_staleness_ms: 2000, sweep_interval_ms: 1000 };
      cfg.resource_servers = [{ id: 'crm-api', audiences: [CRM_API], client_secret_sha256: createHash('sha256').update(RS_SECRET).digest('hex') }];
      extra(cfg);
    };
  }

  /** Replicas share the folder, so the second loads the keys the first generated. */
  async function replica(prefix: string, extra?: (cfg: Record<string, any>) => void): Promise<TestBroker> {
    const out: string[] = [];
    const tb = await startTestBroker({ dir, cluster, patch: patch(prefix, extra), broker: { write: (l) => void out.push(l), auditWrite: (l) => void out.push(l) } });
    lines.set(tb, out);
    brokers.push(tb);
    return tb;
  }

  async function configFile(tb: TestBroker, prefix: string): Promise<string> {
    const input = testConfigInput({ issuer: tb.url, dir, cluster }) as Record<string, any>;
    patch(prefix)(input);
    const path = join(dir, `${prefix.replace(/\W/g, '')}.json`);
    await writeFile(path, JSON.stringify(input));
    return path;
  }

  const status = async (url: string, path: string, init: RequestInit = {}) => (await fetch(`${url}${path}`, init)).status;
  const ready = (tb: TestBroker) => status(tb.managementUrl, '/readyz');
  const introspect = async (tb: TestBroker, token: string) => {
    const res = await fetch(`${tb.url}/introspect`, { method: 'POST', headers: { authorization: RS_AUTH }, body: new URLSearchParams({ token }) });
    return { status: res.status, body: (await res.json()) as { active?: boolean; error?: string } };
  };
  const issue = async (tb: TestBroker, task: string) => {
    const r = await tb.exchange({ grant_type: EXCHANGE, client_id: 'crm-reader', subject_token: await cluster.saToken(), subject_token_type: JWT_TYPE, resource: CRM_API, task });
    return r;
  };
  const feed = async (tb: TestBroker, since = 0) =>
    (await (await fetch(`${tb.url}/revocations?since=${since}`, { headers: { authorization: RS_AUTH } })).json()) as {
      revocations: Array<{ seq: number; id: string; epoch: string }>;
      epoch: string;
      cursor: number;
    };

  it('FLUSHALL: both replicas refuse (503, /readyz 503, store.reset_detected), a new one will not start, audit verify says broken; accept-reset brings them back', async () => {
    redis = await startRedis();
    dir = await mkdtemp(join(tmpdir(), 'leash-reset-'));
    const A = await replica('flush:');
    const B = await replica('flush:');
    const task = await A.openTask();
    const issued = await issue(A, task);
    expect(issued.status).toBe(200);
    const token = issued.body.access_token as string;
    expect((await fetch(`${A.url}/revoke`, { method: 'POST', body: new URLSearchParams({ token, client_id: 'crm-reader' }) })).status).toBe(200);
    await waitFor(async () => (await introspect(B, token)).body.active === false, 2000);
    const before = await feed(B);
    const oldEpoch = before.epoch;
    const oldSeq = before.cursor;
    expect(oldSeq).toBeGreaterThanOrEqual(1);
    const config = await configFile(A, 'flush:');
    expect(leash(['audit', 'verify', '--config', config]).status).toBe(0);

    const raw = new Redis(redis.url);
    await raw.flushall();
    raw.disconnect();

    // within a sync interval or two, both refuse: nothing answers from the empty store
    await waitFor(async () => (await ready(A)) === 503 && (await ready(B)) === 503, 3000);
    expect(await introspect(B, token)).toEqual({ status: 503, body: expect.objectContaining({ error: 'temporarily_unavailable' }) });
    const again = await issue(A, task);
    expect({ status: again.status, error: again.body.error, token: again.body.access_token }).toEqual({ status: 503, error: 'temporarily_unavailable', token: undefined });
    // the task is not "unknown" (404): the replica does not know, so it refuses
    expect(await status(B.url, `/tasks/${task}`, { headers: { authorization: `Bearer ${ORCHESTRATOR_KEY}` } })).toBe(503);
    expect((await fetch(`${A.url}/revocations`, { headers: { authorization: RS_AUTH } })).status).toBe(503);
    for (const tb of [A, B]) {
      const detected = lines
        .get(tb)!
        .map((l) => JSON.parse(l) as Record<string, unknown>)
        .filter((l) => l.type === 'store.reset_detected');
      expect(detected).toEqual([expect.objectContaining({ chained: false, previous_epoch: oldEpoch, found_epoch: null, store: 'redis', revocation_seq: expect.any(Number) })]);
    }
    const metrics = await (await fetch(`${A.managementUrl}/metrics`)).text();
    expect(metrics).toMatch(/^leash_store_reset_pending 1$/m);
    // The WAL checkpoint gauges are SQLite's alone.
    expect(metrics).not.toMatch(/leash_store_wal/);

    // a replica starting now cannot know better, so the marker tells it
    const input = testConfigInput({ issuer: 'http://127.0.0.1:1', dir, cluster }) as Record<string, any>;
    patch('flush:')(input);
    await expect(Broker.create(loadedFrom(input, dir), { defaultMetrics: false, write: () => undefined })).rejects.toThrow(/cannot open the redis store .*the store was reset: it held epoch/);

    const verify = leash(['audit', 'verify', '--config', config]);
    expect(verify.status).toBe(1);
    expect(verify.stderr).toMatch(/audit chain BROKEN at seq 1: the store was reset: it held epoch .* \(not accepted yet\)/);

    expect(leash(['store', 'status', '--config', config]).stdout).toMatch(/RESET PENDING/);
    const unconfirmed = leash(['store', 'accept-reset', '--config', config]);
    expect(unconfirmed.status).toBe(2);
    expect(unconfirmed.stderr).toMatch(/Re-run with --yes/);
    const accepted = leash(['store', 'accept-reset', '--config', config, '--yes', '--by', 'oncall']);
    expect(accepted.stderr).toBe('');
    expect(accepted.status).toBe(0);
    expect(accepted.stdout).toMatch(/reset accepted: the store is now epoch \S+ \(was /);

    // the acknowledgement reaches every replica through the store
    await waitFor(async () => (await ready(A)) === 200 && (await ready(B)) === 200, 3000);
    // what the replicas held is still enforced, though the store lost it
    expect((await introspect(B, token)).body.active).toBe(false);
    const task2 = await B.openTask();
    const t2 = (await issue(B, task2)).body.access_token as string;
    expect((await fetch(`${B.url}/revoke`, { method: 'POST', body: new URLSearchParams({ token: t2, client_id: 'crm-reader' }) })).status).toBe(200);
    const after = await feed(A);
    expect(after.epoch).not.toBe(oldEpoch);
    // numbering continues above what followers held, and every item names the new epoch
    expect(after.revocations.map((r) => [r.seq > oldSeq, r.epoch])).toEqual(after.revocations.map(() => [true, after.epoch]));
    expect(after.revocations.length).toBeGreaterThanOrEqual(1);
    expect(await (await fetch(`${A.managementUrl}/metrics`)).text()).toMatch(/^leash_store_reset_pending 0$/m);

    const still = leash(['audit', 'verify', '--config', config]);
    expect(still.status).toBe(1);
    expect(still.stderr).toMatch(/the store was reset: epoch .* and its audit records up to seq \d+ were lost \(reset accepted by cli:oncall/);
  }, 120000);

  it('a restart without AOF: the replica refuses (never answers from the empty store); back on AOF it serves again, same epoch', async () => {
    redis = await startRedis();
    dir = await mkdtemp(join(tmpdir(), 'leash-reset-'));
    const A = await replica('noaof:');
    const task = await A.openTask();
    const token = (await issue(A, task)).body.access_token as string;
    const epoch = (await feed(A)).epoch;

    await redis.restart({ aof: false });
    await waitFor(async () => (await ready(A)) === 503, 5000);
    expect((await introspect(A, token)).status).toBe(503);
    expect(await status(A.url, `/tasks/${task}`, { headers: { authorization: `Bearer ${ORCHESTRATOR_KEY}` } })).toBe(503);
    // once it has reconnected to the server without AOF, it says why it refuses
    await waitFor(async () => /refusing every call: the Redis server at 127\.0\.0\.1:\d+ runs without AOF/.test(lines.get(A)!.join('')), 5000);
    expect(await ready(A)).toBe(503);
    expect((await introspect(A, token)).status).toBe(503);

    // restarted with AOF again: the data comes back from the AOF, the epoch is the same, no reset
    await redis.restart();
    await waitFor(async () => (await ready(A)) === 200, 10000);
    expect((await feed(A)).epoch).toBe(epoch);
    expect((await introspect(A, token)).body.active).toBe(true);
    expect(lines.get(A)!.join('')).not.toContain('store.reset_detected');
  }, 60000);

  it('allow_volatile: a Redis restarted empty is found reset and refused, not served as empty', async () => {
    redis = await startRedis({ aof: false });
    dir = await mkdtemp(join(tmpdir(), 'leash-reset-'));
    const A = await replica('volatile:', (cfg) => (cfg.settings.store.allow_volatile = true));
    expect(lines.get(A)!.join('')).toMatch(/runs without AOF .*serving anyway because settings\.store\.allow_volatile is true/);
    const task = await A.openTask();
    const token = (await issue(A, task)).body.access_token as string;
    await A.broker.revocation.revokeTask(task, { actor: 'apikey:ops', reason: 'test' });

    await redis.restart({ aof: false });
    // back up (empty) and reconnected: the replica finds the reset and keeps refusing
    await waitFor(async () => lines.get(A)!.some((l) => l.includes('"type":"store.reset_detected"')), 5000);
    expect(await ready(A)).toBe(503);
    expect((await introspect(A, token)).status).toBe(503);
    expect(A.broker.testing.store.resetPending()).toMatchObject({ foundEpoch: null });
  }, 60000);
});
