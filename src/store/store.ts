import { LeashError } from '../errors/leash-error.js';
import type { ApprovalRecord, ApprovalState, AuditRecord, DecisionRollupRow, IssuedToken, LeaseRecord, Revocation, StateChange, Suspension, Task } from './records.js';
import type { StoreIdentity } from './store-identity.js';
import type { UsageStore } from './usage-store.js';

/**
 * Small role interfaces; a backend implements all of them (see `Store`). Every method is
 * async so a networked backend (Redis) fits the same shape; a backend that cannot reach
 * its state throws LeashError ERR_BACKEND_UNAVAILABLE so callers fail closed.
 */
export interface TaskStore {
  createTask(task: Task): Promise<void>;
  getTask(id: string): Promise<Task | undefined>;
  /** Marks an active task ended; returns the updated task, or undefined if unknown. Idempotent. */
  endTask(id: string, at: number, by: string): Promise<Task | undefined>;
  /** Active and not yet expired at `now`. */
  countActiveTasks(now: number): Promise<number>;
  /** Tasks still `active` whose expiry is at or before `now` (for the expiry sweeper), oldest first. */
  listExpiredActiveTasks(now: number, limit: number): Promise<Task[]>;
  /** Tasks still `active` and unexpired at `now` (the console's task list), the latest to expire first. */
  listActiveTasks(now: number, limit: number): Promise<Task[]>;
}

/** A limit checked in the same write as the token record. */
export interface IssueLimit {
  /** Most tokens of this plugin in the token's task (the plugin's `quotas.tokens_per_task`). */
  readonly tokensPerTask?: number;
}

/** The refusal a store gives when `IssueLimit.tokensPerTask` is reached (nothing recorded). */
export function taskTokenLimitReached(limit: number): LeashError {
  return new LeashError('ERR_QUOTA_EXCEEDED', `quota exceeded: already ${limit} credentials in this task (limit ${limit}), counted at the record; retry later`, { limit });
}

export interface TokenIndex {
  /**
   * Records a credential. With `tokensPerTask`, atomically with the record: refused with
   * `ERR_QUOTA_EXCEEDED` (nothing written) when the plugin already has that many tokens in
   * the task, so concurrent exchanges (other workers, other replicas) never pass the quota.
   */
  recordIssued(token: IssuedToken, limit?: IssueLimit): Promise<void>;
  getIssued(jti: string): Promise<IssuedToken | undefined>;
  listIssuedForTask(taskId: string): Promise<IssuedToken[]>;
  /** Unexpired at `now`, for a plugin (kill switch hooks, live-token quota). */
  listLiveIssuedForPlugin(plugin: string, now: number): Promise<IssuedToken[]>;
  countIssuedForTask(taskId: string): Promise<number>;
  /**
   * Tokens recorded for one plugin in one task (the tokens-per-task quota), read from a
   * counter kept with the index: one lookup however long the task has run, never a listing.
   */
  countIssuedForTaskPlugin(taskId: string, plugin: string): Promise<number>;
  /**
   * Forget at most `limit` tokens that expired before `before` (oldest expiry first);
   * returns how many. A backend whose records expire by themselves (Redis TTLs) returns 0.
   */
  purgeIssued(before: number, limit: number): Promise<number>;
}

export interface RevocationStore {
  /** Durable when the promise resolves; returns the record with its feed `seq`; publishes it. */
  addRevocation(revocation: Omit<Revocation, 'seq'>): Promise<Revocation>;
  /** Records with `seq > cursor` still within `keepUntil` at `now`, oldest first. */
  revocationsSince(cursor: number, limit: number, now: number): Promise<Revocation[]>;
  /** Forget records whose `keepUntil` has passed; returns how many. */
  purgeRevocations(now: number): Promise<number>;
}

export interface SuspensionStore {
  /** False when already suspended (idempotent); publishes the change. */
  suspendPlugin(suspension: Suspension): Promise<boolean>;
  /** False when it was not suspended; publishes the change. */
  resumePlugin(plugin: string): Promise<boolean>;
  listSuspensions(): Promise<Suspension[]>;
}

export interface CounterStore {
  /** Fixed-window counter: adds `by` to the window containing `now` and returns the new total. */
  incrementWindow(key: string, windowMs: number, now: number, by?: number): Promise<number>;
}

/** Pub/sub of state changes between replicas (in-process only for SQLite). */
export interface ChangeFeed {
  /** Called for every change made by any replica, including this one. Returns an unsubscribe. */
  subscribe(listener: (change: StateChange) => void): () => void;
  /** True while the subscription is live (a Redis subscriber may be disconnected). */
  subscribed(): boolean;
}

export interface AuditLog {
  /** Appends to the hash chain; returns the stored record. */
  append(type: string, event: Record<string, unknown>, ts: number): Promise<AuditRecord>;
  /** Records in order, from `fromSeq` (inclusive). */
  read(fromSeq: number, limit: number): Promise<AuditRecord[]>;
}

export interface ReplayCache {
  /** True the first time `key` is seen before `expiresAt`; false on a replay. */
  remember(key: string, expiresAt: number): Promise<boolean>;
}

/** The replay cache read without writing: a dry run of the exchange (explain) consumes no one-time value. */
export interface ReplayView {
  /** True while `key` is remembered (a `remember` now would answer false). */
  seen(key: string): Promise<boolean>;
}

/** What `openApproval` did: made the approval, found one already pending for the request, or refused. */
export type OpenApprovalOutcome =
  { readonly outcome: 'created' } | { readonly outcome: 'existing'; readonly approval: ApprovalRecord } | { readonly outcome: 'limited'; readonly scope: 'plugin' | 'task'; readonly pending: number };

