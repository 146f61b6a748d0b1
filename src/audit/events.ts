import type { TaskBudgets } from '../store/records.js';

/**
 * The closed catalogue of security events. Every `type` in the audit chain is one of these;
 * `docs/events.md` lists each with its meaning and a test checks the two agree both ways.
 */
export const AUDIT_EVENT_TYPES = [
  'exchange.issued',
  'exchange.denied',
  'exchange.abandoned',
  'task.opened',
  'task.ended',
  'policy.loaded',
  'policy.reload_failed',
  'policy.revoked_on_reload',
  'policy.explained',
  'policy.candidate_diff',
  'key.created',
  'admin.denied',
  'token.revoked',
  'plugin.suspended',
  'plugin.resumed',
  'aws.sessions_denied',
  'aws.deny_policy_updated',
  'aws.deny_policy_failed',
  'aws.deny_policy_overflow',
  'key.promoted',
  'key.retired',
  'key.removed',
  'key.revoked',
  'key.rotation_failed',
  'approval.requested',
  'approval.approved',
  'approval.denied',
  'approval.notify_failed',
  'vault.lease_revoked',
  'vault.lease_revoke_failed',
  'exception.expiring',
  'exception.expired',
  'review.finding',
  'review.resolved',
  'audit.checkpoint',
  'store.reset_detected',
  'store.reset_accepted',
  'token.first_use',
  'token.used_after_revocation',
  'token.used_outside_task',
  'token.audience_mismatch',
  'token.shared',
  'usage.route_drift',
  'task.budget_exceeded',
  'console.signed_in',
  'console.signed_out',
  'console.sign_in_failed',
] as const;

export type AuditEventType = (typeof AUDIT_EVENT_TYPES)[number];

