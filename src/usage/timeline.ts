import type { AuditRecord, Task } from '../store/records.js';
import type { AuditLog, TokenIndex } from '../store/store.js';
import type { UsageStore } from '../store/usage-store.js';

/** What kind of thing happened, for the picture's shapes and a reader's filter. */
export type TimelineKind = 'task' | 'exchange' | 'denied' | 'approval' | 'delegation' | 'use' | 'refusal' | 'downstream' | 'revocation' | 'anomaly' | 'budget';

export interface TimelineEntry {
  /** ms since the epoch */
  readonly at: number;
  readonly kind: TimelineKind;
  /** The plugin it concerns, or `task` for the task itself. */
  readonly lane: string;
  /** The audit event type, `usage`, or `cloudtrail` / `vault`. */
  readonly type: string;
  /** Who acted: a plugin, an admin, a resource server, an AWS principal. */
  readonly who: string;
  /** One line a responder reads. */
  readonly what: string;
  /** The audit record, when it is one (verify it against the chain). */
  readonly seq?: number;
  readonly detail: Readonly<Record<string, unknown>>;
}

export interface Timeline {
  readonly task: Task;
  /** `task` first, then one lane per plugin in order of first appearance. */
  readonly lanes: readonly string[];
  readonly entries: readonly TimelineEntry[];
  /** Some source had more than the page holds (`limit` per source). */
  readonly truncated: boolean;
}

export interface TimelineDeps {
  readonly store: Pick<UsageStore, 'listTaskEvents' | 'listTaskUsage' | 'listTaskDownstream'> & Pick<AuditLog, 'read'> & Pick<TokenIndex, 'listIssuedForTask'>;
}

const KIND_OF: Readonly<Record<string, TimelineKind>> = {
  'task.opened': 'task',
  'task.ended': 'task',
  'exchange.issued': 'exchange',
  'exchange.denied': 'denied',
  // Nothing was issued: on the timeline it reads as a refusal.
  'exchange.abandoned': 'denied',
  'approval.requested': 'approval',
  'approval.approved': 'approval',
  'approval.denied': 'approval',
  'approval.notify_failed': 'approval',
  'token.revoked': 'revocation',
  'policy.revoked_on_reload': 'revocation',
  'vault.lease_revoked': 'revocation',
  'vault.lease_revoke_failed': 'revocation',
  'token.first_use': 'use',
  'token.used_after_revocation': 'anomaly',
  'token.used_outside_task': 'anomaly',
  'token.audience_mismatch': 'anomaly',
  'token.shared': 'anomaly',
  'usage.route_drift': 'anomaly',
  'task.budget_exceeded': 'budget',
};

const str = (v: unknown): string | undefined => (typeof v === 'string' && v.length > 0 ? v : undefined);
const list = (v: unknown): string => (Array.isArray(v) ? v.join(' ') : '');

/**
 * Every exchange (issued and denied), approval, delegation hop, use (aggregated per
 * jti/route/minute), downstream event, revocation and anomaly of one task, in time order,
 * from the task's indexed audit records, its usage aggregates and its downstream events.
 */
