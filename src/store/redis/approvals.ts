import type { ApprovalRecord, ApprovalState } from '../records.js';
import { APPROVAL_RETENTION_MS } from '../shared/retention.js';
import type { ApprovalStore, OpenApprovalOptions, OpenApprovalOutcome } from '../store.js';
import type { RedisConnection } from './connection.js';
import { approvalDropAt, approvalFields, fromApprovalHash } from './record-fields.js';
import { CONSUME_APPROVAL, CREATE_APPROVAL, DECIDE_APPROVAL, OPEN_APPROVAL, POLL_APPROVAL } from './redis-scripts.js';

/*
 * Approvals: one hash per record (record-fields.ts) and sorted-set indexes by state, by
 * plugin and task (pending ones) and by drop time. Every transition is one script (check
 * and write together). Records and their index entries are dropped APPROVAL_RETENTION_MS
 * after the last moment they matter.
 */
export class RedisApprovals implements ApprovalStore {
  readonly #c: RedisConnection;

  constructor(c: RedisConnection) {
    this.#c = c;
  }

  async createApproval(a: ApprovalRecord): Promise<void> {
    const c = this.#c;
    const k = c.k;
    const now = c.clock.now();
    const drop = approvalDropAt(a, APPROVAL_RETENTION_MS);
    const created = await c.call('createApproval', () =>
      CREATE_APPROVAL.run(
        c.client,
        [k.approval(a.id), k.approvalsIndex('all'), k.approvalsIndex('pending'), k.approvalsIndex('approved'), k.approvalsIndex('denied'), k.approvalsIndex('used'), k.approvalsDrop],
        [a.id, a.requestedAt, a.state, Math.max(1, drop - now), drop, now, 500, ...approvalFields(a)],
      ),
    );
    // Ids are random; overwriting could resurrect a decided or used approval.
    if (created !== 1) throw new TypeError('createApproval: an approval with this id already exists');
  }

  async openApproval(a: ApprovalRecord, opts: OpenApprovalOptions): Promise<OpenApprovalOutcome> {
    const c = this.#c;
    const k = c.k;
    const drop = approvalDropAt(a, APPROVAL_RETENTION_MS);
    const now = a.requestedAt;
    const reply = (await c.call('openApproval', () =>
      OPEN_APPROVAL.run(
        c.client,
        [
          k.approval(a.id),
          k.approvalsIndex('all'),
          k.approvalsIndex('pending'),
          k.approvalsDrop,
          k.approvalsPendingOfPlugin(a.plugin),
          a.task === undefined ? k.approvalsPendingOfPlugin(a.plugin) : k.approvalsPendingOfTask(a.task),
        ],
        [
          a.id,
          now,
          a.expiresAt,
          Math.max(1, drop - c.clock.now()),
          drop,
          500,
          a.requestHash,
          opts.dedupeKey,
          opts.maxPerPlugin,
          opts.maxPerTask,
          a.task === undefined ? '0' : '1',
          k.approval(''),
          ...approvalFields(a),
        ],
      ),
    )) as unknown[];
    const [outcome, x, n] = reply.map(String);
    if (outcome === 'created') return { outcome: 'created' };
    if (outcome === 'limited') return { outcome: 'limited', scope: x === 'task' ? 'task' : 'plugin', pending: Number(n) };
    if (outcome === 'existing') {
      const existing = await this.getApproval(x as string);
      // Decided or dropped between the script and this read: it is no longer pending, so ask again.
      if (existing) return { outcome: 'existing', approval: existing };
      return this.openApproval(a, opts);
    }
    // Ids are random; overwriting could resurrect a decided or used approval.
    throw new TypeError('openApproval: an approval with this id already exists');
  }

  async getApproval(id: string): Promise<ApprovalRecord | undefined> {
    const c = this.#c;
    const h = await c.call('getApproval', () => c.client.hgetall(c.k.approval(id)));
    return fromApprovalHash(h);
  }

  async decideApproval(
    id: string,
    d: { readonly state: 'approved' | 'denied'; readonly by: string; readonly reason: string | undefined; readonly at: number; readonly redeemBy: number | undefined },
  ): Promise<ApprovalRecord | undefined> {
    const c = this.#c;
    const k = c.k;
    const now = c.clock.now();
    const r = await c.call('decideApproval', () =>
      DECIDE_APPROVAL.run(
        c.client,
        [k.approval(id), k.approvalsIndex('pending'), k.approvalsIndex(d.state), k.approvalsDrop],
        [id, d.state, d.at, d.by, d.reason === undefined ? '0' : '1', d.reason ?? '', d.redeemBy === undefined ? '0' : '1', d.redeemBy ?? 0, now, APPROVAL_RETENTION_MS],
      ),
    );
    return r === null ? undefined : fromApprovalHash(r);
  }

  async consumeApproval(id: string, at: number): Promise<boolean> {
    const c = this.#c;
    const k = c.k;
    const now = c.clock.now();
    const r = await c.call('consumeApproval', () =>
      CONSUME_APPROVAL.run(c.client, [k.approval(id), k.approvalsIndex('approved'), k.approvalsIndex('used'), k.approvalsDrop], [id, at, now, APPROVAL_RETENTION_MS]),
    );
    return r === 1;
  }

  async recordApprovalPoll(id: string, at: number, minIntervalMs: number): Promise<'ok' | 'slow_down'> {
    const c = this.#c;
    const r = await c.call('recordApprovalPoll', () => POLL_APPROVAL.run(c.client, [c.k.approval(id)], [at, minIntervalMs]));
    return r === 1 ? 'ok' : 'slow_down';
  }

  async listApprovals(filter: { readonly state?: ApprovalState; readonly now: number; readonly limit: number }): Promise<ApprovalRecord[]> {
    const c = this.#c;
    const { state, now, limit } = filter;
    const index = c.k.approvalsIndex(state ?? 'all');
    return c.call('listApprovals', async () => {
      const out: ApprovalRecord[] = [];
      // Newest first (ties by id, descending, as SQLite). Entries whose record is gone, has
      // moved on to another state meanwhile, or (pending) has expired are skipped without
      // cutting the page short.
      const page = Math.max(limit, 50);
      for (let start = 0; out.length < limit; start += page) {
        const ids = await c.client.zrevrange(index, start, start + page - 1);
        if (ids.length > 0) {
          const p = c.client.pipeline();
          for (const id of ids) p.hgetall(c.k.approval(id));
          for (const [err, h] of (await p.exec()) ?? []) {
            if (err) throw err;
            const a = fromApprovalHash(h);
            if (!a || (state !== undefined && a.state !== state) || (state === 'pending' && a.expiresAt <= now)) continue;
            out.push(a);
            if (out.length === limit) break;
          }
        }
        if (ids.length < page) break;
      }
      return out;
    });
  }
}
