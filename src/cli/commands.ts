import { createHash } from 'node:crypto';
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
import { flag, parseArgs, portFlag } from './args.js';

const USAGE = `usage: leash <command>

  serve --config <file> [--guardrails <file>] [--port <n>] [--management-port <n>]
                                run the broker (also LEASH_CONFIG); reloads policy on SIGHUP or file change,
                                drains on SIGTERM/SIGINT (settings.shutdown_grace)
  serve --demo                  run the broker on the demo policy (public admin keys: a laptop only)
  validate <file> [--guardrails <file>]
                                check a config file, its policy, guardrails and exceptions without starting anything
  review --config <file> [--guardrails <file>] [--store config|<sqlite path>|<redis url>] [--since 30d]
         [--format text|json|sarif|markdown|html] [--fail-on critical|high|medium|low|none] [--base <file>] [--out <file>]
                                governance review: findings mapped to OWASP NHI, OWASP Agentic and CSA MAESTRO (docs/review.md)
  audit verify --config <file> [--checkpoint <jws|file|->] [--jwks <file|url>]
                                verify the audit chain in the configured store, against the newest
                                signed checkpoint found (a JWS, or audit JSON lines; - reads stdin)
  store status --config <file>  the store's epoch, where its audit chain begins, any pending reset
  store accept-reset --config <file> --yes [--by <name>]
                                accept that the store was reset (replicas refuse until then)
  demo                          quickstart: start on embedded defaults with the demo policy and show an exchange
  demo token [--sa <name>]      print a demo Kubernetes service-account token for the demo cluster
  aws credential-process ...    print AWS credentials from Leash in credential_process format (see docs/aws.md)
  keys list|rotate|retire <kid>|revoke <kid> --reason <text> --url <leash url>
                                signing keys of a running broker (admin key from LEASH_ADMIN_KEY or --key-file)
  task show <id> --url <leash url> [--format text|json|html]
                                a task's timeline: exchanges, approvals, uses, downstream events, revocations, anomalies
  ingest cloudtrail <file|dir> --config <file>
                                link CloudTrail log files (JSON as AWS writes them to S3, gzip or plain) to tasks and plugins
  ingest vault-audit <file> --config <file>
                                link a Vault audit-device log (JSON lines) to tasks and plugins by lease id and token accessor
  hash-api-key <key>            print the sha256 to put in admin.api_keys
  --version                     print the version of leash-broker
  schema --out <file>           write the config JSON Schema (for editors)
  docs --out <file>             regenerate docs/configuration.md's reference section
  docs --review --out <file>    regenerate docs/review.md's rule catalogue
`;

const out = (s: string) => process.stdout.write(s);
const err = (s: string) => process.stderr.write(s);

function configPath(file: string | undefined): string {
  const path = file ?? process.env.LEASH_CONFIG;
  if (!path) throw new Error('no config: pass --config <file> or set LEASH_CONFIG (to try Leash on the demo policy: npm start, or leash serve --demo)');
  return path;
}

function reportConfigError(e: unknown): number {
  if (e instanceof ConfigError) {
    err(`${e.message}\n`);
    return 1;
  }
  throw e;
}

export async function runCli(argv: readonly string[]): Promise<number | undefined> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'serve':
      return serve(rest);
    case 'validate':
      return validate(rest);
    case 'review':
      return (await import('./review.js')).runReviewCli(rest);
    case 'audit':
      return (await import('./audit.js')).runAuditVerify(rest);
    case 'store':
      return (await import('./store.js')).runStoreCli(rest);
    case 'demo':
      if (rest[0] === 'token') {
        const a = parseArgs(rest.slice(1), ['sa', 'namespace', 'config']);
        const { mintDemoToken } = await import('./demo.js');
        out(`${await mintDemoToken({ serviceAccount: flag(a, 'sa') ?? 'crm-reader', namespace: flag(a, 'namespace') ?? 'plugins' })}\n`);
        return 0;
      }
      // Loaded on demand: the OAuth stack is only needed by commands that serve.
      return (await import('./demo.js')).runDemo(parseArgs(rest, ['port', 'management-port'], ['no-serve']));
    case 'aws':
      // `leash aws credential-process ...`: AWS credentials for any AWS SDK or CLI.
      return (await import('./aws.js')).runAwsCli(rest);
    case 'ingest':
      return ingest(rest);
    case 'task':
      return (await import('./task.js')).runTaskCli(rest);
    case 'keys':
      // Talks to a running broker's admin API: no config or store needed here.
      return (await import('./keys.js')).runKeysCli(rest);
    case 'hash-api-key': {
      const key = rest[0];
      if (!key) throw new Error('usage: leash hash-api-key <key>');
      out(`${createHash('sha256').update(key, 'utf8').digest('hex')}\n`);
      return 0;
    }
    case 'schema': {
      const a = parseArgs(rest, ['out']);
      const path = flag(a, 'out') ?? 'schemas/leash-config.schema.json';
      await writeJsonSchema(path);
      out(`wrote ${path}\n`);
      return 0;
    }
    case 'docs': {
      const a = parseArgs(rest, ['out'], ['review']);
      if (a.flags.has('review')) {
        const path = flag(a, 'out') ?? 'docs/review.md';
        await (await import('../review/catalogue.js')).writeReviewDoc(path);
        out(`wrote ${path}\n`);
        return 0;
      }
      const path = flag(a, 'out') ?? 'docs/configuration.md';
      await writeConfigurationDoc(path);
      out(`wrote ${path}\n`);
      return 0;
    }
    case '--version':
    case 'version':
      out(`${buildInfo().version}\n`);
      return 0;
    case undefined:
    case 'help':
    case '--help':
      out(USAGE);
      return 0;
    default:
      err(`unknown command '${command}'\n${USAGE}`);
      return 2;
  }
}