export async function buildTimeline(deps: TimelineDeps, task: Task, limit = 5000): Promise<Timeline> {
  const { store } = deps;
  const refs = await store.listTaskEvents(task.id, limit + 1);
  const usage = await store.listTaskUsage(task.id, limit + 1);
  const downstream = await store.listTaskDownstream(task.id, limit + 1);
  const truncated = refs.length > limit || usage.length > limit || downstream.length > limit;
  const tokens = new Map((await store.listIssuedForTask(task.id)).map((t) => [t.jti, t]));
  const records = await readRecords(
    store,
    refs.slice(0, limit).map((r) => r.seq),
  );

  const entries: TimelineEntry[] = [];
  for (const r of records) {
    const e = r.event as Record<string, unknown>;
    const kind = e.chain !== undefined && r.type === 'exchange.issued' ? 'delegation' : (KIND_OF[r.type] ?? 'task');
    const jti = str(e.jti) ?? (e.scope === 'token' ? str(e.id) : undefined);
    const plugin = str(e.plugin) ?? (jti ? tokens.get(jti)?.plugin : undefined);
    // Usage events say when the call was made (`at`); the record's ts is when it was ingested.
    const at = typeof e.at === 'number' && Number.isFinite(e.at) && r.type !== 'task.opened' ? e.at : r.ts;
    entries.push({ at, kind, lane: plugin ?? 'task', type: r.type, who: str(e.actor) ?? str(e.approver) ?? str(e.server) ?? plugin ?? 'leash', what: describe(r.type, e), seq: r.seq, detail: e });
  }
  for (const u of usage.slice(0, limit)) {
    const refused = u.outcome !== 'ok';
    entries.push({
      at: u.firstAt,
      kind: refused ? 'refusal' : 'use',
      lane: u.plugin || 'task',
      type: 'usage',
      who: u.server,
      what: `${u.method} ${u.route} ×${u.calls}${refused ? ` refused (${u.outcome})` : ''}${u.errors > 0 && !refused ? `, ${u.errors} errors` : ''}, ${u.bytes} bytes at ${u.server}${u.jti ? ` with ${u.jti}` : ''}`,
      detail: { ...u },
    });
  }
  for (const d of downstream.slice(0, limit)) {
    entries.push({
      at: d.at,
      kind: 'downstream',
      lane: d.plugin || 'task',
      type: d.source,
      who: d.principal,
      what: `${d.source === 'cloudtrail' ? 'AWS' : 'Vault'} ${d.action}${d.target ? ` on ${d.target}` : ''} (${d.outcome}, linked by ${d.link})`,
      detail: { ...d },
    });
  }
  entries.sort((a, b) => a.at - b.at || (a.seq ?? Number.MAX_SAFE_INTEGER) - (b.seq ?? Number.MAX_SAFE_INTEGER));
  const lanes = ['task'];
  for (const p of task.plugins) if (!lanes.includes(p)) lanes.push(p);
  for (const e of entries) if (!lanes.includes(e.lane)) lanes.push(e.lane);
  return { task, lanes, entries, truncated };
}

/** Reads records by seq, contiguous runs in one read each. */
async function readRecords(store: Pick<AuditLog, 'read'>, seqs: readonly number[]): Promise<AuditRecord[]> {
  const out: AuditRecord[] = [];
  let i = 0;
  while (i < seqs.length) {
    let j = i;
    while (j + 1 < seqs.length && seqs[j + 1] === seqs[j]! + 1 && j - i < 499) j++;
    const run = await store.read(seqs[i]!, j - i + 1);
    out.push(...run.filter((r) => r.seq >= seqs[i]! && r.seq <= seqs[j]!));
    i = j + 1;
  }
  return out;
}

