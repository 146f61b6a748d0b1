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
  /** Calls and bytes the task may use, counted from usage reports (absent: no budget). */
  readonly budgets?: TaskBudgets | undefined;
}

/** A task's budgets: in total, and per audience. */
export interface TaskBudgets {
  readonly calls?: number | undefined;
  readonly bytes?: number | undefined;
  readonly audiences?: Readonly<Record<string, { readonly calls?: number | undefined; readonly bytes?: number | undefined }>> | undefined;
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

/** What a revocation covers. */
export type RevocationScope = 'token' | 'task' | 'plugin' | 'key';

/**
 * One revocation, as stored and as published on the revocation feed. A Leash token is
 * revoked when any record matches it: `token` by jti, `task` by its task, `plugin` by its
 * plugin when issued at or before `issuedBefore`, `key` by the kid that signed it.
 */
export interface Revocation {
  /** Feed cursor: assigned by the store, strictly increasing, never reused. */
  readonly seq: number;
  readonly scope: RevocationScope;
  /** jti, task id, plugin id or kid. */
  readonly id: string;
  /** ms; tokens of the scope issued at or before this instant are covered. */
  readonly issuedBefore: number;
  readonly revokedAt: number;
  /** ms; after this no token the record covers can still be valid, so it may be forgotten. */
  readonly keepUntil: number;
  readonly reason: string;
  /** Who: `apikey:<id>`, `jwt:<iss>#<sub>`, `plugin:<id>` (holder), `system:<cause>`. */
  readonly actor: string;
  /**
   * The audiences the revocation concerns, fixed when it is made: the revocation feed and
   * SET push show it only to resource servers answering for one of them. Undefined: every
   * resource server (plugin and key scopes, a jti Leash does not know, older records).
   */
  readonly audiences?: readonly string[] | undefined;
}

export interface Suspension {
  readonly plugin: string;
  readonly since: number;
  readonly actor: string;
  readonly reason: string;
}

/** A change another replica must learn about (published over the store's pub/sub). */
export type StateChange = { readonly type: 'revocation'; readonly revocation: Revocation } | { readonly type: 'suspension'; readonly plugin: string; readonly suspended: boolean };

export type ApprovalState = 'pending' | 'approved' | 'denied' | 'used';

/**
 * A pending (or decided) human approval of one exact request. `requestHash` binds it to
 * plugin, task, audience, scopes, TTL and credential kind: a different request cannot
 * ride on it. Expiry is by time (`expiresAt`); a `pending` record past it reads as expired.
 */
export interface ApprovalRecord {
  readonly id: string;
  readonly requestHash: string;
  readonly plugin: string;
  readonly owner: string;
  readonly task: string | undefined;
  readonly audience: string;
  readonly scopes: readonly string[];
  readonly ttl: number;
  readonly kind: string;
  readonly effect: string;
  readonly risk: string;
  readonly justification: string | undefined;
  /** Delegation chain (root first) when the request came through one. */
  readonly chain: readonly string[] | undefined;
  /** Why approval was needed: `grant`, `toxic-combination`. */
  readonly cause: string;
  readonly requestedAt: number;
  /** Pending approvals expire here; an approved one must be redeemed by `redeemBy`. */
  readonly expiresAt: number;
  readonly state: ApprovalState;
  readonly decidedAt: number | undefined;
  readonly decidedBy: string | undefined;
  readonly decisionReason: string | undefined;
  /** After approval: the last moment it may be redeemed. */
  readonly redeemBy: number | undefined;
  readonly usedAt: number | undefined;
  /** Last poll (ms), for `slow_down`. */
  readonly lastPollAt: number | undefined;
  /** The person the plugin acts for (`<issuer>#<sub>`). */
  readonly onBehalfOf?: string | undefined;
  /** That person may decide this approval with their own token. */
  readonly personMayDecide?: boolean | undefined;
  /** An MCP tool call approved as such: the approval binds to its argument hash. */
  readonly toolCall?: ApprovalToolCall | undefined;
}

/** What an approver sees of one MCP tool call (the exposed argument values, the hash of all). */
export interface ApprovalToolCall {
  readonly tool: string;
  readonly argumentsSha256: string;
  readonly arguments: Readonly<Record<string, unknown>>;
}

/** A Vault lease behind one issued credential (jti), kept until it is revoked. */
export interface LeaseRecord {
  readonly jti: string;
  readonly leaseId: string;
  readonly plugin: string;
  readonly task: string | undefined;
  /** When Leash revokes it at the latest (the grant's TTL). */
  readonly expiresAt: number;
  readonly revokedAt: number | undefined;
}

/** Audit event types the decision history aggregates (the review's "use" rules read these). */
export const DECISION_TYPES = ['exchange.issued', 'exchange.denied', 'approval.requested', 'approval.approved', 'approval.denied'] as const;

/**
 * One group of decisions: events of one type for one plugin (and, for issued credentials,
 * one audience and scope set; for denials, one reason) in a time range.
 */
export interface DecisionRollupRow {
  readonly type: (typeof DECISION_TYPES)[number];
  readonly plugin: string | undefined;
  /** Denials: the ERR_* code. */
  readonly reason: string | undefined;
  /** Issued: the audience and the scopes issued. */
  readonly audience: string | undefined;
  readonly scopes: readonly string[];
  readonly count: number;
  readonly lastAt: number;
}
