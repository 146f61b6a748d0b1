/**
 * Real Leash for the growth suite (bench/growth.ts): the production composition root, as in
 * bench/leash-server.ts, but with history already on record before it starts: N plugins in
 * the policy (half exact subject bindings, half globs), revocations and issued tokens
 * written into its SQLite store in bulk, tokens already issued in the bench task. It times
 * its own start (config compile + Broker.create + listen) and a policy reload, and announces
 * them with the ready line.
 */
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { Broker } from '../src/broker.js';
import { parseConfig, type LoadedConfig } from '../src/config/load.js';
import { openStore } from '../src/store/open-store.js';
import { systemClock } from '../src/time/clock.js';
import { freePort } from '../test/support/net.js';
import { BENCH_RESOURCE, BENCH_SCOPE, announceReady, onShutdown, readServerInput } from './protocol.js';
import { GROWTH_ENV, growthPluginId, growthBinding, type GrowthSpec, type GrowthReadyExtra } from './growth-policy.js';

const sha256hex = (s: string) => createHash('sha256').update(s).digest('hex');

function pluginsConfig(spec: GrowthSpec, maxTtl: number) {
  const plugins = [];
  for (let i = 0; i < spec.plugins; i++) {
    plugins.push({
      id: growthPluginId(i),
      owner: 'team-growth@example.com',
      risk: 'low',
      bindings: [{ issuer: 'bench-cluster', subject: growthBinding(i) }],
      // Every plugin its own grant (each to the one bench API, so the resource server can introspect any of them).
      grants: [{ audience: BENCH_RESOURCE, scopes: [BENCH_SCOPE, `p${i}:read`], default_scopes: [BENCH_SCOPE], kind: 'jwt', effect: 'read', max_ttl: i === 0 ? maxTtl : 300 }],
      ...(spec.taskQuota ? { quotas: { tokens_per_task: 100_000_000, on_breach: 'refuse' } } : {}),
    });
  }
  return plugins;
}

/**
 * History written straight into the store file before Leash starts, in one transaction per
 * table: the same columns and values Leash's own writes produce (revocations as
 * SqliteRevocations.addRevocation, tokens as SqliteTokens.recordIssued).
 */
function prefill(path: string, spec: GrowthSpec): void {
  if (spec.revocations === 0 && spec.storeTokens === 0 && spec.sweepTokens === 0) return;
  const db = new Database(path);
  try {
    const now = Date.now();
    if (spec.revocations > 0) {
      const insert = db.prepare('INSERT INTO revocations (scope, id, issued_before, revoked_at, keep_until, reason, actor, audiences) VALUES (?, ?, ?, ?, ?, ?, ?, ?)');
      db.transaction(() => {
        for (let i = 0; i < spec.revocations; i++) {
          // Token revocations kept for a day (a token's lifetime at most), as an admin revoke writes them.
          insert.run('token', `jti-${randomUUID()}`, now, now, now + 86_400_000, 'bench history', 'bench-admin', null);
        }
      })();
    }
    if (spec.storeTokens + spec.sweepTokens > 0) {
      const insert = db.prepare('INSERT INTO issued_tokens (jti, plugin, task, audience, scopes, kind, kid, issued_at, expires_at, jkt) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)');
      const scopes = JSON.stringify([BENCH_SCOPE]);
      // Ids in insertion order (Leash's are random): a million random keys into the primary-key
      // index took over a minute here, ordered ones a few seconds; lookups are the same B-tree depth.
      const run = randomBytes(6).toString('base64url');
      db.pragma('cache_size = -262144');
      // Over many past tasks: `expiredShare` expired within the retention (kept), the rest live;
      // then `sweepTokens` expired a month ago, which the retention pass deletes.
      const expired = Math.floor(spec.storeTokens * spec.expiredShare);
      db.transaction(() => {
        for (let i = 0; i < spec.storeTokens + spec.sweepTokens; i++) {
          const issuedAt = i >= spec.storeTokens ? now - 30 * 86_400_000 + (i % 1_000_000) : i < expired ? now - 3_600_000 + (i % 1_000_000) / 1000 : now - 60_000;
          insert.run(
            `hist-${run}-${i.toString(36).padStart(5, '0')}`,
            growthPluginId(i % spec.plugins),
            `tsk_hist${i % 5000}`,
            BENCH_RESOURCE,
            scopes,
            'jwt',
            null,
            Math.floor(issuedAt),
            Math.floor(issuedAt) + 300_000,
            null,
          );
        }
      })();
    }
  } finally {
    db.close();
  }
}

