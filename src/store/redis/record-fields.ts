import type { ApprovalRecord, ApprovalState, ApprovalToolCall, LeaseRecord } from '../records.js';

/*
 * How approvals and leases are laid out in Redis hashes (see the scripts in
 * redis-scripts.ts). The immutable part of a record is one JSON field; every field a
 * transition changes is its own hash field, so the Lua scripts never parse JSON.
 */

type ApprovalHead = Pick<ApprovalRecord, 'id' | 'requestHash' | 'plugin' | 'owner' | 'audience' | 'scopes' | 'ttl' | 'kind' | 'effect' | 'risk' | 'cause' | 'requestedAt' | 'expiresAt'> & {
  task: string | null;
  justification: string | null;
  chain: readonly string[] | null;
  toolCall?: ApprovalToolCall;
  onBehalfOf?: string;
  personMayDecide?: boolean;
};

const STATES: readonly ApprovalState[] = ['pending', 'approved', 'denied', 'used'];

/** When a record stops mattering: the last of expiry, decision, redemption deadline and use. */
export function approvalDropAt(a: ApprovalRecord, retentionMs: number): number {
  return Math.max(a.expiresAt, a.decidedAt ?? 0, a.redeemBy ?? 0, a.usedAt ?? 0) + retentionMs;
}

/** Field/value pairs for HSET; an undefined optional is left out (absent = undefined). */
export function approvalFields(a: ApprovalRecord): string[] {
  const head: ApprovalHead = {
    id: a.id,
    requestHash: a.requestHash,
    plugin: a.plugin,
    owner: a.owner,
    task: a.task ?? null,
    audience: a.audience,
    scopes: [...a.scopes],
    ttl: a.ttl,
    kind: a.kind,
    effect: a.effect,
    risk: a.risk,
    justification: a.justification ?? null,
    chain: a.chain === undefined ? null : [...a.chain],
    cause: a.cause,
    requestedAt: a.requestedAt,
    expiresAt: a.expiresAt,
    ...(a.toolCall !== undefined ? { toolCall: a.toolCall } : {}),
    ...(a.onBehalfOf !== undefined ? { onBehalfOf: a.onBehalfOf } : {}),
    ...(a.personMayDecide !== undefined ? { personMayDecide: a.personMayDecide } : {}),
  };
  const f = ['d', JSON.stringify(head), 'st', a.state, 'rq', String(a.requestedAt), 'exp', String(a.expiresAt)];
  const opt = (name: string, v: string | number | undefined) => {
    if (v !== undefined) f.push(name, String(v));
  };
  opt('dAt', a.decidedAt);
  opt('dBy', a.decidedBy);
  opt('dR', a.decisionReason);
  opt('rb', a.redeemBy);
  opt('u', a.usedAt);
  opt('p', a.lastPollAt);
  return f;
}

/** From HGETALL (an object from ioredis, or a flat array from a script); undefined when absent or malformed. */
export function fromApprovalHash(reply: unknown): ApprovalRecord | undefined {
  let h: Record<string, string>;
  if (Array.isArray(reply)) {
    h = {};
    for (let i = 0; i + 1 < reply.length; i += 2) h[String(reply[i])] = String(reply[i + 1]);
  } else if (reply !== null && typeof reply === 'object') {
    h = reply as Record<string, string>;
  } else {
    return undefined;
  }
  const st = h['st'] as ApprovalState | undefined;
  if (typeof h['d'] !== 'string' || st === undefined || !STATES.includes(st)) return undefined;
  const d = JSON.parse(h['d']) as ApprovalHead;
  const num = (k: string) => (h[k] === undefined ? undefined : Number(h[k]));
  return {
    id: d.id,
    requestHash: d.requestHash,
    plugin: d.plugin,
    owner: d.owner,
    task: d.task ?? undefined,
    audience: d.audience,
    scopes: d.scopes,
    ttl: d.ttl,
    kind: d.kind,
    effect: d.effect,
    risk: d.risk,
    justification: d.justification ?? undefined,
    chain: d.chain ?? undefined,
    ...(d.toolCall !== undefined ? { toolCall: d.toolCall } : {}),
    ...(d.onBehalfOf !== undefined ? { onBehalfOf: d.onBehalfOf } : {}),
    ...(d.personMayDecide !== undefined ? { personMayDecide: d.personMayDecide } : {}),
    cause: d.cause,
    requestedAt: d.requestedAt,
    expiresAt: d.expiresAt,
    state: st,
    decidedAt: num('dAt'),
    decidedBy: h['dBy'],
    decisionReason: h['dR'],
    redeemBy: num('rb'),
    usedAt: num('u'),
    lastPollAt: num('p'),
  };
}

type LeaseHead = { jti: string; leaseId: string; plugin: string; task: string | null; expiresAt: number };

export function leaseHead(l: LeaseRecord): string {
  const head: LeaseHead = { jti: l.jti, leaseId: l.leaseId, plugin: l.plugin, task: l.task ?? null, expiresAt: l.expiresAt };
  return JSON.stringify(head);
}

/** From HMGET d r; undefined when the record is gone. */
export function fromLeaseFields(reply: unknown): LeaseRecord | undefined {
  if (!Array.isArray(reply)) return undefined;
  const [d, r] = reply as Array<string | null>;
  if (typeof d !== 'string') return undefined;
  const h = JSON.parse(d) as LeaseHead;
  return { jti: h.jti, leaseId: h.leaseId, plugin: h.plugin, task: h.task ?? undefined, expiresAt: h.expiresAt, revokedAt: typeof r === 'string' ? Number(r) : undefined };
}

/** SQLite's order for lease lists: by expiry, then jti. */
export function byExpiryThenJti(a: LeaseRecord, b: LeaseRecord): number {
  return a.expiresAt - b.expiresAt || (a.jti < b.jti ? -1 : a.jti > b.jti ? 1 : 0);
}
