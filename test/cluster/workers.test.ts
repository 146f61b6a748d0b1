import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { Agent, request } from 'node:http';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SignJWT, exportJWK, generateKeyPair } from 'jose';
import { CRM_API, EXCHANGE, JWT_TYPE, OPS_KEY, ORCHESTRATOR_KEY, freePort, testConfigInput } from '../support/broker.js';
import { TestCluster } from '../support/cluster.js';
import { redisAvailable, startRedis, type RedisServer } from '../support/redis.js';
import { waitFor } from '../support/wait.js';

/**
 * `leash serve --workers 2` as an operator runs it: one primary, two workers sharing the
 * ports. Each invariant is checked across the two workers: a keep-alive connection stays
 * on the worker that accepted it, and the access log line of a probe (which names its
 * worker) tells which one that is. So "through A, then at B" below is two different
 * processes, on SQLite (changes relayed over cluster IPC) and on Redis.
 */

const RS_SECRET = 'crm-api-introspection-secret';
const AUDIT_API = 'https://audit.example.com';
const REDIS = redisAvailable('serve --workers 2 on Redis');

interface Line {
  readonly level: string;
  readonly msg: string;
  readonly worker?: number;
  readonly pid?: number;
  readonly role?: string;
  readonly request_id?: string;
  readonly url?: string;
  readonly [k: string]: unknown;
}

interface Served {
  readonly proc: ChildProcess;
  readonly lines: Line[];
  readonly url: string;
  readonly managementUrl: string;
  readonly configPath: string;
  readonly exited: Promise<number | null>;
}

interface Res {
  readonly status: number;
  readonly body: Record<string, any>;
}

function spawnWorkers(configPath: string, workers = 2): { proc: ChildProcess; lines: Line[]; exited: Promise<number | null> } {
  const proc = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'serve', '--config', configPath, '--workers', String(workers)], { stdio: ['ignore', 'ignore', 'pipe'] });
  const lines: Line[] = [];
  let buf = '';
  proc.stderr!.on('data', (d: Buffer) => {
    buf += d.toString();
    let i: number;
    while ((i = buf.indexOf('\n')) >= 0) {
      const text = buf.slice(0, i);
      buf = buf.slice(i + 1);
      try {
        lines.push(JSON.parse(text) as Line);
      } catch {
        lines.push({ level: 'raw', msg: text });
      }
    }
  });
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  return { proc, lines, exited };
}

async function serveWorkers(configPath: string): Promise<Served> {
  const { proc, lines, exited } = spawnWorkers(configPath);
  const listening = () => lines.filter((l) => l.msg.includes(' listening on '));
  try {
    await waitFor(async () => new Set(listening().map((l) => l.worker)).size === 2, 60000, 50);
  } catch (err) {
    proc.kill('SIGKILL');
    throw new Error(`two workers did not start: ${JSON.stringify(lines.slice(-10))}`, { cause: err });
  }
  const first = listening()[0]!;
  return { proc, lines, exited, configPath, url: first.url as string, managementUrl: first.management_url as string };
}

/** One keep-alive connection: every request on it is answered by the same worker. */
class Pinned {
  readonly agent = new Agent({ keepAlive: true, maxSockets: 1 });
  worker = 0;
  constructor(readonly base: string) {}

  call(method: string, path: string, opts: { headers?: Record<string, string>; json?: unknown; form?: Record<string, string> } = {}): Promise<Res> {
    const body = opts.json !== undefined ? JSON.stringify(opts.json) : opts.form ? new URLSearchParams(opts.form).toString() : undefined;
    const headers: Record<string, string> = { ...opts.headers };
    if (opts.json !== undefined) headers['content-type'] = 'application/json';
    if (opts.form) headers['content-type'] = 'application/x-www-form-urlencoded';
    if (body !== undefined) headers['content-length'] = String(Buffer.byteLength(body));
    return new Promise((resolve, reject) => {
      const req = request(`${this.base}${path}`, { method, agent: this.agent, headers }, (res) => {
        let text = '';
        res.on('data', (d: Buffer) => (text += d.toString()));
        res.on('end', () => {
          let parsed: Record<string, any>;
          try {
            parsed = text ? (JSON.parse(text) as Record<string, any>) : {};
          } catch {
            parsed = { text };
          }
          resolve({ status: res.statusCode ?? 0, body: parsed });
        });
      });
      req.on('error', reject);
      req.end(body);
    });
  }