async function main(): Promise<void> {
  const input = readServerInput();
  const spec = JSON.parse(process.env[GROWTH_ENV] ?? 'null') as GrowthSpec | null;
  if (!spec) throw new Error(`${GROWTH_ENV} is not set: this server is started by bench/growth.ts`);
  const dir = await mkdtemp(join(tmpdir(), 'leash-growth-'));
  const orchestratorKey = randomBytes(24).toString('base64url');
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const dbPath = join(dir, 'leash.db');
  const configInput = (maxTtl: number) => ({
    version: 1,
    settings: {
      issuer: url,
      listen: { host: '127.0.0.1', port },
      management: { listen: { host: '127.0.0.1', port: 0 } },
      store: { kind: 'sqlite', path: dbPath },
      keys: { dir: join(dir, 'keys'), backend: 'local' },
      audit: { stdout: false },
    },
    admin: { api_keys: [{ id: 'bench-orchestrator', sha256: sha256hex(orchestratorKey), roles: ['orchestrator'] }] },
    trusted_issuers: [{ name: 'bench-cluster', kind: 'kubernetes', issuer: input.clusterIssuer, audience: input.audience, jwks: { inline: input.jwks }, max_token_age: 3600 }],
    resource_servers: [{ id: input.resourceServer.id, audiences: [BENCH_RESOURCE], client_secret_sha256: sha256hex(input.resourceServer.secret) }],
    plugins: pluginsConfig(spec, maxTtl),
  });
  const load = (maxTtl: number): LoadedConfig => {
    const raw = configInput(maxTtl);
    return { config: parseConfig(raw, { baseDir: dir }), path: join(dir, 'leash.yaml'), baseDir: dir, digest: sha256hex(JSON.stringify(raw)) };
  };

  let broker: Broker | undefined;
  const cleanup = async () => {
    await broker?.close();
    await rm(dir, { recursive: true, force: true });
  };
  try {
    // The schema and store identity first (Leash's own open), then the history, then the timed start.
    const first = load(300);
    await (await openStore(first.config.settings.store, systemClock)).close();
    const p0 = performance.now();
    prefill(dbPath, spec);
    const prefillMs = performance.now() - p0;

    const t0 = performance.now();
    broker = await Broker.create(load(300));
    await broker.listen(port, '127.0.0.1');
    const startMs = performance.now() - t0;
    onShutdown(cleanup);

    // A reload of the same policy size (one grant changed, so it is a real new generation).
    const r0 = performance.now();
    const reloaded = await broker.reload(load(240));
    const reloadMs = performance.now() - r0;
    if (!reloaded.ok) throw reloaded.error;

    // One task per body, naming only its plugin: every point reads a task of the same size.
    const plugins = spec.sample.map(growthPluginId);
    const tasks: string[] = [];
    for (let k = 0; k < spec.bodies; k++) {
      const plugin = plugins[k % plugins.length] as string;
      const res = await fetch(`${url}/tasks`, {
        method: 'POST',
        headers: { authorization: `Bearer ${orchestratorKey}`, 'content-type': 'application/json' },
        body: JSON.stringify({ plugins: [plugin], ttl_seconds: 3600 }),
      });
      const body = (await res.json()) as { id?: string };
      if (res.status !== 201 || typeof body.id !== 'string') throw new Error(`opening the bench task failed: ${res.status} ${JSON.stringify(body)}`);
      tasks.push(body.id);
    }

    // Tokens already issued in the (first) task, through the Store API (what an exchange records).
    const t1 = performance.now();
    const store = broker.testing.store;
    const now = Date.now();
    for (let i = 0; i < spec.taskTokens; i++) {
      await store.recordIssued({
        jti: `jti-${randomUUID()}`,
        plugin: plugins[0] as string,
        task: tasks[0],
        audience: BENCH_RESOURCE,
        scopes: [BENCH_SCOPE],
        kind: 'jwt',
        kid: undefined,
        issuedAt: now - 60_000,
        expiresAt: now + 240_000,
        jkt: undefined,
      });
    }
    const taskPrefillMs = performance.now() - t1;

    // The retention pass over the month-old tokens, timed, with the longest event-loop stall it caused.
    let sweep: GrowthReadyExtra['sweep'];
    if (spec.sweepTokens > 0) {
      const delay = monitorEventLoopDelay({ resolution: 1 });
      delay.enable();
      const s0 = performance.now();
      const purged = await broker.tokenRetention.sweep();
      const ms = performance.now() - s0;
      delay.disable();
      sweep = { purged, ms, maxEventLoopDelayMs: delay.max / 1e6 };
    }

    const extra: GrowthReadyExtra = { startMs, reloadMs, prefillMs: prefillMs + taskPrefillMs, tasks, ...(sweep ? { sweep } : {}) };
    announceReady({ url, metricsUrl: `${broker.managementUrl}/metrics`, task: tasks[0] as string, clientId: plugins[0] as string, resource: BENCH_RESOURCE, ...extra });
  } catch (err) {
    await cleanup().catch(() => undefined);
    throw err;
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`leash growth bench server failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
