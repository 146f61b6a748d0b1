import { chmodSync, mkdirSync, realpathSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import type { ChainAnchor } from '../../formats/chain-hash.js';
import { LeashError } from '../../errors/leash-error.js';
import type { Clock } from '../../time/clock.js';
import type { StateChange } from '../records.js';
import { acquireHub, HandleSubscriptions, type ChangeHub } from '../shared/change-hub.js';
import { IdentityTracker, describeReset, genesisAnchor, judgeIdentity, storeResetError, type IdentityMode, type IdentityState, type ResetMarker } from '../store-identity.js';
import { initialiseIdentity, markReset, prepareIdentity, readEpoch, readIdentity, type IdentityStatements } from './identity.js';
import { SchemaTooNewError, migrate } from './migrations.js';
import { WalCheckpointer } from './wal-checkpointer.js';

/*
 * One open SQLite file and what every role of the store shares on it: the connection, the
 * error boundary (`run`), the per-commit fsync switch (`durably`), the store's identity as
 * this handle knows it, and the in-process change hub. Each role (tasks.ts, audit-log.ts,
 * ...) prepares its own statements on `db` and calls through `run`.
 */

const UNAVAILABLE = 'the state store is unavailable; retry later';
/** What a wait for another process's write lock blocks on (Atomics.wait takes fractions of a ms). */
const PAUSE = new Int32Array(new SharedArrayBuffer(4));
/** How often the checkpoint thread looks at the WAL (a PASSIVE checkpoint of nothing is cheap). */
const CHECKPOINT_INTERVAL_MS = 100;
/**
 * Calls on a serving handle before its checkpoint thread starts: a thread costs ~10 ms and a
 * few MB to start, which a store that writes little (a CLI command, a short test) never
 * earns back; SQLite's own checkpoints serve until then.
 */
export const CALLS_BEFORE_CHECKPOINTER = 1000;
/** SQLite's own default, in force until the thread is online and again if it fails. */
const SQLITE_AUTOCHECKPOINT_PAGES = 1000;
/** The WAL is cut back to this size when it starts over (it keeps its high-water size otherwise). */
const WAL_SIZE_LIMIT_BYTES = 16 * 1024 * 1024;
/** The first wait for a busy lock (ms), doubled per retry up to MAX_PAUSE_MS. */
const FIRST_PAUSE_MS = 0.02;
const MAX_PAUSE_MS = 1;

export function unavailable(op: string, err: unknown): LeashError {
  const e = err as { code?: unknown; message?: unknown };
  return new LeashError(
    'ERR_BACKEND_UNAVAILABLE',
    UNAVAILABLE,
    { backend: 'sqlite', op, code: typeof e?.code === 'string' ? e.code : undefined, message: typeof e?.message === 'string' ? e.message : String(err) },
    { cause: err },
  );
}

/** A uniqueness (or NOT NULL, CHECK) constraint refused the write. */
export function isConstraintError(err: unknown): boolean {
  const code = (err as { code?: unknown })?.code;
  return typeof code === 'string' && code.startsWith('SQLITE_CONSTRAINT');
}

/** Thrown inside a write when the store's epoch is not this handle's: the write is rolled back. */
class EpochMismatch extends Error {}

/** A serving handle opened on a store with a pending reset. */
class StoreResetAtOpen extends Error {
  constructor(readonly marker: ResetMarker) {
    super(describeReset(marker));
  }
}

/** better-sqlite3 reports a closed connection as a TypeError; that is an outage, not misuse. */
function isDbNotOpen(err: TypeError): boolean {
  return /database connection is not open/i.test(err.message);
}

export interface HandleOptions {
  readonly path: string;
  readonly clock: Clock;
  readonly fsyncAll: boolean;
  readonly busyTimeoutMs: number | undefined;
  readonly mode: IdentityMode;
}

export class SqliteHandle {
  readonly db: Database.Database;
  readonly clock: Clock;
  readonly mode: IdentityMode;
  readonly identity: IdentityTracker;
  readonly identityRows: IdentityStatements;
  /** This handle's subscriptions on the hub, dropped on close (the hub may outlive it). */
  readonly subscriptions = new HandleSubscriptions();
  readonly hub: ChangeHub;
  /** The chain head as this process last saw it; `append` still re-reads it in its transaction. */
  head: ChainAnchor;
  /** Highest revocation seq this handle has written or read (what a reset would lose). */
  revocationSeq = 0;
  closed = false;
  readonly #fsyncAll: boolean;
  /** How long a call waits for another process's write lock before failing closed (settings busy timeout). */
  readonly #busyMs: number;
  readonly #totalChanges: Database.Statement;
  readonly #releaseHub: () => void;
  readonly #headRow: Database.Statement;
  readonly #ping: Database.Statement;
  /** Serving handles on a file: WAL checkpoints on their own thread (wal-checkpointer.ts), once started. */
  get checkpointer(): WalCheckpointer | undefined {
    return this.#checkpointer;
  }
  #checkpointer: WalCheckpointer | undefined;
  /** Calls left before the checkpoint thread starts (Infinity: this handle never starts one). */
  #callsBeforeCheckpointer = Infinity;
  readonly #path: string;

  /** Opens, migrates and initialises (serve) the file; fails closed with ERR_BACKEND_UNAVAILABLE or ERR_STORE_RESET. */
  constructor(opts: HandleOptions) {
    this.clock = opts.clock;
    this.mode = opts.mode;
    this.#fsyncAll = opts.fsyncAll;
    const inMemory = opts.path === ':memory:' || opts.path === '';
    this.#path = opts.path;
    let db: Database.Database | undefined;
    try {
      if (!inMemory) mkdirSync(dirname(opts.path), { recursive: true, mode: 0o700 });
      db = new Database(opts.path);
      // Owner-only: the file holds the audit trail and task state. SQLite gives the -wal and
      // -shm files the main file's permissions.
      if (!inMemory) chmodSync(opts.path, 0o600);
      db.pragma('journal_mode = WAL');
      db.pragma(`synchronous = ${this.#fsyncAll ? 'FULL' : 'NORMAL'}`);
      db.pragma(`journal_size_limit = ${WAL_SIZE_LIMIT_BYTES}`);
      this.#busyMs = Math.max(0, Math.floor(opts.busyTimeoutMs ?? 5000));
      // SQLite's own wait for opening and migrating; once open, `run` waits instead (see #retryBusy).
      db.pragma(`busy_timeout = ${this.#busyMs}`);
      migrate(db);
      this.db = db;
      this.#headRow = db.prepare('SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1');
      this.#ping = db.prepare('SELECT 1');
      const i = (this.identityRows = prepareIdentity(db));
      const state: IdentityState = this.mode === 'serve' ? db.transaction(() => initialiseIdentity(i)).immediate() : readIdentity(i);
      if (this.mode === 'serve' && state.marker) throw new StoreResetAtOpen(state.marker);
      this.identity = new IdentityTracker(state.epoch ?? undefined);
      this.head = this.auditHeadRow() ?? genesisAnchor(state.genesis);
      this.#totalChanges = db.prepare('SELECT total_changes()').pluck();
      db.pragma('busy_timeout = 0');
      if (!inMemory && this.mode === 'serve') this.#callsBeforeCheckpointer = CALLS_BEFORE_CHECKPOINTER;
      // Keyed by the resolved file, so `./x.db` and its absolute path share one hub.
      const hub = acquireHub(inMemory ? undefined : realpathSync(opts.path));
      this.hub = hub.hub;
      this.#releaseHub = () => hub.release();
    } catch (err) {
      try {
        db?.close();
      } catch {
        // already failing; the original error is the one to report
      }
      if (err instanceof SchemaTooNewError) {
        throw new LeashError('ERR_BACKEND_UNAVAILABLE', UNAVAILABLE, { backend: 'sqlite', op: 'open', message: err.message }, { cause: err });
      }
      if (err instanceof StoreResetAtOpen) {
        const e = storeResetError(err.marker, 'sqlite', 'open');
        throw new LeashError(e.code, e.description, { ...e.detail, message: describeReset(err.marker) }, { cause: err });
      }
      throw unavailable('open', err);
    }
  }

  /** Starts the thread that checkpoints; once it is online, SQLite's in-commit checkpoints go off. */
  #checkpointOffTheLoop(): void {
    const db = this.db;
    this.#checkpointer = new WalCheckpointer({
      path: this.#path,
      intervalMs: CHECKPOINT_INTERVAL_MS,
      onOnline: () => {
        if (!this.closed) db.pragma('wal_autocheckpoint = 0');
      },
      onFailure: (why) => {
        if (this.closed) return;
        // The WAL must not grow without bound: SQLite checkpoints in the commits again.
        db.pragma(`wal_autocheckpoint = ${SQLITE_AUTOCHECKPOINT_PAGES}`);
        process.emitWarning(`${why}; SQLite checkpoints in the commits again (on the event loop)`, { code: 'LEASH_WAL_CHECKPOINT' });
      },
    });
  }

  /** The last audit row (undefined: empty chain). */
  auditHeadRow(): ChainAnchor | undefined {
    return this.#headRow.get() as ChainAnchor | undefined;
  }

  /** Inside a write transaction: the store must still be in this handle's epoch. */
  assertEpoch(): void {
    const mine = this.identity.epoch;
    if (mine !== undefined && readEpoch(this.identityRows) !== mine) throw new EpochMismatch();
  }

  /**
   * Every database call goes through here: a closed, locked or failing DB fails closed, and
   * so does a store found reset (`ungated`: the identity calls that find and end a reset).
   */
  run<T>(op: string, fn: () => T, opts: { ungated?: boolean } = {}): T {
    if (this.closed) throw new LeashError('ERR_BACKEND_UNAVAILABLE', UNAVAILABLE, { backend: 'sqlite', op, message: 'the store is closed' });
    const reset = this.identity.reset;
    if (reset && !opts.ungated) throw storeResetError(reset, 'sqlite', op);
    if (--this.#callsBeforeCheckpointer === 0) this.#checkpointOffTheLoop();
    try {
      return this.#retryBusy(fn);
    } catch (err) {
      if (err instanceof EpochMismatch) {
        // Another epoch under a write: find out what happened (marker, fail closed) and refuse.
        try {
          this.#retryBusy(() => this.judge());
        } catch (judgeErr) {
          throw unavailable(op, judgeErr);
        }
        const found = this.identity.reset;
        if (found) throw storeResetError(found, 'sqlite', op);
        // An accepted reset was adopted meanwhile: nothing was written; the caller may retry.
        throw unavailable(op, new Error('the store epoch changed under this write; nothing was written'));
      }
      // Misuse (ours or a bad binding: TypeError/RangeError) stays a programming error.
      if ((err instanceof TypeError && !isDbNotOpen(err)) || err instanceof RangeError) throw err;
      if (err instanceof LeashError) throw err;
      throw unavailable(op, err);
    }
  }

  /**
   * Runs `fn`, waiting out another process's write lock (workers and replicas share the
   * file; SQLite has one writer at a time). SQLite's own busy handler sleeps at least 1 ms
   * per try inside the synchronous call, which blocked the event loop for longer than
   * most lock holds (an exchange's write takes ~0.1 ms) and kept 2 workers at the rate of
   * one; here the waits start at 20 µs. A call is tried again only if it changed nothing:
   * a busy lock fails a write before it begins (transactions take the lock at BEGIN
   * IMMEDIATE), and a call of several statements that had already written is not repeated.
   * Past the busy timeout the error goes on (unavailable, fail closed).
   */
  #retryBusy<T>(fn: () => T): T {
    const changes = this.#totalChanges.get() as number;
    let deadline: number | undefined;
    for (let pause = FIRST_PAUSE_MS; ; pause = Math.min(MAX_PAUSE_MS, pause * 2)) {
      try {
        return fn();
      } catch (err) {
        const code = (err as { code?: unknown })?.code;
        if (typeof code !== 'string' || !code.startsWith('SQLITE_BUSY') || this.db.inTransaction || this.#totalChanges.get() !== changes) throw err;
        deadline ??= performance.now() + this.#busyMs;
        if (performance.now() >= deadline) throw err;
        Atomics.wait(PAUSE, 0, 0, pause);
      }
    }
  }

  /** Runs one commit with synchronous=FULL: it returns only once it is on disk. */
  durably<T>(fn: () => T): T {
    if (this.#fsyncAll) return fn();
    // Not a prepared statement: SQLite applies `PRAGMA synchronous` when the statement is
    // compiled, so re-running a prepared one does nothing (and preparing one switches at once).
    this.db.exec('PRAGMA synchronous = FULL');
    try {
      return fn();
    } finally {
      this.db.exec('PRAGMA synchronous = NORMAL');
    }
  }

  /** After the commit: a listener never sees a change that could still roll back. */
  publish(change: StateChange): void {
    this.hub.publish(change);
  }

  /** Applies judgeIdentity to what the file holds now; leaves the marker on a reset (serve handles only). */
  judge(): void {
    const mine = this.identity.epoch;
    if (this.mode !== 'serve' || mine === undefined) return;
    const state = readIdentity(this.identityRows);
    const j = judgeIdentity(mine, state);
    if (j.verdict === 'in-step') {
      if (this.identity.reset) this.identity.clear(state.genesis ?? undefined);
      return;
    }
    if (j.verdict === 'adopt') {
      this.identity.adopt(j.epoch, j.genesis);
      this.head = this.auditHeadRow() ?? genesisAnchor(j.genesis);
      return;
    }
    const mineMarker: ResetMarker = {
      previousEpoch: mine,
      foundEpoch: state.epoch,
      detectedAt: this.clock.now(),
      auditHead: this.head,
      revocationSeq: this.revocationSeq,
    };
    const i = this.identityRows;
    const stored = this.durably(() => this.db.transaction(() => markReset(i, mineMarker)).immediate());
    this.identity.failClosed(stored);
  }

  /** Cheap liveness probe. */
  ping(): void {
    this.run('ping', () => this.#ping.get());
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.#checkpointer?.stop();
    this.subscriptions.closeAll();
    this.#releaseHub();
    try {
      this.db.close();
    } catch (err) {
      throw unavailable('close', err);
    }
  }
}
