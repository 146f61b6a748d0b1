/**
 * What Leash wants one IAM role's `leash-revoked-sessions` inline policy to deny, and the
 * policy document it renders to. Pure: no IAM, no store (see session-denier.ts for those).
 *
 * AWS cannot invalidate one STS session, but it evaluates the role's policies on every
 * request, so a Deny on the session's own attributes cuts it off (IAM User Guide,
 * "Disabling permissions for temporary security credentials"). Every Leash session carries
 * the session tag `leash:task` and the source identity of its plugin (names.ts), so:
 *
 * - a task:    `aws:PrincipalTag/leash:task` equals the task (no time bound: no session of an
 *              ended task is ever issued again);
 * - a plugin:  `aws:SourceIdentity` equals the plugin and `aws:TokenIssueTime` is before the
 *              revocation (its sessions issued afterwards, after a resume, stay valid);
 * - a session: the plugin and the task and the time (AWS has no condition key naming one
 *              session, so revoking one covers that plugin's sessions in that task issued up
 *              to then);
 * - the role:  `aws:TokenIssueTime` before a cut-off, for every session of the role: the
 *              fallback when the entries would not fit the size budget.
 *
 * Each entry is dropped once every session it covers has expired (`until`), so the policy
 * stays small and disappears when nothing is left to deny.
 */

/** The inline policy Leash manages on each role it hands out. */
export const REVOKED_SESSIONS_POLICY_NAME = 'leash-revoked-sessions';

/**
 * AWS IAM quotas: the aggregate of all inline policies of a role cannot exceed 10,240
 * characters; whitespace is not counted (Leash renders compact JSON, so it has none).
 */
export const ROLE_INLINE_POLICY_MAX_CHARS = 10_240;

/** Sessions of the revoked plugin issued this soon after the revocation are denied too: covers clock skew to AWS. */
export const CUTOFF_MARGIN_MS = 1_000;

export type DenyEntry =
  /** `task`: the `leash:task` tag value. */
  | { readonly kind: 'task'; readonly task: string; readonly before: number; readonly until: number }
  /** `plugin`: the source identity. */
  | { readonly kind: 'plugin'; readonly plugin: string; readonly before: number; readonly until: number }
  | { readonly kind: 'session'; readonly plugin: string; readonly task: string; readonly before: number; readonly until: number };

/** One role's wanted deny state, as the store keeps it (JSON). */
export interface RoleDenyState {
  readonly v: 1;
  readonly roleArn: string;
  /** Every session of the role issued before `before` is denied, until `until` (the overflow fallback). */
  readonly roleCutoff: { readonly before: number; readonly until: number } | undefined;
  readonly entries: readonly DenyEntry[];
  /** Increases whenever what IAM must hold changes. */
  readonly rev: number;
  /** The `rev` IAM is known to hold (0: nothing applied yet). */
  readonly applied: number;
  /** When the oldest change not yet in IAM was made (ms), for the report; undefined when in step. */
  readonly pendingSince: number | undefined;
  /** Consecutive failed IAM updates, and when the next may be tried (backoff). */
  readonly failures: number;
  readonly retryAt: number;
  /** The last failure's code (ERR_*), never AWS's text. */
  readonly lastError: string | undefined;
  /** The replica writing IAM for this role right now, so writes are never reordered. */
  readonly lock: { readonly owner: string; readonly until: number } | undefined;
}

export function emptyState(roleArn: string): RoleDenyState {
  return { v: 1, roleArn, roleCutoff: undefined, entries: [], rev: 0, applied: 0, pendingSince: undefined, failures: 0, retryAt: 0, lastError: undefined, lock: undefined };
}

/** Round a cut-off up to a whole second, past the margin: AWS's TokenIssueTime is to the second. */
export function cutoffAfter(revokedAt: number): number {
  return Math.ceil((revokedAt + CUTOFF_MARGIN_MS) / 1000) * 1000;
}

function entryKey(e: DenyEntry): string {
  switch (e.kind) {
    case 'task':
      return `t\u0000${e.task}`;
    case 'plugin':
      return `p\u0000${e.plugin}`;
    case 'session':
      return `s\u0000${e.plugin}\u0000${e.task}`;
  }
}

function subsumed(e: DenyEntry, cutoff: RoleDenyState['roleCutoff']): boolean {
  return cutoff !== undefined && cutoff.before >= e.before && cutoff.until >= e.until;
}

function changed(state: RoleDenyState, next: Omit<RoleDenyState, 'rev' | 'pendingSince'>, now: number): RoleDenyState {
  return { ...next, rev: state.rev + 1, pendingSince: state.pendingSince ?? now };
}

/**
 * Adds entries. One entry per task, plugin or (plugin, task): a newer revocation of the same
 * one widens it (later cut-off, later expiry) rather than adding a statement. Entries the
 * role-wide cut-off already covers are not added.
 */
export function addEntries(state: RoleDenyState, entries: readonly DenyEntry[], now: number): RoleDenyState {
  const byKey = new Map(state.entries.map((e) => [entryKey(e), e] as const));
  let dirty = false;
  for (const e of entries) {
    if (!(e.until > now) || subsumed(e, state.roleCutoff)) continue;
    const key = entryKey(e);
    const prev = byKey.get(key);
    const merged: DenyEntry = prev ? { ...e, before: Math.max(prev.before, e.before), until: Math.max(prev.until, e.until) } : e;
    if (prev && prev.before === merged.before && prev.until === merged.until) continue;
    byKey.set(key, merged);
    dirty = true;
  }
  if (!dirty) return state;
  return changed(state, { ...state, entries: [...byKey.values()] }, now);
}

