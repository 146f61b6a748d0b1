/** Rows the Store keeps. Times are milliseconds since the epoch. */

export type TaskState = 'active' | 'ended';

export interface Task {
  readonly id: string;
  readonly plugins: readonly string[];
  readonly attributes: Readonly<Record<string, string>>;
  readonly createdAt: number;
  readonly expiresAt: number;
  readonly createdBy: string;
  readonly state: TaskState;
  readonly endedAt: number | undefined;
  readonly endedBy: string | undefined;
}

/** One issued credential, by id only (never the credential itself). */
export interface IssuedToken {
  readonly jti: string;
  readonly plugin: string;
  readonly task: string | undefined;
  readonly audience: string;
  readonly scopes: readonly string[];
  readonly kind: string;
  readonly kid: string | undefined;
  readonly issuedAt: number;
  readonly expiresAt: number;
  /** DPoP key thumbprint when sender-constrained. */
  readonly jkt: string | undefined;
}

/** A security event as stored in the hash chain. */
export interface AuditRecord {
  readonly seq: number;
  readonly ts: number;
  readonly type: string;
  readonly event: Readonly<Record<string, unknown>>;
  readonly prevHash: string;
  readonly hash: string;
}
