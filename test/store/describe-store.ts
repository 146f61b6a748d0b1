import { describe, it, expect, beforeEach, afterEach } from '@jest/globals';
import { GENESIS_HASH, chainHash, verifyChain } from '../../src/audit/chain.js';
import { verifyAuditLog } from '../../src/audit/verify.js';
import { isLeashError } from '../../src/errors/leash-error.js';
import type { IssuedToken, Revocation, StateChange, Task } from '../../src/store/records.js';
import type { Store } from '../../src/store/store.js';
import { ManualClock } from '../../src/time/clock.js';

export interface StoreFixture {
  /** A fresh, empty store whose time (replay expiry) comes from the clock it was given. */
  readonly store: Store;
  /** A new Store over the same state; called after the suite has closed the previous one. */
  readonly reopen?: () => Promise<Store>;
  /** A second, concurrent handle on the same state (another process or replica). */
  readonly sibling?: () => Promise<Store>;
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
        const bad: Array<Partial<Omit<Revocation, 'seq'>>> = [
          { scope: 'everything' as Revocation['scope'] },
          { id: '' },
          { keepUntil: 1.5 },
          { issuedBefore: Number.NaN },
          { actor: '' },
        ];
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
          ['listExpiredActiveTasks', () => store.listExpiredActiveTasks(1, 10)],
          ['listLiveIssuedForPlugin', () => store.listLiveIssuedForPlugin('p', 1)],
          ['countIssuedForTask', () => store.countIssuedForTask('t')],
          ['addRevocation', () => store.addRevocation(aRevocation(clock))],
          ['revocationsSince', () => store.revocationsSince(0, 10, 1)],
          ['purgeRevocations', () => store.purgeRevocations(1)],
          ['suspendPlugin', () => store.suspendPlugin({ plugin: 'p', since: 1, actor: 'a', reason: '' })],
          ['resumePlugin', () => store.resumePlugin('p')],
          ['listSuspensions', () => store.listSuspensions()],
          ['incrementWindow', () => store.incrementWindow('k', 1000, 1)],
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
        let last = await store.append('task.opened', { task: task.id }, 1);
        last = await store.append('exchange.issued', { jti: token.jti }, 2);
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
    });
  });
}