/** Limits of `openApproval`. */
export interface OpenApprovalOptions {
  /** Identifies the request without its TTL and DPoP key: one pending approval per plugin and key. */
  readonly dedupeKey: string;
  /** Most approvals of the record's plugin that may be pending (unexpired) at once. */
  readonly maxPerPlugin: number;
  /** Most approvals of the record's task that may be pending at once (no limit without a task). */
  readonly maxPerTask: number;
}

/** Pending and decided approvals, shared by replicas; every transition is atomic. */
export interface ApprovalStore {
  /** Stores a record as is (no dedupe, no limits). */
  createApproval(approval: ApprovalRecord): Promise<void>;
  /**
   * The exchange's way in, as one atomic step across replicas: if an approval of the same
   * plugin is pending (unexpired at `approval.requestedAt`) with the same request hash, or
   * else the same `dedupeKey`, returns it; if the plugin, or the task, already has its limit
   * of pending approvals, refuses; otherwise stores the new pending record.
   */
  openApproval(approval: ApprovalRecord, opts: OpenApprovalOptions): Promise<OpenApprovalOutcome>;
  getApproval(id: string): Promise<ApprovalRecord | undefined>;
  /**
   * pending → approved|denied, only while pending and `at < expiresAt`. Returns the updated
   * record, or undefined when it was not pending (already decided, used, expired, unknown).
   */
  decideApproval(
    id: string,
    decision: { readonly state: 'approved' | 'denied'; readonly by: string; readonly reason: string | undefined; readonly at: number; readonly redeemBy: number | undefined },
  ): Promise<ApprovalRecord | undefined>;
  /** approved → used, exactly once, only while `at <= redeemBy`. True for the one caller that wins. */
  consumeApproval(id: string, at: number): Promise<boolean>;
  /**
   * Records a poll at `at`. Returns 'slow_down' (and does not move `lastPollAt`) when the
   * previous poll was less than `minIntervalMs` ago; 'ok' otherwise. Atomic across replicas.
   */
  recordApprovalPoll(id: string, at: number, minIntervalMs: number): Promise<'ok' | 'slow_down'>;
  /** Newest first. `state: 'pending'` lists only those not yet expired at `now`. */
  listApprovals(filter: { readonly state?: ApprovalState; readonly now: number; readonly limit: number }): Promise<ApprovalRecord[]>;
}

/** Vault leases behind issued credentials, so they can be revoked with the task, the plugin or the TTL. */
export interface LeaseStore {
  recordLease(lease: LeaseRecord): Promise<void>;
  /** Unrevoked leases of these credentials. */
  leasesForTokens(jtis: readonly string[]): Promise<LeaseRecord[]>;
  /** Unrevoked leases with `expiresAt <= now`, oldest first (the lease sweeper). */
  dueLeases(now: number, limit: number): Promise<LeaseRecord[]>;
  /** True when it was unrevoked. */
  markLeaseRevoked(jti: string, at: number): Promise<boolean>;
}

/**
 * The AWS session denies Leash wants on each IAM role (one small document per role, opaque
 * here: its meaning lives in issuance/aws-sts/deny-policy.ts), kept so a pending IAM update
 * survives a restart. Writes are compare-and-set on the whole document, so replicas that
 * add to the same role never lose each other's entries.
 */
export interface AwsDenyStore {
  getAwsDeny(roleArn: string): Promise<string | undefined>;
  /** Writes `next` (undefined: deletes) only if the stored document still equals `expected` (undefined: absent). Durable when true. */
  casAwsDeny(roleArn: string, expected: string | undefined, next: string | undefined): Promise<boolean>;
  /** Every role with a document (few: at most one per role the policy hands out, while it denies something). */
  listAwsDenyRoles(): Promise<string[]>;
}

/**
 * Past decisions, aggregated, for the governance review ("evidence of use"). Read off the
 * request path, on demand or on the review schedule; the backend aggregates (SQLite in SQL)
 * so a review does not pull every event into the process.
 */
export interface DecisionHistory {
  /**
   * Decision events of the UTC days from `since`'s to `until - 1`'s (whole days: the
   * evidence is kept per day), grouped; and the time of the oldest audit event (how far
   * back evidence goes).
   */
  decisionRollup(since: number, until: number): Promise<{ readonly rows: DecisionRollupRow[]; readonly oldestAt: number | undefined }>;
}

export type { StoreIdentity } from './store-identity.js';

export interface Store
  extends
    TaskStore,
    TokenIndex,
    AuditLog,
    ReplayCache,
    ReplayView,
    RevocationStore,
    SuspensionStore,
    CounterStore,
    ChangeFeed,
    ApprovalStore,
    LeaseStore,
    AwsDenyStore,
    DecisionHistory,
    StoreIdentity,
    UsageStore {
  readonly kind: string;
  /** SQLite only: who checkpoints the WAL (metrics; src/store/sqlite/wal-checkpointer.ts). */
  walCheckpoint?(): WalCheckpointState;
  /** Cheap liveness probe. */
  ping(): Promise<void>;
  close(): Promise<void>;
}

/** Who checkpoints an SQLite store's WAL, and how large the WAL was at its last checkpoint. */
export interface WalCheckpointState {
  /** True while the checkpoint thread runs; false while SQLite checkpoints in the commits (before the thread starts, or after it failed). */
  readonly thread: boolean;
  /** WAL pages at the thread's last checkpoint that moved any (undefined: none yet). */
  readonly pages: number | undefined;
}