/** One line per event type, for generated docs; the Record type forces a meaning for each. */
export const AUDIT_EVENT_MEANINGS: Readonly<Record<AuditEventType, string>> = Object.freeze({
  'exchange.issued': 'A token exchange succeeded: a credential was issued (named by its jti, never the token) to a plugin for a task and audience.',
  'exchange.denied': 'A token exchange was refused; the event carries the ERR_* code and the policy reasons.',
  'exchange.abandoned': 'The client closed its connection before the credential was signed or recorded: nothing was issued (reason ERR_CLIENT_GONE).',
  'task.opened': 'An orchestrator opened a task: the plugins allowed in it and its expiry.',
  'task.ended': 'A task was ended (by an admin call, or on expiry by the sweeper); every credential issued for it is revoked.',
  'policy.loaded': 'A policy was loaded (at start or on reload) and is now in force; the event carries its digest.',
  'policy.reload_failed': 'A policy reload was rejected; the previous policy stays in force.',
  'policy.explained': 'An admin asked what the exchange would decide for a request (explain): nothing was issued; carries the decision, its reason and what stood for the attestation.',
  'policy.candidate_diff': 'The candidate policy (serve --candidate) decided an exchange differently from the live policy, which was enforced; carries both decisions.',
  'policy.revoked_on_reload':
    'A reload removed plugins or grants, or narrowed scopes: the live credentials that depended on them were revoked (their Vault leases and AWS sessions too); carries what was removed and how many tokens.',
  'key.created': 'A signing key was created and published in the JWKS.',
  'admin.denied': 'An admin API call was refused because its caller was not authenticated, lacks the role, or (tasks) is not the orchestrator that opened the task.',
  'token.revoked': 'Credentials were revoked: one token (RFC 7009 or admin), a task, a plugin or a signing key; carries the scope, id, actor and reason.',
  'plugin.suspended': 'A plugin was suspended (kill switch, by a security admin or a quota breach): its live credentials are revoked and it gets no new ones.',
  'plugin.resumed': 'A suspended plugin was resumed by a security admin.',
  'aws.sessions_denied': 'A security admin asked to deny every AWS session of a role issued before now (an inline deny policy on aws:TokenIssueTime); `outcome` says whether it was applied.',
  'aws.deny_policy_updated':
    "Leash wrote a role's `leash-revoked-sessions` inline policy to IAM (`action: put`: revoked tasks', plugins' or sessions' AWS credentials are denied; `action: delete`: every session it covered has expired).",
  'aws.deny_policy_failed':
    "IAM could not be updated with a role's revoked-sessions policy (refused, unreachable, no credentials); the update stays pending in the store and is retried with backoff, also after a restart.",
  'aws.deny_policy_overflow':
    "A role's revoked-sessions policy would exceed its size budget (or IAM answered LimitExceeded): its entries collapsed into one role-wide aws:TokenIssueTime deny, which also denies the role's other sessions issued before that time.",
  'key.promoted': 'A `next` key became `current` (it signs from now on); the previous current key retired. `cause` is `schedule`, `api` or `emergency`.',
  'key.retired': 'A key stopped signing; it stays in the JWKS until `remove_at`, when every token it signed has expired.',
  'key.removed': 'A retired (or never-used next) key left the JWKS; its material was destroyed where the backend allows.',
  'key.revoked': 'Emergency: a key was withdrawn from the JWKS at once and every token it signed revoked.',
  'key.rotation_failed': 'A scheduled or requested key operation failed (backend unreachable, refused by the rotation rules); nothing changed.',
  'approval.requested': 'A request needed a human: a pending approval was created (plugin, task, audience, scopes, TTL, kind, effect, justification, chain).',
  'approval.approved': 'An approver approved a pending request; carries the approver.',
  'approval.denied': 'An approver denied a pending request; carries the approver and reason.',
  'approval.notify_failed': 'The approver webhook could not be delivered after every attempt (the approval stays pending and listed).',
  'vault.lease_revoked': 'A Vault lease behind an issued secret was revoked (task ended, plugin suspended, or the grant TTL passed).',
  'vault.lease_revoke_failed': 'Revoking a Vault lease failed; it is retried by the lease sweeper.',
  'exception.expiring': 'A guardrail exception enters its warning window (`settings.review.exception_warning_days` before `expires_at`): renew it or fix the grant.',
  'exception.expired': 'A guardrail exception expired: the grants it covered are refused from that second (ERR_EXCEPTION_EXPIRED) and the live tokens it allowed were revoked (`revoked` counts them).',
  'review.finding': 'The scheduled review found something it had not reported before (rule, severity, plugin, fingerprint).',
  'review.resolved': 'A finding of an earlier scheduled review is gone (fixed, or its evidence aged out).',
  'audit.checkpoint': 'A signed checkpoint of the audit chain: the head seq and hash of a store epoch, as a JWS signed with the current signing key, so `leash audit verify` can show a cut-off tail.',
  'store.reset_detected':
    'A replica found the store reset (its epoch changed or vanished) and refuses everything until an operator accepts the reset; written as an unchained line (`"chained": false`), since the chain it belongs to is gone.',
  'store.reset_accepted': 'An operator accepted a store reset (`leash store accept-reset`): what was lost (epoch, audit head, revocation seq); the first record of the new chain.',
  'token.first_use': 'A resource server (or an introspection) reported the first use of a credential: which server, route and source.',
  'token.used_after_revocation': 'A credential was presented after it was revoked (its jti, task, plugin or key): someone holds a dead token and tries it.',
  'token.used_outside_task': 'A credential was presented after its task ended or expired, or reported under another task than the one it was issued for.',
  'token.audience_mismatch': 'A credential was presented to a resource server that does not answer for its audience.',
  'token.shared':
    'One credential was presented from a second source (another DPoP key, or another caller address for a bearer token): a shared token, answered as `settings.usage.shared_token.response` says.',
  'usage.route_drift': "A credential used long after issuance at a route its plugin had never used: a different route mix than the plugin's history.",
  'task.budget_exceeded': "A task's call or byte budget (in total or for one audience) ran out: new exchanges for it are refused and its live credentials revoked.",
  'console.signed_in': 'A person signed in to the security console with the admin OIDC issuer: who, with which roles and groups.',
  'console.signed_out': 'A person signed out of the security console.',
  'console.sign_in_failed':
    'A sign-in to the security console was refused: the identity provider said no, the answer did not match the sign-in that started it, or its ID token is not a valid admin token.',
});

