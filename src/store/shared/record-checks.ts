import type { ApprovalRecord, ApprovalState, IssuedToken, LeaseRecord, Revocation, RevocationScope, StateChange, Suspension, Task } from '../records.js';

/*
 * Argument checks of the Store roles, applied once for every backend by CheckedStore
 * (checked-store.ts). Records come from Leash code, never straight from a request, so a
 * bad one is a programming error: TypeError, never a LeashError (a Redis server refusing
 * a NaN must not read as an outage, a SQLite constraint must not read as a duplicate id).
 */

export const REVOCATION_SCOPES: readonly RevocationScope[] = ['token', 'task', 'plugin', 'key'];

function text(op: string, name: string, v: unknown, allowEmpty = false): void {
  if (typeof v !== 'string' || (!allowEmpty && v.length === 0)) throw new TypeError(`${op}: ${name} must be a ${allowEmpty ? '' : 'non-empty '}string`);
}

function ms(op: string, name: string, v: unknown): void {
  if (!Number.isSafeInteger(v)) throw new TypeError(`${op}: ${name} must be an integer number of milliseconds`);
}

export function checkRevocation(r: Omit<Revocation, 'seq'>): void {
  const op = 'addRevocation';
  if (typeof r !== 'object' || r === null) throw new TypeError(`${op}: a revocation record is required`);
  if (!REVOCATION_SCOPES.includes(r.scope)) throw new TypeError(`${op}: scope must be one of ${REVOCATION_SCOPES.join(', ')}`);
  text(op, 'id', r.id);
  ms(op, 'issuedBefore', r.issuedBefore);
  ms(op, 'revokedAt', r.revokedAt);
  ms(op, 'keepUntil', r.keepUntil);
  text(op, 'reason', r.reason, true);
  text(op, 'actor', r.actor);
  if (r.audiences !== undefined) {
    textList(op, 'audiences', r.audiences);
    if (r.audiences.some((a) => a.length === 0)) throw new TypeError(`${op}: audiences must be non-empty strings`);
  }
}

export function checkSince(cursor: number, limit: number, now: number): void {
  if (!Number.isSafeInteger(cursor) || cursor < 0) throw new TypeError('revocationsSince: cursor must be a non-negative integer');
  if (!Number.isSafeInteger(limit) || limit < 1) throw new TypeError('revocationsSince: limit must be a positive integer');
  ms('revocationsSince', 'now', now);
}

export function checkSuspension(s: Suspension): void {
  const op = 'suspendPlugin';
  if (typeof s !== 'object' || s === null) throw new TypeError(`${op}: a suspension record is required`);
  text(op, 'plugin', s.plugin);
  ms(op, 'since', s.since);
  text(op, 'actor', s.actor);
  text(op, 'reason', s.reason, true);
}

export function checkPlugin(op: string, plugin: string): void {
  text(op, 'plugin', plugin);
}

export function checkLimit(op: string, limit: number): void {
  if (!Number.isSafeInteger(limit) || limit < 1) throw new TypeError(`${op}: limit must be a positive integer`);
}

export function checkNow(op: string, now: number): void {
  ms(op, 'now', now);
}

/** Returns the window's start (ms) after checking the arguments. */
export function checkWindow(key: string, windowMs: number, now: number, by: number): number {
  const op = 'incrementWindow';
  text(op, 'key', key);
  if (!Number.isSafeInteger(windowMs) || windowMs < 1) throw new TypeError(`${op}: windowMs must be a positive integer`);
  ms(op, 'now', now);
  if (!Number.isSafeInteger(by) || by < 0) throw new TypeError(`${op}: by must be a non-negative integer`);
  return windowStart(windowMs, now);
}

/** The start (ms) of the fixed window of `windowMs` containing `now`. */
export function windowStart(windowMs: number, now: number): number {
  return now - (((now % windowMs) + windowMs) % windowMs);
}

/** A change as published: a plain object with only the fields of the contract. */
export function revocationChange(r: Revocation): StateChange {
  return { type: 'revocation', revocation: r };
}

const APPROVAL_STATES: readonly ApprovalState[] = ['pending', 'approved', 'denied', 'used'];

function optionalText(op: string, name: string, v: unknown): void {
  if (v !== undefined) text(op, name, v, true);
}

function optionalMs(op: string, name: string, v: unknown): void {
  if (v !== undefined) ms(op, name, v);
}

function textList(op: string, name: string, v: unknown): void {
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) throw new TypeError(`${op}: ${name} must be an array of strings`);
}

