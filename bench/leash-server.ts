/**
 * Real Leash for the benchmark: the production composition root (Broker.create + listen)
 * with a temp dir for keys and SQLite (or the Redis the parent started), audit lines off
 * stdout (they still go to the hash-chained store), one trusted Kubernetes issuer with the
 * bench cluster's inline JWKS, one plugin with one grant and one resource server that
 * introspects with a client secret. It opens a task as an orchestrator would and announces
 * URL and task id on stdout; the orchestrator key never leaves this process.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import cluster from 'node:cluster';
import { Broker } from '../src/broker.js';
import { startPrimary, type Primary } from '../src/cluster/primary.js';
import { WorkerLink } from '../src/cluster/worker-link.js';
import { servedPorts } from '../src/cluster/messages.js';
import { bindListeners } from '../src/http/listener.js';
import { createLogger } from '../src/log/logger.js';
import { freePort } from '../test/support/net.js';
import { parseConfig, type LoadedConfig } from '../src/config/load.js';
import { BENCH_NAMESPACE, BENCH_SERVICE_ACCOUNT } from './cluster.js';
import { BENCH_CLIENT_ID, BENCH_RESOURCE, BENCH_SCOPE, announceReady, onShutdown, readServerInput } from './protocol.js';

const sha256hex = (s: string) => createHash('sha256').update(s).digest('hex');

/** What the primary hands its workers (the same config, port and folder for all of them). */
interface WorkerInput {
  readonly configInput: Record<string, unknown>;
  readonly dir: string;
  readonly port: number;
}
const WORKER_ENV = 'LEASH_BENCH_WORKER';

function loadedOf(configInput: Record<string, unknown>, dir: string): LoadedConfig {
  return { config: parseConfig(configInput, { baseDir: dir }), path: join(dir, 'leash.yaml'), baseDir: dir, digest: sha256hex(JSON.stringify(configInput)) };
}

