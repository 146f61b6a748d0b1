import type Database from 'better-sqlite3';
import type { ChainAnchor } from '../../formats/chain-hash.js';
import { systemClock, type Clock } from '../../time/clock.js';
import { CheckedStore, type StoreRoles } from '../shared/checked-store.js';
import type { IdentityMode } from '../store-identity.js';
import type { WalCheckpointState } from '../store.js';
import { SqliteApprovals } from './approvals.js';
import { SqliteAuditLog } from './audit-log.js';
import { SqliteAwsDenies } from './aws-denies.js';
import { SqliteChangeFeed } from './change-feed.js';
import { SqliteCounters } from './counters.js';
import { SqliteDecisionHistory } from './decision-history.js';
import { SqliteHandle, unavailable } from './handle.js';
import type { WalCheckpointer } from './wal-checkpointer.js';
import { SqliteIdentity } from './identity.js';
import { SqliteLeases } from './leases.js';
import { SqliteReplay } from './replay.js';
import { SqliteRevocations } from './revocations.js';
import { SqliteSuspensions } from './suspensions.js';
import { SqliteTasks } from './tasks.js';
import { SqliteTokens } from './tokens.js';
import { SqliteUsage } from './usage.js';

export interface SqliteStoreOptions {
  /** Database file; its folder is created. `:memory:` for tests only (nothing survives). */
  readonly path: string;
  readonly clock?: Clock;
  /**
   * When a commit waits for fsync.
   * - `state-changes` (default): acknowledged state changes (task opened, task ended) are
   *   fsynced before they return; the hot path (issued-token index, audit, replay) is not.
   * - `every-commit`: every commit is fsynced (~10x slower writes; see the note below).
   */
  readonly fsync?: 'state-changes' | 'every-commit';
  /** How long a write waits for another process's lock before failing closed. */
  readonly busyTimeoutMs?: number;
  /** Purge expired replay keys once every this many `remember` calls. */
  readonly replayPurgeEvery?: number;
  /** Purge finished counter windows once every this many `incrementWindow` calls. */
  readonly counterPurgeEvery?: number;
  /** Purge long-finished approvals (7 days) and revoked leases (1 day) once every this many creations. */
  readonly recordPurgeEvery?: number;
  /** `serve` (default): initialise the epoch, refuse a pending reset. `inspect`: operator tooling, read only. */
  readonly identity?: IdentityMode;
}

/*
 * Durability, measured on the 2-core dev VM (ext4 on virtio; 5,000 single-row commits):
 *   WAL + synchronous=NORMAL  ~11-12 µs per commit  (~85k commits/s)
 *   WAL + synchronous=FULL    ~120-130 µs per commit (~8k commits/s): one fsync each
 * In WAL mode NORMAL already survives a *process* crash (a commit is in the WAL, in the OS
 * page cache, before it returns); only an OS crash or power loss can lose the last commits,
 * and then atomically, as a prefix: the audit chain stays intact, just shorter.
 * FULL on the hot path would spend ~250 µs of the single JS thread per exchange (two
 * commits) for that: more than the exchange's whole crypto budget. So the connection runs
 * NORMAL, and the commits whose loss would be a security failure, above all a task end
 * (a revocation that must never come undone), switch the connection to FULL for that one
 * commit. Since the WAL is append-only, that fsync also makes every earlier commit durable.
 * Revocations and suspensions (issue 3) are such commits too: acknowledged means on disk.
 *
 * Change feed: in-process only (change-feed.ts).
 */

/**
 * Opens (creating if needed) the embedded store. Synchronous, so the composition root can
 * build it in a constructor; a file that cannot be opened or migrated throws
 * ERR_BACKEND_UNAVAILABLE at once (fail closed at start, not at the first request).
 */
export function openSqliteStore(opts: SqliteStoreOptions): SqliteStore {
  return new SqliteStore(opts);
}

function every(name: string, v: number | undefined, dflt: number): number {
  const x = v ?? dflt;
  if (!Number.isInteger(x) || x < 1) throw new TypeError(`${name} must be a positive integer`);
  return x;
}

/** One object per role on the handle; a statement that cannot be prepared fails the open closed. */
function roles(h: SqliteHandle, purge: { replayPurgeEvery: number; counterPurgeEvery: number; recordPurgeEvery: number }): StoreRoles {
  try {
    return {
      tasks: new SqliteTasks(h),
      tokens: new SqliteTokens(h),
      audit: new SqliteAuditLog(h),
      replay: new SqliteReplay(h, purge.replayPurgeEvery),
      revocations: new SqliteRevocations(h),
      suspensions: new SqliteSuspensions(h),
      counters: new SqliteCounters(h, purge.counterPurgeEvery),
      feed: new SqliteChangeFeed(h),
      approvals: new SqliteApprovals(h, purge.recordPurgeEvery),
      leases: new SqliteLeases(h, purge.recordPurgeEvery),
      awsDenies: new SqliteAwsDenies(h),
      decisions: new SqliteDecisionHistory(h),
      identity: new SqliteIdentity(h),
      // The usage role (usage.ts), on this handle and behind the same error boundary.
      usage: new SqliteUsage(h.db, (op, fn) => h.run(op, fn)),
    };
  } catch (err) {
    try {
      h.close();
    } catch {
      // already failing; the original error is the one to report
    }
    throw unavailable('open', err);
  }
}

/**
 * The embedded Store: one SQLite file in WAL mode (handle.ts), one object per role (one
 * file each in this folder), each preparing its statements once; CheckedStore checks every
 * call before it reaches them. better-sqlite3 is synchronous, so each method does its work
 * before returning a settled promise; the async shape is the Store contract's.
 */
export class SqliteStore extends CheckedStore {
  readonly kind = 'sqlite';
  readonly path: string;
  readonly #h: SqliteHandle;

  constructor(opts: SqliteStoreOptions) {
    const replayPurgeEvery = every('replayPurgeEvery', opts.replayPurgeEvery, 1024);
    const counterPurgeEvery = every('counterPurgeEvery', opts.counterPurgeEvery, 256);
    const recordPurgeEvery = every('recordPurgeEvery', opts.recordPurgeEvery, 256);
    const h = new SqliteHandle({ path: opts.path, clock: opts.clock ?? systemClock, fsyncAll: opts.fsync === 'every-commit', busyTimeoutMs: opts.busyTimeoutMs, mode: opts.identity ?? 'serve' });
    super(roles(h, { replayPurgeEvery, counterPurgeEvery, recordPurgeEvery }));
    this.path = opts.path;
    this.#h = h;
  }

  /** The chain head as last appended or read by this process (seq 0 = empty log). */
  get auditHead(): ChainAnchor {
    return this.#h.head;
  }

  /** The raw connection, for operational tooling and tests; bypasses every guard. */
  get database(): Database.Database {
    return this.#h.db;
  }

  /** The thread that checkpoints the WAL, once this serving store has started it (handle.ts). */
  get walCheckpointer(): WalCheckpointer | undefined {
    return this.#h.checkpointer;
  }

  walCheckpoint(): WalCheckpointState {
    const c = this.#h.checkpointer;
    return { thread: c?.running ?? false, pages: c?.last?.log };
  }

  async ping(): Promise<void> {
    this.#h.ping();
  }

  async close(): Promise<void> {
    this.#h.close();
  }
}
