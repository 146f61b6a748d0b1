import { availableParallelism } from 'node:os';
import { resolve } from 'node:path';
import { loadConfigBytes, loadConfigFile, readGuardrailsFile, type GuardrailsSource } from '../config/load.js';
import { ConfigError } from '../config/config-error.js';
import { watchConfig } from '../config/watch.js';
import { writeJsonSchema } from '../config/json-schema.js';
import { writeConfigurationDoc } from '../config/docs.js';
import { compilePolicy } from '../policy/compile.js';
import { openStore } from '../store/open-store.js';
import { systemClock } from '../time/clock.js';
import type { Broker } from '../broker.js';
import { buildInfo } from '../config/build-info.js';
import { createLogger, type Logger } from '../log/logger.js';
import { UsageError, type CliIo, type Invocation } from './command-spec.js';
import type { LeashConfig } from '../config/schema.js';

/**
 * The handlers of the commands that load a config themselves (serve, validate, ingest) and
 * the generators (schema, docs); program.ts imports this module only when one of them runs.
 */

function configPath(file: string | undefined): string {
  if (!file) throw new Error('no config: pass --config <file> or set LEASH_CONFIG (to try Leash on the demo policy: npm start, or leash serve --demo)');
  return file;
}

function reportConfigError(e: unknown, io: CliIo): number {
  if (e instanceof ConfigError) {
    io.err(`${e.message}\n`);
    return 1;
  }
  throw e;
}

export async function schema(inv: Invocation, io: CliIo): Promise<number> {
  const path = inv.string('out') ?? 'schemas/leash-config.schema.json';
  await writeJsonSchema(path);
  io.out(`wrote ${path}\n`);
  return 0;
}

export async function docs(inv: Invocation, io: CliIo): Promise<number> {
  if (inv.has('review') && inv.has('cli')) throw new UsageError('--review and --cli exclude each other');
  if (inv.has('review')) {
    const path = inv.string('out') ?? 'docs/review.md';
    await (await import('../review/catalogue.js')).writeReviewDoc(path);
    io.out(`wrote ${path}\n`);
    return 0;
  }
  if (inv.has('cli')) {
    const path = inv.string('out') ?? 'docs/cli.md';
    await (await import('./reference.js')).writeCliReference(path);
    io.out(`wrote ${path}\n`);
    return 0;
  }
  const path = inv.string('out') ?? 'docs/configuration.md';
  await writeConfigurationDoc(path);
  io.out(`wrote ${path}\n`);
  return 0;
}

/** The `--guardrails FILE` option: the guardrails baseline platform security owns. */
export function guardrailsOption(file: string | undefined): GuardrailsSource | undefined {
  return file === undefined ? undefined : readGuardrailsFile(file);
}

export async function validate(inv: Invocation, io: CliIo): Promise<number> {
  const file = inv.args[0] as string;
  try {
    // An exception that already expired covers nothing here: CI fails until it is renewed or removed.
    const loaded = await loadConfigFile(file, { guardrails: guardrailsOption(inv.string('guardrails')), now: Date.now() });
    const policy = compilePolicy(loaded.config);
    const grants = [...policy.plugins.values()].reduce((n, p) => n + p.grants.length, 0);
    const exceptions = loaded.config.exceptions.length;
    io.out(`${file}: valid (${loaded.config.trusted_issuers.length} trusted issuers, ${policy.plugins.size} plugins, ${grants} grants, ${exceptions} exception${exceptions === 1 ? '' : 's'})\n`);
    // Which settings the environment set over the file's (the value is not shown: it may be a secret).
    for (const o of loaded.envOverrides ?? []) io.out(`  ${o.path} from ${o.env}\n`);
    return 0;
  } catch (e) {
    return reportConfigError(e, io);
  }
}

export async function ingest(kind: 'cloudtrail' | 'vault-audit', inv: Invocation, io: CliIo): Promise<number> {
  const path = inv.args[0] as string;
  let loaded;
  try {
    loaded = await loadConfigFile(configPath(inv.string('config')));
  } catch (e) {
    return reportConfigError(e, io);
  }
  const policy = compilePolicy(loaded.config);
  const store = await openStore(loaded.config.settings.store, systemClock);
  try {
    const { ingestCloudTrail, ingestVaultAudit } = await import('../usage/downstream/ingest-downstream.js');
    const deps = { store, clock: systemClock, knownPlugin: (id: string) => policy.plugins.has(id), retentionMs: loaded.config.settings.usage.retention_days * 86_400_000 };
    const r = kind === 'cloudtrail' ? await ingestCloudTrail(deps, path) : await ingestVaultAudit(deps, path);
    const how = Object.entries(r.byLink)
      .map(([k, n]) => `${k} ${n}`)
      .join(', ');
    io.out(`${kind}: ${r.files} file(s), ${r.records} records: ${r.linked} linked${how ? ` (${how})` : ''}, ${r.unlinked} not Leash's, ${r.malformed} malformed; ${r.stored} new events stored\n`);
    return 0;
  } finally {
    await store.close();
  }
}

