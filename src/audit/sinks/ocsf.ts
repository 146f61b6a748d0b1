import type { AuditRecord } from '../../store/records.js';

/**
 * Leash's security events as OCSF (Open Cybersecurity Schema Framework) 1.8.0 events, the
 * schema Splunk, Amazon Security Lake and others ingest. Four classes:
 *
 * | Leash | OCSF class | uid |
 * |---|---|---|
 * | exchange.issued / denied, approval.approved / denied | Authorize Session (IAM) | 3003 |
 * | token.first_use, a usage record | API Activity (Application) | 6003 |
 * | anomalies (token.shared, used after revocation / outside task, audience mismatch, route drift, budget) | Detection Finding (Findings) | 2004 |
 * | every other event (tasks, keys, revocations, suspensions, policy, approvals opened) | Entity Management (IAM) | 3004 |
 *
 * `type_uid` is `class_uid * 100 + activity_id`. The Leash event, whole, travels in
 * `unmapped.leash` (type, seq, hash, prev and every member), so nothing is lost in the
 * mapping. Tests validate every produced event against a vendored subset of the schema
 * (test/fixtures/ocsf).
 */

export const OCSF_VERSION = '1.8.0';
const PRODUCT = { name: 'Leash', vendor_name: 'Leash', uid: 'leash' } as const;

const SEVERITY = { informational: 1, low: 2, medium: 3, high: 4, critical: 5 } as const;

type Ev = Record<string, unknown>;
const s = (v: unknown): string | undefined => (typeof v === 'string' && v.length > 0 ? v : undefined);
const arr = (v: unknown): string[] => (Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : []);
const defined = (o: Record<string, unknown>): Record<string, unknown> => {
  for (const k of Object.keys(o)) if (o[k] === undefined) delete o[k];
  return o;
};

function base(classUid: number, categoryUid: number, activityId: number, record: AuditRecord, extra: Record<string, unknown>): Record<string, unknown> {
  return defined({
    class_uid: classUid,
    category_uid: categoryUid,
    activity_id: activityId,
    type_uid: classUid * 100 + activityId,
    time: record.ts,
    severity_id: SEVERITY.informational,
    metadata: { version: OCSF_VERSION, product: { ...PRODUCT }, uid: `leash-audit-${record.seq}`, sequence: record.seq, log_name: 'leash-audit', event_code: record.type },
    ...extra,
    unmapped: { leash: { type: record.type, seq: record.seq, prev: record.prevHash, hash: record.hash, ...record.event } },
  });
}

const ANOMALIES: Readonly<Record<string, { severity: number; title: string }>> = {
  'token.shared': { severity: SEVERITY.high, title: 'Shared Leash credential: presented from a second source' },
  'token.used_after_revocation': { severity: SEVERITY.high, title: 'Leash credential used after its revocation' },
  'token.used_outside_task': { severity: SEVERITY.medium, title: 'Leash credential used outside its task' },
  'token.audience_mismatch': { severity: SEVERITY.medium, title: 'Leash credential presented to a server it was not issued for' },
  'usage.route_drift': { severity: SEVERITY.medium, title: "Leash credential used at a route outside its plugin's history" },
  'task.budget_exceeded': { severity: SEVERITY.medium, title: "A task's call or byte budget ran out" },
};

