import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';

/*
 * WAL checkpoints on a thread of their own. By default SQLite checkpoints inside the commit
 * that takes the WAL past 1,000 pages: on the event loop, copying the pages back into the
 * main file and waiting for two fsyncs. An exchange's commit adds ~8 pages (each touched
 * B-tree page whole), so at 400 exchanges/s that was a ~10 ms stall every ~0.3 s, the
 * largest single term of the exchange's p99 (docs/performance.md, "Where the tail came
 * from"). Here a thread with a connection of its own checkpoints instead, and the serving
 * connection's own checkpoints are off while the thread runs.
 *
 * Each tick runs PASSIVE checkpoints (they never wait for a writer or a reader, so neither
 * does the event loop) until they report the WAL copied, at most PASSES. That report is as
 * of the pass's start, and commits made during its fsync come after it, so under steady
 * writes the WAL never starts over by itself (267 MB after 60,000 writes). So once the WAL
 * is past RESTART_PAGES, a RESTART waits (here, not on the event loop) for the write in
 * progress, copies the little PASSIVE left and makes the next write start the WAL over;
 * writes wait for that short copy (~3 ms measured). Durability does not change: commits
 * reach the WAL as before; a checkpoint only moves them into the main file.
 *
 * If the thread fails or exits, the handle turns SQLite's own checkpoints back on (the WAL
 * must not grow without bound) and warns once.
 */

/** The thread's code, evaluated as a CommonJS script (no TypeScript loader in a worker). */
const THREAD = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.sqlite);
const db = new Database(workerData.path, { fileMustExist: true });
db.pragma('busy_timeout = 0');
const passive = db.prepare('PRAGMA wal_checkpoint(PASSIVE)');
const restart = db.prepare('PRAGMA wal_checkpoint(RESTART)');
parentPort.postMessage({ online: true });
let failures = 0;
let last = -1;
let restarted = -1;
const tick = () => {
  try {
    let r;
    for (let pass = 0; pass < workerData.passes; pass++) {
      r = passive.get();
      if (r.checkpointed >= r.log) break;
    }
    // 'Caught up' is as of the pass's start: commits made during its fsync are not in it,
    // so under steady writes the WAL never starts over by itself. Past a size, RESTART
    // (once: an idle WAL already restarted waits for the next write to start it over).
    if (r.log >= workerData.restartPages && !(r.log === restarted && r.checkpointed >= r.log)) {
      restarted = r.log;
      db.pragma('busy_timeout = ' + workerData.restartWaitMs);
      try {
        r = restart.get();
      } finally {
        db.pragma('busy_timeout = 0');
      }
    }
    failures = 0;
    if (r.checkpointed !== last) parentPort.postMessage({ log: r.log, checkpointed: r.checkpointed });
    last = r.checkpointed;
  } catch (err) {
    // Another connection checkpointing at the same moment (a second worker process): next time.
    if (err && String(err.code).startsWith('SQLITE_BUSY')) return;
    if (++failures >= 5) throw err;
  }
};
setInterval(tick, workerData.intervalMs);
`;

/** WAL size (pages) past which a tick restarts the log: SQLite's own checkpoint threshold. */
const RESTART_PAGES = 1000;
/** How long a RESTART waits for the current write before trying again next tick. */
const RESTART_WAIT_MS = 50;
/** PASSIVE passes per tick before it settles for where it got. */
const PASSES = 4;

export interface WalCheckpointerOptions {
  /** The database file (WAL mode), already open and migrated by the caller. */
  readonly path: string;
  readonly intervalMs: number;
  /** The thread has opened the file and checkpoints from now on. */
  readonly onOnline: () => void;
  /** The thread is gone and will not checkpoint again (not called after `stop`). */
  readonly onFailure: (why: string) => void;
}

export class WalCheckpointer {
  /** The thread (a test ends it to prove the fallback). */
  readonly thread: Worker;
  #stopped = false;
  #online = false;
  #failed = false;
  #last: { readonly log: number; readonly checkpointed: number } | undefined;

  constructor(opts: WalCheckpointerOptions) {
    if (!Number.isSafeInteger(opts.intervalMs) || opts.intervalMs < 1) throw new TypeError('intervalMs must be a positive integer');
    const sqlite = createRequire(import.meta.url).resolve('better-sqlite3');
    this.thread = new Worker(THREAD, {
      eval: true,
      workerData: { path: opts.path, sqlite, intervalMs: opts.intervalMs, passes: PASSES, restartPages: RESTART_PAGES, restartWaitMs: RESTART_WAIT_MS },
      // A checkpoint needs little: keep the thread's heap small.
      resourceLimits: { maxOldGenerationSizeMb: 32, maxYoungGenerationSizeMb: 4 },
    });
    const fail = (why: string) => {
      if (this.#stopped || this.#failed) return;
      this.#failed = true;
      opts.onFailure(why);
    };
    this.thread.on('message', (m: { online?: true; log: number; checkpointed: number }) => {
      if (m.online) {
        if (this.#stopped || this.#failed) return;
        this.#online = true;
        opts.onOnline();
        return;
      }
      this.#last = { log: m.log, checkpointed: m.checkpointed };
    });
    this.thread.on('error', (err: unknown) => fail(`the WAL checkpoint thread failed: ${err instanceof Error ? err.message : String(err)}`));
    this.thread.on('exit', (code) => fail(`the WAL checkpoint thread exited (code ${code})`));
    // Never what keeps a process alive (the handle's close stops it, and so does exit).
    // After the listeners: adding a 'message' listener refs the worker again.
    this.thread.unref();
  }

  /** What the last checkpoint that moved frames into the main file reported (undefined: none yet). */
  get last(): { readonly log: number; readonly checkpointed: number } | undefined {
    return this.#last;
  }

  /** The thread has the file open and checkpoints (SQLite's in-commit checkpoints are off). */
  get running(): boolean {
    return this.#online && !this.#failed && !this.#stopped;
  }

  stop(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    void this.thread.terminate();
  }
}
