import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import type { Clock } from '../time/clock.js';
import { Sweeper } from '../time/periodic-pass.js';
import { TOKEN_RETENTION_MS } from './shared/retention.js';
import type { TokenIndex } from './store.js';

/** How often the retention pass runs (the first one this long after start). */
export const TOKEN_RETENTION_INTERVAL_MS = 60_000;

/** Most rows per delete statement. */
export const TOKEN_PURGE_BATCH = 1000;
/** Least rows per delete statement. */
const MIN_BATCH = 20;
/** What one delete statement may hold the event loop for: the batch size follows it. */
const TARGET_BATCH_MS = 5;

/**
 * Keeps the issued-token index bounded: tokens expired longer ago than the retention are
 * deleted in small batches (sized so one statement takes a few milliseconds), yielding to
 * the event loop between batches so exchanges keep being answered during a large sweep. Nothing reads the whole index at start; the first
 * pass runs one interval after it.
 */
export class TokenRetention extends Sweeper {
  readonly #retentionMs: number;

  constructor(
    private readonly store: Pick<TokenIndex, 'purgeIssued'>,
    private readonly clock: Clock,
    opts: { intervalMs: number; taskMaxTtlSeconds: number },
    log: (msg: string, fields?: Record<string, unknown>) => void = () => undefined,
  ) {
    super(opts.intervalMs, (err) => log('token retention pass failed', { error: err.message }));
    // A live task must still see every token it was issued.
    this.#retentionMs = Math.max(TOKEN_RETENTION_MS, opts.taskMaxTtlSeconds * 1000);
  }

  /** One pass; returns how many token rows it deleted. */
  protected async pass(): Promise<number> {
    const before = this.clock.now() - this.#retentionMs;
    let purged = 0;
    let batch = 100;
    for (;;) {
      const t0 = performance.now();
      const n = await this.store.purgeIssued(before, batch);
      const ms = performance.now() - t0;
      purged += n;
      if (n < batch) return purged;
      // A delete touches every index of the table on pages a cold cache may not hold: size the
      // next batch from how long this one took, so no statement stalls exchanges for long.
      batch = Math.max(MIN_BATCH, Math.min(TOKEN_PURGE_BATCH, Math.round((batch * TARGET_BATCH_MS) / Math.max(ms, 0.1))));
      await yieldToEventLoop();
    }
  }
}
