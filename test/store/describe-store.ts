import { describe, it, expect, beforeEach, afterEach } from '@jest/globals';
import { GENESIS_HASH, chainHash, verifyChain } from '../../src/audit/chain.js';
import { verifyAuditLog, verifyStoreAudit } from '../../src/audit/verify.js';
import { isLeashError, type LeashError } from '../../src/errors/leash-error.js';
import type { ApprovalRecord, IssuedToken, LeaseRecord, Revocation, StateChange, Task } from '../../src/store/records.js';
import { CheckedStore } from '../../src/store/shared/checked-store.js';
import type { AuditLog, Store } from '../../src/store/store.js';
import type { IdentityChange } from '../../src/store/store-identity.js';
import { ALL_AUDIENCES, MAX_TOKEN_SOURCES, type DownstreamEvent, type EvidenceMark, type TaskUsageTotals, type UsageAggregate, type UsageBatch } from '../../src/store/usage-store.js';
import { ManualClock } from '../../src/time/clock.js';

export interface StoreFixture {
  /** A fresh, empty store whose time (replay expiry) comes from the clock it was given. */
  readonly store: Store;
  /** A new Store over the same state; called after the suite has closed the previous one. */
  readonly reopen?: () => Promise<Store>;
  /** A second, concurrent handle on the same state (another process or replica). */
  readonly sibling?: () => Promise<Store>;
  /** An operator-tooling handle (`identity: 'inspect'`) on the same state. */
  readonly inspect: () => Promise<Store>;
  /** Loses every piece of state behind the handles' backs, as a Redis restarted empty or FLUSHALL does. */
  readonly wipe: () => Promise<void>;
  cleanup(): Promise<void>;
}

export type StoreFactory = (ctx: { clock: ManualClock }) => Promise<StoreFixture>;

const HOUR = 3600_000;

export function aTask(clock: ManualClock, over: Partial<Task> = {}): Task {
  return {
    id: `tsk_${Math.random().toString(36).slice(2)}`,
    plugins: ['github-reader', 'slack-poster'],
    attributes: { ticket: 'OPS-1', env: 'prod' },
    createdAt: clock.now(),
    expiresAt: clock.now() + HOUR,
    createdBy: 'apikey:orchestrator',
    state: 'active',
    endedAt: undefined,
    endedBy: undefined,
    ...over,
  };
}

export function aToken(clock: ManualClock, over: Partial<IssuedToken> = {}): IssuedToken {
  return {
    jti: `jti_${Math.random().toString(36).slice(2)}`,
    plugin: 'github-reader',
    task: 'tsk_1',
    audience: 'https://api.github.com',
    scopes: ['repo:read', 'issues:read'],
    kind: 'jwt',
    kid: 'key-1',
    issuedAt: clock.now(),
    expiresAt: clock.now() + 300_000,
    jkt: 'thumbprint-1',
    ...over,
  };
}

export function aRevocation(clock: ManualClock, over: Partial<Omit<Revocation, 'seq'>> = {}): Omit<Revocation, 'seq'> {
  return {
    scope: 'token',
    id: `jti_${Math.random().toString(36).slice(2)}`,
    issuedBefore: clock.now(),
    revokedAt: clock.now(),
    keepUntil: clock.now() + HOUR,
    reason: 'leaked in a log',
    actor: 'apikey:security',
    ...over,
  };
}

const MINUTE = 60_000;

/** A pending approval with every optional field set (see `bareApproval` for none). */
export function anApproval(clock: ManualClock, over: Partial<ApprovalRecord> = {}): ApprovalRecord {
  return {
    id: `apr_${Math.random().toString(36).slice(2)}`,
    requestHash: 'sha256:4f1c',
    plugin: 'crm-writer',
    owner: 'team-sales',
    task: 'tsk_1',
    audience: 'https://crm.example',
    scopes: ['contacts:write', 'contacts:read'],
    ttl: 300,
    kind: 'jwt',
    effect: 'write',
    risk: 'high',
    justification: 'update the renewal date',
    chain: ['orchestrator', 'crm-writer'],
    cause: 'grant',
    requestedAt: clock.now(),
    expiresAt: clock.now() + 10 * MINUTE,
    state: 'pending',
    decidedAt: undefined,
    decidedBy: undefined,
    decisionReason: undefined,
    redeemBy: undefined,
    usedAt: undefined,
    lastPollAt: undefined,
    ...over,
  };
}

export function aLease(clock: ManualClock, over: Partial<LeaseRecord> = {}): LeaseRecord {
  return {
    jti: `jti_${Math.random().toString(36).slice(2)}`,
    leaseId: `database/creds/readonly/${Math.random().toString(36).slice(2)}`,
    plugin: 'crm-writer',
    task: 'tsk_1',
    expiresAt: clock.now() + 5 * MINUTE,
    revokedAt: undefined,
    ...over,
  };
}

/** Collects published changes; `until` waits (briefly, for networked feeds) for a condition. */
function recorder() {
  const seen: StateChange[] = [];
  return {
    seen,
    listener: (c: StateChange) => {
      seen.push(c);
    },
    async until(pred: (seen: StateChange[]) => boolean, ms = 3000): Promise<void> {
      const deadline = Date.now() + ms;
      while (!pred(seen)) {
        if (Date.now() > deadline) throw new Error(`change feed: condition not met within ${ms} ms; saw ${JSON.stringify(seen)}`);
        await new Promise((r) => setTimeout(r, 5));
      }
    },
  };
}

async function rejectionOf(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  throw new Error('expected a rejection');
}

/**
 * The contract every Store backend meets (SQLite now, Redis later), run against each as
 * SPIRE's shared backend suites are: same tests, different factories.
 */