function describe(type: string, e: Record<string, unknown>): string {
  const aud = str(e.audience) ?? '';
  switch (type) {
    case 'task.opened':
      return `task opened for ${list(e.plugins)}${e.budgets ? ` with budgets ${JSON.stringify(e.budgets)}` : ''}`;
    case 'task.ended':
      return `task ${e.cause === 'expired' ? 'expired' : 'ended'}; its credentials revoked`;
    case 'exchange.issued':
      return `issued ${str(e.kind) ?? 'credential'} for ${aud} (${list(e.scopes)}) ${str(e.jti) ?? ''}${e.chain ? ` via ${list(e.chain)}` : ''}${e.approval ? ' (approved)' : ''}`.trim();
    case 'exchange.denied':
      return `denied ${aud} (${list(e.scopes)}): ${str(e.reason) ?? ''}`;
    case 'exchange.abandoned':
      return `not issued ${aud} (${list(e.scopes)}): the client left before the credential was made`;
    case 'approval.requested':
      return `approval requested for ${aud} (${list(e.scopes)})${str(e.justification) ? `: "${str(e.justification)}"` : ''}`;
    case 'approval.approved':
      return `approved by ${str(e.approver) ?? str(e.actor) ?? '?'}`;
    case 'approval.denied':
      return `approval denied by ${str(e.approver) ?? str(e.actor) ?? '?'}${str(e.reason) ? `: ${str(e.reason)}` : ''}`;
    case 'token.revoked':
      return `revoked ${str(e.scope) ?? ''} ${str(e.id) ?? ''}: ${str(e.reason) ?? ''}`;
    case 'token.first_use':
      return `first use of ${str(e.jti) ?? ''} at ${str(e.server) ?? ''} ${str(e.method) ?? ''} ${str(e.route) ?? ''}`;
    case 'token.shared':
      return `SHARED TOKEN ${str(e.jti) ?? ''}: new source ${str(e.source) ?? str(e.jkt) ?? ''} (${str(e.cause) ?? ''}); response ${str(e.response) ?? ''}`;
    case 'token.used_after_revocation':
      return `dead token ${str(e.jti) ?? ''} used after revocation at ${str(e.server) ?? ''}${e.refused ? ' (refused)' : ' (SERVED)'}`;
    case 'token.used_outside_task':
      return `token ${str(e.jti) ?? ''} used outside its task (${str(e.cause) ?? ''}) at ${str(e.server) ?? ''}`;
    case 'token.audience_mismatch':
      return `token ${str(e.jti) ?? ''} for ${aud} presented to ${str(e.server) ?? ''} (${str(e.server_audience) ?? ''})`;
    case 'usage.route_drift':
      return `route drift: ${str(e.method) ?? ''} ${str(e.route) ?? ''} never used by the plugin before`;
    case 'task.budget_exceeded':
      return `budget used up (${str(e.budget) ?? ''}, ${str(e.kind) ?? ''}: ${String(e.used)}/${String(e.limit)}); ${String(e.credentials_revoked)} credentials revoked`;
    default:
      return type;
  }
}

const iso = (ms: number) => new Date(ms).toISOString();

/** The text form (`leash task show`): one line per entry. */
export function timelineText(t: Timeline): string {
  const lines = [`task ${t.task.id} (${t.task.state}) opened ${iso(t.task.createdAt)} by ${t.task.createdBy}, expires ${iso(t.task.expiresAt)}; plugins ${t.task.plugins.join(', ')}`];
  const laneWidth = Math.max(4, ...t.lanes.map((l) => l.length));
  const kindWidth = Math.max(...t.entries.map((e) => e.kind.length), 4);
  for (const e of t.entries) lines.push(`${iso(e.at)}  ${e.lane.padEnd(laneWidth)}  ${e.kind.padEnd(kindWidth)}  ${e.what}  [${e.who}]${e.seq !== undefined ? ` #${e.seq}` : ''}`);
  if (t.truncated) lines.push('(truncated: more entries than one page holds)');
  return `${lines.join('\n')}\n`;
}

/** The JSON form (admin API). */
export function timelineJson(t: Timeline): Record<string, unknown> {
  return {
    task: {
      id: t.task.id,
      state: t.task.state,
      plugins: t.task.plugins,
      created_at: iso(t.task.createdAt),
      expires_at: iso(t.task.expiresAt),
      created_by: t.task.createdBy,
      ...(t.task.endedAt !== undefined ? { ended_at: iso(t.task.endedAt), ended_by: t.task.endedBy } : {}),
    },
    lanes: t.lanes,
    truncated: t.truncated,
    entries: t.entries.map((e) => ({ at: iso(e.at), kind: e.kind, lane: e.lane, type: e.type, who: e.who, what: e.what, ...(e.seq !== undefined ? { seq: e.seq } : {}), detail: e.detail })),
  };
}
