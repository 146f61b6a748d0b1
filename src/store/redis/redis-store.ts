import { systemClock, type Clock } from '../../time/clock.js';
import { CheckedStore } from '../shared/checked-store.js';
import type { IdentityMode } from '../store-identity.js';
import { RedisApprovals } from './approvals.js';
import { RedisAuditLog } from './audit-log.js';
import { RedisAwsDenies } from './aws-denies.js';
import { RedisChangeFeed } from './change-feed.js';
import { RedisConnection, type Persistence } from './connection.js';
import { RedisCounters } from './counters.js';
import { RedisDecisionHistory } from './decision-history.js';
import { RedisIdentity } from './identity.js';
import { RedisLeases } from './leases.js';
import { RedisReplay } from './replay.js';
import { RedisRevocations } from './revocations.js';
import { RedisSuspensions } from './suspensions.js';
import { RedisTasks } from './tasks.js';
import { RedisTokens } from './tokens.js';
import { RedisUsage } from './usage.js';

export { redisAddress } from './connection.js';

export interface RedisStoreOptions {
  /** `redis://[user:pass@]host:port[/db]` or `rediss://` (TLS). */
  readonly url: string;
  /** Prefix of every key and of the pub/sub channel (`<prefix>changes`). */
  readonly keyPrefix: string;
  readonly clock?: Clock;
  /** Overrides a password in the URL (LEASH_REDIS_PASSWORD keeps it out of the config file). */
  readonly password?: string | undefined;
  /** How long opening (and each reconnection attempt) may take. Default 2000 ms. */
  readonly connectTimeoutMs?: number;
  /** A command with no reply within this fails closed. Default 1500 ms. */
  readonly commandTimeoutMs?: number;
  /**
   * Serve even when the server does not persist with AOF (see "Durability"): revocations
   * and the audit chain are then lost whenever Redis restarts. Default false: without AOF
   * the store refuses to open, and refuses every call after a reconnection to such a server.
   */
  readonly allowVolatile?: boolean;
  /** `serve` (default): initialise the epoch, refuse a pending reset. `inspect`: operator tooling, read only. */
  readonly identity?: IdentityMode;
  /** Operational warnings (persistence refused or recovered). */
  readonly log?: (msg: string, fields?: Record<string, unknown>) => void;
  /** Issued-token records outlive their expiry by this much (clock skew, late introspection). Default 5 min. */
  readonly tokenMarginMs?: number;
  /** The per-task token index (the tokens-per-task quota) lives this long past its last token. Default 48 h. */
  readonly taskIndexRetentionMs?: number;
  /** An ended task is forgotten this long after it ends (0 = kept forever). Default 7 days. */
  readonly endedTaskRetentionMs?: number;
}

/**
 * The Redis store: every Store role on one shared Redis, so several Leash replicas see one
 * state. Notes on the choices:
 *
 * Durability. Redis acknowledges a write once it is in memory and, with AOF, once it is in
 * the append-only file. "Nothing lost" needs `appendonly yes`: with `appendfsync always`
 * the reply is sent after the fsync (an acknowledged revocation survives a power loss);
 * with `everysec` it survives a redis-server crash or SIGKILL (the write reached the
 * kernel before the reply) but a power loss can take the last second. Without AOF, RDB
 * snapshots lose everything since the last one. `persistence()` reports what the server
 * runs with (CONFIG GET, or INFO persistence where CONFIG is forbidden); it is checked at
 * open and after every reconnection (a restarted server may run another configuration),
 * and without AOF the store refuses unless `allowVolatile`.
 *
 * Identity. A Redis that restarts empty (no AOF, FLUSHALL, a lost volume) must not pass for
 * a store with no revocations: the store's epoch (store-identity.ts) is read after every
 * reconnection and on every `checkEpoch`, and the audit append and revocation scripts
 * refuse to write in another epoch, so neither the chain nor the feed's numbering silently
 * restarts at 1.
 *
 * Fail closed. No offline queue, no retry of a failed command, a timeout on every command:
 * while Redis is unreachable every call rejects within ~commandTimeoutMs with
 * ERR_BACKEND_UNAVAILABLE instead of waiting. The connection reconnects by itself with a
 * capped backoff (at most 1 s between attempts), so service resumes without a restart.
 *
 * Time. Every expiry comparison uses the injected clock (replay cache, live tokens,
 * keepUntil), as the SQLite store does; Redis TTLs are only garbage collection and are
 * set relative (PX) from that clock, so a skewed server clock never drops a key early.
 *
 * Audit chain: a compare-and-set on the head, with group commit (audit-log.ts). One round
 * trip when uncontended.
 *
 * Change feed: PUBLISHed by the writing script, delivered by a subscriber connection
 * (change-feed.ts, connection.ts).
 *
 * Layout: one object per Store role, one file each in this folder (tasks.ts, tokens.ts,
 * ...), all on one RedisConnection (connection.ts: the two connections, the error
 * boundary, the verification of every reconnection); CheckedStore checks every call
 * before it reaches them.
 */
