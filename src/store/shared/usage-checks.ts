import { USAGE_OUTCOMES, type ChargeLimits, type CredentialLink, type DownstreamEvent, type TaskEventRef, type UsageBatch } from '../usage-store.js';

/*
 * Argument checks of the usage role, applied once for every backend by CheckedStore. Batches are built by Leash
 * code from validated reports, so a bad one is a programming error: TypeError.
 */

const OUTCOMES: ReadonlySet<string> = new Set(USAGE_OUTCOMES);
const KINDS: ReadonlySet<string> = new Set(['grant', 'route', 'scope']);

function str(op: string, name: string, v: unknown, allowEmpty = true): void {
  if (typeof v !== 'string' || (!allowEmpty && v.length === 0)) throw new TypeError(`${op}: ${name} must be a ${allowEmpty ? '' : 'non-empty '}string`);
}

function int(op: string, name: string, v: unknown): void {
  if (!Number.isSafeInteger(v) || (v as number) < 0) throw new TypeError(`${op}: ${name} must be a non-negative integer`);
}

function list(op: string, name: string, v: unknown): void {
  if (!Array.isArray(v)) throw new TypeError(`${op}: ${name} must be an array`);
}

export function checkUsageBatch(b: UsageBatch): void {
  const op = 'ingestUsage';
  if (typeof b !== 'object' || b === null) throw new TypeError(`${op}: a batch is required`);
  list(op, 'aggregates', b.aggregates);
  list(op, 'uses', b.uses);
  list(op, 'taskDeltas', b.taskDeltas);
  list(op, 'marks', b.marks);
  int(op, 'retentionMs', b.retentionMs);
  for (const a of b.aggregates) {
    int(op, 'minute', a.minute);
    if (a.minute % 60_000 !== 0) throw new TypeError(`${op}: minute must be the start of a minute`);
    for (const k of ['jti', 'plugin', 'task', 'method', 'route'] as const) str(op, k, a[k]);
    str(op, 'server', a.server, false);
    str(op, 'audience', a.audience, false);
    if (!OUTCOMES.has(a.outcome)) throw new TypeError(`${op}: outcome must be one of ${USAGE_OUTCOMES.join(', ')}`);
    for (const k of ['calls', 'errors', 'bytes', 'durationMs', 'maxDurationMs', 'firstAt', 'lastAt'] as const) int(op, k, a[k]);
  }
  for (const u of b.uses) {
    str(op, 'jti', u.jti, false);
    str(op, 'source', u.source);
    int(op, 'at', u.at);
    int(op, 'keepUntil', u.keepUntil);
  }
  for (const d of b.taskDeltas) {
    str(op, 'task', d.task, false);
    str(op, 'audience', d.audience, false);
    int(op, 'calls', d.calls);
    int(op, 'bytes', d.bytes);
    int(op, 'keepUntil', d.keepUntil);
  }
  for (const m of b.marks) {
    str(op, 'plugin', m.plugin, false);
    str(op, 'audience', m.audience, false);
    if (!KINDS.has(m.kind)) throw new TypeError(`${op}: kind must be grant, route or scope`);
    str(op, 'name', m.name);
    int(op, 'at', m.at);
    int(op, 'calls', m.calls);
  }
}

export function checkCharge(task: string, audience: string, calls: number, limits: ChargeLimits, keepUntil: number): void {
  const op = 'chargeTaskUsage';
  str(op, 'task', task, false);
  str(op, 'audience', audience, false);
  int(op, 'calls', calls);
  if (typeof limits !== 'object' || limits === null) throw new TypeError(`${op}: limits are required`);
  if (limits.totalCalls !== undefined) int(op, 'totalCalls', limits.totalCalls);
  if (limits.audienceCalls !== undefined) int(op, 'audienceCalls', limits.audienceCalls);
  int(op, 'keepUntil', keepUntil);
}

export function checkEvidenceFilter(f: { readonly plugin?: string; readonly now: number; readonly retentionMs: number }): void {
  const op = 'usageEvidence';
  if (typeof f !== 'object' || f === null) throw new TypeError(`${op}: a filter is required`);
  if (f.plugin !== undefined) str(op, 'plugin', f.plugin, false);
  int(op, 'now', f.now);
  int(op, 'retentionMs', f.retentionMs);
}

export function checkTaskEvents(refs: readonly TaskEventRef[], keepUntil: number): void {
  const op = 'indexTaskEvents';
  list(op, 'refs', refs);
  int(op, 'keepUntil', keepUntil);
  for (const r of refs) {
    str(op, 'task', r.task, false);
    int(op, 'seq', r.seq);
    int(op, 'ts', r.ts);
    str(op, 'type', r.type, false);
  }
}

export function checkDownstream(events: readonly DownstreamEvent[], keepUntil: number): void {
  const op = 'recordDownstream';
  list(op, 'events', events);
  int(op, 'keepUntil', keepUntil);
  for (const e of events) {
    str(op, 'id', e.id, false);
    if (e.source !== 'cloudtrail' && e.source !== 'vault') throw new TypeError(`${op}: source must be cloudtrail or vault`);
    int(op, 'at', e.at);
    for (const k of ['task', 'plugin', 'jti', 'action', 'target', 'principal', 'link', 'sourceAddress'] as const) str(op, k, e[k]);
    if (e.outcome !== 'success' && e.outcome !== 'failure') throw new TypeError(`${op}: outcome must be success or failure`);
  }
}

export function checkKey(op: string, name: string, v: string): void {
  str(op, name, v, false);
}

export function checkCount(op: string, name: string, v: number): void {
  if (!Number.isSafeInteger(v) || v < 1) throw new TypeError(`${op}: ${name} must be a positive integer`);
}

export function checkMs(op: string, name: string, v: number): void {
  int(op, name, v);
}

const LINK_KINDS: ReadonlySet<string> = new Set(['aws_access_key', 'vault_lease', 'vault_accessor']);

export function checkLinks(links: readonly CredentialLink[], keepUntil: number): void {
  const op = 'linkCredentials';
  list(op, 'links', links);
  int(op, 'keepUntil', keepUntil);
  for (const l of links) {
    if (!LINK_KINDS.has(l.kind)) throw new TypeError(`${op}: kind must be aws_access_key, vault_lease or vault_accessor`);
    str(op, 'id', l.id, false);
    str(op, 'jti', l.jti, false);
    str(op, 'plugin', l.plugin, false);
    str(op, 'task', l.task);
  }
}

export function checkLinkQuery(kind: string, ids: readonly string[]): void {
  const op = 'resolveCredentialLinks';
  if (!LINK_KINDS.has(kind)) throw new TypeError(`${op}: kind must be aws_access_key, vault_lease or vault_accessor`);
  list(op, 'ids', ids);
  for (const id of ids) str(op, 'id', id, false);
}
