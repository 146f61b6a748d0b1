import { parseArgs } from 'node:util';

export interface BenchOptions {
  /** `throughput` (default): exchange and introspection load vs the baseline. `propagation`: revocation A -> B latency on Redis. */
  readonly suite: SuiteName;
  /** `propagation`: how many revocations are measured. */
  readonly revocations: number;
  /** `propagation`: pause between two introspections of B (0: back to back). */
  readonly pollIntervalMs: number;
  /** Seconds of measured load per workload and server. */
  readonly duration: number;
  /** Whether `--duration` was given: `full` then uses it for every suite, else each suite's FULL_DURATION. */
  readonly durationGiven: boolean;
  /** Seconds of unmeasured load before each measured run (JIT, connection pools, SQLite pages). */
  readonly warmup: number;
  readonly connections: number;
  /**
   * n > 0: autocannon worker threads (default 2: one thread cannot saturate the baseline on
   * this 2-core machine); 0: in this process, with µs latency percentiles.
   */
  readonly workers: number;
  /** Distinct attestations minted for the cold workload. */
  readonly pool: number;
  readonly profile: boolean;
  /** How the servers run: `node` (default) the compiled JavaScript on plain node, as `leash serve` ships; `tsx` the TypeScript through tsx's loader. */
  readonly runtime: 'node' | 'tsx';
  /** Which servers and workloads to run (all by default). */
  readonly servers: readonly ServerName[];
  readonly workloads: readonly WorkloadName[];
  /** Leash's store(s), each a separate Leash child; the baseline has no store and runs once. */
  readonly stores: readonly StoreName[];
  /** Redis AOF fsync policy for `--store redis`. */
  readonly appendfsync: 'everysec' | 'always';
  /** Leash's key backend(s); Vault ones run against the Vault contract server (test/support). */
  readonly keys: readonly KeyBackendName[];
  /** `latency`: the open-loop rate as a fraction of a measured capacity (issue 18, goal 5: 0.4). */
  readonly fraction: number;
  /** `overload`: the overloaded phase's rate, in multiples of Leash's capacity (goal 4: 3). */
  readonly overload: number;
  /** `latency`, `overload`: an open-loop client gives up after this many ms. */
  readonly clientTimeoutMs: number;
  /** Leash worker processes (`serve --workers N`, node:cluster), each count its own Leash run; default [1]. */
  readonly leashWorkers: readonly number[];
  /** Where `full` writes its printout (between the bench:full markers); undefined: nowhere. Default for `full`: docs/performance.md. */
  readonly docs: string | undefined;
}

export const SUITE_NAMES = ['throughput', 'propagation', 'latency', 'overload', 'growth', 'full'] as const;
/** What `--suite full` runs, in order (issue 18: "one command"). */
export const FULL_SUITES = ['throughput', 'latency', 'overload', 'growth'] as const satisfies ReadonlyArray<Exclude<SuiteName, 'full'>>;
export type FullSuiteName = (typeof FULL_SUITES)[number];
/**
 * Seconds per measured run of each suite inside `full` when --duration is not given: the
 * open-loop points and phases at 8 s (each still thousands of requests per tail) so the
 * whole run stays under issue 18's 15 minutes with a margin (it took 14.4-14.9 min at 10 s).
 */
export const FULL_DURATION: Readonly<Record<FullSuiteName, number>> = { throughput: 10, latency: 8, overload: 8, growth: 10 };

/** The seconds per measured run `full` gives one of its suites: --duration if given, else the suite's FULL_DURATION. */
export function fullSuiteDuration(opts: Pick<BenchOptions, 'duration' | 'durationGiven'>, suite: FullSuiteName): number {
  return opts.durationGiven ? opts.duration : FULL_DURATION[suite];
}
export type SuiteName = (typeof SUITE_NAMES)[number];
export const SERVER_NAMES = ['baseline', 'ceiling', 'leash'] as const;
export const WORKLOAD_NAMES = ['cold', 'warm', 'introspect'] as const;
export const STORE_NAMES = ['sqlite', 'redis'] as const;
export const APPENDFSYNC = ['everysec', 'always'] as const;
export const KEY_BACKEND_NAMES = ['local', 'vault-kv', 'vault-transit'] as const;
export type KeyBackendName = (typeof KEY_BACKEND_NAMES)[number];
export type ServerName = (typeof SERVER_NAMES)[number];
export type WorkloadName = (typeof WORKLOAD_NAMES)[number];
export type StoreName = (typeof STORE_NAMES)[number];