export async function openRedisStore(opts: RedisStoreOptions): Promise<RedisStore> {
  const store = new RedisStore(opts);
  await store.connect();
  return store;
}

function positive(name: string, v: number | undefined, dflt: number, allowZero = false): number {
  const x = v ?? dflt;
  if (!Number.isSafeInteger(x) || x < (allowZero ? 0 : 1)) throw new TypeError(`${name} must be a ${allowZero ? 'non-negative' : 'positive'} integer`);
  return x;
}

export class RedisStore extends CheckedStore {
  readonly kind = 'redis';
  readonly keyPrefix: string;
  /** `host:port[/db]`, never the credentials: for messages. */
  readonly address: string;
  readonly #c: RedisConnection;

  constructor(opts: RedisStoreOptions) {
    if (typeof opts.url !== 'string' || !/^rediss?:\/\//.test(opts.url)) throw new TypeError('url must start with redis:// or rediss://');
    if (typeof opts.keyPrefix !== 'string' || !/^[A-Za-z0-9:_-]{1,64}$/.test(opts.keyPrefix)) {
      throw new TypeError('keyPrefix must be 1-64 characters of A-Z a-z 0-9 : _ -');
    }
    const tokenMarginMs = positive('tokenMarginMs', opts.tokenMarginMs, 5 * 60_000);
    const taskIndexRetentionMs = positive('taskIndexRetentionMs', opts.taskIndexRetentionMs, 48 * 3600_000);
    const endedTaskRetentionMs = positive('endedTaskRetentionMs', opts.endedTaskRetentionMs, 7 * 86400_000, true);
    const clock: Clock = opts.clock ?? systemClock;
    const c = new RedisConnection({
      url: opts.url,
      keyPrefix: opts.keyPrefix,
      clock,
      password: opts.password,
      connectTimeoutMs: positive('connectTimeoutMs', opts.connectTimeoutMs, 2000),
      commandTimeoutMs: positive('commandTimeoutMs', opts.commandTimeoutMs, 1500),
      allowVolatile: opts.allowVolatile ?? false,
      mode: opts.identity ?? 'serve',
      log: opts.log ?? (() => undefined),
    });
    const audit = new RedisAuditLog(c);
    super({
      tasks: new RedisTasks(c, endedTaskRetentionMs),
      tokens: new RedisTokens(c, tokenMarginMs, taskIndexRetentionMs),
      audit,
      replay: new RedisReplay(c),
      revocations: new RedisRevocations(c),
      suspensions: new RedisSuspensions(c),
      counters: new RedisCounters(c),
      feed: new RedisChangeFeed(c),
      approvals: new RedisApprovals(c),
      leases: new RedisLeases(c),
      awsDenies: new RedisAwsDenies(c),
      decisions: new RedisDecisionHistory(audit),
      identity: new RedisIdentity(c),
      // The usage role (usage.ts), on the same connection and behind the same error boundary.
      usage: new RedisUsage(c.client, opts.keyPrefix, clock, (op, fn) => c.call(op, fn)),
    });
    this.keyPrefix = opts.keyPrefix;
    this.address = c.address;
    this.#c = c;
  }

  /**
   * Connects both connections and subscribes; fails closed (ERR_BACKEND_UNAVAILABLE) if Redis
   * cannot be reached or does not persist with AOF (unless allowed), ERR_STORE_RESET if a
   * reset waits for an operator (serving handles).
   */
  async connect(): Promise<void> {
    await this.#c.connect();
  }

  /** What the server persists with (CONFIG GET); undefined fields when CONFIG is disabled. */
  async persistence(): Promise<Persistence> {
    return this.#c.call('persistence', () => this.#c.persistence(), { ungated: true });
  }

  async ping(): Promise<void> {
    await this.#c.call('ping', () => this.#c.client.ping());
  }

  async close(): Promise<void> {
    await this.#c.close();
  }
}
