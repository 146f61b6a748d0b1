import type { PublicJwks } from './cluster.js';

/** Where the Leash child keeps its state (the baseline has none). */
export type BenchStore = { readonly kind: 'sqlite' } | { readonly kind: 'redis'; readonly url: string; readonly keyPrefix: string };

/**
 * What the parent hands a server child (env LEASH_BENCH_INPUT, JSON): the cluster's public
 * keys, the store, and the resource server's credentials for `/introspect` (a secret made
 * up per run, never printed).
 */
export interface ServerInput {
  readonly jwks: PublicJwks;
  readonly clusterIssuer: string;
  readonly audience: string;
  readonly store: BenchStore;
  readonly resourceServer: { readonly id: string; readonly secret: string };
  /** The issuer (`iss`) when several replicas stand for one Leash; default: the child's own URL. */
  readonly issuer?: string;
  /** Signing keys folder (local backend); replicas that must verify each other's tokens share one. Default: the child's temp dir. */
  readonly keysDir?: string;
  /** The bare-crypto server only: behave as the ceiling (policy table, audit file, revocation records) rather than the baseline. */
  readonly ceiling?: boolean;
  /** Key backend; Vault ones name the (contract) Vault and a token for it. */
  readonly keys?: { readonly backend: 'local' | 'vault-kv' | 'vault-transit'; readonly vaultAddress?: string; readonly vaultToken?: string };
  /** Leash only: `settings.admission` (bench/overload.ts compares the defaults with an unbounded setting). */
  readonly admission?: { readonly max_in_flight?: number; readonly max_queue?: number; readonly queue_timeout_ms?: number; readonly max_event_loop_delay_ms?: number };
  /** Leash only: `settings.listen.accept_sockets` (default: the schema's). */
  readonly acceptSockets?: number;
  /** Leash only: `settings.usage.commit_window_ms` (bench/usage.ts `--commit-window`); absent: the default. */
  readonly usageCommitWindowMs?: number;
  /** Worker processes: Leash as `serve --workers N` (src/cluster/), the ceiling as N node:cluster workers; absent or 1: one process. */
  readonly workers?: number;
  /** Leash only: `settings.usage.listen` with this many processes serving only the usage port (bench/usage.ts `--usage-worker`). */
  readonly usageWorkers?: number;
}

/** What a server child announces once it can take traffic (one stdout line). */
export interface ServerReady {
  readonly url: string;
  /** Leash only: its Prometheus metrics, on the management port. */
  readonly metricsUrl?: string;
  /** Leash with `usageWorkers`: where `POST /usage` is served. */
  readonly usageUrl?: string;
  readonly task: string;
  readonly clientId: string;
  readonly resource: string;
  /** process.hrtime in µs when ready: the CPU profile summary skips samples before it (boot, module loading). */
  readonly readyAtMicros: number;
}

export const READY_PREFIX = 'LEASH_BENCH_READY ';
export const INPUT_ENV = 'LEASH_BENCH_INPUT';

/** Both servers answer for this plugin and API, so both see the same request. */
export const BENCH_CLIENT_ID = 'crm-reader';
export const BENCH_RESOURCE = 'https://crm.example.com/api';
export const BENCH_SCOPE = 'contacts:read';
/** The resource server that introspects in the `introspect` workload (its audience is BENCH_RESOURCE). */
export const BENCH_RESOURCE_SERVER = 'bench-api';
/** Baseline only: answers the count of active / inactive introspections, so the bench can prove none said `active: false`. */
export const BASELINE_STATS_PATH = '/stats';

export function readServerInput(): ServerInput {
  const raw = process.env[INPUT_ENV];
  if (!raw) throw new Error(`${INPUT_ENV} is not set: this server is started by bench/run.ts`);
  return JSON.parse(raw) as ServerInput;
}

export function announceReady(ready: Omit<ServerReady, 'readyAtMicros'>): void {
  const full: ServerReady = { ...ready, readyAtMicros: Number(process.hrtime.bigint() / 1000n) };
  process.stdout.write(`${READY_PREFIX}${JSON.stringify(full)}\n`);
}

/** End cleanly on SIGTERM/SIGINT so `--cpu-prof` gets written and temp files are removed. */
export function onShutdown(close: () => Promise<void>): void {
  let closing = false;
  const stop = () => {
    if (closing) return;
    closing = true;
    close()
      .catch((err: unknown) => process.stderr.write(`shutdown: ${String(err)}\n`))
      .finally(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  // The parent died without signalling (crash, kill -9): do not linger.
  process.on('disconnect', stop);
}
