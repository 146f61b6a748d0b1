import type { ServedPorts } from '../http/listener.js';
import type { StateChange } from '../store/records.js';

/*
 * What the primary and the workers of `leash serve --workers N` say to each other over the
 * cluster IPC channel. Every message carries `leash` (its kind), so Node's own cluster
 * messages and anything else on the channel are told apart.
 */

/** A worker committed a state change (revocation, suspension): the primary relays it to every other worker. */
export interface ChangeMessage {
  readonly leash: 'change';
  /** Unique per worker and change: the acknowledgement names it. */
  readonly id: number;
  readonly change: StateChange;
}

/** Worker → primary: this worker applied a relayed change to its revocation view. */
export interface AppliedMessage {
  readonly leash: 'applied';
  readonly id: number;
  /** The worker that made the change (so the primary finds the pending relay). */
  readonly from: number;
}

/** Primary → the worker that made a change: every other worker applied it (or `missing` did not answer in time). */
export interface RelayedMessage {
  readonly leash: 'relayed';
  readonly id: number;
  readonly missing: number;
}

/** A worker's key set changed (an admin rotation, a scheduled transition): the others re-read the keyring now. */
export interface KeysChangedMessage {
  readonly leash: 'keys-changed';
}

/** Worker → primary: started, listening, serving. */
export interface ReadyMessage {
  readonly leash: 'ready';
}

/** Worker → primary: this worker could not start (config, port, store, keys); the primary's fatal line says why. */
export interface StartFailedMessage {
  readonly leash: 'start-failed';
  readonly error: string;
}

/** Worker → primary: a scrape of /metrics reached this worker; the primary gathers every worker's metrics. */
export interface MetricsRequestMessage {
  readonly leash: 'metrics-request';
  readonly id: number;
}

/** Primary → every worker: send your registry (`getMetricsAsJSON`). */
export interface MetricsCollectMessage {
  readonly leash: 'metrics-collect';
  readonly id: number;
}

/** Worker → primary: this worker's metrics for collection `id`. */
export interface MetricsPartMessage {
  readonly leash: 'metrics-part';
  readonly id: number;
  readonly metrics: unknown[];
}

/** Primary → the worker that asked: the exposition text of every worker's metrics, aggregated. */
export interface MetricsResultMessage {
  readonly leash: 'metrics-result';
  readonly id: number;
  readonly text: string;
  /** Workers that did not answer in time (their series are missing). */
  readonly missing: number;
}

export type WorkerToPrimary = ChangeMessage | AppliedMessage | KeysChangedMessage | ReadyMessage | StartFailedMessage | MetricsRequestMessage | MetricsPartMessage;
/** A relayed ChangeMessage also names the worker that made it. */
export type PrimaryToWorker = (ChangeMessage & { readonly from: number }) | RelayedMessage | KeysChangedMessage | MetricsCollectMessage | MetricsResultMessage;

const KINDS = new Set(['change', 'applied', 'relayed', 'keys-changed', 'ready', 'start-failed', 'metrics-request', 'metrics-collect', 'metrics-part', 'metrics-result']);

export function isLeashMessage(m: unknown): m is { readonly leash: string } {
  return typeof m === 'object' && m !== null && KINDS.has((m as { leash?: unknown }).leash as string);
}

/** Set by the primary in each worker's environment at fork: which ports it serves (`all`, `public` or `usage`). */
export const SERVES_ENV = 'LEASH_WORKER_SERVES';

/** The ports a worker serves, from its environment: `all` unless the primary said otherwise. */
export function servedPorts(env: NodeJS.ProcessEnv = process.env): ServedPorts {
  const v = env[SERVES_ENV];
  return v === 'public' || v === 'usage' ? v : 'all';
}