export function checkApproval(a: ApprovalRecord): void {
  const op = 'createApproval';
  if (typeof a !== 'object' || a === null) throw new TypeError(`${op}: an approval record is required`);
  text(op, 'id', a.id);
  text(op, 'requestHash', a.requestHash);
  text(op, 'plugin', a.plugin);
  text(op, 'owner', a.owner, true);
  optionalText(op, 'task', a.task);
  text(op, 'audience', a.audience);
  textList(op, 'scopes', a.scopes);
  ms(op, 'ttl', a.ttl);
  text(op, 'kind', a.kind);
  text(op, 'effect', a.effect, true);
  text(op, 'risk', a.risk, true);
  optionalText(op, 'justification', a.justification);
  if (a.chain !== undefined) textList(op, 'chain', a.chain);
  text(op, 'cause', a.cause);
  ms(op, 'requestedAt', a.requestedAt);
  ms(op, 'expiresAt', a.expiresAt);
  if (!APPROVAL_STATES.includes(a.state)) throw new TypeError(`${op}: state must be one of ${APPROVAL_STATES.join(', ')}`);
  optionalMs(op, 'decidedAt', a.decidedAt);
  optionalText(op, 'decidedBy', a.decidedBy);
  optionalText(op, 'decisionReason', a.decisionReason);
  optionalMs(op, 'redeemBy', a.redeemBy);
  optionalMs(op, 'usedAt', a.usedAt);
  optionalMs(op, 'lastPollAt', a.lastPollAt);
}

export function checkDecision(d: { readonly state: string; readonly by: string; readonly reason: string | undefined; readonly at: number; readonly redeemBy: number | undefined }): void {
  const op = 'decideApproval';
  if (typeof d !== 'object' || d === null) throw new TypeError(`${op}: a decision is required`);
  if (d.state !== 'approved' && d.state !== 'denied') throw new TypeError(`${op}: state must be approved or denied`);
  text(op, 'by', d.by);
  optionalText(op, 'reason', d.reason);
  ms(op, 'at', d.at);
  optionalMs(op, 'redeemBy', d.redeemBy);
}

export function checkOpenApproval(a: ApprovalRecord, o: { readonly dedupeKey: string; readonly maxPerPlugin: number; readonly maxPerTask: number }): void {
  checkApproval(a);
  const op = 'openApproval';
  if (a.state !== 'pending') throw new TypeError(`${op}: only a pending approval can be opened`);
  if (typeof o !== 'object' || o === null) throw new TypeError(`${op}: options are required`);
  text(op, 'dedupeKey', o.dedupeKey);
  checkLimit(op, o.maxPerPlugin);
  checkLimit(op, o.maxPerTask);
}

export function checkApprovalFilter(f: { readonly state?: ApprovalState; readonly now: number; readonly limit: number }): void {
  const op = 'listApprovals';
  if (typeof f !== 'object' || f === null) throw new TypeError(`${op}: a filter is required`);
  if (f.state !== undefined && !APPROVAL_STATES.includes(f.state)) throw new TypeError(`${op}: state must be one of ${APPROVAL_STATES.join(', ')}`);
  ms(op, 'now', f.now);
  checkLimit(op, f.limit);
}

export function checkPoll(id: string, at: number, minIntervalMs: number): void {
  const op = 'recordApprovalPoll';
  text(op, 'id', id);
  ms(op, 'at', at);
  if (!Number.isSafeInteger(minIntervalMs) || minIntervalMs < 0) throw new TypeError(`${op}: minIntervalMs must be a non-negative integer`);
}

export function checkLease(l: LeaseRecord): void {
  const op = 'recordLease';
  if (typeof l !== 'object' || l === null) throw new TypeError(`${op}: a lease record is required`);
  text(op, 'jti', l.jti);
  text(op, 'leaseId', l.leaseId);
  text(op, 'plugin', l.plugin);
  optionalText(op, 'task', l.task);
  ms(op, 'expiresAt', l.expiresAt);
  optionalMs(op, 'revokedAt', l.revokedAt);
}

export function checkJtis(op: string, jtis: readonly string[]): void {
  if (!Array.isArray(jtis) || !jtis.every((j) => typeof j === 'string')) throw new TypeError(`${op}: jtis must be an array of strings`);
}

export function checkId(op: string, name: string, id: string): void {
  text(op, name, id);
}

export function checkAt(op: string, at: number): void {
  ms(op, 'at', at);
}

