/** What bench/growth.ts and its server child (bench/growth-server.ts) agree on: the policy shape and the history to prefill. */

/** Env var carrying the GrowthSpec (JSON) to the child, next to LEASH_BENCH_INPUT. */
export const GROWTH_ENV = 'LEASH_BENCH_GROWTH';

/** The history a growth point starts with. */
export interface GrowthSpec {
  /** Plugins in the policy, each with its own binding and grant. */
  readonly plugins: number;
  /** Plugin indexes the load exchanges as (spread over the policy). */
  readonly sample: readonly number[];
  /**
   * Distinct exchange bodies the load cycles through, each its own attestation and its own
   * task naming one plugin: body k is plugin sample[k % sample.length]. The plugins series
   * uses the same count at every size, so one plugin is not also one cached request.
   */
  readonly bodies: number;
  /** Token revocations on record at start. */
  readonly revocations: number;
  /** Issued tokens in the store at start (over past tasks), `expiredShare` of them long expired. */
  readonly storeTokens: number;
  readonly expiredShare: number;
  /** Further tokens, expired a month ago (past the retention): the retention pass is timed over them before the load. */
  readonly sweepTokens: number;
  /** Tokens already issued in the first sampled plugin's task before the load. */
  readonly taskTokens: number;
  /** Every plugin gets a `tokens_per_task` quota (high enough never to trip). */
  readonly taskQuota: boolean;
}

/** What the child adds to its ready line. */
export interface GrowthReadyExtra {
  /** Config compile + Broker.create + listen, ms (the history already on disk). */
  readonly startMs: number;
  /** broker.reload of a policy of the same size with one grant changed, ms. */
  readonly reloadMs: number;
  /** Writing the history (not part of the start), ms. */
  readonly prefillMs: number;
  /** One task per body, naming only that body's plugin. */
  readonly tasks: readonly string[];
  /** The retention pass over `sweepTokens`: rows deleted, ms, and the longest event-loop delay meanwhile. */
  readonly sweep?: { readonly purged: number; readonly ms: number; readonly maxEventLoopDelayMs: number };
}

export const growthPluginId = (i: number): string => `plugin-${i}`;

/** The service account plugin i's workload runs as. */
export const growthServiceAccount = (i: number): { namespace: string; name: string } => ({ namespace: `ns-${i}`, name: i % 2 === 0 ? `sa-${i}` : `worker-${i}` });

/**
 * Plugin i's binding subject: even plugins an exact subject, odd ones a glob over their
 * namespace's workers (`system:serviceaccount:ns-7:worker-*`; a whole-segment `*` is refused
 * by the no-broad-binding guardrail), so half the policy is each kind.
 */
export function growthBinding(i: number): string | { glob: string } {
  const sa = growthServiceAccount(i);
  return i % 2 === 0 ? `system:serviceaccount:${sa.namespace}:${sa.name}` : { glob: `system:serviceaccount:${sa.namespace}:worker-*` };
}

/** `count` plugin indexes spread evenly over a policy of `plugins` (both kinds of binding). */
export function spreadSample(plugins: number, count: number): number[] {
  const n = Math.min(plugins, count);
  const out = new Set<number>();
  for (let k = 0; k < n; k++) out.add(Math.floor((k * plugins) / n));
  return [...out];
}