/** Entity Management activity per event type: what happened to which Leash entity. */
const ENTITY: Readonly<Record<string, { activity: number; entity: string; id: (e: Ev) => string | undefined; failure?: boolean }>> = {
  'task.opened': { activity: 1, entity: 'task', id: (e) => s(e.task) },
  'task.ended': { activity: 4, entity: 'task', id: (e) => s(e.task) },
  'token.revoked': { activity: 9, entity: 'credentials', id: (e) => (s(e.scope) && s(e.id) ? `${s(e.scope)}:${s(e.id)}` : undefined) },
  'plugin.suspended': { activity: 12, entity: 'plugin', id: (e) => s(e.plugin) },
  'plugin.resumed': { activity: 13, entity: 'plugin', id: (e) => s(e.plugin) },
  'policy.loaded': { activity: 3, entity: 'policy', id: (e) => s(e.digest) },
  'policy.reload_failed': { activity: 3, entity: 'policy', id: (e) => s(e.digest), failure: true },
  'policy.revoked_on_reload': { activity: 9, entity: 'policy', id: (e) => s(e.digest) },
  'key.created': { activity: 1, entity: 'signing key', id: (e) => s(e.kid) },
  'key.promoted': { activity: 10, entity: 'signing key', id: (e) => s(e.kid) },
  'key.retired': { activity: 11, entity: 'signing key', id: (e) => s(e.kid) },
  'key.removed': { activity: 4, entity: 'signing key', id: (e) => s(e.kid) },
  'key.revoked': { activity: 9, entity: 'signing key', id: (e) => s(e.kid) },
  'key.rotation_failed': { activity: 3, entity: 'signing key', id: (e) => s(e.kid), failure: true },
  'admin.denied': { activity: 2, entity: 'admin route', id: (e) => s(e.route), failure: true },
  'approval.requested': { activity: 1, entity: 'approval', id: (e) => s(e.approval) },
  'approval.notify_failed': { activity: 99, entity: 'approval', id: (e) => s(e.approval), failure: true },
  'aws.sessions_denied': { activity: 9, entity: 'aws role sessions', id: (e) => s(e.role_arn) },
  'aws.deny_policy_updated': { activity: 3, entity: 'aws role policy', id: (e) => s(e.role_arn) },
  'aws.deny_policy_failed': { activity: 3, entity: 'aws role policy', id: (e) => s(e.role_arn), failure: true },
  'aws.deny_policy_overflow': { activity: 3, entity: 'aws role policy', id: (e) => s(e.role_arn) },
  'vault.lease_revoked': { activity: 9, entity: 'vault lease', id: (e) => s(e.lease_id) ?? s(e.jti) },
  'vault.lease_revoke_failed': { activity: 9, entity: 'vault lease', id: (e) => s(e.lease_id) ?? s(e.jti), failure: true },
};

function status(ok: boolean, detail?: string): Record<string, unknown> {
  return defined({ status_id: ok ? 1 : 2, status: ok ? 'Success' : 'Failure', status_detail: detail });
}

function plugin(e: Ev): Record<string, unknown> {
  const id = s(e.plugin) ?? s(e.client_id);
  // A plugin is a non-human identity: OCSF user type Service.
  return id ? { uid: id, name: id, type_id: 4, type: 'Service' } : { name: 'unknown', type_id: 0, type: 'Unknown' };
}

function actorOf(e: Ev): Record<string, unknown> | undefined {
  const a = s(e.actor) ?? s(e.approver);
  return a ? { user: { uid: a, name: a } } : undefined;
}