export function describeStore(name: string, factory: StoreFactory): void {
  describe(`Store contract: ${name}`, () => {
    let clock: ManualClock;
    let fx: StoreFixture;
    let store: Store;
    const opened: Store[] = [];

    beforeEach(async () => {
      clock = new ManualClock();
      fx = await factory({ clock });
      store = fx.store;
      opened.length = 0;
    });
    afterEach(async () => {
      for (const s of [store, ...opened]) await s.close().catch(() => undefined);
      await fx.cleanup();
    });

    describe('tasks', () => {
      it("keeps a task's budgets, ended or not", async () => {
        const budgets = { calls: 100, bytes: 5000, audiences: { 'https://api.github.com': { calls: 10 } } };
        const task = aTask(clock, { budgets });
        await store.createTask(task);
        expect(await store.getTask(task.id)).toEqual(task);
        expect((await store.endTask(task.id, clock.now(), 'apikey:security'))?.budgets).toEqual(budgets);
        expect((await store.listExpiredActiveTasks(task.expiresAt + 1, 10)).find((t) => t.id === task.id)).toBeUndefined();
      });

      it('creates and reads back a task with every field', async () => {
        const task = aTask(clock);
        await store.createTask(task);
        expect(await store.getTask(task.id)).toEqual(task);
        expect(await store.getTask('tsk_unknown')).toBeUndefined();
      });

      it('refuses a second task with the same id and never revives an ended one', async () => {
        const task = aTask(clock);
        await store.createTask(task);
        await store.endTask(task.id, clock.now(), 'apikey:security');
        const err = await rejectionOf(store.createTask({ ...task, plugins: ['other'] }));
        expect(err).toBeInstanceOf(TypeError);
        const after = await store.getTask(task.id);
        expect(after?.state).toBe('ended');
        expect(after?.plugins).toEqual(task.plugins);
      });

      it('ends a task once: a second end keeps the first time and actor', async () => {
        const task = aTask(clock);
        await store.createTask(task);
        const endAt = clock.now() + 1000;
        const ended = await store.endTask(task.id, endAt, 'apikey:security');
        expect(ended).toEqual({ ...task, state: 'ended', endedAt: endAt, endedBy: 'apikey:security' });
        const again = await store.endTask(task.id, endAt + 5000, 'apikey:other');
        expect(again).toEqual(ended);
        expect(await store.getTask(task.id)).toEqual(ended);
        expect(await store.endTask('tsk_unknown', endAt, 'x')).toBeUndefined();
      });

      it('counts only tasks that are active and not yet expired', async () => {
        const now = clock.now();
        await store.createTask(aTask(clock, { expiresAt: now + 10_000 }));
        await store.createTask(aTask(clock, { expiresAt: now + 20_000 }));
        const ended = aTask(clock, { expiresAt: now + 30_000 });
        await store.createTask(ended);
        expect(await store.countActiveTasks(now)).toBe(3);
        await store.endTask(ended.id, now, 'x');
        expect(await store.countActiveTasks(now)).toBe(2);
        expect(await store.countActiveTasks(now + 9_999)).toBe(2);
        expect(await store.countActiveTasks(now + 10_000)).toBe(1); // expiresAt is exclusive
        expect(await store.countActiveTasks(now + 20_000)).toBe(0);
      });

      it('lists active tasks whose expiry has come, oldest first, up to the limit', async () => {
        const now = clock.now();
        const t3 = aTask(clock, { id: 'tsk_c', expiresAt: now + 3000 });
        const t1 = aTask(clock, { id: 'tsk_a', expiresAt: now + 1000 });
        const t2 = aTask(clock, { id: 'tsk_b', expiresAt: now + 2000 });
        const endedExpired = aTask(clock, { id: 'tsk_d', expiresAt: now + 500 });
        const future = aTask(clock, { id: 'tsk_e', expiresAt: now + 60_000 });
        for (const t of [t3, t1, t2, endedExpired, future]) await store.createTask(t);
        await store.endTask(endedExpired.id, now, 'apikey:orchestrator');
        expect(await store.listExpiredActiveTasks(now, 10)).toEqual([]);
        expect(await store.listExpiredActiveTasks(now + 999, 10)).toEqual([]);
        expect(await store.listExpiredActiveTasks(now + 1000, 10)).toEqual([t1]); // at its expiry it is expired
        expect(await store.listExpiredActiveTasks(now + 5000, 10)).toEqual([t1, t2, t3]);
        expect(await store.listExpiredActiveTasks(now + 5000, 2)).toEqual([t1, t2]);
        await store.endTask(t1.id, now + 5000, 'system:expiry');
        expect((await store.listExpiredActiveTasks(now + 5000, 10)).map((t) => t.id)).toEqual(['tsk_b', 'tsk_c']);
        expect(await rejectionOf(store.listExpiredActiveTasks(now, 0))).toBeInstanceOf(TypeError);
      });

      it('lists active, unexpired tasks, the latest to expire first', async () => {
        const now = clock.now();
        const soon = aTask(clock, { id: 'tsk_live_soon', expiresAt: now + 1000 });
        const later = aTask(clock, { id: 'tsk_live_later', expiresAt: now + 9000 });
        const ended = aTask(clock, { id: 'tsk_live_ended', expiresAt: now + 5000 });
        for (const t of [soon, later, ended]) await store.createTask(t);
        await store.endTask(ended.id, now, 'apikey:orchestrator');
        const ids = (await store.listActiveTasks(now, 100)).map((t) => t.id).filter((id) => id.startsWith('tsk_live_'));
        expect(ids).toEqual(['tsk_live_later', 'tsk_live_soon']);
        expect((await store.listActiveTasks(now + 1000, 100)).map((t) => t.id)).not.toContain('tsk_live_soon');
        expect(await store.listActiveTasks(now, 1)).toHaveLength(1);
        expect(await rejectionOf(store.listActiveTasks(now, 0))).toBeInstanceOf(TypeError);
      });

      it('orders tasks expiring at the same instant by id', async () => {
        const at = clock.now() + 1000;
        for (const id of ['tsk_z', 'tsk_m', 'tsk_a']) await store.createTask(aTask(clock, { id, expiresAt: at }));
        expect((await store.listExpiredActiveTasks(at, 10)).map((t) => t.id)).toEqual(['tsk_a', 'tsk_m', 'tsk_z']);
      });
    });

    describe('issued-token index', () => {
      it('records and reads back a token, optional fields included', async () => {
        const full = aToken(clock);
        const bare = aToken(clock, { task: undefined, kid: undefined, jkt: undefined });
        await store.recordIssued(full);
        await store.recordIssued(bare);
        expect(await store.getIssued(full.jti)).toEqual(full);
        expect(await store.getIssued(bare.jti)).toEqual(bare);
        expect(await store.getIssued('jti_unknown')).toBeUndefined();
      });

      it('lists the tokens of one task, in issue order, and no other', async () => {
        const a2 = aToken(clock, { task: 'tsk_a', issuedAt: clock.now() + 2 });
        const a1 = aToken(clock, { task: 'tsk_a', issuedAt: clock.now() + 1 });
        const b = aToken(clock, { task: 'tsk_b' });
        const none = aToken(clock, { task: undefined });
        for (const t of [a2, b, a1, none]) await store.recordIssued(t);
        expect(await store.listIssuedForTask('tsk_a')).toEqual([a1, a2]);
        expect(await store.listIssuedForTask('tsk_b')).toEqual([b]);
        expect(await store.listIssuedForTask('tsk_none')).toEqual([]);
      });

      it('refuses a duplicate jti and keeps the first record', async () => {
        const t = aToken(clock);
        await store.recordIssued(t);
        const err = await rejectionOf(store.recordIssued({ ...t, plugin: 'impostor' }));
        expect(err).toBeInstanceOf(TypeError);
        expect((await store.getIssued(t.jti))?.plugin).toBe('github-reader');
      });

      it('concurrent records (written together, per turn, where the backend groups them): a duplicate fails alone', async () => {
        const first = aToken(clock);
        await store.recordIssued(first);
        const fresh = Array.from({ length: 5 }, () => aToken(clock, { task: 'tsk_group' }));
        const outcomes = await Promise.allSettled([fresh[0]!, fresh[1]!, { ...first, plugin: 'impostor' }, fresh[2]!, fresh[3]!, fresh[4]!].map((t) => store.recordIssued(t)));
        expect(outcomes.map((o) => o.status)).toEqual(['fulfilled', 'fulfilled', 'rejected', 'fulfilled', 'fulfilled', 'fulfilled']);
        expect((outcomes[2] as PromiseRejectedResult).reason).toBeInstanceOf(TypeError);
        expect((await store.listIssuedForTask('tsk_group')).map((t) => t.jti).sort()).toEqual(fresh.map((t) => t.jti).sort());
        expect((await store.getIssued(first.jti))?.plugin).toBe('github-reader');
      });

      it('lists the live tokens of one plugin, in issue order; expiry is exclusive', async () => {
        const now = clock.now();
        const late = aToken(clock, { plugin: 'p1', issuedAt: now + 2, expiresAt: now + 10_000 });
        const early = aToken(clock, { plugin: 'p1', issuedAt: now + 1, expiresAt: now + 5_000 });
        const expired = aToken(clock, { plugin: 'p1', issuedAt: now - 10_000, expiresAt: now });
        const other = aToken(clock, { plugin: 'p2', expiresAt: now + 10_000 });
        for (const t of [late, expired, other, early]) await store.recordIssued(t);
        expect(await store.listLiveIssuedForPlugin('p1', now)).toEqual([early, late]);
        expect(await store.listLiveIssuedForPlugin('p1', now - 1)).toEqual([expired, early, late]);
        expect(await store.listLiveIssuedForPlugin('p1', now + 5_000)).toEqual([late]);
        expect(await store.listLiveIssuedForPlugin('p2', now)).toEqual([other]);
        expect(await store.listLiveIssuedForPlugin('p3', now)).toEqual([]);
      });

      it('counts every token issued for a task, expired ones included', async () => {
        const now = clock.now();
        await store.recordIssued(aToken(clock, { task: 'tsk_n', expiresAt: now + 1000 }));
        await store.recordIssued(aToken(clock, { task: 'tsk_n', expiresAt: now + 2000 }));
        await store.recordIssued(aToken(clock, { task: 'tsk_other' }));
        await store.recordIssued(aToken(clock, { task: undefined }));
        expect(await store.countIssuedForTask('tsk_n')).toBe(2);
        expect(await store.countIssuedForTask('tsk_other')).toBe(1);
        expect(await store.countIssuedForTask('tsk_none')).toBe(0);
      });

      it('purges tokens expired before a time, oldest first, at most `limit` per call (a backend with TTLs purges nothing)', async () => {
        const now = clock.now();
        const old = [3, 1, 2].map((k) => aToken(clock, { issuedAt: now - 10_000, expiresAt: now - 5000 + k }));
        const live = aToken(clock, { expiresAt: now + 5000 });
        for (const t of [...old, live]) await store.recordIssued(t);
        const first = await store.purgeIssued(now - 4000, 2);
        if (first === 0) {
          // Redis: records go by TTL, the pass has nothing to do.
          expect(await store.purgeIssued(now - 4000, 1000)).toBe(0);
          return;
        }
        expect(first).toBe(2);
        // The two oldest expiries went first.
        expect(await store.getIssued(old[1]!.jti)).toBeUndefined();
        expect(await store.getIssued(old[2]!.jti)).toBeUndefined();
        expect(await store.getIssued(old[0]!.jti)).toEqual(old[0]);
        expect(await store.purgeIssued(now - 4000, 2)).toBe(1);
        expect(await store.purgeIssued(now - 4000, 2)).toBe(0);
        expect(await store.getIssued(live.jti)).toEqual(live);
      });

      it('counts the tokens of one plugin in one task from a counter, expired ones included; a duplicate jti does not count', async () => {
        const now = clock.now();
        const first = aToken(clock, { task: 'tsk_q', plugin: 'p1', expiresAt: now + 1000 });
        await store.recordIssued(first);
        await store.recordIssued(aToken(clock, { task: 'tsk_q', plugin: 'p1', issuedAt: now - 10_000, expiresAt: now - 5000 }));
        await store.recordIssued(aToken(clock, { task: 'tsk_q', plugin: 'p2' }));
        await store.recordIssued(aToken(clock, { task: 'tsk_other', plugin: 'p1' }));
        await store.recordIssued(aToken(clock, { task: undefined, plugin: 'p1' }));
        await expect(store.recordIssued(first)).rejects.toThrow(TypeError);
        expect(await store.countIssuedForTaskPlugin('tsk_q', 'p1')).toBe(2);
        expect(await store.countIssuedForTaskPlugin('tsk_q', 'p2')).toBe(1);
        expect(await store.countIssuedForTaskPlugin('tsk_q', 'p3')).toBe(0);
        expect(await store.countIssuedForTaskPlugin('tsk_other', 'p1')).toBe(1);
        expect(await store.countIssuedForTaskPlugin('tsk_none', 'p1')).toBe(0);
      });

      it('records the same jti once when two records of it arrive together; the task counts it once', async () => {
        const t = aToken(clock, { task: 'tsk_dup', plugin: 'p1' });
        const results = await Promise.allSettled([store.recordIssued(t), store.recordIssued(t, { tokensPerTask: 10 })]);
        expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
        const refused = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
        expect(refused?.reason).toBeInstanceOf(TypeError);
        expect(await store.getIssued(t.jti)).toEqual(t);
        expect(await store.countIssuedForTaskPlugin('tsk_dup', 'p1')).toBe(1);
      });

      it('refuses a token past the tokens-per-task limit in the record itself (ERR_QUOTA_EXCEEDED, nothing written), concurrent records included', async () => {
        const limit = { tokensPerTask: 3 };
        const attempts = Array.from({ length: 8 }, () => aToken(clock, { task: 'tsk_lim', plugin: 'p1' }));
        const results = await Promise.allSettled(attempts.map((t) => store.recordIssued(t, limit)));
        expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(3);
        for (const r of results.filter((x): x is PromiseRejectedResult => x.status === 'rejected')) expect((r.reason as LeashError).code).toBe('ERR_QUOTA_EXCEEDED');
        expect(await store.countIssuedForTaskPlugin('tsk_lim', 'p1')).toBe(3);
        // The refused ones left no record; the recorded ones are there.
        const found = await Promise.all(attempts.map((t) => store.getIssued(t.jti)));
        expect(found.filter(Boolean)).toHaveLength(3);
        expect((await store.listIssuedForTask('tsk_lim')).length).toBe(3);
        // Another plugin in the task and the same plugin without a limit are not held by it.
        await store.recordIssued(aToken(clock, { task: 'tsk_lim', plugin: 'p2' }), limit);
        await store.recordIssued(aToken(clock, { task: 'tsk_lim', plugin: 'p1' }));
        expect(await store.countIssuedForTaskPlugin('tsk_lim', 'p1')).toBe(4);
        // A token without a task has no per-task limit; a limit of 0 refuses the first.
        await store.recordIssued(aToken(clock, { task: undefined, plugin: 'p1' }), { tokensPerTask: 0 });
        await expect(store.recordIssued(aToken(clock, { task: 'tsk_zero', plugin: 'p1' }), { tokensPerTask: 0 })).rejects.toMatchObject({ code: 'ERR_QUOTA_EXCEEDED' });
        expect(await store.countIssuedForTaskPlugin('tsk_zero', 'p1')).toBe(0);
        // A duplicate jti under a limit is still the duplicate error, and counts nothing.
        await expect(
          store.recordIssued(
            attempts.find((_, i) => results[i]!.status === 'fulfilled')!,
            { tokensPerTask: 100 },
          ),
        ).rejects.toThrow(TypeError);
        expect(await store.countIssuedForTaskPlugin('tsk_lim', 'p1')).toBe(4);
      });
    });

    describe("decision history (the review's evidence of use)", () => {
      it("groups decision events of the window's UTC days by type, plugin, denial reason, issued audience and scopes", async () => {
        const t = clock.now();
        await store.append('policy.loaded', { digest: 'x' }, t - 1000);
        await store.append('exchange.issued', { plugin: 'a', audience: 'https://x', scopes: ['r', 's'], reason: 'OK' }, t);
        await store.append('exchange.issued', { plugin: 'a', audience: 'https://x', scopes: ['r', 's'], reason: 'OK' }, t + 5);
        await store.append('exchange.issued', { plugin: 'a', audience: 'https://y', scopes: ['w'], reason: 'OK' }, t + 6);
        await store.append('exchange.denied', { plugin: 'b', reason: 'ERR_QUOTA_EXCEEDED', audience: 'https://z', scopes: ['q'] }, t + 7);
        await store.append('exchange.denied', { plugin: 'b', reason: 'ERR_QUOTA_EXCEEDED' }, t + 8);
        await store.append('approval.requested', { approval: 'p1', plugin: 'c' }, t + 9);
        await store.append('approval.approved', { approval: 'p1', plugin: 'c' }, t + 10);
        // Another day: outside the window.
        await store.append('exchange.issued', { plugin: 'a', audience: 'https://x', scopes: ['r'] }, t + 2 * 86_400_000);
        const { rows, oldestAt } = await store.decisionRollup(t, t + 100);
        expect(oldestAt).toBe(t - 1000);
        const sorted = rows.map((r) => ({ ...r })).sort((x, y) => `${x.type}${x.plugin}${x.audience}`.localeCompare(`${y.type}${y.plugin}${y.audience}`));
        expect(sorted).toEqual([
          { type: 'approval.approved', plugin: 'c', reason: undefined, audience: undefined, scopes: [], count: 1, lastAt: t + 10 },
          { type: 'approval.requested', plugin: 'c', reason: undefined, audience: undefined, scopes: [], count: 1, lastAt: t + 9 },
          { type: 'exchange.denied', plugin: 'b', reason: 'ERR_QUOTA_EXCEEDED', audience: undefined, scopes: [], count: 2, lastAt: t + 8 },
          { type: 'exchange.issued', plugin: 'a', reason: undefined, audience: 'https://x', scopes: ['r', 's'], count: 2, lastAt: t + 5 },
          { type: 'exchange.issued', plugin: 'a', reason: undefined, audience: 'https://y', scopes: ['w'], count: 1, lastAt: t + 6 },
        ]);
      });

      it('an empty log has no oldest event', async () => {
        expect(await store.decisionRollup(0, clock.now())).toEqual({ rows: [], oldestAt: undefined });
      });

      it('later calls see events appended since (the SQLite rollup folds from a cursor)', async () => {
        const t = clock.now();
        await store.append('exchange.denied', { plugin: 'p', reason: 'ERR_X' }, t);
        expect((await store.decisionRollup(t, t + 1)).rows[0]).toMatchObject({ plugin: 'p', count: 1 });
        await store.append('exchange.denied', { plugin: 'p', reason: 'ERR_X' }, t + 1);
        await store.append('exchange.denied', { plugin: 'p', reason: 'ERR_X' }, t + 2);
        expect((await store.decisionRollup(t, t + 1)).rows).toEqual([{ type: 'exchange.denied', plugin: 'p', reason: 'ERR_X', audience: undefined, scopes: [], count: 3, lastAt: t + 2 }]);
      });
    });

    describe('revocations', () => {
      it('assigns increasing seqs and returns the record as stored', async () => {
        const a = aRevocation(clock, { scope: 'task', id: 'tsk_1', reason: '' });
        const b = aRevocation(clock, { scope: 'plugin', id: 'github-reader', issuedBefore: clock.now() + 5 });
        const ra = await store.addRevocation(a);
        const rb = await store.addRevocation(b);
        expect(ra).toEqual({ ...a, seq: ra.seq });
        expect(ra.seq).toBeGreaterThan(0);
        expect(rb.seq).toBeGreaterThan(ra.seq);
        expect(await store.revocationsSince(0, 10, clock.now())).toEqual([ra, rb]);
      });

      it('keeps the audiences a revocation concerns (none: every resource server), through reads and the change feed', async () => {
        const rec = recorder();
        store.subscribe(rec.listener);
        const scoped = aRevocation(clock, { scope: 'task', id: 'tsk_2', audiences: ['https://crm.example/api', 'https://tickets.example'] });
        const none = aRevocation(clock, { scope: 'task', id: 'tsk_3', audiences: [] });
        const all = aRevocation(clock, { scope: 'plugin', id: 'github-reader' });
        const stored = [await store.addRevocation(scoped), await store.addRevocation(none), await store.addRevocation(all)];
        expect(stored.map((r) => r.audiences)).toEqual([['https://crm.example/api', 'https://tickets.example'], [], undefined]);
        expect('audiences' in stored[2]!).toBe(false);
        expect(await store.revocationsSince(0, 10, clock.now())).toEqual(stored);
        await rec.until((seen) => seen.length >= 3);
        expect(rec.seen).toEqual(stored.map((revocation) => ({ type: 'revocation', revocation })));
        expect(await rejectionOf(store.addRevocation(aRevocation(clock, { audiences: [''] })))).toBeInstanceOf(TypeError);
        expect(await rejectionOf(store.addRevocation(aRevocation(clock, { audiences: 'https://crm.example/api' as unknown as string[] })))).toBeInstanceOf(TypeError);
      });

      it('pages by cursor and limit, oldest first', async () => {
        const added: Revocation[] = [];
        for (const scope of ['token', 'task', 'plugin', 'key', 'token'] as const) added.push(await store.addRevocation(aRevocation(clock, { scope })));
        const now = clock.now();
        const p1 = await store.revocationsSince(0, 2, now);
        const p2 = await store.revocationsSince(p1.at(-1)!.seq, 2, now);
        const p3 = await store.revocationsSince(p2.at(-1)!.seq, 2, now);
        expect([...p1, ...p2, ...p3]).toEqual(added);
        expect(p3).toHaveLength(1);
        expect(await store.revocationsSince(added.at(-1)!.seq, 10, now)).toEqual([]);
        expect(await store.revocationsSince(added[2]!.seq, 10, now)).toEqual(added.slice(3));
      });

      it('leaves out records past their keepUntil, even before a purge', async () => {
        const now = clock.now();
        const short = await store.addRevocation(aRevocation(clock, { keepUntil: now + 1000 }));
        const long = await store.addRevocation(aRevocation(clock, { keepUntil: now + HOUR }));
        expect(await store.revocationsSince(0, 10, now + 999)).toEqual([short, long]);
        expect(await store.revocationsSince(0, 10, now + 1000)).toEqual([long]); // keepUntil is exclusive
        expect(await store.revocationsSince(0, 1, now + 1000)).toEqual([long]); // a filtered record does not end the page
      });

      it('purges only records whose keepUntil has passed and never reuses a seq', async () => {
        const now = clock.now();
        const keep = await store.addRevocation(aRevocation(clock, { keepUntil: now + HOUR }));
        const gone1 = await store.addRevocation(aRevocation(clock, { keepUntil: now + 1000 }));
        const gone2 = await store.addRevocation(aRevocation(clock, { keepUntil: now + 2000 }));
        expect(await store.purgeRevocations(now + 999)).toBe(0);
        expect(await store.purgeRevocations(now + 2000)).toBe(2);
        expect(await store.purgeRevocations(now + 2000)).toBe(0);
        expect(await store.revocationsSince(0, 10, now)).toEqual([keep]);
        // The highest seq was purged: the next one must still be above it, or a follower
        // whose cursor is gone2.seq would never see the new record.
        const next = await store.addRevocation(aRevocation(clock));
        expect(next.seq).toBeGreaterThan(gone2.seq);
        expect(await store.revocationsSince(gone1.seq, 10, now)).toEqual([next]);
      });

      it('rejects a malformed record or query as a TypeError and stores nothing', async () => {
        const bad: Array<Partial<Omit<Revocation, 'seq'>>> = [{ scope: 'everything' as Revocation['scope'] }, { id: '' }, { keepUntil: 1.5 }, { issuedBefore: Number.NaN }, { actor: '' }];
        for (const over of bad) expect(await rejectionOf(store.addRevocation(aRevocation(clock, over)))).toBeInstanceOf(TypeError);
        expect(await store.revocationsSince(0, 10, clock.now())).toEqual([]);
        expect(await rejectionOf(store.revocationsSince(-1, 10, clock.now()))).toBeInstanceOf(TypeError);
        expect(await rejectionOf(store.revocationsSince(0, 0, clock.now()))).toBeInstanceOf(TypeError);
      });
    });

    describe('suspensions', () => {
      it('suspends once, keeps the first record, resumes once', async () => {
        const since = clock.now();
        expect(await store.suspendPlugin({ plugin: 'slack-poster', since, actor: 'apikey:security', reason: 'bill spike' })).toBe(true);
        expect(await store.suspendPlugin({ plugin: 'slack-poster', since: since + 5, actor: 'apikey:other', reason: 'again' })).toBe(false);
        expect(await store.suspendPlugin({ plugin: 'github-reader', since, actor: 'system:quota', reason: '' })).toBe(true);
        expect(await store.listSuspensions()).toEqual([
          { plugin: 'github-reader', since, actor: 'system:quota', reason: '' },
          { plugin: 'slack-poster', since, actor: 'apikey:security', reason: 'bill spike' },
        ]);
        expect(await store.resumePlugin('slack-poster')).toBe(true);
        expect(await store.resumePlugin('slack-poster')).toBe(false);
        expect(await store.resumePlugin('never-suspended')).toBe(false);
        expect((await store.listSuspensions()).map((x) => x.plugin)).toEqual(['github-reader']);
        expect(await store.suspendPlugin({ plugin: 'slack-poster', since: since + 9, actor: 'apikey:security', reason: 'again' })).toBe(true);
        expect((await store.listSuspensions()).find((x) => x.plugin === 'slack-poster')?.since).toBe(since + 9);
      });

      it('rejects a malformed suspension as a TypeError', async () => {
        expect(await rejectionOf(store.suspendPlugin({ plugin: '', since: 1, actor: 'a', reason: '' }))).toBeInstanceOf(TypeError);
        expect(await rejectionOf(store.suspendPlugin({ plugin: 'p', since: 1.5, actor: 'a', reason: '' }))).toBeInstanceOf(TypeError);
        expect(await store.listSuspensions()).toEqual([]);
      });
    });

    describe('counters', () => {
      it('counts within a fixed window and starts again in the next one', async () => {
        const w = 60_000;
        const start = Math.floor(clock.now() / w) * w;
        expect(await store.incrementWindow('xpm:p1', w, start)).toBe(1);
        expect(await store.incrementWindow('xpm:p1', w, start + 30_000)).toBe(2);
        expect(await store.incrementWindow('xpm:p1', w, start + w - 1, 3)).toBe(5);
        expect(await store.incrementWindow('xpm:p2', w, start + 1)).toBe(1);
        expect(await store.incrementWindow('xpm:p1', w, start + w)).toBe(1); // the boundary opens a new window
        expect(await store.incrementWindow('xpm:p1', w, start + w + 10, 0)).toBe(1); // by 0 reads
        expect(await store.incrementWindow('xpm:p1', 1000, start + w)).toBe(1); // another window size, another counter
      });

      it('keeps counting correctly while old windows are purged', async () => {
        const w = 1000;
        const start = Math.floor(clock.now() / w) * w;
        const expected = new Map<string, number>();
        const got: number[] = [];
        const want: number[] = [];
        // 600 increments over 6 windows: a backend that purges finished windows lazily
        // (every N calls) must never touch the current one.
        for (let i = 0; i < 600; i++) {
          const id = `${i % 3}:${Math.floor(i / 100)}`;
          expected.set(id, (expected.get(id) ?? 0) + 1);
          want.push(expected.get(id)!);
          got.push(await store.incrementWindow(`k${i % 3}`, w, start + i * 10));
        }
        expect(got).toEqual(want);
        expect(Math.max(...got)).toBe(34);
      });

      it('rejects misuse as a TypeError', async () => {
        expect(await rejectionOf(store.incrementWindow('', 1000, clock.now()))).toBeInstanceOf(TypeError);
        expect(await rejectionOf(store.incrementWindow('k', 0, clock.now()))).toBeInstanceOf(TypeError);
        expect(await rejectionOf(store.incrementWindow('k', 1000, clock.now(), -1))).toBeInstanceOf(TypeError);
      });
    });

    describe('change feed', () => {
      it('delivers every revocation and suspension change to subscribers, in order', async () => {
        expect(store.subscribed()).toBe(true);
        const rec = recorder();
        store.subscribe(rec.listener);
        const r1 = await store.addRevocation(aRevocation(clock));
        await store.suspendPlugin({ plugin: 'p1', since: clock.now(), actor: 'apikey:security', reason: 'kill' });
        await store.suspendPlugin({ plugin: 'p1', since: clock.now(), actor: 'apikey:security', reason: 'again' }); // no change, no event
        await store.resumePlugin('p2'); // no change, no event
        await store.resumePlugin('p1');
        const r2 = await store.addRevocation(aRevocation(clock, { scope: 'plugin', id: 'p1' }));
        await rec.until((s) => s.length >= 4);
        expect(rec.seen).toEqual([
          { type: 'revocation', revocation: r1 },
          { type: 'suspension', plugin: 'p1', suspended: true },
          { type: 'suspension', plugin: 'p1', suspended: false },
          { type: 'revocation', revocation: r2 },
        ]);
      });

      it('stops delivering after unsubscribe, and other subscribers keep theirs', async () => {
        const a = recorder();
        const b = recorder();
        const offA = store.subscribe(a.listener);
        store.subscribe(b.listener);
        const r1 = await store.addRevocation(aRevocation(clock));
        await a.until((s) => s.length === 1);
        offA();
        offA(); // idempotent
        const r2 = await store.addRevocation(aRevocation(clock));
        await b.until((s) => s.length === 2);
        expect(b.seen).toEqual([
          { type: 'revocation', revocation: r1 },
          { type: 'revocation', revocation: r2 },
        ]);
        expect(a.seen).toEqual([{ type: 'revocation', revocation: r1 }]);
      });

      it('a listener that throws does not fail the write nor starve other listeners', async () => {
        const good = recorder();
        store.subscribe(() => {
          throw new Error('listener bug');
        });
        store.subscribe(good.listener);
        const r = await store.addRevocation(aRevocation(clock));
        await good.until((s) => s.length === 1);
        expect(good.seen).toEqual([{ type: 'revocation', revocation: r }]);
      });

      it("delivers a sibling handle's changes too", async () => {
        if (!fx.sibling) throw new Error(`${name}: the fixture offers no sibling(), so sharing is untested`);
        const other = await fx.sibling();
        opened.push(other);
        const here = recorder();
        const there = recorder();
        store.subscribe(here.listener);
        other.subscribe(there.listener);
        const r = await other.addRevocation(aRevocation(clock, { scope: 'key', id: 'kid-1' }));
        await other.suspendPlugin({ plugin: 'p9', since: clock.now(), actor: 'apikey:security', reason: '' });
        const expected: StateChange[] = [
          { type: 'revocation', revocation: r },
          { type: 'suspension', plugin: 'p9', suspended: true },
        ];
        await here.until((s) => s.length >= 2);
        await there.until((s) => s.length >= 2);
        expect(here.seen).toEqual(expected);
        expect(there.seen).toEqual(expected);
        // and the sibling reads what this handle wrote
        expect(await other.revocationsSince(0, 10, clock.now())).toEqual([r]);
      });

      it('is no longer subscribed once closed', async () => {
        await store.close();
        expect(store.subscribed()).toBe(false);
      });
    });

    describe('audit chain', () => {
      it('appends records chained from the genesis hash', async () => {
        const r1 = await store.append('task.opened', { task: 'tsk_1', plugins: ['a'] }, 1000);
        const r2 = await store.append('exchange.issued', { jti: 'j1', nested: { b: 2, a: 1 } }, 2000);
        expect(r1).toMatchObject({ seq: 1, ts: 1000, type: 'task.opened', event: { task: 'tsk_1', plugins: ['a'] }, prevHash: GENESIS_HASH });
        expect(r1.hash).toBe(chainHash(GENESIS_HASH, 1, 1000, 'task.opened', { task: 'tsk_1', plugins: ['a'] }));
        expect(r2.seq).toBe(2);
        expect(r2.prevHash).toBe(r1.hash);
        expect(r2.hash).toMatch(/^[0-9a-f]{64}$/);
        expect(r2.hash).not.toBe(r1.hash);
      });

      it('drops undefined members, so what it returns is what it stores and hashes', async () => {
        const r = await store.append('exchange.denied', { reason: 'ERR_X', jti: undefined, list: [1, undefined] }, 5);
        expect(Object.keys(r.event)).toEqual(['list', 'reason']);
        expect(r.event).toStrictEqual({ list: [1, null], reason: 'ERR_X' });
        const [back] = await store.read(1, 1);
        expect(back).toStrictEqual(r);
        expect(verifyChain([back!]).ok).toBe(true);
      });

      it('hashes the same event the same whatever the member order', async () => {
        const r1 = await store.append('policy.loaded', { a: 1, b: { y: 2, x: 1 } }, 7);
        expect(chainHash(GENESIS_HASH, 1, 7, 'policy.loaded', { b: { x: 1, y: 2 }, a: 1 })).toBe(r1.hash);
      });

      it('reads in order and pages by seq', async () => {
        for (let i = 1; i <= 25; i++) await store.append('exchange.issued', { i }, 1000 + i);
        const p1 = await store.read(1, 10);
        const p2 = await store.read(11, 10);
        const p3 = await store.read(21, 10);
        expect(p1.map((r) => r.seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
        expect(p2.map((r) => r.seq)).toEqual([11, 12, 13, 14, 15, 16, 17, 18, 19, 20]);
        expect(p3.map((r) => r.seq)).toEqual([21, 22, 23, 24, 25]);
        expect(p3.map((r) => r.event.i)).toEqual([21, 22, 23, 24, 25]);
        expect(await store.read(26, 10)).toEqual([]);
        expect((await store.read(0, 2)).map((r) => r.seq)).toEqual([1, 2]);
        expect(verifyChain([...p1, ...p2, ...p3])).toEqual({ ok: true, count: 25 });
        expect(await verifyAuditLog(store, { batch: 4 })).toEqual({ ok: true, count: 25 });
      });

      it('chains appends made together in the order they were made', async () => {
        await store.append('policy.loaded', { first: true }, 1);
        const together = await Promise.all(Array.from({ length: 12 }, (_, i) => store.append('exchange.issued', { i }, 100 + i)));
        expect(together.map((r) => r.seq)).toEqual(Array.from({ length: 12 }, (_, i) => i + 2));
        expect(together.map((r) => r.event.i)).toEqual(Array.from({ length: 12 }, (_, i) => i));
        for (let i = 1; i < together.length; i++) expect(together[i]!.prevHash).toBe(together[i - 1]!.hash);
        expect(await store.read(1, 20)).toEqual([expect.objectContaining({ seq: 1 }), ...together]);
        expect(await verifyAuditLog(store)).toEqual({ ok: true, count: 13 });
      });

      it('rejects a misuse of read as a TypeError', async () => {
        expect(await rejectionOf(store.read(1, 0))).toBeInstanceOf(TypeError);
        expect(await rejectionOf(store.read(1.5, 10))).toBeInstanceOf(TypeError);
      });

      it('an empty log verifies with count 0', async () => {
        expect(await verifyAuditLog(store)).toEqual({ ok: true, count: 0 });
      });
    });

    describe('replay cache', () => {
      it('remembers a key: true the first time, false on a replay', async () => {
        const exp = clock.now() + 60_000;
        expect(await store.remember('dpop:jti-1', exp)).toBe(true);
        expect(await store.remember('dpop:jti-1', exp)).toBe(false);
        expect(await store.remember('dpop:jti-1', exp + 60_000)).toBe(false);
        expect(await store.remember('dpop:jti-2', exp)).toBe(true);
      });

      it('seen reads without remembering: a dry run consumes nothing', async () => {
        const exp = clock.now() + 60_000;
        expect(await store.seen('dry:1')).toBe(false);
        expect(await store.seen('dry:1')).toBe(false);
        expect(await store.remember('dry:1', exp)).toBe(true);
        expect(await store.seen('dry:1')).toBe(true);
        clock.set(exp);
        expect(await store.seen('dry:1')).toBe(false);
      });

      it('forgets a key once it has expired, and then guards it again', async () => {
        const exp = clock.now() + 60_000;
        expect(await store.remember('k', exp)).toBe(true);
        clock.set(exp - 1);
        expect(await store.remember('k', exp + 60_000)).toBe(false);
        clock.set(exp); // expiresAt is exclusive: at exp the key is gone
        expect(await store.remember('k', exp + 60_000)).toBe(true);
        expect(await store.remember('k', exp + 60_000)).toBe(false);
      });

      it('never forgets a live key while purging expired ones', async () => {
        const live = clock.now() + HOUR;
        expect(await store.remember('live', live)).toBe(true);
        for (let i = 0; i < 1100; i++) await store.remember(`short-${i}`, clock.now() + 1000);
        clock.advance(2);
        for (let i = 0; i < 1100; i++) await store.remember(`churn-${i}`, clock.now() + 1000);
        expect(await store.remember('live', live)).toBe(false);
        expect(await store.remember('short-5', clock.now() + 1000)).toBe(true);
      });
    });

    describe('approvals', () => {
      const approve = (at: number, redeemBy: number | undefined = at + 5 * MINUTE) => ({ state: 'approved', by: 'jwt:https://idp.example#alice', reason: 'looks right', at, redeemBy }) as const;

      async function sibling(): Promise<Store> {
        if (!fx.sibling) throw new Error(`${name}: the fixture offers no sibling(), so sharing is untested`);
        const other = await fx.sibling();
        opened.push(other);
        return other;
      }

      it('creates and reads back every field, and keeps undefined fields undefined', async () => {
        const full = anApproval(clock, { state: 'approved', decidedAt: 5, decidedBy: 'apikey:ops', decisionReason: 'ok', redeemBy: 9, usedAt: 7, lastPollAt: 3 });
        const bare = anApproval(clock, { task: undefined, justification: undefined, chain: undefined });
        await store.createApproval(full);
        await store.createApproval(bare);
        expect(await store.getApproval(full.id)).toEqual(full);
        const back = await store.getApproval(bare.id);
        expect(back).toEqual(bare);
        // toEqual treats a missing key as undefined; the contract's shape has every key present
        expect(Object.keys(back!).sort()).toEqual(Object.keys(bare).sort());
        expect(await store.getApproval('apr_unknown')).toBeUndefined();
        // An MCP tool call's approval keeps what the approver saw: tool, exposed values, hash.
        const call = anApproval(clock, {
          cause: 'tool-call',
          onBehalfOf: 'https://login.example.com#alice',
          personMayDecide: true,
          toolCall: { tool: 'send_email', argumentsSha256: 'A'.repeat(43), arguments: { to: 'ann@example.com', amount: 12.5, nested: { cc: ['b'] } } },
        });
        await store.createApproval(call);
        expect(await store.getApproval(call.id)).toEqual(call);
        const viaOpen = anApproval(clock, { requestHash: 'sha256:tool-call', toolCall: { tool: 't', argumentsSha256: 'B'.repeat(43), arguments: {} } });
        expect((await store.openApproval(viaOpen, { dedupeKey: 'k-tool', maxPerPlugin: 100, maxPerTask: 100 })).outcome).toBe('created');
        expect((await store.getApproval(viaOpen.id))?.toolCall).toEqual(viaOpen.toolCall);
        const err = await rejectionOf(store.createApproval({ ...full, state: 'pending' }));
        expect(err).toBeInstanceOf(TypeError);
        expect((await store.getApproval(full.id))?.state).toBe('approved');
      });

      describe('openApproval: dedupe and limits, atomically', () => {
        const limits = { dedupeKey: 'dk-1', maxPerPlugin: 3, maxPerTask: 4 };
        const pending = (over: Partial<ApprovalRecord> = {}) => anApproval(clock, { requestHash: `h-${Math.random()}`, ...over });

        it('creates; the same request hash, or else the same dedupe key, pending for the plugin comes back instead', async () => {
          const first = pending({ requestHash: 'h-1' });
          expect(await store.openApproval(first, limits)).toEqual({ outcome: 'created' });
          expect(await store.getApproval(first.id)).toEqual(first);
          // same hash, other dedupe key: the exact request wins
          const exact = await store.openApproval(pending({ requestHash: 'h-1' }), { ...limits, dedupeKey: 'dk-other' });
          expect(exact).toEqual({ outcome: 'existing', approval: first });
          // other hash (another TTL or DPoP key), same dedupe key: the pending one too
          const loose = await store.openApproval(pending({ requestHash: 'h-2', ttl: 299 }), limits);
          expect(loose).toEqual({ outcome: 'existing', approval: first });
          // another plugin with the same key is not the same request
          expect((await store.openApproval(pending({ plugin: 'other-plugin' }), limits)).outcome).toBe('created');
          expect((await store.listApprovals({ state: 'pending', now: clock.now(), limit: 10 })).length).toBe(2);
        });

        it('refuses past the plugin limit, then the task limit; decided and expired approvals do not count', async () => {
          for (let i = 0; i < 3; i++) expect((await store.openApproval(pending({ task: `tsk_p${i}` }), { ...limits, dedupeKey: `k${i}` })).outcome).toBe('created');
          expect(await store.openApproval(pending({ task: 'tsk_p9' }), { ...limits, dedupeKey: 'k9' })).toEqual({ outcome: 'limited', scope: 'plugin', pending: 3 });
          // one decided: room for one more
          const [newest] = await store.listApprovals({ state: 'pending', now: clock.now(), limit: 1 });
          await store.decideApproval(newest!.id, approve(clock.now()));
          expect((await store.openApproval(pending({ task: 'tsk_p9' }), { ...limits, dedupeKey: 'k9' })).outcome).toBe('created');
          expect((await store.openApproval(pending({ task: 'tsk_pa' }), { ...limits, dedupeKey: 'ka' })).outcome).toBe('limited');
          // the task limit counts every plugin of the task
          for (let i = 0; i < 4; i++) expect((await store.openApproval(pending({ plugin: `p${i}`, task: 'tsk_shared' }), limits)).outcome).toBe('created');
          expect(await store.openApproval(pending({ plugin: 'p9', task: 'tsk_shared' }), limits)).toEqual({ outcome: 'limited', scope: 'task', pending: 4 });
          // without a task only the plugin limit applies
          expect((await store.openApproval(pending({ plugin: 'p9', task: undefined }), limits)).outcome).toBe('created');
          // once they expire nothing is pending any more
          clock.advance(10 * MINUTE);
          expect((await store.openApproval(pending({ task: 'tsk_pb', requestedAt: clock.now(), expiresAt: clock.now() + MINUTE }), { ...limits, dedupeKey: 'kb' })).outcome).toBe('created');
          expect((await store.openApproval(pending({ plugin: 'p9', task: 'tsk_shared', requestedAt: clock.now(), expiresAt: clock.now() + MINUTE }), limits)).outcome).toBe('created');
        });

        it('concurrent requests on two handles never exceed the limit', async () => {
          const other = await sibling();
          const results = await Promise.all(Array.from({ length: 12 }, (_, i) => (i % 2 ? other : store).openApproval(pending({ task: `tsk_c${i}` }), { ...limits, dedupeKey: `c${i}` })));
          expect(results.filter((r) => r.outcome === 'created')).toHaveLength(3);
          expect(results.filter((r) => r.outcome === 'limited')).toHaveLength(9);
          expect((await store.listApprovals({ state: 'pending', now: clock.now(), limit: 100 })).length).toBe(3);
        });

        it('rejects malformed input as a programming error', async () => {
          expect(await rejectionOf(store.openApproval(pending({ state: 'approved' }), limits))).toBeInstanceOf(TypeError);
          expect(await rejectionOf(store.openApproval(pending(), { ...limits, maxPerPlugin: 0 }))).toBeInstanceOf(TypeError);
          expect(await rejectionOf(store.openApproval(pending(), { ...limits, dedupeKey: '' }))).toBeInstanceOf(TypeError);
        });
      });

      it('decides a pending approval once; a second decision changes nothing', async () => {
        const a = anApproval(clock);
        await store.createApproval(a);
        clock.advance(1);
        const decided = await store.decideApproval(a.id, approve(clock.now()));
        expect(decided).toEqual({
          ...a,
          state: 'approved',
          decidedAt: clock.now(),
          decidedBy: 'jwt:https://idp.example#alice',
          decisionReason: 'looks right',
          redeemBy: clock.now() + 5 * MINUTE,
        });
        expect(await store.getApproval(a.id)).toEqual(decided);
        expect(await store.decideApproval(a.id, { state: 'denied', by: 'apikey:ops', reason: 'no', at: clock.now() + 1, redeemBy: undefined })).toBeUndefined();
        expect(await store.getApproval(a.id)).toEqual(decided);
        expect(await store.decideApproval('apr_unknown', approve(clock.now()))).toBeUndefined();
      });

      it('records a denial with an undefined reason', async () => {
        const a = anApproval(clock);
        await store.createApproval(a);
        const denied = await store.decideApproval(a.id, { state: 'denied', by: 'apikey:ops', reason: undefined, at: clock.now(), redeemBy: undefined });
        expect(denied).toEqual({ ...a, state: 'denied', decidedAt: clock.now(), decidedBy: 'apikey:ops', decisionReason: undefined, redeemBy: undefined });
        expect(await store.getApproval(a.id)).toEqual(denied);
      });

      it('refuses a decision at or after expiry', async () => {
        const a = anApproval(clock);
        await store.createApproval(a);
        expect(await store.decideApproval(a.id, approve(a.expiresAt))).toBeUndefined();
        expect(await store.decideApproval(a.id, approve(a.expiresAt + 1))).toBeUndefined();
        expect((await store.getApproval(a.id))?.state).toBe('pending');
        expect(await store.decideApproval(a.id, approve(a.expiresAt - 1))).toBeDefined();
      });

      it('two replicas deciding at once: exactly one wins', async () => {
        const other = await sibling();
        const a = anApproval(clock);
        await store.createApproval(a);
        const [x, y] = await Promise.all([
          store.decideApproval(a.id, approve(clock.now())),
          other.decideApproval(a.id, { state: 'denied', by: 'apikey:ops', reason: 'no', at: clock.now(), redeemBy: undefined }),
        ]);
        expect([x, y].filter((r) => r !== undefined)).toHaveLength(1);
        expect((await other.getApproval(a.id))?.state).toBe((x ?? y)!.state);
      });

      it('consumes an approved approval exactly once, only until redeemBy', async () => {
        const a = anApproval(clock);
        await store.createApproval(a);
        const decided = (await store.decideApproval(a.id, approve(clock.now())))!;
        clock.advance(1);
        expect(await store.consumeApproval(a.id, clock.now())).toBe(true);
        expect(await store.getApproval(a.id)).toEqual({ ...decided, state: 'used', usedAt: clock.now() });
        expect(await store.consumeApproval(a.id, clock.now())).toBe(false);
        expect(await store.decideApproval(a.id, approve(clock.now()))).toBeUndefined();

        const late = anApproval(clock);
        await store.createApproval(late);
        const d = (await store.decideApproval(late.id, approve(clock.now(), clock.now() + 1000)))!;
        expect(await store.consumeApproval(late.id, d.redeemBy! + 1)).toBe(false);
        expect((await store.getApproval(late.id))?.state).toBe('approved');
        expect(await store.consumeApproval(late.id, d.redeemBy!)).toBe(true); // inclusive
      });

      it('refuses to consume a pending, denied, unknown or redeemBy-less approval', async () => {
        const pending = anApproval(clock);
        const denied = anApproval(clock);
        const noDeadline = anApproval(clock);
        for (const a of [pending, denied, noDeadline]) await store.createApproval(a);
        await store.decideApproval(denied.id, { state: 'denied', by: 'apikey:ops', reason: 'no', at: clock.now(), redeemBy: clock.now() + MINUTE });
        await store.decideApproval(noDeadline.id, { ...approve(clock.now()), redeemBy: undefined });
        expect(await store.consumeApproval(pending.id, clock.now())).toBe(false);
        expect(await store.consumeApproval(denied.id, clock.now())).toBe(false);
        expect(await store.consumeApproval(noDeadline.id, clock.now())).toBe(false);
        expect(await store.consumeApproval('apr_unknown', clock.now())).toBe(false);
        expect((await store.getApproval(pending.id))?.state).toBe('pending');
        expect((await store.getApproval(denied.id))?.state).toBe('denied');
      });

      it('two replicas redeeming the same approval at once: exactly one wins', async () => {
        const other = await sibling();
        for (let round = 0; round < 5; round++) {
          const a = anApproval(clock);
          await store.createApproval(a);
          await store.decideApproval(a.id, approve(clock.now()));
          const results = await Promise.all([store.consumeApproval(a.id, clock.now()), other.consumeApproval(a.id, clock.now()), store.consumeApproval(a.id, clock.now())]);
          expect(results.filter(Boolean)).toHaveLength(1);
        }
      });

      it('paces polls: ok, slow_down within the interval (without moving it), ok after it', async () => {
        const a = anApproval(clock);
        await store.createApproval(a);
        const t0 = clock.now();
        expect(await store.recordApprovalPoll(a.id, t0, 5000)).toBe('ok');
        expect((await store.getApproval(a.id))?.lastPollAt).toBe(t0);
        expect(await store.recordApprovalPoll(a.id, t0 + 4999, 5000)).toBe('slow_down');
        expect((await store.getApproval(a.id))?.lastPollAt).toBe(t0);
        expect(await store.recordApprovalPoll(a.id, t0 + 5000, 5000)).toBe('ok');
        expect((await store.getApproval(a.id))?.lastPollAt).toBe(t0 + 5000);
        expect(await store.recordApprovalPoll(a.id, t0 + 5001, 5000)).toBe('slow_down');
      });

      it('paces polls across replicas: of concurrent polls exactly one is ok', async () => {
        const other = await sibling();
        const a = anApproval(clock);
        await store.createApproval(a);
        const t = clock.now();
        const results = await Promise.all([store.recordApprovalPoll(a.id, t, 5000), other.recordApprovalPoll(a.id, t, 5000), other.recordApprovalPoll(a.id, t + 1, 5000)]);
        expect(results.filter((r) => r === 'ok')).toHaveLength(1);
        expect(results.filter((r) => r === 'slow_down')).toHaveLength(2);
      });

      it('lists newest first, filters by state, hides expired pending ones, honours the limit', async () => {
        const t0 = clock.now();
        const old = anApproval(clock, { requestedAt: t0, expiresAt: t0 + MINUTE });
        const mid = anApproval(clock, { requestedAt: t0 + 1000, expiresAt: t0 + 10 * MINUTE });
        const young = anApproval(clock, { requestedAt: t0 + 2000, expiresAt: t0 + 10 * MINUTE });
        const denied = anApproval(clock, { requestedAt: t0 + 3000 });
        for (const a of [mid, old, denied, young]) await store.createApproval(a);
        const d = await store.decideApproval(denied.id, { state: 'denied', by: 'apikey:ops', reason: 'no', at: t0 + 3000, redeemBy: undefined });
        const now = t0 + 2 * MINUTE; // `old` has expired, still pending in storage
        const ids = (xs: ApprovalRecord[]) => xs.map((x) => x.id);
        expect(ids(await store.listApprovals({ state: 'pending', now, limit: 10 }))).toEqual([young.id, mid.id]);
        expect(ids(await store.listApprovals({ state: 'pending', now: t0, limit: 10 }))).toEqual([young.id, mid.id, old.id]);
        expect(ids(await store.listApprovals({ state: 'pending', now, limit: 1 }))).toEqual([young.id]);
        expect(await store.listApprovals({ state: 'denied', now, limit: 10 })).toEqual([d]);
        expect(await store.listApprovals({ state: 'used', now, limit: 10 })).toEqual([]);
        expect(ids(await store.listApprovals({ now, limit: 10 }))).toEqual([denied.id, young.id, mid.id, old.id]);
        expect(ids(await store.listApprovals({ now, limit: 2 }))).toEqual([denied.id, young.id]);
        expect((await store.listApprovals({ now, limit: 10 }))[2]).toEqual(mid);
      });

      it('rejects malformed arguments as programming errors', async () => {
        expect(await rejectionOf(store.createApproval({ ...anApproval(clock), state: 'maybe' as never }))).toBeInstanceOf(TypeError);
        expect(await rejectionOf(store.createApproval({ ...anApproval(clock), id: '' }))).toBeInstanceOf(TypeError);
        expect(await rejectionOf(store.listApprovals({ now: 1, limit: 0 }))).toBeInstanceOf(TypeError);
        expect(await rejectionOf(store.recordApprovalPoll('a', 1.5, 10))).toBeInstanceOf(TypeError);
        expect(await rejectionOf(store.decideApproval('a', { state: 'used' as never, by: 'x', reason: undefined, at: 1, redeemBy: undefined }))).toBeInstanceOf(TypeError);
      });
    });

    describe('vault leases', () => {
      it('records leases and finds the unrevoked ones of given credentials', async () => {
        const a = aLease(clock);
        const b = aLease(clock, { task: undefined, expiresAt: clock.now() + MINUTE });
        const c = aLease(clock);
        for (const l of [a, b, c]) await store.recordLease(l);
        const found = await store.leasesForTokens([a.jti, b.jti, 'jti_unknown']);
        expect([...found].sort((x, y) => (x.jti < y.jti ? -1 : 1))).toEqual([a, b].sort((x, y) => (x.jti < y.jti ? -1 : 1)));
        expect(Object.keys(found.find((l) => l.jti === b.jti)!).sort()).toEqual(Object.keys(b).sort());
        expect(await store.leasesForTokens([])).toEqual([]);
        expect(await store.markLeaseRevoked(a.jti, clock.now())).toBe(true);
        expect(await store.leasesForTokens([a.jti, b.jti])).toEqual([b]);
        expect(await rejectionOf(store.recordLease({ ...a, leaseId: 'other' }))).toBeInstanceOf(TypeError);
      });

      it('lists due leases oldest first, up to the limit, without revoked or future ones', async () => {
        const t = clock.now();
        const l1 = aLease(clock, { expiresAt: t + 1000 });
        const l2 = aLease(clock, { expiresAt: t + 2000 });
        const l3 = aLease(clock, { expiresAt: t + 3000 });
        const future = aLease(clock, { expiresAt: t + HOUR });
        for (const l of [l3, future, l1, l2]) await store.recordLease(l);
        expect(await store.dueLeases(t, 10)).toEqual([]);
        expect(await store.dueLeases(t + 3000, 10)).toEqual([l1, l2, l3]);
        expect(await store.dueLeases(t + 3000, 2)).toEqual([l1, l2]);
        expect(await store.dueLeases(t + 1999, 10)).toEqual([l1]);
        expect(await store.markLeaseRevoked(l1.jti, t + 3000)).toBe(true);
        expect(await store.dueLeases(t + 3000, 10)).toEqual([l2, l3]);
      });

      it('marks a lease revoked once: true, then false; unknown is false', async () => {
        const l = aLease(clock);
        await store.recordLease(l);
        expect(await store.markLeaseRevoked(l.jti, 10)).toBe(true);
        expect(await store.markLeaseRevoked(l.jti, 20)).toBe(false);
        expect(await store.markLeaseRevoked('jti_unknown', 20)).toBe(false);
        expect(await store.leasesForTokens([l.jti])).toEqual([]);
      });

      it('two replicas revoking the same lease at once: one true', async () => {
        if (!fx.sibling) throw new Error(`${name}: the fixture offers no sibling(), so sharing is untested`);
        const other = await fx.sibling();
        opened.push(other);
        const l = aLease(clock);
        await store.recordLease(l);
        const r = await Promise.all([store.markLeaseRevoked(l.jti, 1), other.markLeaseRevoked(l.jti, 1)]);
        expect(r.filter(Boolean)).toHaveLength(1);
      });
    });

    describe('approvals and leases across reopen', () => {
      it('keeps approvals (with their poll time and decisions) and leases', async () => {
        if (!fx.reopen) throw new Error(`${name}: the fixture offers no reopen(), so durability is untested`);
        const pending = anApproval(clock);
        const used = anApproval(clock, { chain: undefined });
        await store.createApproval(pending);
        await store.createApproval(used);
        await store.recordApprovalPoll(pending.id, clock.now(), 5000);
        await store.decideApproval(used.id, { state: 'approved', by: 'apikey:ops', reason: undefined, at: clock.now(), redeemBy: clock.now() + MINUTE });
        await store.consumeApproval(used.id, clock.now());
        const live = aLease(clock);
        const gone = aLease(clock);
        await store.recordLease(live);
        await store.recordLease(gone);
        await store.markLeaseRevoked(gone.jti, clock.now());
        const before = { pending: await store.getApproval(pending.id), used: await store.getApproval(used.id) };
        await store.close();
        const again = await fx.reopen();
        opened.push(again);
        expect(await again.getApproval(pending.id)).toEqual(before.pending);
        expect(await again.getApproval(used.id)).toEqual(before.used);
        expect(await again.consumeApproval(used.id, clock.now())).toBe(false);
        expect(await again.recordApprovalPoll(pending.id, clock.now() + 1, 5000)).toBe('slow_down');
        expect(await again.leasesForTokens([live.jti, gone.jti])).toEqual([live]);
        expect(await again.dueLeases(live.expiresAt, 10)).toEqual([live]);
        expect(await again.markLeaseRevoked(gone.jti, clock.now())).toBe(false);
      });
    });

    describe('aws session denies', () => {
      const ROLE = 'arn:aws:iam::123456789012:role/leash/reader';
      it('compare-and-set: insert when absent, replace when equal, delete; a stale writer loses', async () => {
        expect(await store.getAwsDeny(ROLE)).toBeUndefined();
        expect(await store.listAwsDenyRoles()).toEqual([]);
        expect(await store.casAwsDeny(ROLE, undefined, '{"rev":1}')).toBe(true);
        // A second "insert" saw no row, but one exists now: it must lose, not overwrite.
        expect(await store.casAwsDeny(ROLE, undefined, '{"rev":1,"other":true}')).toBe(false);
        expect(await store.getAwsDeny(ROLE)).toBe('{"rev":1}');
        expect(await store.casAwsDeny(ROLE, '{"rev":0}', '{"rev":2}')).toBe(false);
        expect(await store.casAwsDeny(ROLE, '{"rev":1}', '{"rev":2}')).toBe(true);
        expect(await store.getAwsDeny(ROLE)).toBe('{"rev":2}');
        expect(await store.listAwsDenyRoles()).toEqual([ROLE]);
        expect(await store.casAwsDeny(ROLE, '{"rev":1}', undefined)).toBe(false);
        expect(await store.casAwsDeny(ROLE, '{"rev":2}', undefined)).toBe(true);
        expect(await store.getAwsDeny(ROLE)).toBeUndefined();
        expect(await store.listAwsDenyRoles()).toEqual([]);
      });

      it('concurrent writers from one expected document: exactly one wins', async () => {
        await store.casAwsDeny(ROLE, undefined, 'a');
        const r = await Promise.all(['b', 'c', 'd'].map((next) => store.casAwsDeny(ROLE, 'a', next)));
        expect(r.filter(Boolean)).toHaveLength(1);
      });

      it('survives a reopen (a pending IAM update outlives a restart)', async () => {
        if (!fx.reopen) throw new Error(`${name}: the fixture offers no reopen(), so durability is untested`);
        await store.casAwsDeny(ROLE, undefined, '{"pending":true}');
        await store.close();
        const again = await fx.reopen();
        opened.push(again);
        expect(await again.getAwsDeny(ROLE)).toBe('{"pending":true}');
        expect(await again.listAwsDenyRoles()).toEqual([ROLE]);
      });

      it('misuse is a TypeError', async () => {
        await expect(store.casAwsDeny(ROLE, undefined, '')).rejects.toBeInstanceOf(TypeError);
        await expect(store.casAwsDeny('', undefined, 'x')).rejects.toBeInstanceOf(TypeError);
      });
    });

    describe('usage', () => {
      const MIN = 60_000;
      const RET = 30 * 86400_000;
      const agg = (over: Partial<UsageAggregate> = {}): UsageAggregate => ({
        minute: Math.floor(clock.now() / MIN) * MIN,
        jti: 'jti-1',
        plugin: 'github-reader',
        task: 'tsk_1',
        server: 'github-api',
        audience: 'https://api.github.com',
        method: 'GET',
        route: '/repos/:owner/:repo',
        outcome: 'ok',
        calls: 1,
        errors: 0,
        bytes: 100,
        durationMs: 5,
        maxDurationMs: 5,
        firstAt: Math.floor(clock.now() / MIN) * MIN + 1000,
        lastAt: Math.floor(clock.now() / MIN) * MIN + 2000,
        ...over,
      });
      const batch = (over: Partial<UsageBatch> = {}): UsageBatch => ({ aggregates: [], uses: [], taskDeltas: [], marks: [], retentionMs: RET, ...over });

      it('adds aggregates of the same jti/route/minute/outcome together and keeps the others apart', async () => {
        await store.ingestUsage(batch({ aggregates: [agg(), agg({ route: '/user' }), agg({ outcome: 'expired', errors: 1, bytes: 0 })] }));
        await store.ingestUsage(batch({ aggregates: [agg({ calls: 2, bytes: 50, durationMs: 30, maxDurationMs: 20, firstAt: agg().minute + 500, lastAt: agg().minute + 1500 })] }));
        clock.advance(60);
        await store.ingestUsage(batch({ aggregates: [agg()] }));
        await store.ingestUsage(batch({ aggregates: [agg({ task: 'tsk_other' })] }));
        const rows = await store.listTaskUsage('tsk_1', 100);
        const m0 = Math.floor((clock.now() - 60_000) / MIN) * MIN;
        expect(rows.map((r) => [r.minute - m0, r.route, r.outcome, r.calls, r.errors, r.bytes, r.durationMs, r.maxDurationMs])).toEqual([
          [0, '/repos/:owner/:repo', 'expired', 1, 1, 0, 5, 5],
          [0, '/repos/:owner/:repo', 'ok', 3, 0, 150, 35, 20],
          [0, '/user', 'ok', 1, 0, 100, 5, 5],
          [MIN, '/repos/:owner/:repo', 'ok', 1, 0, 100, 5, 5],
        ]);
        expect([rows[1]!.firstAt - m0, rows[1]!.lastAt - m0]).toEqual([500, 2000]);
        expect(rows[0]).toMatchObject({ jti: 'jti-1', plugin: 'github-reader', task: 'tsk_1', server: 'github-api', audience: 'https://api.github.com', method: 'GET' });
        expect(await store.listTaskUsage('tsk_1', 2)).toHaveLength(2);
        expect(await store.listTaskUsage('tsk_none', 10)).toEqual([]);
      });

      it('token uses: first use once, a second source is new once, sources are capped', async () => {
        const keep = clock.now() + HOUR;
        const use = (source: string) => ({ jti: 'jti-s', source, at: clock.now(), keepUntil: keep });
        const r1 = await store.ingestUsage(batch({ uses: [use('jkt:A'), use('jkt:A')] }));
        expect(r1.uses).toEqual([
          { jti: 'jti-s', first: true, newSource: false, sources: 1 },
          { jti: 'jti-s', first: false, newSource: false, sources: 1 },
        ]);
        const r2 = await store.ingestUsage(batch({ uses: [use('jkt:B'), use('jkt:B'), use('')] }));
        expect(r2.uses.map((u) => [u.first, u.newSource, u.sources])).toEqual([
          [false, true, 2],
          [false, false, 2],
          [false, false, 2],
        ]);
        const many = Array.from({ length: MAX_TOKEN_SOURCES + 3 }, (_, i) => use(`addr:10.0.0.${i}`));
        const r3 = await store.ingestUsage(batch({ uses: many }));
        expect(r3.uses.filter((u) => u.newSource)).toHaveLength(MAX_TOKEN_SOURCES - 2);
        expect(Math.max(...r3.uses.map((u) => u.sources))).toBe(MAX_TOKEN_SOURCES);
        // Without a source a first use counts no source.
        const r4 = await store.ingestUsage(batch({ uses: [{ jti: 'jti-nosrc', source: '', at: clock.now(), keepUntil: keep }] }));
        expect(r4.uses).toEqual([{ jti: 'jti-nosrc', first: true, newSource: false, sources: 0 }]);
      });

      it('concurrent batches see a token first exactly once (atomic across handles)', async () => {
        const other = fx.sibling ? await fx.sibling() : store;
        if (other !== store) opened.push(other);
        const use = { jti: 'jti-race', source: 'jkt:A', at: clock.now(), keepUntil: clock.now() + HOUR };
        const results = await Promise.all(Array.from({ length: 6 }, (_, i) => (i % 2 ? other : store).ingestUsage(batch({ uses: [use] }))));
        expect(results.filter((r) => r.uses[0]!.first)).toHaveLength(1);
      });

      it("a repeated (token, source) use answers the store's truth across handles, also after another handle's purge", async () => {
        const other = fx.sibling ? await fx.sibling() : store;
        if (other !== store) opened.push(other);
        const use = (source: string, at = clock.now()) => ({ jti: 'jti-known', source, at, keepUntil: at + HOUR });
        expect((await store.ingestUsage(batch({ uses: [use('jkt:A')] }))).uses[0]).toEqual({ jti: 'jti-known', first: true, newSource: false, sources: 1 });
        // A source added through the other handle: this handle's repeated use counts it.
        expect((await other.ingestUsage(batch({ uses: [use('jkt:B')] }))).uses[0]).toEqual({ jti: 'jti-known', first: false, newSource: true, sources: 2 });
        expect((await store.ingestUsage(batch({ uses: [use('jkt:A')] }))).uses[0]).toEqual({ jti: 'jti-known', first: false, newSource: false, sources: 2 });
        expect((await store.ingestUsage(batch({ uses: [use('jkt:B'), use('')] }))).uses.map((u) => [u.first, u.newSource, u.sources])).toEqual([
          [false, false, 2],
          [false, false, 2],
        ]);
        // The other handle forgets the token by retention; this one's next use is a first use again.
        clock.advance(2 * 3600);
        await other.purgeUsage(clock.now(), HOUR);
        expect((await store.ingestUsage(batch({ uses: [use('jkt:A')] }))).uses[0]).toEqual({ jti: 'jti-known', first: true, newSource: false, sources: 1 });
        expect((await store.ingestUsage(batch({ uses: [use('jkt:B')] }))).uses[0]).toEqual({ jti: 'jti-known', first: false, newSource: true, sources: 2 });
      });

      it('task counters per audience and in total, returned after the batch', async () => {
        const keep = clock.now() + HOUR;
        const d = (audience: string, calls: number, bytes: number) => ({ task: 'tsk_b', audience, calls, bytes, keepUntil: keep });
        const r = await store.ingestUsage(batch({ taskDeltas: [d('https://a', 2, 10), d('https://b', 1, 5), d('https://a', 1, 1)] }));
        const byAud = (rows: readonly TaskUsageTotals[]) => Object.fromEntries(rows.map((t) => [t.audience, [t.calls, t.bytes]]));
        expect(byAud(r.totals)).toEqual({ 'https://a': [3, 11], 'https://b': [1, 5], [ALL_AUDIENCES]: [4, 16] });
        expect(r.totals.every((t) => t.task === 'tsk_b')).toBe(true);
        expect(byAud(await store.taskUsageTotals('tsk_b'))).toEqual({ 'https://a': [3, 11], 'https://b': [1, 5], [ALL_AUDIENCES]: [4, 16] });
        expect(await store.taskUsageTotals('tsk_unknown')).toEqual([]);
      });

      it('charges synchronously only within the limits, atomically across handles', async () => {
        const keep = clock.now() + HOUR;
        const first = await store.chargeTaskUsage('tsk_c', 'https://a', 1, { totalCalls: 5, audienceCalls: 3 }, keep);
        expect(first.charged).toBe(true);
        expect(first.totals.find((t) => t.audience === 'https://a')?.calls).toBe(1);
        const other = fx.sibling ? await fx.sibling() : store;
        if (other !== store) opened.push(other);
        const tries = await Promise.all(Array.from({ length: 6 }, (_, i) => (i % 2 ? other : store).chargeTaskUsage('tsk_c', 'https://a', 1, { totalCalls: 5, audienceCalls: 3 }, keep)));
        expect(tries.filter((t) => t.charged)).toHaveLength(2);
        const refused = await store.chargeTaskUsage('tsk_c', 'https://b', 3, { totalCalls: 5 }, keep);
        expect(refused.charged).toBe(false);
        expect(refused.totals.find((t) => t.audience === ALL_AUDIENCES)?.calls).toBe(3);
        expect((await store.chargeTaskUsage('tsk_c', 'https://b', 2, { totalCalls: 5 }, keep)).charged).toBe(true);
        expect((await store.chargeTaskUsage('tsk_c', 'https://c', 1, {}, keep)).charged).toBe(true);
      });

      it('a budget is marked exhausted once', async () => {
        const keep = clock.now() + HOUR;
        expect(await store.budgetExhaustions('tsk_x')).toEqual({});
        expect(await store.markBudgetExhausted('tsk_x', ALL_AUDIENCES, 1000, keep)).toBe(true);
        expect(await store.markBudgetExhausted('tsk_x', ALL_AUDIENCES, 2000, keep)).toBe(false);
        expect(await store.markBudgetExhausted('tsk_x', 'https://a', 3000, keep)).toBe(true);
        expect(await store.budgetExhaustions('tsk_x')).toEqual({ [ALL_AUDIENCES]: 1000, 'https://a': 3000 });
      });

      it('evidence: last used per plugin, grant, route and scope, with the calls before each batch', async () => {
        const mark = (kind: EvidenceMark['kind'], name: string, calls: number, plugin = 'github-reader') => ({ plugin, audience: 'https://api.github.com', kind, name, at: clock.now(), calls });
        const first = await store.ingestUsage(batch({ marks: [mark('grant', '', 3), mark('route', 'GET /user', 3), mark('scope', 'repo:read', 3)] }));
        expect(first.previousCalls).toEqual([0, 0, 0]);
        const t0 = clock.now();
        clock.advance(10);
        const second = await store.ingestUsage(batch({ marks: [mark('grant', '', 1), mark('route', 'GET /repos/:owner/:repo', 1), mark('grant', '', 1, 'slack-poster')] }));
        expect(second.previousCalls).toEqual([3, 0, 0]);
        const rows = await store.usageEvidence({ plugin: 'github-reader', now: clock.now(), retentionMs: RET });
        expect(rows.map((r) => [r.kind, r.name, r.calls, r.firstAt - t0, r.lastAt - t0])).toEqual([
          ['grant', '', 4, 0, 10_000],
          ['route', 'GET /repos/:owner/:repo', 1, 10_000, 10_000],
          ['route', 'GET /user', 3, 0, 0],
          ['scope', 'repo:read', 3, 0, 0],
        ]);
        expect((await store.usageEvidence({ now: clock.now(), retentionMs: RET })).map((r) => r.plugin)).toEqual([...Array(4).fill('github-reader'), 'slack-poster']);
        // Past retention, evidence no longer counts (and is purged).
        clock.advance(RET / 1000 - 5);
        const names = async (retentionMs: number) => (await store.usageEvidence({ plugin: 'github-reader', now: clock.now(), retentionMs })).map((r) => r.name);
        expect(await names(RET)).toEqual(['', 'GET /repos/:owner/:repo']);
        expect(await store.purgeUsage(clock.now(), RET)).toBeGreaterThanOrEqual(2);
        expect(await names(RET * 2)).toEqual(['', 'GET /repos/:owner/:repo']);
      });

      it('task timeline index: by seq, once per (task, seq)', async () => {
        const keep = clock.now() + HOUR;
        await store.indexTaskEvents(
          [
            { task: 'tsk_t', seq: 5, ts: 50, type: 'exchange.issued' },
            { task: 'tsk_t', seq: 2, ts: 20, type: 'task.opened' },
            { task: 'tsk_u', seq: 3, ts: 30, type: 'task.opened' },
          ],
          keep,
        );
        await store.indexTaskEvents([{ task: 'tsk_t', seq: 5, ts: 50, type: 'exchange.issued' }], keep);
        expect(await store.listTaskEvents('tsk_t', 10)).toEqual([
          { task: 'tsk_t', seq: 2, ts: 20, type: 'task.opened' },
          { task: 'tsk_t', seq: 5, ts: 50, type: 'exchange.issued' },
        ]);
        expect(await store.listTaskEvents('tsk_t', 1)).toHaveLength(1);
        await store.indexTaskEvents([], keep);
      });

      it('downstream events: deduplicated by id, listed by task and by plugin', async () => {
        const keep = clock.now() + HOUR;
        const ev = (id: string, at: number, over: Partial<DownstreamEvent> = {}): DownstreamEvent => ({
          id,
          source: 'cloudtrail',
          at,
          task: 'tsk_d',
          plugin: 's3-reader',
          jti: 'aws:ASIAEXAMPLE',
          action: 's3:GetObject',
          target: 'arn:aws:s3:::b/k',
          outcome: 'success',
          principal: 'arn:aws:sts::1:assumed-role/r/s',
          link: 'access_key',
          sourceAddress: '203.0.113.9',
          ...over,
        });
        expect(await store.recordDownstream([ev('e2', 2000), ev('e1', 1000), ev('e3', 3000, { task: 'tsk_other' })], keep)).toBe(3);
        expect(await store.recordDownstream([ev('e1', 1000), ev('e4', 4000, { source: 'vault', plugin: 'db-reader', action: 'read database/creds/ro' })], keep)).toBe(1);
        expect((await store.listTaskDownstream('tsk_d', 10)).map((e) => e.id)).toEqual(['e1', 'e2', 'e4']);
        expect(await store.listTaskDownstream('tsk_d', 10)).toContainEqual(ev('e1', 1000));
        expect((await store.listPluginDownstream('s3-reader', 1500, 10)).map((e) => e.id)).toEqual(['e3', 'e2']);
        expect((await store.listPluginDownstream('s3-reader', 0, 1)).map((e) => e.id)).toEqual(['e3']);
      });

      it('credential links: downstream names of issued credentials, the first link kept', async () => {
        const keep = clock.now() + HOUR;
        await store.linkCredentials(
          [
            { kind: 'aws_access_key', id: 'ASIAEXAMPLE1', jti: 'aws:ASIAEXAMPLE1', plugin: 's3-reader', task: 'tsk_l' },
            { kind: 'vault_lease', id: 'database/creds/ro/abc', jti: 'j-v', plugin: 'db-reader', task: '' },
          ],
          keep,
        );
        await store.linkCredentials([{ kind: 'aws_access_key', id: 'ASIAEXAMPLE1', jti: 'other', plugin: 'x', task: 'y' }], keep);
        expect(await store.resolveCredentialLinks('aws_access_key', ['ASIAEXAMPLE1', 'ASIAUNKNOWN'])).toEqual([
          { kind: 'aws_access_key', id: 'ASIAEXAMPLE1', jti: 'aws:ASIAEXAMPLE1', plugin: 's3-reader', task: 'tsk_l' },
        ]);
        expect(await store.resolveCredentialLinks('vault_accessor', ['database/creds/ro/abc'])).toEqual([]);
        expect((await store.resolveCredentialLinks('vault_lease', ['database/creds/ro/abc']))[0]?.plugin).toBe('db-reader');
        expect(await store.resolveCredentialLinks('vault_lease', [])).toEqual([]);
        clock.advance(2 * 3600);
        await store.purgeUsage(clock.now(), HOUR);
        expect(await store.resolveCredentialLinks('aws_access_key', ['ASIAEXAMPLE1'])).toEqual([]);
      });

      it('stays bounded: the purge drops aggregates past retention and state past keepUntil', async () => {
        const keep = clock.now() + HOUR;
        await store.ingestUsage(
          batch({
            aggregates: [agg()],
            uses: [{ jti: 'jti-p', source: 'jkt:A', at: clock.now(), keepUntil: keep }],
            taskDeltas: [{ task: 'tsk_p', audience: 'https://a', calls: 1, bytes: 1, keepUntil: keep }],
          }),
        );
        await store.indexTaskEvents([{ task: 'tsk_p', seq: 1, ts: 1, type: 'task.opened' }], keep);
        clock.advance(2 * 3600);
        await store.purgeUsage(clock.now(), HOUR);
        expect(await store.listTaskUsage('tsk_1', 10)).toEqual([]);
        expect(await store.taskUsageTotals('tsk_p')).toEqual([]);
        expect(await store.listTaskEvents('tsk_p', 10)).toEqual([]);
        // The token's state went too: its next use is a first use again.
        const r = await store.ingestUsage(batch({ uses: [{ jti: 'jti-p', source: 'jkt:B', at: clock.now(), keepUntil: clock.now() + HOUR }] }));
        expect(r.uses[0]!.first).toBe(true);
      });

      it('misuse is a TypeError', async () => {
        await expect(store.ingestUsage(batch({ aggregates: [agg({ minute: 1 })] }))).rejects.toBeInstanceOf(TypeError);
        await expect(store.ingestUsage(batch({ aggregates: [agg({ outcome: 'nope' as never })] }))).rejects.toBeInstanceOf(TypeError);
        await expect(store.ingestUsage(batch({ uses: [{ jti: '', source: '', at: 1, keepUntil: 2 }] }))).rejects.toBeInstanceOf(TypeError);
        await expect(store.chargeTaskUsage('', 'a', 1, {}, 1)).rejects.toBeInstanceOf(TypeError);
        await expect(store.listTaskUsage('t', 0)).rejects.toBeInstanceOf(TypeError);
      });

      it('fails closed once closed', async () => {
        await store.close();
        for (const call of [
          () => store.ingestUsage(batch({ aggregates: [agg()] })),
          () => store.chargeTaskUsage('t', 'a', 1, {}, clock.now() + 1000),
          () => store.listTaskUsage('t', 1),
          () => store.usageEvidence({ now: 1, retentionMs: 1 }),
          () => store.listTaskEvents('t', 1),
          () => store.recordDownstream([], 1),
          () => store.listTaskDownstream('t', 1),
          () => store.taskUsageTotals('t'),
        ]) {
          const err = await rejectionOf(call());
          expect(isLeashError(err) ? err.code : String(err)).toBe('ERR_BACKEND_UNAVAILABLE');
        }
      });
    });

    describe('argument checks (CheckedStore: one set of checks for every backend)', () => {
      const bad = <T>(v: unknown): T => v as T;

      it('is a CheckedStore, so no call reaches the backend unchecked', () => {
        expect(store).toBeInstanceOf(CheckedStore);
      });

      it('refuses a malformed task as a TypeError naming the field, and stores nothing', async () => {
        const rows: Array<[Partial<Record<keyof Task, unknown>>, RegExp]> = [
          [{ state: 'bogus' }, /createTask: state/],
          [{ expiresAt: Number.NaN }, /createTask: expiresAt/],
          [{ createdBy: undefined }, /createTask: createdBy/],
          [{ plugins: 'github-reader' }, /createTask: plugins/],
          [{ attributes: { env: 1 } }, /createTask: attributes/],
        ];
        for (const [over, message] of rows) {
          const task = { ...aTask(clock), ...over } as Task;
          const err = await rejectionOf(store.createTask(task));
          expect(err).toBeInstanceOf(TypeError);
          expect((err as Error).message).toMatch(message);
          expect(await store.getTask(task.id)).toBeUndefined();
        }
        expect(await store.countActiveTasks(clock.now())).toBe(0);
      });

      it('refuses a malformed issued token as a TypeError naming the field, and records nothing', async () => {
        const rows: Array<[Partial<Record<keyof IssuedToken, unknown>>, RegExp]> = [
          [{ plugin: undefined }, /recordIssued: plugin/],
          [{ expiresAt: Number.NaN }, /recordIssued: expiresAt/],
          [{ scopes: 'repo:read' }, /recordIssued: scopes/],
          [{ jti: '' }, /recordIssued: jti/],
        ];
        for (const [over, message] of rows) {
          const token = { ...aToken(clock, { task: 'tsk_checks' }), ...over } as IssuedToken;
          const err = await rejectionOf(store.recordIssued(token));
          expect(err).toBeInstanceOf(TypeError);
          expect((err as Error).message).toMatch(message);
        }
        expect(await store.countIssuedForTask('tsk_checks')).toBe(0);
      });

      it('refuses a lookup by something other than a string, and numbers that are not times', async () => {
        const calls: Array<() => Promise<unknown>> = [
          () => store.getTask(bad({})),
          () => store.getIssued(bad({})),
          () => store.listIssuedForTask(bad(7)),
          () => store.countIssuedForTask(bad(undefined)),
          () => store.countIssuedForTaskPlugin(bad(undefined), 'p1'),
          () => store.countIssuedForTaskPlugin('tsk_x', bad(7)),
          () => store.purgeIssued(Number.NaN, 10),
          () => store.getApproval(bad({})),
          () => store.countActiveTasks(Number.NaN),
          () => store.endTask('tsk_x', Number.NaN, 'apikey:security'),
          () => store.endTask('tsk_x', clock.now(), ''),
          () => store.chargeTaskUsage('tsk_x', 'https://api.example', 1, bad(null), clock.now() + HOUR),
          () => store.chargeTaskUsage('tsk_x', 'https://api.example', 1, { totalCalls: 1.5 }, clock.now() + HOUR),
          () => store.usageEvidence({ plugin: bad({}), now: clock.now(), retentionMs: HOUR }),
          () => store.acceptReset('', clock.now()),
          () => store.acceptReset('apikey:security', Number.NaN),
          () => store.seen(''),
          () => store.seen(bad({})),
        ];
        for (const call of calls) expect(await rejectionOf(call())).toBeInstanceOf(TypeError);
        expect(await store.taskUsageTotals('tsk_x')).toEqual([]);
        expect(() => store.subscribe(bad('not a function'))).toThrow(TypeError);
        expect(() => store.onIdentityChange(bad(undefined))).toThrow(TypeError);
      });

      it('checks before the backend is reached: a malformed call to a closed store is still a TypeError', async () => {
        await store.close();
        expect(await rejectionOf(store.createTask({ ...aTask(clock), state: bad('bogus') }))).toBeInstanceOf(TypeError);
        expect(await rejectionOf(store.addRevocation(aRevocation(clock, { scope: bad('everything') })))).toBeInstanceOf(TypeError);
        const unavailable = await rejectionOf(store.createTask(aTask(clock)));
        expect(isLeashError(unavailable) && unavailable.code).toBe('ERR_BACKEND_UNAVAILABLE');
      });
    });

    describe('lifecycle', () => {
      it('answers ping while open', async () => {
        await expect(store.ping()).resolves.toBeUndefined();
        expect(store.kind.length).toBeGreaterThan(0);
      });

      it('fails closed with ERR_BACKEND_UNAVAILABLE once closed', async () => {
        await store.close();
        await store.close(); // idempotent
        const calls: Array<[string, () => Promise<unknown>]> = [
          ['ping', () => store.ping()],
          ['createTask', () => store.createTask(aTask(clock))],
          ['getTask', () => store.getTask('t')],
          ['endTask', () => store.endTask('t', 1, 'x')],
          ['countActiveTasks', () => store.countActiveTasks(1)],
          ['recordIssued', () => store.recordIssued(aToken(clock))],
          ['getIssued', () => store.getIssued('j')],
          ['listIssuedForTask', () => store.listIssuedForTask('t')],
          ['append', () => store.append('task.opened', {}, 1)],
          ['read', () => store.read(1, 1)],
          ['remember', () => store.remember('k', clock.now() + 1000)],
          ['seen', () => store.seen('k')],
          ['listExpiredActiveTasks', () => store.listExpiredActiveTasks(1, 10)],
          ['listLiveIssuedForPlugin', () => store.listLiveIssuedForPlugin('p', 1)],
          ['countIssuedForTask', () => store.countIssuedForTask('t')],
          ['countIssuedForTaskPlugin', () => store.countIssuedForTaskPlugin('t', 'p')],
          ['purgeIssued', () => store.purgeIssued(1, 10)],
          ['addRevocation', () => store.addRevocation(aRevocation(clock))],
          ['revocationsSince', () => store.revocationsSince(0, 10, 1)],
          ['purgeRevocations', () => store.purgeRevocations(1)],
          ['suspendPlugin', () => store.suspendPlugin({ plugin: 'p', since: 1, actor: 'a', reason: '' })],
          ['resumePlugin', () => store.resumePlugin('p')],
          ['listSuspensions', () => store.listSuspensions()],
          ['incrementWindow', () => store.incrementWindow('k', 1000, 1)],
          ['createApproval', () => store.createApproval(anApproval(clock))],
          ['getApproval', () => store.getApproval('a')],
          ['decideApproval', () => store.decideApproval('a', { state: 'denied', by: 'x', reason: undefined, at: 1, redeemBy: undefined })],
          ['consumeApproval', () => store.consumeApproval('a', 1)],
          ['recordApprovalPoll', () => store.recordApprovalPoll('a', 1, 1000)],
          ['listApprovals', () => store.listApprovals({ now: 1, limit: 10 })],
          ['recordLease', () => store.recordLease(aLease(clock))],
          ['getAwsDeny', () => store.getAwsDeny('r')],
          ['casAwsDeny', () => store.casAwsDeny('r', undefined, 'x')],
          ['listAwsDenyRoles', () => store.listAwsDenyRoles()],
          ['leasesForTokens', () => store.leasesForTokens(['j'])],
          ['dueLeases', () => store.dueLeases(1, 10)],
          ['markLeaseRevoked', () => store.markLeaseRevoked('j', 1)],
        ];
        for (const [op, call] of calls) {
          const err = await rejectionOf(call());
          expect([op, isLeashError(err) ? err.code : String(err)]).toEqual([op, 'ERR_BACKEND_UNAVAILABLE']);
        }
      });

      it('keeps everything across close and reopen, and the chain continues from the same head', async () => {
        // Every real backend is durable: a fixture without reopen() fails here rather than pass untested.
        if (!fx.reopen) throw new Error(`${name}: the fixture offers no reopen(), so durability is untested`);
        const task = aTask(clock);
        const ended = aTask(clock);
        const token = aToken(clock, { task: task.id });
        await store.createTask(task);
        await store.createTask(ended);
        await store.endTask(ended.id, clock.now(), 'apikey:security');
        await store.recordIssued(token);
        expect(await store.remember('seen', clock.now() + HOUR)).toBe(true);
        await store.append('task.opened', { task: task.id }, 1);
        const last = await store.append('exchange.issued', { jti: token.jti }, 2);
        const revoked = await store.addRevocation(aRevocation(clock, { scope: 'task', id: ended.id }));
        const purged = await store.addRevocation(aRevocation(clock, { keepUntil: clock.now() + 1 }));
        expect(await store.purgeRevocations(clock.now() + 1)).toBe(1);
        await store.suspendPlugin({ plugin: 'slack-poster', since: 7, actor: 'apikey:security', reason: 'r' });
        const w = 60_000;
        const windowNow = Math.floor(clock.now() / w) * w;
        await store.incrementWindow('xpm', w, windowNow, 4);
        await store.close();

        const again = await fx.reopen();
        opened.push(again);
        expect(await again.getTask(task.id)).toEqual(task);
        expect((await again.getTask(ended.id))?.state).toBe('ended');
        expect(await again.countActiveTasks(clock.now())).toBe(1);
        expect(await again.getIssued(token.jti)).toEqual(token);
        expect(await again.listIssuedForTask(task.id)).toEqual([token]);
        expect(await again.remember('seen', clock.now() + HOUR)).toBe(false);
        expect(await again.revocationsSince(0, 10, clock.now())).toEqual([revoked]);
        expect((await again.addRevocation(aRevocation(clock))).seq).toBeGreaterThan(purged.seq); // even across a reopen
        expect(await again.listSuspensions()).toEqual([{ plugin: 'slack-poster', since: 7, actor: 'apikey:security', reason: 'r' }]);
        expect(await again.incrementWindow('xpm', w, windowNow + 1)).toBe(5);
        expect(await again.countIssuedForTask(task.id)).toBe(1);
        expect(await again.listExpiredActiveTasks(task.expiresAt, 10)).toEqual([task]);
        const next = await again.append('task.ended', { task: ended.id }, 3);
        expect(next.seq).toBe(last.seq + 1);
        expect(next.prevHash).toBe(last.hash);
        expect(await verifyAuditLog(again)).toEqual({ ok: true, count: 3 });
      });

      it('two handles on the same state append to one chain, never a fork', async () => {
        if (!fx.sibling) throw new Error(`${name}: the fixture offers no sibling(), so sharing is untested`);
        const other = await fx.sibling();
        opened.push(other);
        for (let i = 0; i < 10; i++) {
          await store.append('exchange.issued', { from: 'a', i }, i);
          await other.append('exchange.issued', { from: 'b', i }, i);
        }
        const all = await store.read(1, 100);
        expect(all.map((r) => r.seq)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
        expect(await verifyAuditLog(other)).toEqual({ ok: true, count: 20 });
      });

      it('two handles appending at the same time (workers, replicas): every append lands once, in one chain', async () => {
        if (!fx.sibling) throw new Error(`${name}: the fixture offers no sibling(), so sharing is untested`);
        const other = await fx.sibling();
        opened.push(other);
        const burst = (s: AuditLog, from: string) => Promise.all(Array.from({ length: 60 }, (_, i) => s.append('exchange.issued', { from, i }, i)));
        const [a, b] = await Promise.all([burst(store, 'a'), burst(other, 'b')]);
        expect([...a, ...b].map((r) => r.seq).sort((x, y) => x - y)).toEqual(Array.from({ length: 120 }, (_, i) => i + 1));
        // Each handle's answers are its own records, in the order it appended them.
        expect(a.map((r) => (r.event as { i: number }).i)).toEqual(Array.from({ length: 60 }, (_, i) => i));
        expect(await verifyAuditLog(other)).toEqual({ ok: true, count: 120 });
      });
    });

    describe('store identity (epoch)', () => {
      const code = (err: unknown) => (isLeashError(err) ? err.code : `not a LeashError: ${String(err)}`);

      /** Some history, then the wipe; returns what the handles had seen. */
      async function historyThenWipe() {
        await store.append('task.opened', { task: 't1' }, 1);
        const head = await store.append('token.revoked', { id: 'j1' }, 2);
        await store.addRevocation(aRevocation(clock));
        const rev = await store.addRevocation(aRevocation(clock, { scope: 'task', id: 'tsk_1' }));
        const epoch = store.epoch();
        await fx.wipe();
        return { head, rev, epoch: epoch as string };
      }

      it('is written once: reopening and a sibling see the same epoch, and the chain begins at its genesis', async () => {
        const epoch = store.epoch();
        expect(epoch).toMatch(/^[A-Za-z0-9_-]{22}$/);
        await store.checkEpoch();
        expect(store.resetPending()).toBeUndefined();
        expect(await store.identity()).toEqual({ epoch, marker: null, genesis: { epoch, seq: 1, prevHash: GENESIS_HASH } });
        await store.append('task.opened', {}, 1);
        expect(await verifyStoreAudit(store)).toEqual({ ok: true, count: 1, first: 1, last: 1, epoch });
        const sibling = await fx.sibling!();
        opened.push(sibling);
        expect(sibling.epoch()).toBe(epoch);
        await store.close();
        const again = await fx.reopen!();
        opened.push(again);
        expect(again.epoch()).toBe(epoch);
      });

      it('a wiped store is found reset: the handle fails closed, leaves a marker every handle sees, and a new handle refuses to open', async () => {
        const sibling = await fx.sibling!();
        opened.push(sibling);
        const changes: IdentityChange[] = [];
        store.onIdentityChange((c) => changes.push(c));
        const { head, rev, epoch } = await historyThenWipe();
        expect(code(await rejectionOf(store.checkEpoch()))).toBe('ERR_STORE_RESET');
        const marker = store.resetPending();
        expect(marker).toEqual({ previousEpoch: epoch, foundEpoch: null, detectedAt: clock.now(), auditHead: { seq: head.seq, hash: head.hash }, revocationSeq: rev.seq });
        expect(changes).toEqual([{ kind: 'reset', marker }]);
        // every call of this handle fails closed, not "not found"
        for (const call of [() => store.getTask('tsk_1'), () => store.revocationsSince(0, 10, clock.now()), () => store.append('task.opened', {}, 3), () => store.ping()]) {
          expect(code(await rejectionOf(call()))).toBe('ERR_STORE_RESET');
        }
        // the sibling had not noticed yet: the marker tells it
        expect(code(await rejectionOf(sibling.checkEpoch()))).toBe('ERR_STORE_RESET');
        expect(sibling.resetPending()?.previousEpoch).toBe(epoch);
        // the marker holds until an operator accepts: a new serving handle refuses to open
        expect(code(await rejectionOf(fx.reopen!()))).toBe('ERR_STORE_RESET');
        const inspect = await fx.inspect();
        opened.push(inspect);
        expect((await inspect.identity()).marker).toEqual(marker);
        expect(changes).toHaveLength(1);
      });

      it('a write into another epoch is refused and reveals the reset at once: neither the chain nor the feed restarts at 1', async () => {
        await historyThenWipe();
        expect(code(await rejectionOf(store.append('exchange.issued', { n: 1 }, 3)))).toBe('ERR_STORE_RESET');
        expect(store.resetPending()).toBeDefined();
        const inspect = await fx.inspect();
        opened.push(inspect);
        expect(await inspect.read(1, 10)).toEqual([]);
        expect(await inspect.revocationsSince(0, 10, clock.now())).toEqual([]);
        expect((await inspect.identity()).marker).not.toBeNull();
      });

      it('a revocation into another epoch is refused too', async () => {
        await historyThenWipe();
        expect(code(await rejectionOf(store.addRevocation(aRevocation(clock))))).toBe('ERR_STORE_RESET');
        expect(store.resetPending()).toBeDefined();
      });

      it('accept-reset: every handle adopts the new epoch, the feed and the chain continue above what was lost', async () => {
        const sibling = await fx.sibling!();
        opened.push(sibling);
        const { head, rev, epoch } = await historyThenWipe();
        await rejectionOf(store.checkEpoch());
        const changes: IdentityChange[] = [];
        sibling.onIdentityChange((c) => changes.push(c));
        await rejectionOf(sibling.checkEpoch());

        const operator = await fx.inspect();
        opened.push(operator);
        clock.advance(1000);
        const accepted = await operator.acceptReset('cli:ops', clock.now());
        expect(accepted?.continued).toBe(true);
        expect(accepted?.epoch).not.toBe(epoch);
        expect(accepted?.genesis).toEqual({ epoch: accepted?.epoch, seq: head.seq + 1, prevHash: head.hash, reset: { ...accepted?.marker, acceptedAt: clock.now(), acceptedBy: 'cli:ops' } });
        expect(await operator.acceptReset('cli:ops', clock.now())).toBeUndefined();

        for (const h of [store, sibling]) {
          await h.checkEpoch();
          expect(h.resetPending()).toBeUndefined();
          expect(h.epoch()).toBe(accepted?.epoch);
        }
        expect(changes.map((c) => c.kind)).toEqual(['reset', 'accepted']);
        expect(changes[1]).toMatchObject({ kind: 'accepted', previousEpoch: epoch, epoch: accepted?.epoch });

        // the feed never hands out a seq a follower may already hold
        expect((await store.addRevocation(aRevocation(clock))).seq).toBe(rev.seq + 1);
        // an empty chain continues the lost one: the shipped lines stay one chain
        const next = await sibling.append('exchange.issued', { n: 1 }, 5);
        expect({ seq: next.seq, prevHash: next.prevHash }).toEqual({ seq: head.seq + 1, prevHash: head.hash });
        expect((await store.append('exchange.issued', { n: 2 }, 6)).seq).toBe(head.seq + 2);
        // from the store alone, records before the reset are missing: never "intact"
        expect(await verifyStoreAudit(store)).toMatchObject({
          ok: false,
          count: 2,
          first: head.seq + 1,
          last: head.seq + 2,
          reason: expect.stringMatching(/the store was reset: epoch .* up to seq 2 were lost .*cli:ops/),
        });
        // a new serving handle opens in the accepted epoch
        const fresh = await fx.reopen!();
        opened.push(fresh);
        expect(fresh.epoch()).toBe(accepted?.epoch);
      });

      it('a replica that never knew the old epoch starts a new one; the others still find the reset, and accepting it records the reset in the genesis', async () => {
        const { epoch } = await historyThenWipe();
        // a replica starting in the gap cannot know better: it initialises a new epoch and appends
        const newcomer = await fx.reopen!();
        opened.push(newcomer);
        const newEpoch = newcomer.epoch();
        expect(newEpoch).not.toBe(epoch);
        await newcomer.append('policy.loaded', { initial: true }, 3);
        // the replica that remembers finds another epoch with no acceptance: reset, for everyone
        expect(code(await rejectionOf(store.checkEpoch()))).toBe('ERR_STORE_RESET');
        expect(store.resetPending()?.foundEpoch).toBe(newEpoch);
        expect(code(await rejectionOf(newcomer.checkEpoch()))).toBe('ERR_STORE_RESET');

        const operator = await fx.inspect();
        opened.push(operator);
        const accepted = await operator.acceptReset('cli:ops', clock.now());
        expect(accepted).toMatchObject({ epoch: newEpoch, continued: false });
        expect(accepted?.genesis).toMatchObject({ epoch: newEpoch, seq: 1, prevHash: GENESIS_HASH, reset: { previousEpoch: epoch, foundEpoch: newEpoch, acceptedBy: 'cli:ops' } });
        await store.checkEpoch();
        await newcomer.checkEpoch();
        expect(store.epoch()).toBe(newEpoch);
        expect((await store.append('exchange.issued', {}, 4)).seq).toBe(2);
      });

      it('acceptReset with nothing pending changes nothing', async () => {
        const epoch = store.epoch();
        const operator = await fx.inspect();
        opened.push(operator);
        expect(await operator.acceptReset('cli:ops', clock.now())).toBeUndefined();
        expect(await operator.identity()).toEqual({ epoch, marker: null, genesis: { epoch, seq: 1, prevHash: GENESIS_HASH } });
        await store.checkEpoch();
      });
    });
  });
}