  close(): void {
    this.agent.destroy();
  }
}

/** Two connections, one on each worker (found by the worker named in each probe's access line). */
async function pinBoth(s: Served): Promise<[Pinned, Pinned]> {
  const byWorker = new Map<number, Pinned>();
  for (let i = 0; i < 20 && byWorker.size < 2; i++) {
    const p = new Pinned(s.url);
    const id = `probe-${randomUUID()}`;
    await p.call('GET', '/jwks', { headers: { 'x-request-id': id } });
    await waitFor(async () => s.lines.some((l) => l.request_id === id), 10000, 10);
    p.worker = s.lines.find((l) => l.request_id === id)!.worker!;
    if (byWorker.has(p.worker)) p.close();
    else byWorker.set(p.worker, p);
  }
  const pins = [...byWorker.values()];
  if (pins.length !== 2) throw new Error('could not reach two workers');
  return [pins[0]!, pins[1]!];
}

async function stop(s: Served): Promise<number | null> {
  s.proc.kill('SIGTERM');
  return s.exited;
}

function runCli(args: string[]): Promise<{ code: number | null; out: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  return new Promise((resolve) => child.once('close', (code) => resolve({ code, out })));
}

const basic = `Basic ${Buffer.from(`crm-api:${RS_SECRET}`).toString('base64')}`;
const nowS = () => Math.floor(Date.now() / 1000);

let cluster: TestCluster;
let root: string;
const redisServers: RedisServer[] = [];

beforeAll(async () => {
  cluster = await TestCluster.create();
  root = await mkdtemp(join(tmpdir(), 'leash-workers-'));
});

afterAll(async () => {
  for (const r of redisServers) await r.stop();
  await rm(root, { recursive: true, force: true });
});

async function writeConfig(name: string, store: Record<string, unknown> | undefined): Promise<string> {
  const dir = join(root, name);
  await mkdir(dir, { recursive: true });
  const port = await freePort();
  const input = testConfigInput({ issuer: `http://127.0.0.1:${port}`, dir, cluster }) as Record<string, any>;
  input.settings.listen.port = port;
  input.settings.management.listen.port = await freePort();
  if (store) input.settings.store = store;
  // A slow safety net (60 s): what a sibling sees at once came over the relay or pub/sub, not from a poll.
  input.settings.revocation = { sync_interval_ms: 60_000, max_staleness_ms: 300_000 };
  input.settings.approvals = { poll_interval: 1 };
  input.resource_servers = [{ id: 'crm-api', audiences: [CRM_API], client_secret_sha256: createHash('sha256').update(RS_SECRET).digest('hex') }];
  // A plugin with a quota of its own, so the counting test does not starve the others.
  input.plugins.push({
    id: 'quota-reader',
    owner: 'team-crm@example.com',
    risk: 'low',
    bindings: [{ issuer: 'test-cluster', subject: 'system:serviceaccount:plugins:quota-reader' }],
    grants: [{ audience: CRM_API, scopes: ['contacts:read'], kind: 'jwt', effect: 'read', max_ttl: 300 }],
    quotas: { exchanges_per_minute: 7 },
  });
  input.plugins.push({
    id: 'task-quota-reader',
    owner: 'team-crm@example.com',
    risk: 'low',
    bindings: [{ issuer: 'test-cluster', subject: 'system:serviceaccount:plugins:task-quota-reader' }],
    grants: [{ audience: CRM_API, scopes: ['contacts:read'], kind: 'jwt', effect: 'read', max_ttl: 300 }],
    quotas: { tokens_per_task: 2 },
  });
  const path = join(dir, 'leash.json');
  await writeFile(path, JSON.stringify(input));
  return path;
}

const backends: Array<[string, () => Promise<Record<string, unknown> | undefined>]> = [
  ['SQLite', async () => undefined],
  ...(REDIS
    ? [
        [
          'Redis',
          async () => {
            const r = await startRedis();
            redisServers.push(r);
            return { kind: 'redis', url: r.url, key_prefix: 'workers:' };
          },
        ] as [string, () => Promise<Record<string, unknown>>],
      ]
    : []),
];