const KNOWN: ReadonlySet<string> = new Set(AUDIT_EVENT_TYPES);

export function isAuditEventType(type: string): type is AuditEventType {
  return KNOWN.has(type);
}

/** Optional member: may be absent or undefined (undefined members are left out of the record). */
type Opt<T> = T | undefined;
/** Private detail of a refusal: for the audit trail only, never a secret. */
type Detail = Opt<Readonly<Record<string, unknown>>>;
/** What every usage anomaly names: the credential, the server that saw it, and the call. */
export type UsageCallEvent = {
  jti: string;
  plugin: string;
  task?: Opt<string>;
  audience: string;
  server: string;
  method: string;
  route: string;
  outcome: string;
  source?: Opt<string>;
  jkt?: Opt<string>;
  at: number;
};
type KeyStateName = 'next' | 'current' | 'retired';

/**
 * One exchange decision. The pipeline, the protocol layer (oidc-provider refused the
 * request before the pipeline ran: `reason` ERR_PROTOCOL with the wire `error`) and the
 * client gate (credentials Leash cannot verify) all build this one shape.
 */
type ExchangeDecision<D extends 'issued' | 'denied' | 'abandoned'> = {
  decision: D;
  /** The ERR_* code (`OK` when issued). */
  reason: string;
  client_id?: Opt<string>;
  plugin?: Opt<string>;
  task?: Opt<string>;
  audience?: Opt<string>;
  scopes?: Opt<readonly string[]>;
  subject_token_sha256?: Opt<string>;
  workload?: Opt<{ issuer: string; subject: string }>;
  jti?: Opt<string>;
  kid?: Opt<string>;
  kind?: Opt<string>;
  ttl?: Opt<number>;
  jkt?: Opt<string>;
  grant?: Opt<number>;
  reasons?: Opt<readonly string[]>;
  chain?: Opt<readonly unknown[]>;
  upstream_jti?: Opt<string>;
  /** The human approval this credential was issued under. */
  approval?: Opt<{ readonly id: string; readonly approver: string; readonly at: number }>;
  justification?: Opt<string>;
  /** The OAuth error answered, when a layer before the pipeline refused. */
  error?: Opt<string>;
  description?: Opt<string>;
  detail?: Detail;
};

/** One policy's decision of an exchange (live or candidate): its class, the ERR_* code (`OK`), the step that refused, the plugin it resolved. */
type CandidateSide = { decision: 'issue' | 'approval' | 'deny' | 'error'; reason: string; step?: Opt<string>; plugin?: Opt<string> };

/** A key transition, by the schedule, an admin call, an emergency revoke or the first start. */
type KeyTransitionPayload = {
  kid: string;
  from?: Opt<KeyStateName>;
  to: KeyStateName | 'removed';
  cause: 'schedule' | 'api' | 'emergency' | 'init';
  actor: string;
  reason?: Opt<string>;
  backend?: Opt<string>;
};

/** What an approval of one MCP tool call shows and binds to (docs/mcp.md). */
type ToolCallShown = { tool: string; arguments_sha256: string; arguments?: Opt<Readonly<Record<string, unknown>>> };
type ApprovalDecided = {
  tool_call?: Opt<ToolCallShown>;
  approval: string;
  plugin: string;
  task?: Opt<string>;
  audience: string;
  scopes: readonly string[];
  approver: string;
  reason?: Opt<string>;
  redeem_by?: Opt<number>;
};

type LeasePayload = {
  jti: string;
  lease_id: string;
  plugin: string;
  task?: Opt<string>;
  cause: string;
  actor: string;
  reason: string;
};

type AwsSessionsDenied = {
  role_arn: string;
  actor: string;
  reason: string;
  /** ISO 8601: sessions issued before it are denied. */
  before: string;
  policy_name: string;
} & ({ outcome: 'applied'; request_id?: Opt<string> } | { outcome: 'failed'; reason_code: string; detail?: Detail });

/**
 * The payload of each event type, one per type: `AuditRecorder.record(type, payload)` is
 * typed on it, so no event can be built in two shapes.
 */
