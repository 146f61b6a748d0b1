/**
 * The usage role of the Store: what resource servers report about calls made with Leash
 * credentials, kept as aggregates (per jti, route and minute), never one row per call, so
 * the volume a busy API reports stays bounded by retention and by its route count.
 * Times are milliseconds since the epoch. Every write is batch-shaped: one transaction
 * (SQLite) or one script (Redis) per ingested batch.
 */

/** How one call ended at the resource server: served, or the refusal it made. */
export const USAGE_OUTCOMES = ['ok', 'expired', 'revoked', 'wrong_audience', 'missing_scope', 'bad_dpop', 'invalid_token', 'budget_exceeded', 'unavailable'] as const;
export type UsageOutcome = (typeof USAGE_OUTCOMES)[number];

/** Calls with one token at one route of one server in one minute, with one outcome. */
export interface UsageAggregate {
  /** Start of the minute (ms, a multiple of 60,000). */
  readonly minute: number;
  /** '' when the server could not read a token id (no token, malformed token). */
  readonly jti: string;
  /** '' when unknown. */
  readonly plugin: string;
  /** '' when unknown. */
  readonly task: string;
  /** The reporting resource server's id. */
  readonly server: string;
  readonly audience: string;
  /** HTTP method, or the protocol's verb (`TOOL` for an MCP tool call). */
  readonly method: string;
  /** Route template (`/repos/:owner/:repo`) or tool name: never a raw path with ids. */
  readonly route: string;
  readonly outcome: UsageOutcome;
  readonly calls: number;
  /** Calls answered with a status of 400 or more. */
  readonly errors: number;
  /** Response bytes. */
  readonly bytes: number;
  /** Sum of durations, ms. */
  readonly durationMs: number;
  readonly maxDurationMs: number;
  /** The first and last call of the aggregate (ms, within the minute). */
  readonly firstAt: number;
  readonly lastAt: number;
}

/** One presentation of a token from one source (a DPoP key, an address, a workload). */
export interface TokenUse {
  readonly jti: string;
  /** `jkt:<thumbprint>`, `addr:<ip>`, ... ; '' when the server saw no source. */
  readonly source: string;
  readonly at: number;
  /** The token's state may be forgotten after this (its expiry plus a margin). */
  readonly keepUntil: number;
}

/** What the store knew about a token when one use was applied (uses of a batch apply in order). */
export interface TokenUseResult {
  readonly jti: string;
  /** This was the first use of the token ever recorded. */
  readonly first: boolean;
  /** This use's source had not been seen for the token before, and another source had. */
  readonly newSource: boolean;
  /** Distinct sources known after this use (capped at MAX_TOKEN_SOURCES). */
  readonly sources: number;
}

/** Most distinct sources remembered per token: enough to say "shared", bounded whatever a client does. */
export const MAX_TOKEN_SOURCES = 8;

/** Calls and bytes to add to a task's budget counters, for one audience. */
export interface TaskUsageDelta {
  readonly task: string;
  readonly audience: string;
  readonly calls: number;
  readonly bytes: number;
  /** The counters may be forgotten after this (task expiry plus retention). */
  readonly keepUntil: number;
}

/** A task's counters for one audience, or for all of them (`audience: '*'`). */
export interface TaskUsageTotals {
  readonly task: string;
  readonly audience: string;
  readonly calls: number;
  readonly bytes: number;
}

/** The audience key of a task's totals across every audience. */
export const ALL_AUDIENCES = '*';

/** Evidence that a grant, a route or a scope of a plugin was used (for review and drift). */
export type EvidenceKind = 'grant' | 'route' | 'scope';

export interface EvidenceMark {
  readonly plugin: string;
  readonly audience: string;
  readonly kind: EvidenceKind;
  /** '' for `grant`; `METHOD route` for `route`; the scope for `scope`. */
  readonly name: string;
  readonly at: number;
  readonly calls: number;
}

/** The "last used" aggregate per plugin, grant (audience), route and scope. */
export interface EvidenceRow {
  readonly plugin: string;
  readonly audience: string;
  readonly kind: EvidenceKind;
  readonly name: string;
  readonly firstAt: number;
  readonly lastAt: number;
  readonly calls: number;
}

/** One ingested batch, already aggregated by the caller. */
export interface UsageBatch {
  readonly aggregates: readonly UsageAggregate[];
  readonly uses: readonly TokenUse[];
  readonly taskDeltas: readonly TaskUsageDelta[];
  readonly marks: readonly EvidenceMark[];
  /** Aggregates are kept until `minute + retentionMs`. */
  readonly retentionMs: number;
}

export interface UsageBatchResult {
  /** One per `uses` entry, in order. */
  readonly uses: readonly TokenUseResult[];
  /** The totals after the batch of every (task, audience) touched, and of each touched task's `*`. */
  readonly totals: readonly TaskUsageTotals[];
  /** One per `marks` entry, in order: calls recorded for it before this batch (0: never used). */
  readonly previousCalls: readonly number[];
}