/**
 * `--port` moves the listener, not the issuer: when the config's issuer names the port it
 * listens on (no proxy in between), a different `--port` leaves clients told to come to the
 * old one. Said once, on stderr, before anything else starts. Undefined when they agree.
 */
export function portIssuerMismatch(settings: Pick<LeashConfig['settings'], 'issuer' | 'listen'>, port: number | undefined): string | undefined {
  if (port === undefined) return undefined;
  let issuer: URL;
  try {
    issuer = new URL(settings.issuer);
  } catch {
    return undefined;
  }
  const advertised = issuer.port === '' ? (issuer.protocol === 'https:' ? 443 : 80) : Number(issuer.port);
  // An issuer on another port than settings.listen.port is reached through a proxy or a Service: --port changes nothing it says.
  if (advertised !== settings.listen.port || advertised === port) return undefined;
  return `--port ${port} disagrees with the issuer the config advertises (${settings.issuer}, port ${advertised}): clients discover and verify against ${settings.issuer}; change settings.issuer (and settings.listen.port) in the config instead, or put a proxy on port ${advertised}`;
}

export async function serve(inv: Invocation, io: CliIo): Promise<number | undefined> {
  // `--demo-if-no-config` is what `npm start` passes: a checkout with nothing configured
  // serves the demo policy (loudly); `leash serve` itself never falls back silently.
  if (inv.has('demo') && inv.given('config')) throw new Error('--demo and --config exclude each other');
  const demo = inv.has('demo') || (inv.has('demo-if-no-config') && inv.string('config') === undefined);
  // Read before anything starts: a bad --port is a usage error (exit 2).
  const port = inv.port('port');
  const managementPort = inv.port('management-port');
  let path: string;
  let demoNotice: string | undefined;
  if (demo) {
    const { prepareDemo, DEMO_NOTICE } = await import('./demo.js');
    path = await prepareDemo();
    demoNotice = DEMO_NOTICE;
  } else {
    path = configPath(inv.string('config'));
  }
  const guardrailsFile = inv.string('guardrails') ?? io.env.LEASH_GUARDRAILS;
  let loaded;
  try {
    loaded = await loadConfigFile(path, { guardrails: guardrailsOption(guardrailsFile) });
  } catch (e) {
    // Before a config there is no log stream: the problems go to stderr as text, as `leash validate` prints them.
    return reportConfigError(e, io);
  }
  const candidate = await (await import('./explain.js')).loadCandidate(inv.string('candidate'), guardrailsFile, io.err);
  if (candidate === 'invalid') return 1;
  const workers = workerCount(inv.string('workers'), loaded.config.settings.workers);
  const { default: cluster } = await import('node:cluster');
  // settings.usage.listen.workers: processes that serve only the usage port, beside the public ones.
  const usageWorkers = loaded.config.settings.usage.listen?.workers ?? 0;
  if ((workers > 1 || usageWorkers > 0) && cluster.isPrimary) {
    // The primary serves nothing: it forks the workers, which run everything below (cluster/primary.ts).
    const logger = createLogger({ level: loaded.config.settings.log.level, base: { role: 'primary' } });
    if (demoNotice) logger.warn(demoNotice);
    const { runPrimary } = await import('../cluster/primary.js');
    return runPrimary({ workers, usageWorkers, logger });
  }
  const link = cluster.isWorker ? new (await import('../cluster/worker-link.js')).WorkerLink() : undefined;
  // From here on every line on stderr is one JSON log object; stdout carries only security events.
  const logger = createLogger({ level: loaded.config.settings.log.level, ...(cluster.isWorker ? { base: { worker: cluster.worker!.id, pid: process.pid } } : {}) });
  if (demoNotice && !link) logger.warn(demoNotice);
  const mismatch = portIssuerMismatch(loaded.config.settings, port);
  if (mismatch) logger.warn(mismatch, { port, issuer: loaded.config.settings.issuer });
  if (loaded.envOverrides?.length) logger.info('settings from the environment', { overrides: loaded.envOverrides.map((o) => `${o.env} → ${o.path}`) });
  const { Broker } = await import('../broker.js');
  const { bindListeners, ListenError } = await import('../http/listener.js');
  const { tlsServerOptions } = await import('../mtls/tls-material.js');
  let tls;
  try {
    tls = tlsServerOptions(loaded.config);
  } catch (e) {
    exitFailedWorker(link, e);
    return reportConfigError(e, io);
  }
  let broker: Broker;
  let listeners;
  try {
    // Ports first: one in use ends the start here, before keys, store or audit events exist.
    const serve = cluster.isWorker ? (await import('../cluster/messages.js')).servedPorts() : 'all';
    listeners = await bindListeners(loaded.config.settings, { port, managementPort, tls, serve });
    broker = await Broker.create(loaded, { listeners, logger, candidate, ...(link ? { cluster: link } : {}) });
  } catch (e) {
    if (e instanceof ListenError) logger.fatal(e.message, { address: e.address, role: e.role, code: e.code });
    else logger.fatal('leash could not start', { error: e instanceof Error ? e.message : String(e) });
    exitFailedWorker(link, e);
    return 1;
  }
  warnDevDefaults(broker, logger);
  const build = buildInfo();
  const serving = [listeners.public ? `listening on ${listeners.public.url}` : undefined, listeners.usage ? `usage reports on ${listeners.usage.url}` : undefined].filter(Boolean).join('; ');
  logger.info(`leash ${build.version} ${serving}; health, readiness and metrics on ${listeners.management.url}`, {
    ...(listeners.public ? { url: listeners.public.url } : {}),
    ...(listeners.usage ? { usage_url: listeners.usage.url } : {}),
    management_url: listeners.management.url,
    issuer: broker.config.settings.issuer,
    version: build.version,
    node_version: build.nodeVersion,
  });
  const watcher = startReloadWatch(broker, path, guardrailsFile, logger);
  link?.ready();
  // One handler for the whole life of the process (never a moment without one, when a
  // signal would kill it outright): the first signal drains, a second cuts the drain short.
  const cutNow = new AbortController();
  let stopping!: (signal: NodeJS.Signals) => void;
  const stop = new Promise<NodeJS.Signals>((resolve) => (stopping = resolve));
  let signals = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    if (++signals === 1) return stopping(signal);
    if (signals === 2) logger.warn('second signal: cutting requests in flight', { signal });
    cutNow.abort();
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  const signal = await stop;
  const grace = broker.config.settings.shutdown_grace;
  logger.info(`${signal}: draining (no new connections; up to ${grace} s for requests in flight; a second signal cuts them)`, { signal, grace_seconds: grace });
  watcher.close();
  await broker.close({ cutNow: cutNow.signal });
  link?.close();
  logger.info('stopped');
  // Everything Leash opened is closed; a handle left by a cut request must not keep the process past the grace.
  setTimeout(() => process.exit(0), 1000).unref();
  return 0;
}

