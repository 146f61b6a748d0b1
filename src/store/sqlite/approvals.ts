import type Database from 'better-sqlite3';
import type { ApprovalRecord, ApprovalState, ApprovalToolCall } from '../records.js';
import { APPROVAL_RETENTION_MS } from '../shared/retention.js';
import type { ApprovalStore, OpenApprovalOptions, OpenApprovalOutcome } from '../store.js';
import { isConstraintError, type SqliteHandle } from './handle.js';

/*
 * The approvals table of the SQLite store. Every transition is one UPDATE whose WHERE
 * clause is the precondition (state, expiry, poll interval), so two handles or processes
 * on the same file cannot both win: SQLite serialises writers, and the loser's UPDATE
 * matches no row. Creation, decision and redemption are fsynced: a redemption undone by a
 * crash could be redeemed again, a lost decision would be shown to its approver as never taken.
 */

type ApprovalRow = {
  id: string;
  request_hash: string;
  plugin: string;
  owner: string;
  task: string | null;
  audience: string;
  scopes: string;
  ttl: number;
  kind: string;
  effect: string;
  risk: string;
  justification: string | null;
  chain: string | null;
  cause: string;
  requested_at: number;
  expires_at: number;
  state: ApprovalState;
  decided_at: number | null;
  decided_by: string | null;
  decision_reason: string | null;
  redeem_by: number | null;
  used_at: number | null;
  last_poll_at: number | null;
  dedupe_key?: string | null;
  tool_call?: string | null;
  on_behalf_of?: string | null;
  person_may_decide?: number | null;
};

export type ApprovalDecision = {
  readonly state: 'approved' | 'denied';
  readonly by: string;
  readonly reason: string | undefined;
  readonly at: number;
  readonly redeemBy: number | undefined;
};