/** Sets the role-wide cut-off (or widens it); entries it covers are dropped. */
export function setRoleCutoff(state: RoleDenyState, before: number, until: number, now: number): RoleDenyState {
  const prev = state.roleCutoff;
  const cutoff = { before: Math.max(before, prev?.before ?? 0), until: Math.max(until, prev?.until ?? 0) };
  if (prev && prev.before === cutoff.before && prev.until === cutoff.until) return state;
  return changed(state, { ...state, roleCutoff: cutoff, entries: state.entries.filter((e) => !subsumed(e, cutoff)) }, now);
}

/** Drops what has expired: every session it covered is past its expiration. */
export function prune(state: RoleDenyState, now: number): RoleDenyState {
  const entries = state.entries.filter((e) => e.until > now);
  const roleCutoff = state.roleCutoff && state.roleCutoff.until > now ? state.roleCutoff : undefined;
  if (entries.length === state.entries.length && roleCutoff === state.roleCutoff) return state;
  return changed(state, { ...state, entries, roleCutoff }, now);
}

/** When the next entry expires (the policy must be rewritten then), or undefined. */
export function nextExpiry(state: RoleDenyState): number | undefined {
  const times = [...state.entries.map((e) => e.until), ...(state.roleCutoff ? [state.roleCutoff.until] : [])];
  return times.length === 0 ? undefined : Math.min(...times);
}

const iso = (ms: number) => new Date(ms).toISOString().replace('.000Z', 'Z');

const DENY = { Effect: 'Deny', Action: '*', Resource: '*' } as const;

/**
 * The policy document, or undefined when there is nothing to deny (the policy is deleted).
 * Deterministic: the same state always renders the same string. Tasks share one statement
 * (a list of values is an OR); plugins with the same cut-off share one too.
 */
export function renderPolicy(state: RoleDenyState): string | undefined {
  const statements: Record<string, unknown>[] = [];
  if (state.roleCutoff) {
    statements.push({ Sid: 'LeashDenyRoleSessionsIssuedBefore', ...DENY, Condition: { DateLessThan: { 'aws:TokenIssueTime': iso(state.roleCutoff.before) } } });
  }
  const tasks = state.entries
    .filter((e): e is Extract<DenyEntry, { kind: 'task' }> => e.kind === 'task')
    .map((e) => e.task)
    .sort();
  if (tasks.length > 0) {
    statements.push({ Sid: 'LeashDenyEndedTasks', ...DENY, Condition: { StringEquals: { 'aws:PrincipalTag/leash:task': tasks.length === 1 ? tasks[0] : tasks } } });
  }
  const plugins = new Map<number, string[]>();
  for (const e of state.entries) if (e.kind === 'plugin') plugins.set(e.before, [...(plugins.get(e.before) ?? []), e.plugin]);
  for (const before of [...plugins.keys()].sort((a, b) => a - b)) {
    const ids = plugins.get(before)!.sort();
    statements.push({ ...DENY, Condition: { StringEquals: { 'aws:SourceIdentity': ids.length === 1 ? ids[0] : ids }, DateLessThan: { 'aws:TokenIssueTime': iso(before) } } });
  }
  const sessions = state.entries
    .filter((e): e is Extract<DenyEntry, { kind: 'session' }> => e.kind === 'session')
    .sort((a, b) => (a.plugin === b.plugin ? (a.task < b.task ? -1 : a.task > b.task ? 1 : 0) : a.plugin < b.plugin ? -1 : 1));
  for (const e of sessions) {
    statements.push({ ...DENY, Condition: { StringEquals: { 'aws:SourceIdentity': e.plugin, 'aws:PrincipalTag/leash:task': e.task }, DateLessThan: { 'aws:TokenIssueTime': iso(e.before) } } });
  }
  if (statements.length === 0) return undefined;
  return JSON.stringify({ Version: '2012-10-17', Statement: statements });
}

/**
 * Keeps the rendered policy within `maxChars`. When the entries do not fit, they collapse into
 * the role-wide `aws:TokenIssueTime` cut-off at the latest of their cut-offs, kept until the
 * latest of their expiries: every session they covered is still denied, and so is every other
 * session of the role issued before it (the price of a bounded policy). `force` collapses
 * even when the size looks fine (IAM said LimitExceeded: other inline policies use the room).
 */
export function fitPolicy(state: RoleDenyState, maxChars: number, now: number, force = false): { state: RoleDenyState; collapsed: number } {
  const doc = renderPolicy(state);
  if (!force && (doc === undefined || doc.length <= maxChars)) return { state, collapsed: 0 };
  if (state.entries.length === 0) return { state, collapsed: 0 };
  const before = Math.max(...state.entries.map((e) => e.before));
  const until = Math.max(...state.entries.map((e) => e.until));
  const collapsed = state.entries.length;
  return { state: setRoleCutoff({ ...state }, before, until, now), collapsed };
}