const USAGE = `usage: npm run bench -- [options]
  --suite <name>      throughput (default): exchange/introspection load vs the baseline and the ceiling;
                      propagation: two replicas on one redis-server, revoke at A ->
                      introspection at B inactive (p50/p99 over --revocations);
                      latency: open-loop (fixed-rate) warm/cold exchanges at --fraction of the
                      ceiling's capacity and of Leash's own, ceiling vs Leash p50/p90/p99/max;
                      overload: open loop at 0.8x and --overload x Leash's capacity, admission
                      defaults vs a 200 ms loop-delay rule vs unbounded, health probes;
                      growth: CPU per exchange as policy and history grow (bench/growth.ts);
                      full: throughput, latency, overload and growth in one run
  --revocations <n>   propagation: revocations measured (default 300)
  --poll-interval <ms> propagation: pause between B's introspections (default 0: back to back)
  --duration <s>      measured seconds per workload and server, or per open-loop point or phase (default 10)
  --fraction <x>      latency: open-loop rate as a fraction of capacity (default 0.4)
  --overload <x>      overload: the overloaded rate in multiples of capacity (default 3)
  --client-timeout <ms> latency, overload: an open-loop client gives up after this long (default 1000)
  --warmup <s>        unmeasured seconds before each run (default 2)
  --connections <n>   concurrent keep-alive connections (default 32)
  --workers <n>       autocannon worker threads (default 2); 0 = in this process,
                      which also gives µs latency percentiles instead of 1 ms buckets
  --pool <n>          distinct attestations for the cold workload (default 30000)
  --only <list>       servers to run: baseline,ceiling,leash (default all three)
  --workload <list>   workloads to run: cold,warm,introspect (default all; latency: warm and cold only)
  --store <list>      Leash's store: sqlite, redis or sqlite,redis (default sqlite; full: both);
                      redis starts its own redis-server on a free loopback port
  --appendfsync <p>   Redis AOF fsync policy: everysec (default) or always
  --keys <list>       Leash's key backend: local, vault-kv, vault-transit or a comma list
                      (default local); Vault backends use the Vault contract server from
                      test/support, started by this process on loopback
  --leash-workers <list>  Leash worker processes (serve --workers N): 1, 2 or a comma list
                      such as 1,2 (each its own Leash run; default 1); the ceiling runs
                      with each count too (node:cluster; exchanges only), and every N > 1
                      is reported over one process
  --docs <file|none>  full only: write the run's printout, machine and date between the
                      bench:full markers of this file (default docs/performance.md)
  --profile           also profile Leash (--cpu-prof) under the cold workload (or the first
                      --workload) and summarise it
  --runtime <r>       node (default): the servers compiled to JavaScript (tsc, ~15 s) on plain
                      node, as leash serve ships; tsx: the TypeScript through tsx's loader
  --help`;

function positiveInt(name: string, raw: string | undefined, dflt: number, min = 1): number {
  if (raw === undefined) return dflt;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min) throw new Error(`--${name} must be an integer >= ${min} (got '${raw}')\n${USAGE}`);
  return n;
}

function positiveNumber(name: string, raw: string | undefined, dflt: number, above: number, max: number): number {
  if (raw === undefined) return dflt;
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= above || n > max) throw new Error(`--${name} must be a number > ${above} and <= ${max} (got '${raw}')\n${USAGE}`);
  return n;
}