/** The limits a synchronous charge must stay within (undefined: no limit). */
export interface ChargeLimits {
  readonly totalCalls?: number | undefined;
  readonly audienceCalls?: number | undefined;
}

/** An audit event of a task, indexed for its timeline. */
export interface TaskEventRef {
  readonly task: string;
  readonly seq: number;
  readonly ts: number;
  readonly type: string;
}

/** An event from a downstream system (CloudTrail, a Vault audit device) linked to a task. */
export interface DownstreamEvent {
  /** The source's own event id (CloudTrail `eventID`, Vault `request.id` + entry type): ingesting twice stores once. */
  readonly id: string;
  readonly source: 'cloudtrail' | 'vault';
  readonly at: number;
  readonly task: string;
  readonly plugin: string;
  /** The Leash credential it was made with ('' when linked by task or plugin only). */
  readonly jti: string;
  /** `s3:GetObject`, `sts:AssumeRoleWithWebIdentity`, `read database/creds/ro`, ... */
  readonly action: string;
  /** What it acted on: a resource ARN, a Vault path, a role ('' when unknown). */
  readonly target: string;
  readonly outcome: 'success' | 'failure';
  /** Who the downstream system says acted (an assumed-role ARN, a Vault display name). */
  readonly principal: string;
  /** How the event was linked: `access_key`, `session_tag`, `source_identity`, `session_name`, `lease_id`, `accessor`. */
  readonly link: string;
  readonly sourceAddress: string;
}

/** How a downstream system names a Leash credential: an AWS access key id, a Vault lease id or token accessor. */
export type CredentialLinkKind = 'aws_access_key' | 'vault_lease' | 'vault_accessor';

/** A downstream name of an issued credential, kept so downstream logs can be linked after the token index forgot it. */
export interface CredentialLink {
  readonly kind: CredentialLinkKind;
  /** The access key id, lease id or accessor (as the downstream log writes it). */
  readonly id: string;
  readonly jti: string;
  readonly plugin: string;
  /** '' when the credential had no task. */
  readonly task: string;
}

export interface UsageStore {
  /** Applies one batch atomically: aggregates, token uses (in order), task counters, evidence marks. */
  ingestUsage(batch: UsageBatch): Promise<UsageBatchResult>;
  /**
   * Adds `calls` to a task's counters for `audience` only if the totals stay within
   * `limits` (atomic across replicas): the synchronous budget check. Returns whether it
   * was charged and the totals after (or as they were, when refused).
   */
  chargeTaskUsage(task: string, audience: string, calls: number, limits: ChargeLimits, keepUntil: number): Promise<{ charged: boolean; totals: readonly TaskUsageTotals[] }>;
  /** The counters of a task: one row per audience plus `*`. */
  taskUsageTotals(task: string): Promise<TaskUsageTotals[]>;
  /** Records that a budget (audience or `*`) ran out; true only the first time. */
  markBudgetExhausted(task: string, audience: string, at: number, keepUntil: number): Promise<boolean>;
  /** Exhausted budgets of a task: audience (or `*`) → when. */
  budgetExhaustions(task: string): Promise<Record<string, number>>;
  /** A task's usage aggregates, oldest minute first. */
  listTaskUsage(task: string, limit: number): Promise<UsageAggregate[]>;
  /** Last-used evidence, for one plugin or all, within retention at `now`. */
  usageEvidence(filter: { readonly plugin?: string; readonly now: number; readonly retentionMs: number }): Promise<EvidenceRow[]>;
  /** Remembers which audit records concern a task (its timeline), kept until `keepUntil`. */
  indexTaskEvents(refs: readonly TaskEventRef[], keepUntil: number): Promise<void>;
  /** A task's audit records, by seq. */
  listTaskEvents(task: string, limit: number): Promise<TaskEventRef[]>;
  /** Stores downstream events (deduplicated by id); returns how many were new. */
  recordDownstream(events: readonly DownstreamEvent[], keepUntil: number): Promise<number>;
  listTaskDownstream(task: string, limit: number): Promise<DownstreamEvent[]>;
  /** A plugin's downstream events at or after `since`, newest first. */
  listPluginDownstream(plugin: string, since: number, limit: number): Promise<DownstreamEvent[]>;
  /** Remembers downstream names of issued credentials until `keepUntil` (an existing link is kept). */
  linkCredentials(links: readonly CredentialLink[], keepUntil: number): Promise<void>;
  /** The links known for these ids of one kind (unknown ids are left out). */
  resolveCredentialLinks(kind: CredentialLinkKind, ids: readonly string[]): Promise<CredentialLink[]>;
  /** Forgets what retention no longer covers at `now`; returns how many records went. */
  purgeUsage(now: number, retentionMs: number): Promise<number>;
}