export function startReloadWatch(broker: Broker, path: string, guardrailsFile?: string, logger: Logger = broker.logger): { close(): void } {
  // The guardrails file is re-read with every reload; it is watched like the files the
  // config names (LoadedConfig.guardrailsPath), so a change to it alone is a reload too.
  const load = guardrailsFile === undefined ? undefined : (bytes: Uint8Array, file: string) => loadConfigBytes(bytes, file, { guardrails: readGuardrailsFile(guardrailsFile) });
  // The running config is the baseline: a file changed since it was loaded is a change.
  return watchConfig(
    path,
    (result) => {
      if (!result.ok) {
        logger.error('policy reload rejected, keeping the running policy', { path, error: result.error.message });
        void broker.rejectReload(result.error);
        return;
      }
      void broker.reload(result.loaded).then((r) => {
        if (r.ok) logger.info('policy reloaded', { path });
        else logger.error('policy reload rejected, keeping the running policy', { path, error: r.error.message });
      });
    },
    { ...(broker.loaded.path === resolve(path) ? { initial: broker.loaded } : {}), ...(load ? { load } : {}) },
  );
}

/**
 * A worker that could not start says why and exits (the IPC channel would keep it alive):
 * the primary's last line then names the cause, as a single process's would.
 */
function exitFailedWorker(link: { startFailed(error: string): void; close(): void } | undefined, e: unknown): void {
  if (!link) return;
  link.startFailed(e instanceof Error ? e.message : String(e));
  link.close();
  setTimeout(() => process.exit(1), 50).unref();
}

/**
 * How many processes serve: `--workers` (a count or `auto`; `$LEASH_WORKERS` when not
 * given), else `settings.workers`; `auto` is one per core.
 */
export function workerCount(flag: string | undefined, setting: number | 'auto'): number {
  let value: number | 'auto' = setting;
  if (flag !== undefined) {
    if (flag !== 'auto' && (!/^\d+$/.test(flag) || Number(flag) < 1 || Number(flag) > 256)) throw new UsageError(`--workers must be auto or an integer from 1 to 256 (got '${flag}')`);
    value = flag === 'auto' ? 'auto' : Number(flag);
  }
  return value === 'auto' ? availableParallelism() : value;
}

/** Silent security defaults are a bug: say loudly what is not production-grade. */
function warnDevDefaults(broker: Broker, logger: Logger): void {
  const s = broker.config.settings;
  const warnings: string[] = [];
  if (s.issuer.startsWith('http://')) warnings.push('issuer is plain http');
  if (s.keys.backend === 'local') warnings.push('signing keys are files on this machine (local backend)');
  if (s.production === false) warnings.push('production mode is off');
  if (warnings.length > 0) logger.warn(`not a production setup: ${warnings.join('; ')}`, { warnings });
}
