/**
 * The closed catalogue of security events. Every `type` in the audit chain is one of these;
 * `docs/events.md` lists each with its meaning and a test checks the two agree both ways.
 */
export const AUDIT_EVENT_TYPES = [
  'exchange.issued',
  'exchange.denied',
  'task.opened',
  'task.ended',
  'policy.loaded',
  'policy.reload_failed',
  'policy.revoked_on_reload',
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
] as const;

export type AuditEventType = (typeof AUDIT_EVENT_TYPES)[number];

/** One line per event type, for generated docs; the Record type forces a meaning for each. */
export const AUDIT_EVENT_MEANINGS: Readonly<Record<AuditEventType, string>> = Object.freeze({
  'exchange.issued': 'A token exchange succeeded: a credential was issued (named by its jti, never the token) to a plugin for a task and audience.',
  'exchange.denied': 'A token exchange was refused; the event carries the ERR_* code and the policy reasons.',
  'task.opened': 'An orchestrator opened a task: the plugins allowed in it and its expiry.',
  'task.ended': 'A task was ended (by an admin call, or on expiry by the sweeper); every credential issued for it is revoked.',
  'policy.loaded': 'A policy was loaded (at start or on reload) and is now in force; the event carries its digest.',
  'policy.reload_failed': 'A policy reload was rejected; the previous policy stays in force.',
  'policy.revoked_on_reload': 'A reload removed plugins or grants, or narrowed scopes: the live credentials that depended on them were revoked (their Vault leases and AWS sessions too); carries what was removed and how many tokens.',
  'key.created': 'A signing key was created and published in the JWKS.',
  'admin.denied': 'An admin API call was refused because its caller was not authenticated, lacks the role, or (tasks) is not the orchestrator that opened the task.',
  'token.revoked': 'Credentials were revoked: one token (RFC 7009 or admin), a task, a plugin or a signing key; carries the scope, id, actor and reason.',
  'plugin.suspended': 'A plugin was suspended (kill switch, by a security admin or a quota breach): its live credentials are revoked and it gets no new ones.',
  'plugin.resumed': 'A suspended plugin was resumed by a security admin.',
  'aws.sessions_denied': 'A security admin asked to deny every AWS session of a role issued before now (an inline deny policy on aws:TokenIssueTime); `outcome` says whether it was applied.',
  'aws.deny_policy_updated': "Leash wrote a role's `leash-revoked-sessions` inline policy to IAM (`action: put`: revoked tasks', plugins' or sessions' AWS credentials are denied; `action: delete`: every session it covered has expired).",
  'aws.deny_policy_failed': "IAM could not be updated with a role's revoked-sessions policy (refused, unreachable, no credentials); the update stays pending in the store and is retried with backoff, also after a restart.",
  'aws.deny_policy_overflow': "A role's revoked-sessions policy would exceed its size budget (or IAM answered LimitExceeded): its entries collapsed into one role-wide aws:TokenIssueTime deny, which also denies the role's other sessions issued before that time.",
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
  'store.reset_detected': 'A replica found the store reset (its epoch changed or vanished) and refuses everything until an operator accepts the reset; written as an unchained line (`"chained": false`), since the chain it belongs to is gone.',
  'store.reset_accepted': 'An operator accepted a store reset (`leash store accept-reset`): what was lost (epoch, audit head, revocation seq); the first record of the new chain.',
});

const KNOWN: ReadonlySet<string> = new Set(AUDIT_EVENT_TYPES);

export function isAuditEventType(type: string): type is AuditEventType {
  return KNOWN.has(type);
}