/** One audit record as an OCSF event. */
export function auditToOcsf(record: AuditRecord): Record<string, unknown> {
  const e = record.event as Ev;
  const t = record.type;
  if (t === 'exchange.issued' || t === 'exchange.denied' || t === 'exchange.abandoned' || t === 'approval.approved' || t === 'approval.denied') {
    const ok = t === 'exchange.issued' || t === 'approval.approved';
    return base(3003, 3, 1, record, {
      severity_id: ok ? SEVERITY.informational : SEVERITY.low,
      user: plugin(e),
      privileges: arr(e.scopes),
      session: defined({ uid: s(e.jti), issuer: 'leash' }),
      dst_endpoint: s(e.audience) ? { svc_name: s(e.audience) } : undefined,
      actor: actorOf(e),
      ...status(ok, s(e.reason) ?? (t.startsWith('approval') ? t : undefined)),
      message: `${t} ${s(e.plugin) ?? s(e.client_id) ?? ''} ${s(e.audience) ?? ''}`.trim(),
    });
  }
  if (t === 'token.first_use') {
    return apiActivity(
      record.ts,
      {
        method: s(e.method) ?? 'OTHER',
        route: s(e.route) ?? '',
        plugin: s(e.plugin),
        jti: s(e.jti),
        task: s(e.task),
        server: s(e.server),
        audience: s(e.audience),
        source: s(e.source),
        outcome: s(e.outcome) ?? 'ok',
        status: undefined,
        calls: 1,
        bytes: undefined,
        durationMs: undefined,
      },
      record,
    );
  }
  const anomaly = ANOMALIES[t];
  if (anomaly) {
    return base(2004, 2, 1, record, {
      severity_id: anomaly.severity,
      is_alert: true,
      finding_info: defined({ uid: `leash-${t}-${record.seq}`, title: anomaly.title, types: [t], analytic: { type_id: 1, type: 'Rule', name: t, uid: t } }),
      resources: [
        ...(s(e.jti) ? [{ uid: s(e.jti), type: 'Leash credential' }] : []),
        ...(s(e.plugin) ? [{ name: s(e.plugin), type: 'Leash plugin' }] : []),
        ...(s(e.task) ? [{ uid: s(e.task), type: 'Leash task' }] : []),
      ],
      status_id: 1,
      status: 'New',
      message: anomaly.title,
    });
  }
  const m = ENTITY[t] ?? { activity: 99, entity: t.split('.')[0] ?? 'leash', id: () => undefined };
  const uid = m.id(e);
  return base(3004, 3, m.activity, record, {
    entity: defined({ type: `Leash ${m.entity}`, type_id: 99, uid, name: uid === undefined ? m.entity : undefined }),
    actor: actorOf(e),
    ...status(!m.failure, s(e.reason) ?? s(e.error)),
    message: t,
  });
}

export interface UsageFacts {
  readonly method: string;
  readonly route: string;
  readonly plugin: string | undefined;
  readonly jti: string | undefined;
  readonly task: string | undefined;
  readonly server: string | undefined;
  readonly audience: string | undefined;
  readonly source: string | undefined;
  readonly outcome: string;
  readonly status: number | undefined;
  readonly calls: number;
  readonly bytes: number | undefined;
  readonly durationMs: number | undefined;
}

const IP = /^(\d{1,3}(\.\d{1,3}){3}|[0-9a-fA-F:]+)$/;
const ACTIVITY: Readonly<Record<string, number>> = { POST: 1, GET: 2, HEAD: 2, INTROSPECT: 2, PUT: 3, PATCH: 3, DELETE: 4 };

/** A use of a credential (a usage record, or `token.first_use`) as OCSF API Activity. */
export function apiActivity(at: number, u: UsageFacts, record?: AuditRecord): Record<string, unknown> {
  const activity = ACTIVITY[u.method.toUpperCase()] ?? 99;
  const extra = {
    severity_id: u.outcome === 'ok' ? SEVERITY.informational : SEVERITY.low,
    actor: defined({ user: u.plugin ? { uid: u.plugin, name: u.plugin, type_id: 4, type: 'Service' } : { name: 'unknown' }, session: u.jti ? { uid: u.jti } : undefined }),
    api: defined({ operation: `${u.method} ${u.route}`, service: u.server ? { name: u.server } : undefined }),
    src_endpoint: u.source && IP.test(u.source) ? { ip: u.source } : { name: u.source ?? u.plugin ?? 'unknown' },
    dst_endpoint: u.audience ? { svc_name: u.audience } : undefined,
    http_response: u.status !== undefined ? defined({ code: u.status, length: u.bytes }) : undefined,
    resources: [{ name: u.route, type: 'route' }],
    count: u.calls,
    duration: u.durationMs,
    ...status(u.outcome === 'ok', u.outcome === 'ok' ? undefined : u.outcome),
    message: `${u.method} ${u.route}${u.server ? ` at ${u.server}` : ''}`,
  };
  if (record) return base(6003, 6, activity, record, extra);
  return defined({
    class_uid: 6003,
    category_uid: 6,
    activity_id: activity,
    type_uid: 6003 * 100 + activity,
    time: at,
    metadata: { version: OCSF_VERSION, product: { ...PRODUCT }, log_name: 'leash-usage' },
    ...extra,
    unmapped: { leash: defined({ type: 'usage', task: u.task, jti: u.jti, plugin: u.plugin, server: u.server, outcome: u.outcome }) },
  });
}