export type AuditEventPayloads = {
  'exchange.issued': ExchangeDecision<'issued'>;
  'exchange.denied': ExchangeDecision<'denied'>;
  /** The pipeline got as far as issuing, but its caller had left: no token signed or recorded; `reason` is ERR_CLIENT_GONE. */
  'exchange.abandoned': ExchangeDecision<'abandoned'>;
  'task.opened': { task: string; plugins: readonly string[]; expires_at: number; actor: string; budgets?: Opt<TaskBudgets> };
  'task.ended': { task: string; actor: string; cause: 'ended' | 'expired' };
  'policy.loaded': { digest: string; files_digest?: Opt<string>; plugins: number; trusted_issuers: number; initial: boolean };
  'policy.reload_failed': { digest?: Opt<string>; error: string };
  'policy.revoked_on_reload': {
    digest: string;
    actor: string;
    plugins_removed: readonly string[];
    grants_removed: readonly unknown[];
    scopes_narrowed: readonly unknown[];
    tokens_revoked: number;
    jtis: readonly string[];
    jtis_truncated?: Opt<true>;
  };
  'policy.explained': {
    actor: string;
    /** What stood for the attestation: a real token (verified), stated claims, or an audit event replayed. */
    input: 'token' | 'claims' | 'event';
    event_seq?: Opt<number>;
    policy: 'current' | 'given';
    policy_digest?: Opt<string>;
    decision: 'issue' | 'approval' | 'deny' | 'error';
    reason: string;
    step?: Opt<string>;
    client_id?: Opt<string>;
    plugin?: Opt<string>;
    task?: Opt<string>;
    audience?: Opt<string>;
    scopes?: Opt<readonly string[]>;
    subject_token_sha256?: Opt<string>;
    workload?: Opt<{ issuer: string; subject: string }>;
  };
  'policy.candidate_diff': {
    candidate_digest: string;
    live: CandidateSide;
    candidate: CandidateSide;
    client_id?: Opt<string>;
    task?: Opt<string>;
    audience?: Opt<string>;
    scopes?: Opt<readonly string[]>;
    workload?: Opt<{ issuer: string; subject: string }>;
    /** The exchange's own event (its `exchange.issued` / `exchange.denied`). */
    exchange_seq?: Opt<number>;
  };
  'key.created': KeyTransitionPayload;
  'admin.denied': { route: string; method: string; reason: string; actor?: Opt<string>; task?: Opt<string>; detail?: Detail };
  'token.revoked': { scope: 'token' | 'task' | 'plugin' | 'key'; id: string; feed_seq: number; actor: string; reason: string };
  'plugin.suspended': { plugin: string; actor: string; reason: string; already?: Opt<boolean> };
  'plugin.resumed': { plugin: string; actor: string; reason: string };
  'aws.sessions_denied': AwsSessionsDenied;
  'aws.deny_policy_updated': {
    role_arn: string;
    policy_name: string;
    action: 'put' | 'delete';
    rev: number;
    entries: number;
    role_cutoff?: Opt<string>;
    chars: number;
    next_expiry?: Opt<string>;
    request_id?: Opt<string>;
  };
  'aws.deny_policy_failed': {
    role_arn: string;
    policy_name: string;
    rev: number;
    applied: number;
    pending_since?: Opt<string>;
    failures: number;
    retry_at: string;
    reason_code: string;
    detail?: Detail;
  };
  'aws.deny_policy_overflow': {
    role_arn: string;
    policy_name: string;
    cause: 'budget' | 'limit_exceeded';
    entries_collapsed: number;
    denied_before?: Opt<string>;
    until?: Opt<string>;
    max_chars: number;
  };
  'key.promoted': KeyTransitionPayload;
  'key.retired': KeyTransitionPayload;
  'key.removed': KeyTransitionPayload;
  'key.revoked': KeyTransitionPayload;
  'key.rotation_failed': { operation: 'rotate' | 'retire' | 'revoke' | 'tick'; kid?: Opt<string>; actor: string; error: string };
  'approval.requested': {
    tool_call?: Opt<ToolCallShown>;
    /** The person the agent acts for (`<issuer>#<sub>`), and whether the grant lets them decide. */
    on_behalf_of?: Opt<string>;
    person_may_decide?: Opt<boolean>;
    approval: string;
    plugin: string;
    owner: string;
    task?: Opt<string>;
    audience: string;
    scopes: readonly string[];
    ttl: number;
    kind: string;
    effect: string;
    risk: string;
    justification?: Opt<string>;
    chain?: Opt<readonly unknown[]>;
    cause: string;
    expires_at: number;
  };
  'approval.approved': ApprovalDecided;
  'approval.denied': ApprovalDecided;
  'approval.notify_failed': { approval: string; plugin: string; attempts: number; error: string };
  'vault.lease_revoked': LeasePayload;
  'vault.lease_revoke_failed': LeasePayload & { vault_reason: string; vault_status?: Opt<number> };
  'exception.expiring': { exception: string; plugin: string; grant?: Opt<string>; guardrail?: Opt<string>; expires_at: string; days_left: number; ticket?: Opt<string>; owner?: Opt<string> };
  'exception.expired': {
    exception: string;
    plugin: string;
    grant?: Opt<string>;
    guardrail?: Opt<string>;
    expired_at: string;
    grants_refused: readonly string[];
    revoked: number;
    ticket?: Opt<string>;
    owner?: Opt<string>;
  };
  'review.finding': {
    rule: string;
    severity: string;
    plugin?: Opt<string>;
    grant?: Opt<string>;
    exception?: Opt<string>;
    fingerprint: string;
    pointer: string;
    message: string;
  };
  'review.resolved': { rule: string; severity: string; plugin?: Opt<string>; fingerprint: string };
  'audit.checkpoint': { epoch: string; head_seq: number; head_hash: string; kid: string; jws: { readonly protected: string; readonly payload: string; readonly signature: string } };
  'store.reset_detected': {
    previous_epoch: string | null;
    found_epoch: string | null;
    detected_at: number;
    audit_head_seq: number;
    audit_head_hash: string;
    revocation_seq: number;
    store: string;
  };
  'store.reset_accepted': {
    previous_epoch: string | null;
    epoch: string;
    actor: string;
    detected_at: number;
    lost_audit_head_seq: number;
    lost_revocation_seq: number;
    continued: boolean;
  };
  'token.first_use': UsageCallEvent & { after_issue_ms: number };
  'token.used_after_revocation': UsageCallEvent & { revoked_at?: Opt<number>; refused: boolean };
  'token.used_outside_task': UsageCallEvent & { cause: string; reported_task?: Opt<string>; task_ended_at?: Opt<number>; task_expires_at?: Opt<number>; refused: boolean };
  'token.audience_mismatch': UsageCallEvent & { server_audience: string; refused: boolean; response: string };
  'token.shared': UsageCallEvent & { sources: number; bound_jkt?: Opt<string>; cause: 'dpop_key' | 'address'; response: string };
  'usage.route_drift': UsageCallEvent & { token_age_ms: number; history_calls: number };
  'task.budget_exceeded': { task: string; budget: string; kind: 'calls' | 'bytes'; limit?: Opt<number>; used: number; credentials_revoked: number; actor: string };
  /** `session` is a digest prefix of the session id (never the cookie value), to tie an action to its sign-in. */
  'console.signed_in': { actor: string; roles: readonly string[]; groups: readonly string[]; session: string; expires_at: number };
  'console.signed_out': { actor: string; session: string; cause: 'signed_out' };
  'console.sign_in_failed': { reason: string; detail?: Detail };
};

/** The payload of one event type. */
export type AuditPayload<T extends AuditEventType> = AuditEventPayloads[T];

/** A security event as the code builds it: a discriminated union on `type`. */
export type AuditEvent = { [T in AuditEventType]: { readonly type: T; readonly event: AuditEventPayloads[T] } }[AuditEventType];

// Every event type has exactly one payload type, and every payload type an event type.
type Missing = Exclude<AuditEventType, keyof AuditEventPayloads>;
type Extra = Exclude<keyof AuditEventPayloads, AuditEventType>;
const exhaustive: [Missing, Extra] extends [never, never] ? true : never = true;
void exhaustive;