describe.each(backends)('leash serve --workers 2 on %s', (name, storeOf) => {
  let s: Served;
  let A: Pinned;
  let B: Pinned;

  beforeAll(async () => {
    s = await serveWorkers(await writeConfig(`main-${name}`, await storeOf()));
    [A, B] = await pinBoth(s);
  }, 90000);

  afterAll(async () => {
    A?.close();
    B?.close();
    if (s && s.proc.exitCode === null) {
      s.proc.kill('SIGKILL');
      await s.exited;
    }
  });

  const openTask = async (on: Pinned, plugins = ['crm-reader']) => {
    const res = await on.call('POST', '/tasks', { headers: { authorization: `Bearer ${ORCHESTRATOR_KEY}` }, json: { plugins } });
    expect(res.status).toBe(201);
    return res.body.id as string;
  };
  const exchange = async (on: Pinned, extra: Record<string, string>, sa = 'crm-reader', headers: Record<string, string> = {}) =>
    on.call('POST', '/token', {
      headers,
      form: { grant_type: EXCHANGE, client_id: sa, subject_token: await cluster.saToken({ sa }), subject_token_type: JWT_TYPE, resource: CRM_API, ...extra },
    });
  const introspect = (on: Pinned, token: string) => on.call('POST', '/introspect', { headers: { authorization: basic }, form: { token } });

  it('the two connections are answered by two different workers', () => {
    expect(A.worker).not.toBe(B.worker);
    // The primary serves nothing: no access line is its.
    expect(s.lines.filter((l) => l.msg === 'request' && l.role === 'primary')).toEqual([]);
  });

  it('a token revoked through worker A is inactive at worker B on the very next request', async () => {
    const task = await openTask(A);
    const token = (await exchange(A, { task })).body.access_token as string;
    expect((await introspect(B, token)).body.active).toBe(true);
    const t0 = performance.now();
    expect((await A.call('POST', '/revoke', { form: { token, client_id: 'crm-reader' } })).status).toBe(200);
    const revokeMs = performance.now() - t0;
    // No wait, no retry: the first introspection at B after A's answer.
    expect((await introspect(B, token)).body.active).toBe(false);
    if (process.env.LEASH_REPORT) process.stderr.write(`${name}: revoke through A (relay to B included): ${revokeMs.toFixed(1)} ms\n`);
  });

  it('a task ended through worker B is dead at worker A at once (introspection and exchange)', async () => {
    const task = await openTask(A);
    const token = (await exchange(A, { task })).body.access_token as string;
    expect((await B.call('DELETE', `/tasks/${task}`, { headers: { authorization: `Bearer ${ORCHESTRATOR_KEY}` } })).status).toBe(200);
    expect((await introspect(A, token)).body.active).toBe(false);
    const again = await exchange(A, { task });
    expect({ status: again.status, error: again.body.error }).toEqual({ status: 400, error: 'invalid_grant' });
  });

  it('a key rotated through worker A is published by worker B promptly, and B signs with the same keyring', async () => {
    const before = (await B.call('GET', '/jwks')).body.keys as Array<{ kid: string }>;
    const rotated = await A.call('POST', '/admin/keys/rotate', { headers: { authorization: `Bearer ${OPS_KEY}` }, json: { force: true } });
    expect(rotated.status).toBe(200);
    const atA = ((await A.call('GET', '/jwks')).body.keys as Array<{ kid: string }>).map((k) => k.kid);
    const added = atA.filter((kid) => !before.some((k) => k.kid === kid));
    expect(added.length).toBeGreaterThan(0);
    const t0 = performance.now();
    await waitFor(async () => {
      const atB = ((await B.call('GET', '/jwks')).body.keys as Array<{ kid: string }>).map((k) => k.kid);
      return added.every((kid) => atB.includes(kid));
    }, 2000);
    if (process.env.LEASH_REPORT) process.stderr.write(`${name}: rotation at A visible in B's /jwks after ${(performance.now() - t0).toFixed(1)} ms\n`);
    // A token B issues now verifies at A (one keyring, not two).
    const issued = await exchange(B, { task: await openTask(B) });
    expect(issued.status).toBe(200);
    const res = await introspect(A, issued.body.access_token as string);
    expect(res.body).toMatchObject({ active: true });
  });

  it('a plugin suspended through worker A is refused by worker B at once, and resumed the same way', async () => {
    const task = await openTask(B);
    const token = (await exchange(B, { task })).body.access_token as string;
    const suspended = await A.call('POST', '/admin/plugins/crm-reader/suspend', { headers: { authorization: `Bearer ${OPS_KEY}` }, json: { reason: 'workers test' } });
    expect(suspended.status).toBe(200);
    try {
      expect((await introspect(B, token)).body.active).toBe(false);
      const refused = await exchange(B, { task });
      expect(refused.status).toBeGreaterThanOrEqual(400);
      expect(refused.body.access_token).toBeUndefined();
    } finally {
      expect((await A.call('POST', '/admin/plugins/crm-reader/resume', { headers: { authorization: `Bearer ${OPS_KEY}` }, json: { reason: 'workers test' } })).status).toBe(200);
    }
    expect((await exchange(B, { task: await openTask(B) })).status).toBe(200);
  });

  it('a per-minute quota is counted once across both workers under concurrent exchanges', async () => {
    const task = await openTask(A, ['quota-reader']);
    const results = await Promise.all(
      Array.from({ length: 16 }, (_, i) => exchange(i % 2 === 0 ? A : B, { task }, 'quota-reader').then((r) => r.status)).concat(
        // Unpinned connections too: whatever worker the primary hands them to.
        Array.from({ length: 4 }, async () => {
          const p = new Pinned(s.url);
          try {
            return (await exchange(p, { task }, 'quota-reader')).status;
          } finally {
            p.close();
          }
        }),
      ),
    );
    expect(results.filter((st) => st === 200)).toHaveLength(7);
    expect(results.length).toBe(20);
    expect(results.filter((st) => st !== 200).every((st) => st === 429 || st === 400)).toBe(true);
  });

  it('tokens_per_task holds across both workers under concurrent exchanges in one task (counted in the record write)', async () => {
    const task = await openTask(A, ['task-quota-reader']);
    const results = await Promise.all(Array.from({ length: 12 }, (_, i) => exchange(i % 2 === 0 ? A : B, { task }, 'task-quota-reader').then((r) => r.status)));
    expect(results.filter((st) => st === 200)).toHaveLength(2);
    expect(results.filter((st) => st !== 200).every((st) => st === 429)).toBe(true);
  });

  it('/metrics answers for both workers, whichever one the scrape reaches: counters summed, store-wide gauges once', async () => {
    // The quota test above issued exactly 7 tokens to quota-reader, over both workers.
    const issued = /^leash_tokens_issued_total\{kind="jwt",plugin="quota-reader"\} ([0-9]+)$/m;
    const scrapes: string[] = [];
    for (let i = 0; i < 4; i++) {
      const p = new Pinned(s.managementUrl);
      const res = await new Promise<string>((resolve, reject) => {
        const req = request(`${s.managementUrl}/metrics`, { agent: p.agent }, (r) => {
          let text = '';
          r.on('data', (d: Buffer) => (text += d.toString()));
          r.on('end', () => resolve(text));
        });
        req.on('error', reject);
        req.end();
      });
      p.close();
      scrapes.push(res);
    }
    for (const text of scrapes) {
      expect(issued.exec(text)?.[1]).toBe('7');
      // One build, not one per worker.
      expect(/^leash_build_info\{[^}]*\} ([0-9]+)$/m.exec(text)?.[1]).toBe('1');
    }
  });

  it('a DPoP proof used at worker A is refused when replayed to worker B', async () => {
    const pair = await generateKeyPair('ES256', { extractable: true });
    const jwk = await exportJWK(pair.publicKey);
    const proof = await new SignJWT({ jti: randomUUID(), htm: 'POST', htu: `${s.url}/token`, iat: nowS() }).setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk }).sign(pair.privateKey);
    const first = await exchange(A, { task: await openTask(A) }, 'crm-reader', { dpop: proof });
    expect(first.status).toBe(200);
    expect(first.body.token_type).toBe('DPoP');
    const replayed = await exchange(B, { task: await openTask(B) }, 'crm-reader', { dpop: proof });
    expect({ status: replayed.status, error: replayed.body.error }).toEqual({ status: 400, error: 'invalid_dpop_proof' });
    expect(replayed.body.access_token).toBeUndefined();
  });

  it('an approval opened through worker A is decided and redeemed through worker B, once', async () => {
    const task = await openTask(A, ['prod-only']);
    const withSubject = async (on: Pinned, extra: Record<string, string> = {}) => {
      const res = await on.call('POST', '/token', {
        form: {
          grant_type: EXCHANGE,
          client_id: 'prod-only',
          subject_token: await cluster.saToken({ sa: 'prod-only' }),
          subject_token_type: JWT_TYPE,
          resource: AUDIT_API,
          task,
          justification: 'workers test',
          ...extra,
        },
      });
      return res;
    };
    const pending = await withSubject(A);
    expect(pending.body.error).toBe('authorization_pending');
    const id = String(pending.body.approval_id);
    const decided = await B.call('POST', `/admin/approvals/${id}/approve`, { headers: { authorization: `Bearer ${OPS_KEY}` }, json: { reason: 'workers test' } });
    expect(decided.status).toBe(200);
    let redeemed: Res | undefined;
    await waitFor(
      async () => {
        redeemed = await withSubject(B, { approval_id: id });
        return redeemed.body.error !== 'slow_down';
      },
      5000,
      500,
    );
    expect(redeemed!.status).toBe(200);
    expect(typeof redeemed!.body.access_token).toBe('string');
    let again: Res | undefined;
    await waitFor(
      async () => {
        again = await withSubject(A, { approval_id: id });
        return again.body.error !== 'slow_down';
      },
      5000,
      500,
    );
    expect(again!.body.access_token).toBeUndefined();
    expect(again!.status).toBe(400);
  });

  it('after concurrent exchanges over both workers, a SIGTERM stops everything with exit 0 and `leash audit verify` finds one intact chain', async () => {
    const tasks = [await openTask(A), await openTask(B)];
    const statuses = await Promise.all(Array.from({ length: 40 }, (_, i) => exchange(i % 2 === 0 ? A : B, { task: tasks[i % 2]! }).then((r) => r.status)));
    expect(statuses.every((st) => st === 200)).toBe(true);
    A.close();
    B.close();
    expect(await stop(s)).toBe(0);
    // Both workers drained and said so; the primary exited after them.
    expect(
      s.lines
        .filter((l) => l.msg === 'stopped')
        .map((l) => l.worker)
        .sort(),
    ).toEqual([1, 2]);
    const verified = await runCli(['audit', 'verify', '--config', s.configPath]);
    expect(verified.out).not.toMatch(/broken/i);
    expect(verified.code).toBe(0);
  }, 60000);
});