async function main(): Promise<void> {
  // A worker of `--leash-workers N`: the same broker as one process, linked to its siblings (src/cluster/).
  if (cluster.isWorker) return worker(JSON.parse(process.env[WORKER_ENV]!) as WorkerInput);
  const input = readServerInput();
  // The Vault token reaches the broker the way it would in production: an environment variable.
  if (input.keys?.vaultToken) process.env.VAULT_TOKEN = input.keys.vaultToken;
  const dir = await mkdtemp(join(tmpdir(), 'leash-bench-'));
  const orchestratorKey = randomBytes(24).toString('base64url');
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const workers = input.workers ?? 1;
  const usagePort = input.usageWorkers !== undefined ? await freePort() : undefined;
  const usage = {
    ...(input.usageCommitWindowMs !== undefined ? { commit_window_ms: input.usageCommitWindowMs } : {}),
    ...(usagePort !== undefined ? { listen: { host: '127.0.0.1', port: usagePort, workers: input.usageWorkers } } : {}),
  };
  const configInput = {
    version: 1,
    settings: {
      issuer: input.issuer ?? url,
      listen: { host: '127.0.0.1', port, ...(input.acceptSockets !== undefined ? { accept_sockets: input.acceptSockets } : {}) },
      // Workers share the management port too: a fixed one, so the primary can name it.
      management: { listen: { host: '127.0.0.1', port: workers > 1 || input.usageWorkers ? await freePort() : 0 } },
      store: input.store.kind === 'redis' ? { kind: 'redis', url: input.store.url, key_prefix: input.store.keyPrefix } : { kind: 'sqlite', path: join(dir, 'leash.db') },
      keys: { dir: input.keysDir ?? join(dir, 'keys'), backend: input.keys?.backend ?? 'local' },
      ...(input.keys?.vaultAddress ? { vault: { address: input.keys.vaultAddress, auth: { method: 'token', token_env: 'VAULT_TOKEN' } } } : {}),
      audit: { stdout: false },
      ...(input.admission ? { admission: input.admission } : {}),
      ...(Object.keys(usage).length > 0 ? { usage } : {}),
    },
    admin: { api_keys: [{ id: 'bench-orchestrator', sha256: sha256hex(orchestratorKey), roles: ['orchestrator'] }] },
    trusted_issuers: [{ name: 'bench-cluster', kind: 'kubernetes', issuer: input.clusterIssuer, audience: input.audience, jwks: { inline: input.jwks }, max_token_age: 3600 }],
    resource_servers: [{ id: input.resourceServer.id, audiences: [BENCH_RESOURCE], client_secret_sha256: sha256hex(input.resourceServer.secret) }],
    plugins: [
      {
        id: BENCH_CLIENT_ID,
        owner: 'team-crm@example.com',
        risk: 'low',
        bindings: [{ issuer: 'bench-cluster', subject: `system:serviceaccount:${BENCH_NAMESPACE}:${BENCH_SERVICE_ACCOUNT}` }],
        grants: [{ audience: BENCH_RESOURCE, scopes: [BENCH_SCOPE, 'contacts:search'], default_scopes: [BENCH_SCOPE], kind: 'jwt', effect: 'read', max_ttl: 300 }],
      },
    ],
  };
  let broker: Broker | undefined;
  let primary: Primary | undefined;
  const cleanup = async () => {
    await broker?.close();
    if (primary) {
      primary.stop('SIGTERM');
      await primary.finished;
    }
    await rm(dir, { recursive: true, force: true });
  };
  try {
    let metricsUrl: string | undefined;
    if (workers > 1 || (input.usageWorkers ?? 0) > 0) {
      // The primary serves nothing (as `leash serve --workers N`): it forks, relays and waits.
      const worker: WorkerInput = { configInput, dir, port };
      primary = startPrimary({
        workers,
        usageWorkers: input.usageWorkers ?? 0,
        logger: createLogger({ base: { role: 'primary' } }),
        env: { ...process.env, [WORKER_ENV]: JSON.stringify(worker) },
        handleSignals: false,
      });
      await Promise.race([primary.ready, primary.finished.then((code) => Promise.reject(new Error(`the workers did not start (primary exit ${code})`)))]);
      metricsUrl = `http://127.0.0.1:${(configInput.settings.management.listen as { port: number }).port}/metrics`;
    } else {
      // Logs go to stderr as in production (the access line of every request included); stdout carries only the ready line.
      broker = await Broker.create(loadedOf(configInput, dir));
      await broker.listen(port, '127.0.0.1');
      metricsUrl = `${broker.managementUrl}/metrics`;
    }
    onShutdown(cleanup);

    const res = await fetch(`${url}/tasks`, {
      method: 'POST',
      headers: { authorization: `Bearer ${orchestratorKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ plugins: [BENCH_CLIENT_ID], ttl_seconds: 3600 }),
    });
    const body = (await res.json()) as { id?: string };
    if (res.status !== 201 || typeof body.id !== 'string') throw new Error(`opening the bench task failed: ${res.status} ${JSON.stringify(body)}`);
    announceReady({ url, metricsUrl, ...(usagePort !== undefined ? { usageUrl: `http://127.0.0.1:${usagePort}` } : {}), task: body.id, clientId: BENCH_CLIENT_ID, resource: BENCH_RESOURCE });
  } catch (err) {
    await cleanup().catch(() => undefined);
    throw err;
  }
}

/** One worker: the broker on the primary's config, its ports shared through node:cluster, linked to its siblings. */
async function worker(w: WorkerInput): Promise<void> {
  const link = new WorkerLink();
  const loaded = loadedOf(w.configInput, w.dir);
  // As `leash serve` binds them: the ports this worker serves (a usage worker only the usage port).
  const listeners = await bindListeners(loaded.config.settings, { port: w.port, host: '127.0.0.1', serve: servedPorts() });
  const broker = await Broker.create(loaded, { cluster: link, listeners, logger: createLogger({ base: { worker: cluster.worker!.id } }) });
  link.ready();
  // The primary sends SIGTERM to stop; the parent's pipes are the primary's.
  process.once('SIGTERM', () => {
    void broker
      .close()
      .finally(() => link.close())
      .finally(() => process.exit(0));
  });
}

main().catch((err: unknown) => {
  process.stderr.write(`leash bench server failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
