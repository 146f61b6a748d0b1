import { describe, it, expect, beforeAll, afterAll, afterEach, jest } from '@jest/globals';
import { Redis } from 'ioredis';
import { verifyAuditLog } from '../../src/audit/verify.js';
import { isLeashError } from '../../src/errors/leash-error.js';
import type { StateChange } from '../../src/store/records.js';
import { RedisConnection } from '../../src/store/redis/connection.js';
import { openRedisStore, type RedisStore, type RedisStoreOptions } from '../../src/store/redis/redis-store.js';
import { ManualClock } from '../../src/time/clock.js';
import { startRedis, redisAvailable, type RedisServer, type RedisStartOptions } from '../support/redis.js';
import { aLease, aRevocation, aTask, aToken, anApproval, describeStore } from './describe-store.js';

const RUN = redisAvailable('Redis store tests');
const HOUR = 3600_000;

let prefixes = 0;
/** Each test gets its own key prefix on the shared server: no FLUSHDB between tests needed. */
function freshPrefix(): string {
  prefixes += 1;
  return `t${process.pid}-${prefixes}:`;
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  throw new Error('expected a rejection');
}

async function eventually(pred: () => boolean | Promise<boolean>, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      if (await pred()) return;
    } catch {
      // not yet
    }
    if (Date.now() > deadline) throw new Error(`not within ${ms} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

if (!RUN) {
  describe('Redis store', () => {
    it.skip('skipped: redis-server is not installed (see the message above)', () => undefined);
  });
} else {
  let shared: RedisServer;
  beforeAll(async () => {
    shared = await startRedis();
  }, 20_000);
  afterAll(async () => {
    await shared?.cleanup();
  });

  describeStore('redis', async ({ clock }) => {
    const keyPrefix = freshPrefix();
    const open = () => openRedisStore({ url: shared.url, keyPrefix, clock });
    return {
      store: await open(),
      reopen: open,
      sibling: open,
      inspect: () => openRedisStore({ url: shared.url, keyPrefix, clock, identity: 'inspect' }),
      // What FLUSHALL does to this deployment's keys (the shared server holds other tests' prefixes).
      wipe: async () => {
        const raw = new Redis(shared.url);
        try {
          const keys = await raw.keys(`${keyPrefix}*`);
          if (keys.length > 0) await raw.del(...keys);
        } finally {
          raw.disconnect();
        }
      },
      cleanup: async () => undefined,
    };
  });

  describe('Redis store specifics', () => {
    const clock = new ManualClock();
    const toClose: Array<{ close(): Promise<void> }> = [];
    const servers: RedisServer[] = [];

    afterEach(async () => {
      for (const c of toClose.splice(0)) await c.close().catch(() => undefined);
      for (const s of servers.splice(0)) await s.cleanup();
    });

    async function open(extra: Partial<RedisStoreOptions> & { url?: string } = {}): Promise<RedisStore> {
      const s = await openRedisStore({ url: shared.url, keyPrefix: freshPrefix(), clock, ...extra });
      toClose.push(s);
      return s;
    }

    async function ownServer(opts: RedisStartOptions = {}): Promise<RedisServer> {
      const s = await startRedis(opts);
      servers.push(s);
      return s;
    }

    it('a task recorded before the tokens-per-task counts existed is counted from its index, then kept counting', async () => {
      const keyPrefix = freshPrefix();
      const s = await open({ keyPrefix });
      await s.recordIssued(aToken(clock, { task: 'tsk_old', plugin: 'p1' }));
      await s.recordIssued(aToken(clock, { task: 'tsk_old', plugin: 'p1' }));
      await s.recordIssued(aToken(clock, { task: 'tsk_old', plugin: 'p2' }));
      // What an older Leash left: the task's index without the counts.
      const raw = new Redis(shared.url);
      try {
        expect(await raw.del(`${keyPrefix}tok-task-count:tsk_old`)).toBe(1);
      } finally {
        raw.disconnect();
      }
      expect(await s.countIssuedForTaskPlugin('tsk_old', 'p1')).toBe(2);
      expect(await s.countIssuedForTaskPlugin('tsk_old', 'p3')).toBe(0);
      await s.recordIssued(aToken(clock, { task: 'tsk_old', plugin: 'p1' }));
      expect(await s.countIssuedForTaskPlugin('tsk_old', 'p1')).toBe(3);
      expect(await s.countIssuedForTaskPlugin('tsk_old', 'p2')).toBe(1);
    });

    it('keeps every key under its prefix, and prefixes do not see each other', async () => {
      const a = await open();
      const b = await open();
      const seenByB: StateChange[] = [];
      b.subscribe((c) => seenByB.push(c));
      await a.createTask(aTask(clock, { id: 'tsk_x' }));
      await a.recordIssued(aToken(clock, { task: 'tsk_x' }));
      await a.append('task.opened', { task: 'tsk_x' }, 1);
      await a.remember('k', clock.now() + HOUR);
      await a.addRevocation(aRevocation(clock));
      await a.suspendPlugin({ plugin: 'p', since: 1, actor: 'apikey:s', reason: '' });
      await a.incrementWindow('c', 1000, clock.now());
      expect(await b.getTask('tsk_x')).toBeUndefined();
      expect(await b.revocationsSince(0, 10, clock.now())).toEqual([]);
      expect(await b.listSuspensions()).toEqual([]);
      expect(await b.read(1, 10)).toEqual([]);
      expect(await b.remember('k', clock.now() + HOUR)).toBe(true);
      const raw = new Redis(shared.url);
      try {
        const keys = await raw.keys(`${a.keyPrefix}*`);
        expect(keys.length).toBeGreaterThanOrEqual(8);
        const all = await raw.keys('*');
        expect(all.every((k) => k.startsWith('t'))).toBe(true);
      } finally {
        raw.disconnect();
      }
      await new Promise((r) => setTimeout(r, 50));
      expect(seenByB).toEqual([]);
    });

    it('gives approvals and leases TTLs from the injected clock, and drops stale index entries', async () => {
      const s = await open();
      const DAY = 86400_000;
      const raw = new Redis(shared.url);
      const t0 = clock.now();
      try {
        const pttl = (key: string) => raw.pttl(`${s.keyPrefix}${key}`);
        const near = (got: number, want: number) => expect(Math.abs(got - want)).toBeLessThan(5000);
        const a = anApproval(clock, { expiresAt: t0 + 10 * 60_000 });
        await s.createApproval(a);
        near(await pttl(`apr:${a.id}`), 10 * 60_000 + 7 * DAY);
        await s.decideApproval(a.id, { state: 'approved', by: 'x', reason: undefined, at: t0, redeemBy: t0 + DAY });
        near(await pttl(`apr:${a.id}`), DAY + 7 * DAY); // redeemBy is later than expiresAt
        expect(await raw.zrange(`${s.keyPrefix}apr-idx:pending`, '0', '-1')).toEqual([]);
        expect(await raw.zrange(`${s.keyPrefix}apr-idx:approved`, '0', '-1')).toEqual([a.id]);
        await s.consumeApproval(a.id, t0 + 1000);
        expect(await raw.zrange(`${s.keyPrefix}apr-idx:approved`, '0', '-1')).toEqual([]);
        expect(await raw.zrange(`${s.keyPrefix}apr-idx:used`, '0', '-1')).toEqual([a.id]);

        const lease = aLease(clock);
        await s.recordLease(lease);
        expect(await pttl(`lease:${lease.jti}`)).toBe(-1); // kept until revoked
        await s.markLeaseRevoked(lease.jti, t0);
        near(await pttl(`lease:${lease.jti}`), DAY);
        expect(await raw.zcard(`${s.keyPrefix}lease-due`)).toBe(0);

        // 8 days on: the record is due to be dropped; the next creation clears its index entries
        clock.set(t0 + 8 * DAY + 1);
        await raw.del(`${s.keyPrefix}apr:${a.id}`); // as its TTL would have
        expect(await s.listApprovals({ now: clock.now(), limit: 10 })).toEqual([]); // a gone record is skipped
        const b = anApproval(clock);
        await s.createApproval(b);
        expect(await raw.zrange(`${s.keyPrefix}apr-idx:all`, '0', '-1')).toEqual([b.id]);
        expect(await raw.zrange(`${s.keyPrefix}apr-idx:used`, '0', '-1')).toEqual([]);
        expect(await raw.zrange(`${s.keyPrefix}apr-drop`, '0', '-1')).toEqual([b.id]);
      } finally {
        raw.disconnect();
        clock.set(t0); // the clock is shared by this describe's tests
      }
    });

    it('lists pending approvals past a run of expired ones longer than a page', async () => {
      const s = await open();
      const t0 = clock.now();
      const live = anApproval(clock, { requestedAt: t0 - 1, expiresAt: t0 + 60_000 });
      await s.createApproval(live);
      for (let i = 0; i < 60; i++) await s.createApproval(anApproval(clock, { requestedAt: t0 + i, expiresAt: t0 + 1000 }));
      const now = t0 + 2000;
      expect(await s.listApprovals({ state: 'pending', now, limit: 5 })).toEqual([live]);
      expect(await s.listApprovals({ now, limit: 100 })).toHaveLength(61);
    });

    it('reports the persistence mode and can require AOF', async () => {
      const s = await open({ allowVolatile: false });
      expect(await s.persistence()).toEqual({ appendonly: 'yes', appendfsync: 'always' });
      const noAof = await ownServer();
      const raw = new Redis(noAof.url);
      await raw.config('SET', 'appendonly', 'no');
      raw.disconnect();
      const err = await rejection(openRedisStore({ url: noAof.url, keyPrefix: 'x:', clock, allowVolatile: false }));
      expect(isLeashError(err) && err.code).toBe('ERR_BACKEND_UNAVAILABLE');
      expect(isLeashError(err) && String(err.detail?.message)).toMatch(/runs without AOF \(appendonly no\)/);
    });

    it('where CONFIG is forbidden, reads persistence from INFO persistence, and still refuses a server without AOF', async () => {
      const noConfig = await ownServer({ args: ['--rename-command', 'CONFIG', ''] });
      const s = await open({ url: noConfig.url });
      expect(await s.persistence()).toEqual({ appendonly: 'yes', appendfsync: undefined });
      const volatile = await ownServer({ aof: false, args: ['--rename-command', 'CONFIG', ''] });
      const err = await rejection(openRedisStore({ url: volatile.url, keyPrefix: 'x:', clock }));
      expect(isLeashError(err) && err.code).toBe('ERR_BACKEND_UNAVAILABLE');
      expect(isLeashError(err) && String(err.detail?.message)).toContain(`the Redis server at 127.0.0.1:${volatile.port} runs without AOF (appendonly no)`);
    });

    it('FLUSHALL: a write is refused at once (the chain and the feed never restart at 1), every handle fails closed, a new one refuses to open', async () => {
      const server = await ownServer();
      const s = await open({ url: server.url });
      const sibling = await openRedisStore({ url: server.url, keyPrefix: s.keyPrefix, clock });
      toClose.push(sibling);
      await s.createTask(aTask(clock, { id: 'tsk_f' }));
      const head = await s.append('task.opened', { task: 'tsk_f' }, 1);
      const rev = await s.addRevocation(aRevocation(clock, { scope: 'task', id: 'tsk_f' }));
      const raw = new Redis(server.url);
      try {
        await raw.flushall();
        expect(isLeashError(await rejection(s.append('exchange.issued', {}, 2))) && 'refused').toBe('refused');
        expect(s.resetPending()).toMatchObject({ previousEpoch: s.epoch(), foundEpoch: null, auditHead: { seq: head.seq, hash: head.hash }, revocationSeq: rev.seq });
        // nothing was written into the wiped store but the marker
        expect((await raw.keys('*')).sort()).toEqual([`${s.keyPrefix}store:reset`]);
        const refused = await rejection(s.getTask('tsk_f'));
        expect(isLeashError(refused) && refused.code).toBe('ERR_STORE_RESET');
        expect(isLeashError(await rejection(sibling.addRevocation(aRevocation(clock)))) && 'refused').toBe('refused');
        expect(sibling.resetPending()?.previousEpoch).toBe(s.epoch());
        const late = await rejection(openRedisStore({ url: server.url, keyPrefix: s.keyPrefix, clock }));
        expect(isLeashError(late) && late.code).toBe('ERR_STORE_RESET');
        expect(isLeashError(late) && String(late.detail?.message)).toMatch(/leash store accept-reset/);
      } finally {
        raw.disconnect();
      }
    }, 20_000);

    it('a restart without AOF: after reconnecting the handle refuses every call (never "not found"); with AOF back it finds the reset', async () => {
      const server = await ownServer();
      const logs: string[] = [];
      const s = await open({ url: server.url, log: (m) => logs.push(m) });
      const task = aTask(clock);
      await s.createTask(task);
      await s.addRevocation(aRevocation(clock, { scope: 'task', id: task.id }));
      await server.restart({ aof: false });
      await eventually(
        async () => {
          const err = await rejection(s.getTask(task.id));
          return isLeashError(err) && err.detail?.op === 'persistence';
        },
        5000,
        'getTask refuses for lack of AOF',
      );
      const err = await rejection(s.revocationsSince(0, 10, clock.now()));
      expect(isLeashError(err) && err.code).toBe('ERR_BACKEND_UNAVAILABLE');
      expect(isLeashError(err) && String(err.detail?.message)).toContain(`the Redis server at 127.0.0.1:${server.port} runs without AOF (appendonly no)`);
      expect(logs.some((l) => /refusing every call: .*without AOF/.test(l))).toBe(true);
      // an operator turns AOF on without a restart: the data is still gone, and that is a reset
      const raw = new Redis(server.url);
      await raw.config('SET', 'appendonly', 'yes');
      raw.disconnect();
      const reset = await rejection(s.checkEpoch());
      expect(isLeashError(reset) && reset.code).toBe('ERR_STORE_RESET');
      expect(s.resetPending()?.foundEpoch).toBeNull();
      // redis-server refuses SIGTERM while it writes its first AOF after CONFIG SET: stop it hard
      await server.kill9();
    }, 30_000);

    it('allowVolatile serves a Redis without AOF, and still finds it reset when it restarts empty', async () => {
      const server = await ownServer({ aof: false });
      expect(isLeashError(await rejection(openRedisStore({ url: server.url, keyPrefix: 'v:', clock }))) && 'refused').toBe('refused');
      const logs: string[] = [];
      const s = await open({ url: server.url, allowVolatile: true, log: (m) => logs.push(m) });
      expect(logs.join('\n')).toMatch(/runs without AOF .*serving anyway because settings.store.allow_volatile is true/);
      await s.addRevocation(aRevocation(clock));
      await server.restart({ aof: false });
      await eventually(
        async () => {
          const err = await rejection(s.checkEpoch());
          return isLeashError(err) && err.code === 'ERR_STORE_RESET';
        },
        5000,
        'the empty restart is found',
      );
      expect(s.resetPending()).toMatchObject({ foundEpoch: null, revocationSeq: 1 });
    }, 30_000);

    it('fails closed at open when nothing answers, within the connect timeout', async () => {
      const gone = await ownServer();
      await gone.stop();
      const t0 = Date.now();
      const err = await rejection(openRedisStore({ url: gone.url, keyPrefix: 'x:', clock, connectTimeoutMs: 500 }));
      expect(isLeashError(err) && err.code).toBe('ERR_BACKEND_UNAVAILABLE');
      expect(isLeashError(err) && err.detail).toMatchObject({ backend: 'redis', op: 'open' });
      expect(Date.now() - t0).toBeLessThan(3000);
    });

    it('rejects bad options as a TypeError', async () => {
      await expect(openRedisStore({ url: 'http://127.0.0.1:1', keyPrefix: 'x:', clock })).rejects.toBeInstanceOf(TypeError);
      await expect(openRedisStore({ url: shared.url, keyPrefix: 'bad prefix', clock })).rejects.toBeInstanceOf(TypeError);
      await expect(openRedisStore({ url: shared.url, keyPrefix: '', clock })).rejects.toBeInstanceOf(TypeError);
    });

    it('appends from many concurrent writers on several handles into one unforked chain', async () => {
      const a = await open();
      const b = await openRedisStore({ url: shared.url, keyPrefix: a.keyPrefix, clock });
      const c = await openRedisStore({ url: shared.url, keyPrefix: a.keyPrefix, clock });
      toClose.push(b, c);
      const writes = [];
      for (let i = 0; i < 40; i++)
        for (const [name, s] of [
          ['a', a],
          ['b', b],
          ['c', c],
        ] as const)
          writes.push(s.append('exchange.issued', { from: name, i }, i));
      const records = await Promise.all(writes);
      expect(new Set(records.map((r) => r.seq)).size).toBe(120);
      expect(Math.max(...records.map((r) => r.seq))).toBe(120);
      expect(await verifyAuditLog(a)).toEqual({ ok: true, count: 120 });
    });

    it('ignores foreign messages on the change channel', async () => {
      const s = await open();
      const seen: StateChange[] = [];
      s.subscribe((c) => seen.push(c));
      const raw = new Redis(shared.url);
      try {
        for (const junk of ['not json', '{"type":"revocation"}', '{"type":"other"}', '{"type":"suspension","plugin":1,"suspended":true}']) await raw.publish(`${s.keyPrefix}changes`, junk);
      } finally {
        raw.disconnect();
      }
      const r = await s.addRevocation(aRevocation(clock));
      await eventually(() => seen.length > 0, 2000, 'the real change arrives');
      expect(seen).toEqual([{ type: 'revocation', revocation: r }]);
    });

    it('the feed is not fresh while the main connection is down, though the subscriber is still up; fresh again once it is back and verified', async () => {
      const server = await ownServer();
      const s = await open({ url: server.url });
      expect(s.subscribed()).toBe(true);
      const raw = new Redis(server.url);
      try {
        // Drops the main connection only: the subscriber is a pubsub client (and SKIPME spares raw).
        expect(await raw.call('CLIENT', 'KILL', 'TYPE', 'normal')).toBeGreaterThanOrEqual(1);
        // ioredis waits at least 50 ms before reconnecting: within that, a feed that still
        // counted as fresh would let the revocation view answer from a server nobody verified.
        const samples: boolean[] = [];
        const t0 = performance.now();
        while (performance.now() - t0 < 40) {
          samples.push(s.subscribed());
          await new Promise((r) => setTimeout(r, 1));
        }
        expect(samples.includes(false)).toBe(true);
        expect(samples.at(-1)).toBe(false);
        await eventually(() => s.subscribed(), 5000, 'fresh again once the main connection is back and verified');
        expect(await s.getTask('none')).toBeUndefined();
      } finally {
        raw.disconnect();
      }
    }, 30_000);

    /**
     * A handle on its own server whose main connection is dropped once and whose check of the
     * reconnection then throws (a command timeout, the connection itself staying up);
     * returns once that check has run.
     */
    async function reconnectWithFailingCheck() {
      const server = await ownServer();
      const s = await open({ url: server.url });
      const raw = new Redis(server.url);
      const spy = jest.spyOn(RedisConnection.prototype, 'persistence').mockRejectedValueOnce(new Error('Command timed out'));
      const done = () => {
        spy.mockRestore();
        raw.disconnect();
      };
      try {
        expect(await raw.call('CLIENT', 'KILL', 'TYPE', 'normal')).toBeGreaterThanOrEqual(1);
        await eventually(() => spy.mock.calls.length >= 1, 5000, 'the reconnection is checked (and fails)');
      } catch (err) {
        done();
        throw err;
      }
      return { s, raw, checks: () => spy.mock.calls.length, done };
    }

    it('a verification that throws on a live connection refuses calls (they never reach the unverified server), and the next call heals it without a reconnection', async () => {
      const { s, raw, checks, done } = await reconnectWithFailingCheck();
      try {
        await new Promise((r) => setImmediate(r));
        // Within the retry pause: refused, and nothing written on the unverified server.
        const err = await rejection(s.createTask(aTask(clock, { id: 'unverified' })));
        expect(isLeashError(err) && err.code).toBe('ERR_BACKEND_UNAVAILABLE');
        expect(isLeashError(err) && String(err.detail?.message)).toMatch(/not verified/);
        expect(s.subscribed()).toBe(false);
        expect(await raw.exists(`${s.keyPrefix}task:unverified`)).toBe(0);
        // Healed by the next call, same connection.
        await eventually(async () => (await s.getTask('none')) === undefined, 5000, 'a later call verifies and is served');
        expect(checks()).toBeGreaterThanOrEqual(2);
        await eventually(() => s.subscribed(), 5000, 'the feed is fresh again');
      } finally {
        done();
      }
    }, 30_000);

    it('a new connection is verified as soon as it is ready, even right after a verification failed on the one before', async () => {
      const { s, raw, checks, done } = await reconnectWithFailingCheck();
      try {
        // Dropped again well within the 250 ms retry pause: the pause is for one live
        // connection, so the next one is checked on 'ready' with no call to prompt it.
        expect(await raw.call('CLIENT', 'KILL', 'TYPE', 'normal')).toBeGreaterThanOrEqual(1);
        await eventually(() => s.subscribed(), 3000, 'fresh again with no store call made');
        expect(checks()).toBeGreaterThanOrEqual(2);
      } finally {
        done();
      }
    }, 30_000);

    it('with Redis stopped every call fails closed fast and the feed is unsubscribed; after a restart it works again, same handle', async () => {
      const server = await ownServer();
      const s = await open({ url: server.url });
      const seen: StateChange[] = [];
      s.subscribe((c) => seen.push(c));
      const task = aTask(clock);
      await s.createTask(task);
      const approval = anApproval(clock);
      await s.createApproval(approval);
      const lease = aLease(clock);
      await s.recordLease(lease);
      expect(s.subscribed()).toBe(true);

      await server.stop();
      await eventually(() => !s.subscribed(), 3000, 'subscribed() turns false');
      const calls: Array<[string, () => Promise<unknown>]> = [
        ['ping', () => s.ping()],
        ['createTask', () => s.createTask(aTask(clock))],
        ['getTask', () => s.getTask(task.id)],
        ['endTask', () => s.endTask(task.id, clock.now(), 'x')],
        ['countActiveTasks', () => s.countActiveTasks(clock.now())],
        ['listExpiredActiveTasks', () => s.listExpiredActiveTasks(clock.now(), 10)],
        ['recordIssued', () => s.recordIssued(aToken(clock))],
        ['getIssued', () => s.getIssued('j')],
        ['listIssuedForTask', () => s.listIssuedForTask('t')],
        ['listLiveIssuedForPlugin', () => s.listLiveIssuedForPlugin('p', clock.now())],
        ['countIssuedForTask', () => s.countIssuedForTask('t')],
        ['countIssuedForTaskPlugin', () => s.countIssuedForTaskPlugin('t', 'p')],
        ['append', () => s.append('task.opened', {}, 1)],
        ['read', () => s.read(1, 10)],
        ['remember', () => s.remember('k', clock.now() + 1000)],
        ['addRevocation', () => s.addRevocation(aRevocation(clock))],
        ['revocationsSince', () => s.revocationsSince(0, 10, clock.now())],
        ['purgeRevocations', () => s.purgeRevocations(clock.now())],
        ['suspendPlugin', () => s.suspendPlugin({ plugin: 'p', since: 1, actor: 'a', reason: '' })],
        ['resumePlugin', () => s.resumePlugin('p')],
        ['listSuspensions', () => s.listSuspensions()],
        ['incrementWindow', () => s.incrementWindow('k', 1000, clock.now())],
        ['createApproval', () => s.createApproval(anApproval(clock))],
        ['getApproval', () => s.getApproval(approval.id)],
        ['decideApproval', () => s.decideApproval(approval.id, { state: 'denied', by: 'x', reason: undefined, at: clock.now(), redeemBy: undefined })],
        ['consumeApproval', () => s.consumeApproval(approval.id, clock.now())],
        ['recordApprovalPoll', () => s.recordApprovalPoll(approval.id, clock.now(), 1000)],
        ['listApprovals', () => s.listApprovals({ state: 'pending', now: clock.now(), limit: 10 })],
        ['recordLease', () => s.recordLease(aLease(clock))],
        ['leasesForTokens', () => s.leasesForTokens([lease.jti])],
        ['dueLeases', () => s.dueLeases(clock.now() + HOUR, 10)],
        ['markLeaseRevoked', () => s.markLeaseRevoked(lease.jti, clock.now())],
      ];
      for (const [op, call] of calls) {
        const t0 = Date.now();
        const err = await rejection(call());
        expect([op, isLeashError(err) ? err.code : String(err)]).toEqual([op, 'ERR_BACKEND_UNAVAILABLE']);
        expect([op, Date.now() - t0 < 3000]).toEqual([op, true]);
        if (isLeashError(err)) expect(Object.keys(err.detail ?? {}).sort()).toEqual(['backend', 'message', 'op']);
      }

      await server.restart();
      await eventually(async () => (await s.ping(), true), 5000, 'ping succeeds again');
      await eventually(() => s.subscribed(), 5000, 'the feed is subscribed again');
      expect(await s.getTask(task.id)).toEqual(task);
      // nothing the outage refused happened: still pending, lease still live
      expect(await s.getApproval(approval.id)).toEqual(approval);
      expect(await s.leasesForTokens([lease.jti])).toEqual([lease]);
      const r = await s.addRevocation(aRevocation(clock));
      await eventually(() => seen.length > 0, 2000, 'a change published after the restart arrives');
      expect(seen).toEqual([{ type: 'revocation', revocation: r }]);
    }, 30_000);

    it('fails closed within the command timeout when Redis hangs (SIGSTOP), then recovers', async () => {
      const server = await ownServer();
      const s = await open({ url: server.url, commandTimeoutMs: 500 });
      await s.ping();
      const pid = server.pid!;
      process.kill(pid, 'SIGSTOP');
      try {
        const t0 = Date.now();
        const err = await rejection(s.addRevocation(aRevocation(clock)));
        expect(isLeashError(err) && err.code).toBe('ERR_BACKEND_UNAVAILABLE');
        expect(Date.now() - t0).toBeLessThan(3000);
        expect(isLeashError(err) && String(err.detail?.message)).toMatch(/timed out/i);
      } finally {
        process.kill(pid, 'SIGCONT');
      }
      await eventually(async () => (await s.ping(), true), 5000, 'ping succeeds after SIGCONT');
    }, 20_000);

    it('an acknowledged revocation survives kill -9 of redis-server (AOF, fsync always)', async () => {
      const server = await ownServer();
      const keyPrefix = freshPrefix();
      const s = await openRedisStore({ url: server.url, keyPrefix, clock });
      toClose.push(s);
      const task = aTask(clock);
      await s.createTask(task);
      const ended = await s.endTask(task.id, clock.now(), 'apikey:security');
      const rec = await s.append('revocation.added', { task: task.id }, 5);
      await s.suspendPlugin({ plugin: 'slack-poster', since: 3, actor: 'apikey:security', reason: 'kill' });
      const r1 = await s.addRevocation(aRevocation(clock, { scope: 'task', id: task.id }));
      // acknowledged: now the process dies with no chance to flush anything
      await server.kill9();
      await server.restart();
      // the first handle reconnects by itself
      await eventually(async () => (await s.ping(), true), 5000, 'the old handle reconnects');
      expect(await s.revocationsSince(0, 10, clock.now())).toEqual([r1]);

      const again = await openRedisStore({ url: server.url, keyPrefix, clock });
      toClose.push(again);
      expect(await again.revocationsSince(0, 10, clock.now())).toEqual([r1]);
      expect(await again.getTask(task.id)).toEqual(ended);
      expect(await again.listSuspensions()).toEqual([{ plugin: 'slack-poster', since: 3, actor: 'apikey:security', reason: 'kill' }]);
      expect((await again.read(1, 10)).at(-1)).toEqual(rec);
      expect((await again.addRevocation(aRevocation(clock))).seq).toBe(r1.seq + 1);
    }, 30_000);
  });
}