describe('leash serve --workers 2: the primary', () => {
  it('restarts a worker killed under it, and keeps serving', async () => {
    const s = await serveWorkers(await writeConfig('restart', undefined));
    try {
      const victim = s.lines.find((l) => l.msg.includes(' listening on ') && l.worker === 1)!;
      process.kill(victim.pid!, 'SIGKILL');
      await waitFor(async () => s.lines.some((l) => l.msg.includes(' listening on ') && l.worker === 3), 60000, 50);
      expect(s.lines.find((l) => l.msg === 'a worker exited unexpectedly')).toMatchObject({ role: 'primary', signal: 'SIGKILL', ready: true });
      const p = new Pinned(s.url);
      for (let i = 0; i < 4; i++) expect((await p.call('GET', '/jwks')).status).toBe(200);
      p.close();
      expect(await stop(s)).toBe(0);
    } finally {
      s.proc.kill('SIGKILL');
    }
  }, 120000);

  it('exits 1 with the cause when a worker process cannot even be spawned (node:cluster gives no exit event for it)', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'test/cluster/fixtures/spawn-fails.ts'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 30000);
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    clearTimeout(timer);
    expect(code).toBe(1);
    const lines = stderr
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { level: string; msg: string; error?: string });
    expect(lines.at(-1)).toMatchObject({ level: 'fatal', msg: 'the first worker failed to start; stopping' });
    expect(lines.at(-1)!.error).toMatch(/could not start a worker process: spawn \/nonexistent\/leash-test\/node ENOENT/);
    expect(stderr).not.toContain('Unhandled');
  }, 60000);

  it('exits 1 when the workers cannot start (a store path that is a folder), without looping', async () => {
    const path = join(root, 'a-folder.db');
    await mkdir(path, { recursive: true });
    const { proc, lines, exited } = spawnWorkers(await writeConfig('no-start', { kind: 'sqlite', path }));
    const timer = setTimeout(() => proc.kill('SIGKILL'), 60000);
    const code = await exited;
    clearTimeout(timer);
    expect(code).toBe(1);
    const fatal = lines.find((l) => l.level === 'fatal' && l.role === 'primary');
    expect(fatal?.msg).toBe('the first worker failed to start; stopping');
    // The primary's last line names the worker's cause, as a single process's would.
    expect(lines.at(-1)).toBe(fatal);
    expect((fatal as unknown as { error?: string }).error).toContain(`cannot open the sqlite store at ${path}`);
    // The second worker was never forked.
    expect(lines.filter((l) => l.worker === 2)).toEqual([]);
  }, 90000);
});

