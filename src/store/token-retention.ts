import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import type { Clock } from '../time/clock.js';
import { PeriodicPass } from '../time/periodic-pass.js';
import { TOKEN_RETENTION_MS } from './shared/retention.js';
import type { TokenIndex } from './store.js';

/** How often the retention pass runs (the first one this long after start). */
export const TOKEN_RETENTION_INTERVAL_MS = 60_000;

/** Rows per delete: one statement holds the event loop for a few milliseconds at most. */
export const TOKEN_PURGE_BATCH = 1000;

/**
 * Keeps the issued-token index bounded: tokens expired longer ago than the retention are
 * deleted in small batches, yielding to the event loop between batches so exchanges keep
 * being answered during a large sweep. Nothing reads the whole index at start; the first
 * pass runs one interval after it.
 */
export class TokenRetention {
  readonly #periodic: PeriodicPass;
  readonly #retentionMs: number;

  constructor(
    private readonly store: Pick<TokenIndex, 'purgeIssued'>,
    private readonly clock: Clock,
    opts: { intervalMs: number; taskMaxTtlSeconds: number },
    private readonly log: (msg: string, fields?: Record<string, unknown>) => void = () => undefined,
  ) {
    // A live task must still see every token it was issued.
    this.#retentionMs = Math.max(TOKEN_RETENTION_MS, opts.taskMaxTtlSeconds * 1000);
    this.#periodic = new PeriodicPass(
      () => this.#sweep(),
      opts.intervalMs,
      (err) => this.log('token retention pass failed', { error: err.message }),
    );
  }

  start(): void {
    this.#periodic.start();
  }

  stop(): Promise<void> {
    return this.#periodic.stop();
  }

  /** One pass; returns how many token rows it deleted. */
  sweep(): Promise<number> {
    return this.#periodic.run();
  }

  async #sweep(): Promise<number> {
    const before = this.clock.now() - this.#retentionMs;
    let purged = 0;
    for (;;) {
      const n = await this.store.purgeIssued(before, TOKEN_PURGE_BATCH);
      purged += n;
      if (n < TOKEN_PURGE_BATCH) return purged;
      await yieldToEventLoop();
    }
  }
}