function list<T extends string>(name: string, raw: string | undefined, all: readonly T[]): readonly T[] {
  if (raw === undefined) return all;
  const picked = raw
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  const bad = picked.filter((p) => !(all as readonly string[]).includes(p));
  if (bad.length > 0 || picked.length === 0) throw new Error(`--${name} takes a comma list of ${all.join(', ')} (got '${raw}')`);
  return all.filter((a) => picked.includes(a));
}

function runtime(raw: string | undefined): BenchOptions['runtime'] {
  if (raw === undefined || raw === 'node' || raw === 'tsx') return raw ?? 'node';
  throw new Error(`--runtime takes node or tsx (got '${raw}')`);
}

function appendfsync(raw: string | undefined): BenchOptions['appendfsync'] {
  if (raw === undefined) return 'everysec';
  const found = APPENDFSYNC.find((a) => a === raw);
  if (!found) throw new Error(`--appendfsync takes ${APPENDFSYNC.join(' or ')} (got '${raw}')`);
  return found;
}

function docsTarget(suite: SuiteName, raw: string | undefined): string | undefined {
  if (raw === 'none') return undefined;
  if (raw !== undefined && suite !== 'full') throw new Error(`--docs goes with --suite full (got --suite ${suite})`);
  if (raw === '') throw new Error('--docs takes a file or none');
  return raw ?? (suite === 'full' ? 'docs/performance.md' : undefined);
}

export function parseOptions(argv: readonly string[]): BenchOptions | 'help' {
  const { values } = parseArgs({
    args: [...argv],
    strict: true,
    options: {
      duration: { type: 'string' },
      warmup: { type: 'string' },
      connections: { type: 'string' },
      workers: { type: 'string' },
      pool: { type: 'string' },
      only: { type: 'string' },
      workload: { type: 'string' },
      store: { type: 'string' },
      appendfsync: { type: 'string' },
      keys: { type: 'string' },
      'leash-workers': { type: 'string' },
      docs: { type: 'string' },
      suite: { type: 'string' },
      revocations: { type: 'string' },
      'poll-interval': { type: 'string' },
      fraction: { type: 'string' },
      overload: { type: 'string' },
      'client-timeout': { type: 'string' },
      profile: { type: 'boolean', default: false },
      runtime: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) return 'help';
  const suite = values.suite ?? 'throughput';
  if (!(SUITE_NAMES as readonly string[]).includes(suite)) throw new Error(`--suite takes ${SUITE_NAMES.join(', ')} (got '${suite}')`);
  return {
    suite: suite as SuiteName,
    revocations: positiveInt('revocations', values.revocations, 300, 10),
    pollIntervalMs: positiveInt('poll-interval', values['poll-interval'], 0, 0),
    duration: positiveInt('duration', values.duration, 10),
    durationGiven: values.duration !== undefined,
    warmup: positiveInt('warmup', values.warmup, 2, 0),
    connections: positiveInt('connections', values.connections, 32),
    workers: positiveInt('workers', values.workers, 2, 0),
    pool: positiveInt('pool', values.pool, 30_000, 100),
    profile: values.profile === true,
    runtime: runtime(values.runtime),
    servers: list('only', values.only, SERVER_NAMES),
    workloads: list('workload', values.workload, WORKLOAD_NAMES),
    // `full` reports both stores (issue 18, goal 1); a single suite runs SQLite unless told.
    stores: values.store === undefined ? (suite === 'full' ? STORE_NAMES : ['sqlite']) : list('store', values.store, STORE_NAMES),
    appendfsync: appendfsync(values.appendfsync),
    keys: values.keys === undefined ? ['local'] : list('keys', values.keys, KEY_BACKEND_NAMES),
    fraction: positiveNumber('fraction', values.fraction, 0.4, 0, 1),
    overload: positiveNumber('overload', values.overload, 3, 1, 100),
    clientTimeoutMs: positiveInt('client-timeout', values['client-timeout'], 1000, 10),
    leashWorkers: (values['leash-workers'] ?? '1').split(',').map((w) => positiveInt('leash-workers', w.trim(), 1)),
    docs: docsTarget(suite as SuiteName, values.docs),
  };
}

export { USAGE };
