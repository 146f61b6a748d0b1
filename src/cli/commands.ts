import { createHash } from 'node:crypto';
import { loadConfigFile } from '../config/load.js';
import { ConfigError } from '../config/config-error.js';
import { watchConfig } from '../config/watch.js';
import { writeJsonSchema } from '../config/json-schema.js';
import { writeConfigurationDoc } from '../config/docs.js';
import { compilePolicy } from '../policy/compile.js';
import { openStore } from '../store/open-store.js';
import { systemClock } from '../time/clock.js';
import { verifyAuditLog } from '../audit/verify.js';
import type { Broker } from '../broker.js';
import { flag, parseArgs } from './args.js';

const USAGE = `usage: leash <command>

  serve --config <file>         run the broker (also LEASH_CONFIG); reloads policy on SIGHUP or file change
  validate <file>               check a config file and its policy without starting anything
  audit verify --config <file>  verify the audit hash chain in the configured store
  demo                          quickstart: start on embedded defaults with the demo policy and show an exchange
  demo token [--sa <name>]      print a demo Kubernetes service-account token for the demo cluster
  aws credential-process ...    print AWS credentials from Leash in credential_process format (see docs/aws.md)
  keys list|rotate|retire <kid>|revoke <kid> --reason <text> --url <leash url>
                                signing keys of a running broker (admin key from LEASH_ADMIN_KEY or --key-file)
  hash-api-key <key>            print the sha256 to put in admin.api_keys
  schema --out <file>           write the config JSON Schema (for editors)
  docs --out <file>             regenerate docs/configuration.md's reference section
`;

const out = (s: string) => process.stdout.write(s);
const err = (s: string) => process.stderr.write(s);

function configPath(file: string | undefined): string {
  const path = file ?? process.env.LEASH_CONFIG;
  if (!path) throw new Error('no config: pass --config <file> or set LEASH_CONFIG');
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
    case 'audit':
      return audit(rest);
    case 'demo':
      if (rest[0] === 'token') {
        const a = parseArgs(rest.slice(1), ['sa', 'namespace', 'config']);
        const { mintDemoToken } = await import('./demo.js');
        out(`${await mintDemoToken({ serviceAccount: flag(a, 'sa') ?? 'crm-reader', namespace: flag(a, 'namespace') ?? 'plugins' })}\n`);
        return 0;
      }
      // Loaded on demand: the OAuth stack is only needed by commands that serve.
      return (await import('./demo.js')).runDemo(parseArgs(rest, ['port'], ['no-serve']));
    case 'aws':
      // `leash aws credential-process ...`: AWS credentials for any AWS SDK or CLI.
      return (await import('./aws.js')).runAwsCli(rest);
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
      const a = parseArgs(rest, ['out']);
      const path = flag(a, 'out') ?? 'docs/configuration.md';
      await writeConfigurationDoc(path);
      out(`wrote ${path}\n`);
      return 0;
    }
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

async function validate(argv: readonly string[]): Promise<number> {
  const a = parseArgs(argv, []);
  const file = a.positional[0];
  if (!file) throw new Error('usage: leash validate <file>');
  try {
    const loaded = await loadConfigFile(file);
    const policy = compilePolicy(loaded.config);
    const grants = [...policy.plugins.values()].reduce((n, p) => n + p.grants.length, 0);
    out(`${file}: valid (${loaded.config.trusted_issuers.length} trusted issuers, ${policy.plugins.size} plugins, ${grants} grants)\n`);
    return 0;
  } catch (e) {
    return reportConfigError(e);
  }
}

async function audit(argv: readonly string[]): Promise<number> {
  const a = parseArgs(argv, ['config']);
  if (a.positional[0] !== 'verify') throw new Error('usage: leash audit verify --config <file>');
  const loaded = await loadConfigFile(configPath(flag(a, 'config')));
  const store = await openStore(loaded.config.settings.store, systemClock);
  try {
    const result = await verifyAuditLog(store);
    if (result.ok) {
      out(`audit chain intact: ${result.count} events\n`);
      return 0;
    }
    err(`audit chain BROKEN at seq ${result.brokenAt}: ${result.reason}\n`);
    return 1;
  } finally {
    await store.close();
  }
}

async function serve(argv: readonly string[]): Promise<number | undefined> {
  const a = parseArgs(argv, ['config', 'port']);
  const path = configPath(flag(a, 'config'));
  let loaded;
  try {
    loaded = await loadConfigFile(path);
  } catch (e) {
    return reportConfigError(e);
  }
  const { Broker } = await import('../broker.js');
  const broker = await Broker.create(loaded);
  warnDevDefaults(broker);
  const port = flag(a, 'port');
  const url = await broker.listen(port === undefined ? undefined : Number(port));
  err(`leash listening on ${url} (issuer ${broker.config.settings.issuer})\n`);
  startReloadWatch(broker, path);
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
  await broker.close();
  return 0;
}

export function startReloadWatch(broker: Broker, path: string): { close(): void } {
  return watchConfig(path, (result) => {
    if (!result.ok) {
      err(`policy reload rejected, keeping the running policy:\n${result.error.message}\n`);
      void broker.rejectReload(result.error);
      return;
    }
    void broker.reload(result.loaded).then((r) => {
      if (r.ok) err(`policy reloaded from ${path}\n`);
      else err(`policy reload rejected, keeping the running policy: ${r.error.message}\n`);
    });
  });
}

/** Silent security defaults are a bug: say loudly what is not production-grade. */
function warnDevDefaults(broker: Broker): void {
  const s = broker.config.settings;
  const warnings: string[] = [];
  if (s.issuer.startsWith('http://')) warnings.push('issuer is plain http');
  if (s.keys.backend === 'local') warnings.push('signing keys are files on this machine (local backend)');
  if (s.production === false) warnings.push('production mode is off');
  if (warnings.length > 0) err(`WARNING: not a production setup: ${warnings.join('; ')}\n`);
}