/** The `--guardrails FILE` option: the guardrails baseline platform security owns. */
export function guardrailsOption(file: string | undefined): GuardrailsSource | undefined {
  return file === undefined ? undefined : readGuardrailsFile(file);
}

async function validate(argv: readonly string[]): Promise<number> {
  const a = parseArgs(argv, ['guardrails']);
  const file = a.positional[0];
  if (!file) throw new Error('usage: leash validate <file> [--guardrails <file>]');
  try {
    // An exception that already expired covers nothing here: CI fails until it is renewed or removed.
    const loaded = await loadConfigFile(file, { guardrails: guardrailsOption(flag(a, 'guardrails')), now: Date.now() });
    const policy = compilePolicy(loaded.config);
    const grants = [...policy.plugins.values()].reduce((n, p) => n + p.grants.length, 0);
    const exceptions = loaded.config.exceptions.length;
    out(`${file}: valid (${loaded.config.trusted_issuers.length} trusted issuers, ${policy.plugins.size} plugins, ${grants} grants, ${exceptions} exception${exceptions === 1 ? '' : 's'})\n`);
    return 0;
  } catch (e) {
    return reportConfigError(e);
  }
}

async function ingest(argv: readonly string[]): Promise<number> {
  const a = parseArgs(argv, ['config']);
  const [kind, path, ...extra] = a.positional;
  if ((kind !== 'cloudtrail' && kind !== 'vault-audit') || !path || extra.length > 0)
    throw new Error('usage: leash ingest cloudtrail <file|dir> --config <file> | leash ingest vault-audit <file> --config <file>');
  let loaded;
  try {
    loaded = await loadConfigFile(configPath(flag(a, 'config')));
  } catch (e) {
    return reportConfigError(e);
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
    out(`${kind}: ${r.files} file(s), ${r.records} records: ${r.linked} linked${how ? ` (${how})` : ''}, ${r.unlinked} not Leash's, ${r.malformed} malformed; ${r.stored} new events stored\n`);
    return 0;
  } finally {
    await store.close();
  }
}

async function serve(argv: readonly string[]): Promise<number | undefined> {
  // `--demo-if-no-config` is what `npm start` passes: a checkout with nothing configured
  // serves the demo policy (loudly); `leash serve` itself never falls back silently.
  const a = parseArgs(argv, ['config', 'port', 'management-port', 'guardrails'], ['demo', 'demo-if-no-config']);
  if (a.flags.has('demo') && flag(a, 'config') !== undefined) throw new Error('--demo and --config exclude each other');
  const demo = a.flags.has('demo') || (a.flags.has('demo-if-no-config') && flag(a, 'config') === undefined && !process.env.LEASH_CONFIG);
  let path: string;
  let demoNotice: string | undefined;
  if (demo) {
    const { prepareDemo, DEMO_NOTICE } = await import('./demo.js');
    path = await prepareDemo();
    demoNotice = DEMO_NOTICE;
  } else {
    path = configPath(flag(a, 'config'));
  }
  const guardrailsFile = flag(a, 'guardrails') ?? process.env.LEASH_GUARDRAILS;
  let loaded;
  try {
    loaded = await loadConfigFile(path, { guardrails: guardrailsOption(guardrailsFile) });
  } catch (e) {
    // Before a config there is no log stream: the problems go to stderr as text, as `leash validate` prints them.
    return reportConfigError(e);
  }
  // From here on every line on stderr is one JSON log object; stdout carries only security events.
  const logger = createLogger({ level: loaded.config.settings.log.level });
  if (demoNotice) logger.warn(demoNotice);
  const { Broker } = await import('../broker.js');
  const { bindListeners, ListenError } = await import('../http/listener.js');
  const { tlsServerOptions } = await import('../mtls/tls-material.js');
  let tls;
  try {
    tls = tlsServerOptions(loaded.config);
  } catch (e) {
    return reportConfigError(e);
  }
  let broker: Broker;
  let listeners;
  try {
    // Ports first: one in use ends the start here, before keys, store or audit events exist.
    listeners = await bindListeners(loaded.config.settings, { port: portFlag(a, 'port'), managementPort: portFlag(a, 'management-port'), tls });
    broker = await Broker.create(loaded, { listeners, logger });
  } catch (e) {
    if (e instanceof ListenError) logger.fatal(e.message, { address: e.address, role: e.role, code: e.code });
    else logger.fatal('leash could not start', { error: e instanceof Error ? e.message : String(e) });
    return 1;
  }
  warnDevDefaults(broker, logger);
  const build = buildInfo();
  logger.info(`leash ${build.version} listening on ${listeners.public.url}; health, readiness and metrics on ${listeners.management.url}`, {
    url: listeners.public.url,
    management_url: listeners.management.url,
    issuer: broker.config.settings.issuer,
    version: build.version,
    node_version: build.nodeVersion,
  });
  const watcher = startReloadWatch(broker, path, guardrailsFile, logger);
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

/** Silent security defaults are a bug: say loudly what is not production-grade. */
function warnDevDefaults(broker: Broker, logger: Logger): void {
  const s = broker.config.settings;
  const warnings: string[] = [];
  if (s.issuer.startsWith('http://')) warnings.push('issuer is plain http');
  if (s.keys.backend === 'local') warnings.push('signing keys are files on this machine (local backend)');
  if (s.production === false) warnings.push('production mode is off');
  if (warnings.length > 0) logger.warn(`not a production setup: ${warnings.join('; ')}`, { warnings });
}
