import type { AuditRecord, IssuedToken, Task } from './records.js';

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
}

export interface TokenIndex {
  recordIssued(token: IssuedToken): Promise<void>;
  getIssued(jti: string): Promise<IssuedToken | undefined>;
  listIssuedForTask(taskId: string): Promise<IssuedToken[]>;
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

export interface Store extends TaskStore, TokenIndex, AuditLog, ReplayCache {
  readonly kind: string;
  /** Cheap liveness probe. */
  ping(): Promise<void>;
  close(): Promise<void>;
}