function prepareApprovalsImpl(db: Database.Database): ApprovalStatements {
  return {
    insert: db.prepare(
      `INSERT INTO approvals (id, request_hash, plugin, owner, task, audience, scopes, ttl, kind, effect, risk, justification, chain, cause,
         requested_at, expires_at, state, decided_at, decided_by, decision_reason, redeem_by, used_at, last_poll_at, dedupe_key, tool_call, on_behalf_of, person_may_decide)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ),
    // openApproval: the same request pending for the plugin (exact hash first), and the
    // pending counts; the partial indexes hold pending rows only, ranged by expiry.
    pendingSame: db.prepare(
      `SELECT * FROM approvals WHERE plugin = @plugin AND state = 'pending' AND expires_at > @now AND (request_hash = @hash OR dedupe_key = @key)
       ORDER BY request_hash = @hash DESC, requested_at DESC LIMIT 1`,
    ),
    pendingOfPlugin: db.prepare("SELECT count(*) AS n FROM approvals WHERE plugin = ? AND state = 'pending' AND expires_at > ?"),
    pendingOfTask: db.prepare("SELECT count(*) AS n FROM approvals WHERE task = ? AND state = 'pending' AND expires_at > ?"),
    get: db.prepare('SELECT * FROM approvals WHERE id = ?'),
    decide: db.prepare(
      `UPDATE approvals SET state = @state, decided_at = @at, decided_by = @by, decision_reason = @reason, redeem_by = @redeemBy
       WHERE id = @id AND state = 'pending' AND expires_at > @at RETURNING *`,
    ),
    // An approved record without redeemBy cannot be redeemed: fail closed.
    consume: db.prepare("UPDATE approvals SET state = 'used', used_at = @at WHERE id = @id AND state = 'approved' AND redeem_by IS NOT NULL AND @at <= redeem_by"),
    poll: db.prepare('UPDATE approvals SET last_poll_at = @at WHERE id = @id AND (last_poll_at IS NULL OR @at - last_poll_at >= @min)'),
    exists: db.prepare('SELECT 1 FROM approvals WHERE id = ?'),
    listAll: db.prepare('SELECT * FROM approvals ORDER BY requested_at DESC, id DESC LIMIT ?'),
    listState: db.prepare('SELECT * FROM approvals WHERE state = ? ORDER BY requested_at DESC, id DESC LIMIT ?'),
    listPending: db.prepare("SELECT * FROM approvals WHERE state = 'pending' AND expires_at > ? ORDER BY requested_at DESC, id DESC LIMIT ?"),
    purge: db.prepare('DELETE FROM approvals WHERE max(expires_at, coalesce(decided_at, 0), coalesce(redeem_by, 0), coalesce(used_at, 0)) <= ?'),
  };
}

// Named with the public Database.Statement type so the declaration emit can name it.
export type ApprovalStatements = Record<
  'insert' | 'get' | 'decide' | 'consume' | 'poll' | 'exists' | 'listAll' | 'listState' | 'listPending' | 'purge' | 'pendingSame' | 'pendingOfPlugin' | 'pendingOfTask',
  Database.Statement
>;

export function insertApproval(s: ApprovalStatements, a: ApprovalRecord, dedupeKey?: string): void {
  s.insert.run(
    a.id,
    a.requestHash,
    a.plugin,
    a.owner,
    a.task ?? null,
    a.audience,
    JSON.stringify(a.scopes),
    a.ttl,
    a.kind,
    a.effect,
    a.risk,
    a.justification ?? null,
    a.chain === undefined ? null : JSON.stringify(a.chain),
    a.cause,
    a.requestedAt,
    a.expiresAt,
    a.state,
    a.decidedAt ?? null,
    a.decidedBy ?? null,
    a.decisionReason ?? null,
    a.redeemBy ?? null,
    a.usedAt ?? null,
    a.lastPollAt ?? null,
    dedupeKey ?? null,
    a.toolCall === undefined ? null : JSON.stringify(a.toolCall),
    a.onBehalfOf ?? null,
    a.personMayDecide === undefined ? null : a.personMayDecide ? 1 : 0,
  );
}

/**
 * Runs inside one IMMEDIATE transaction (see SqliteApprovals.openApproval), so two handles or
 * processes on the file cannot both pass the limit check.
 */
export function openApprovalRow(s: ApprovalStatements, a: ApprovalRecord, o: OpenApprovalOptions): OpenApprovalOutcome {
  const now = a.requestedAt;
  const same = s.pendingSame.get({ plugin: a.plugin, now, hash: a.requestHash, key: o.dedupeKey }) as ApprovalRow | undefined;
  if (same) return { outcome: 'existing', approval: toApproval(same) };
  const ofPlugin = (s.pendingOfPlugin.get(a.plugin, now) as { n: number }).n;
  if (ofPlugin >= o.maxPerPlugin) return { outcome: 'limited', scope: 'plugin', pending: ofPlugin };
  if (a.task !== undefined) {
    const ofTask = (s.pendingOfTask.get(a.task, now) as { n: number }).n;
    if (ofTask >= o.maxPerTask) return { outcome: 'limited', scope: 'task', pending: ofTask };
  }
  insertApproval(s, a, o.dedupeKey);
  return { outcome: 'created' };
}

export function decideApprovalRow(s: ApprovalStatements, id: string, d: ApprovalDecision): ApprovalRecord | undefined {
  const row = s.decide.get({ id, state: d.state, at: d.at, by: d.by, reason: d.reason ?? null, redeemBy: d.redeemBy ?? null }) as ApprovalRow | undefined;
  return row && toApproval(row);
}

export function listApprovalRows(s: ApprovalStatements, f: { readonly state?: ApprovalState; readonly now: number; readonly limit: number }): ApprovalRecord[] {
  const rows = f.state === undefined ? s.listAll.all(f.limit) : f.state === 'pending' ? s.listPending.all(f.now, f.limit) : s.listState.all(f.state, f.limit);
  return (rows as ApprovalRow[]).map(toApproval);
}

export function toApproval(r: ApprovalRow): ApprovalRecord {
  return {
    id: r.id,
    requestHash: r.request_hash,
    plugin: r.plugin,
    owner: r.owner,
    task: r.task ?? undefined,
    audience: r.audience,
    scopes: JSON.parse(r.scopes) as string[],
    ttl: r.ttl,
    kind: r.kind,
    effect: r.effect,
    risk: r.risk,
    justification: r.justification ?? undefined,
    chain: r.chain === null ? undefined : (JSON.parse(r.chain) as string[]),
    cause: r.cause,
    requestedAt: r.requested_at,
    expiresAt: r.expires_at,
    state: r.state,
    decidedAt: r.decided_at ?? undefined,
    decidedBy: r.decided_by ?? undefined,
    decisionReason: r.decision_reason ?? undefined,
    redeemBy: r.redeem_by ?? undefined,
    usedAt: r.used_at ?? undefined,
    lastPollAt: r.last_poll_at ?? undefined,
    ...(r.tool_call ? { toolCall: JSON.parse(r.tool_call) as ApprovalToolCall } : {}),
    ...(r.on_behalf_of ? { onBehalfOf: r.on_behalf_of } : {}),
    ...(r.person_may_decide !== null && r.person_may_decide !== undefined ? { personMayDecide: r.person_may_decide === 1 } : {}),
  };
}

/** Prepared once per handle; statements are typed by their bind parameters. */
export const prepareApprovals: (db: Database.Database) => ApprovalStatements = prepareApprovalsImpl;

export class SqliteApprovals implements ApprovalStore {
  readonly #h: SqliteHandle;
  readonly #s: ApprovalStatements;
  readonly #openTx: (a: ApprovalRecord, opts: OpenApprovalOptions) => OpenApprovalOutcome;
  /** Purge long-finished approvals once every this many creations. */
  readonly #purgeEvery: number;
  #creates = 0;

  constructor(h: SqliteHandle, purgeEvery: number) {
    this.#h = h;
    const s = (this.#s = prepareApprovals(h.db));
    const openTx = h.db.transaction((rec: ApprovalRecord, opts: OpenApprovalOptions) => openApprovalRow(s, rec, opts));
    this.#openTx = openTx.immediate.bind(openTx);
    this.#purgeEvery = purgeEvery;
  }

  #purgeNow(now: number): void {
    if (++this.#creates % this.#purgeEvery === 0) this.#s.purge.run(now - APPROVAL_RETENTION_MS);
  }

  async createApproval(a: ApprovalRecord): Promise<void> {
    const h = this.#h;
    const now = h.clock.now();
    h.run('createApproval', () => {
      this.#purgeNow(now);
      try {
        h.durably(() => insertApproval(this.#s, a));
      } catch (err) {
        // Ids are random; overwriting could resurrect a decided or used approval.
        if (isConstraintError(err)) throw new TypeError('createApproval: an approval with this id already exists', { cause: err });
        throw err;
      }
    });
  }

  async openApproval(a: ApprovalRecord, opts: OpenApprovalOptions): Promise<OpenApprovalOutcome> {
    const h = this.#h;
    const now = h.clock.now();
    return h.run('openApproval', () => {
      this.#purgeNow(now);
      try {
        // IMMEDIATE: the write lock is taken before the counts are read.
        return h.durably(() => this.#openTx(a, opts));
      } catch (err) {
        if (isConstraintError(err)) throw new TypeError('openApproval: an approval with this id already exists', { cause: err });
        throw err;
      }
    });
  }

  async getApproval(id: string): Promise<ApprovalRecord | undefined> {
    const row = this.#h.run('getApproval', () => this.#s.get.get(id) as ApprovalRow | undefined);
    return row && toApproval(row);
  }

  async decideApproval(id: string, decision: ApprovalDecision): Promise<ApprovalRecord | undefined> {
    const h = this.#h;
    return h.run('decideApproval', () => h.durably(() => decideApprovalRow(this.#s, id, decision)));
  }

  async consumeApproval(id: string, at: number): Promise<boolean> {
    const h = this.#h;
    return h.run('consumeApproval', () => h.durably(() => this.#s.consume.run({ id, at }).changes === 1));
  }

  async recordApprovalPoll(id: string, at: number, minIntervalMs: number): Promise<'ok' | 'slow_down'> {
    return this.#h.run('recordApprovalPoll', () => {
      if (this.#s.poll.run({ id, at, min: minIntervalMs }).changes === 1) return 'ok';
      // No row moved: too soon, or an unknown id (nothing to pace; the caller's lookup says unknown).
      return this.#s.exists.get(id) === undefined ? 'ok' : 'slow_down';
    });
  }

  async listApprovals(filter: { readonly state?: ApprovalState; readonly now: number; readonly limit: number }): Promise<ApprovalRecord[]> {
    return this.#h.run('listApprovals', () => listApprovalRows(this.#s, filter));
  }
}