describe('leash serve --workers 1 with a usage worker (settings.usage.listen.workers: 1)', () => {
  it('exchanges on the public worker, reports on the other; a shared token the usage worker finds is dead at the public worker on the next request; SIGTERM exits 0', async () => {
    const path = await writeConfig('usage-worker', undefined);
    const cfg = JSON.parse(await readFile(path, 'utf8')) as Record<string, any>;
    cfg.settings.usage = { listen: { host: '127.0.0.1', port: await freePort(), workers: 1 }, shared_token: { response: 'revoke' } };
    await writeFile(path, JSON.stringify(cfg));
    const { proc, lines, exited } = spawnWorkers(path, 1);
    try {
      const started = () => lines.filter((l) => l.level === 'info' && l.worker !== undefined && l.msg.startsWith('leash ') && l.msg.includes('health, readiness and metrics'));
      await waitFor(async () => started().length === 2, 60000, 50);
      expect(lines.find((l) => l.role === 'primary' && l.msg.startsWith('starting'))).toMatchObject({ workers: 1, usage_workers: 1 });
      const pub = started().find((l) => l.url !== undefined)!;
      const usage = started().find((l) => l.usage_url !== undefined)!;
      // Two processes: one serves the public port only, the other the usage port only.
      expect(pub.worker).not.toBe(usage.worker);
      expect(pub.pid).not.toBe(usage.pid);
      expect(pub.usage_url).toBeUndefined();
      expect(usage.url).toBeUndefined();

      const P = new Pinned(pub.url as string);
      const U = new Pinned(usage.usage_url as string);
      const opened = await P.call('POST', '/tasks', { headers: { authorization: `Bearer ${ORCHESTRATOR_KEY}` }, json: { plugins: ['crm-reader'] } });
      const task = opened.body.id as string;
      const form = { grant_type: EXCHANGE, client_id: 'crm-reader', subject_token: await cluster.saToken({ sa: 'crm-reader' }), subject_token_type: JWT_TYPE, resource: CRM_API, task };
      const exchanged = await P.call('POST', '/token', { headers: { 'x-request-id': 'exchange-1' }, form });
      expect(exchanged.status).toBe(200);
      const token = exchanged.body.access_token as string;
      const jti = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()).jti as string;
      const rec = (source: string) => ({ at: Date.now(), jti, plugin: 'crm-reader', task, audience: CRM_API, method: 'GET', route: '/contacts/:id', status: 200, source });

      // The public port serves no usage route; the usage port no exchange.
      expect((await P.call('POST', '/usage', { headers: { authorization: basic }, json: { records: [rec('10.0.0.1')] } })).status).toBe(404);
      expect((await U.call('POST', '/token', { form })).status).toBe(404);
      expect((await P.call('POST', '/introspect', { headers: { authorization: basic }, form: { token } })).body.active).toBe(true);

      // One address, then a second: a shared token, revoked by the usage worker before it answers.
      expect((await U.call('POST', '/usage', { headers: { authorization: basic, 'x-request-id': 'usage-1' }, json: { records: [rec('10.0.0.1')] } })).body).toMatchObject({ accepted: 1 });
      expect((await U.call('POST', '/usage', { headers: { authorization: basic, 'x-request-id': 'usage-2' }, json: { records: [rec('10.0.0.2')] } })).body).toMatchObject({ accepted: 1 });
      // Relayed through the primary before that answer: the public worker already refuses it.
      expect((await P.call('POST', '/introspect', { headers: { authorization: basic }, form: { token } })).body.active).toBe(false);
      await waitFor(async () => lines.some((l) => l.request_id === 'usage-2') && lines.some((l) => l.request_id === 'exchange-1'), 10000, 10);
      expect(lines.find((l) => l.request_id === 'usage-2')!.worker).toBe(usage.worker);
      expect(lines.find((l) => l.request_id === 'exchange-1')!.worker).toBe(pub.worker);

      P.close();
      U.close();
      proc.kill('SIGTERM');
      expect(await exited).toBe(0);
      expect(
        lines
          .filter((l) => l.msg === 'stopped')
          .map((l) => l.worker)
          .sort(),
      ).toEqual([pub.worker, usage.worker].sort());
      const verified = await runCli(['audit', 'verify', '--config', path]);
      expect(verified.code).toBe(0);
    } finally {
      proc.kill('SIGKILL');
    }
  }, 120000);
});
