import type { Revocation, RevocationScope, StateChange, Suspension } from '../records.js';

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