/** A finite number of milliseconds (task and token times are computed, not always whole). */
function finite(op: string, name: string, v: unknown): void {
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new TypeError(`${op}: ${name} must be a finite number of milliseconds`);
}

function optionalFinite(op: string, name: string, v: unknown): void {
  if (v !== undefined) finite(op, name, v);
}

function plainObject(op: string, name: string, v: unknown): void {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new TypeError(`${op}: ${name} must be an object`);
}

export function checkTask(t: Task): void {
  const op = 'createTask';
  if (typeof t !== 'object' || t === null) throw new TypeError(`${op}: a task record is required`);
  text(op, 'id', t.id);
  textList(op, 'plugins', t.plugins);
  plainObject(op, 'attributes', t.attributes);
  if (!Object.values(t.attributes).every((v) => typeof v === 'string')) throw new TypeError(`${op}: attributes must have string values`);
  finite(op, 'createdAt', t.createdAt);
  finite(op, 'expiresAt', t.expiresAt);
  text(op, 'createdBy', t.createdBy);
  if (t.state !== 'active' && t.state !== 'ended') throw new TypeError(`${op}: state must be active or ended`);
  optionalFinite(op, 'endedAt', t.endedAt);
  optionalText(op, 'endedBy', t.endedBy);
  if (t.budgets !== undefined) plainObject(op, 'budgets', t.budgets);
}

export function checkEndTask(id: string, at: number, by: string): void {
  const op = 'endTask';
  text(op, 'id', id, true);
  finite(op, 'at', at);
  text(op, 'by', by);
}

export function checkIssued(t: IssuedToken): void {
  const op = 'recordIssued';
  if (typeof t !== 'object' || t === null) throw new TypeError(`${op}: a token record is required`);
  text(op, 'jti', t.jti);
  text(op, 'plugin', t.plugin);
  optionalText(op, 'task', t.task);
  text(op, 'audience', t.audience);
  textList(op, 'scopes', t.scopes);
  text(op, 'kind', t.kind);
  optionalText(op, 'kid', t.kid);
  finite(op, 'issuedAt', t.issuedAt);
  finite(op, 'expiresAt', t.expiresAt);
  optionalText(op, 'jkt', t.jkt);
}

/** A lookup key: any string (an unknown or empty one finds nothing), never a coerced object. */
export function checkLookup(op: string, name: string, v: string): void {
  text(op, name, v, true);
}

export function checkAppend(type: string, event: Record<string, unknown>, ts: number): void {
  if (typeof type !== 'string' || type.length === 0) throw new TypeError('append: type must be a non-empty string');
  if (typeof event !== 'object' || event === null) throw new TypeError('append: event must be an object');
  if (!Number.isSafeInteger(ts)) throw new TypeError('append: ts must be an integer number of milliseconds');
}

export function checkRead(fromSeq: number, limit: number): void {
  if (!Number.isSafeInteger(fromSeq)) throw new TypeError('read: fromSeq must be an integer');
  if (!Number.isSafeInteger(limit) || limit < 1) throw new TypeError('read: limit must be a positive integer');
}

export function checkRemember(key: string, expiresAt: number): void {
  if (typeof key !== 'string' || key.length === 0) throw new TypeError('remember: key must be a non-empty string');
  if (!Number.isFinite(expiresAt)) throw new TypeError('remember: expiresAt must be a number of milliseconds');
}

export function checkSeen(key: string): void {
  if (typeof key !== 'string' || key.length === 0) throw new TypeError('seen: key must be a non-empty string');
}

export function checkRollup(since: number, until: number): void {
  if (!Number.isSafeInteger(since) || !Number.isSafeInteger(until)) throw new TypeError('decisionRollup: since and until must be integers (ms)');
}

export function checkAwsDeny(roleArn: string, expected: string | undefined, next: string | undefined): void {
  checkId('casAwsDeny', 'roleArn', roleArn);
  if (expected !== undefined && (typeof expected !== 'string' || expected.length === 0)) throw new TypeError('casAwsDeny: expected must be a non-empty string or undefined');
  if (next !== undefined && (typeof next !== 'string' || next.length === 0)) throw new TypeError('casAwsDeny: next must be a non-empty string or undefined');
}

export function checkListener(listener: unknown): void {
  if (typeof listener !== 'function') throw new TypeError('subscribe: listener must be a function');
}

export function checkAcceptReset(by: string, at: number): void {
  text('acceptReset', 'by', by);
  ms('acceptReset', 'at', at);
}
