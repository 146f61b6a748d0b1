import type { ApprovalRecord, ApprovalState, LeaseRecord, Revocation, RevocationScope, StateChange, Suspension } from '../records.js';

/*
 * Argument checks shared by every Store backend (SQLite and Redis import them). Records
 * come from Leash code, never straight from a request, so a bad one is a programming
 * error: TypeError, never a LeashError.
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
