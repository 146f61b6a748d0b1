import type Database from 'better-sqlite3';
import { windowStart } from '../shared/record-checks.js';
import type { CounterStore } from '../store.js';
import type { SqliteHandle } from './handle.js';

/* Fixed-window counters (quotas). Finished windows are purged lazily, every `purgeEvery` increments. */

function prepare(db: Database.Database) {
  return {
    increment: db.prepare(
      'INSERT INTO counters (key, window_ms, window_start, expires_at, count) VALUES (?, ?, ?, ?, ?) ON CONFLICT (key, window_ms, window_start) DO UPDATE SET count = count + excluded.count RETURNING count',
    ),
    purge: db.prepare('DELETE FROM counters WHERE expires_at <= ?'),
  };
}

export class SqliteCounters implements CounterStore {
  readonly #h: SqliteHandle;
  readonly #s: ReturnType<typeof prepare>;
  readonly #purgeEvery: number;
  #calls = 0;

  constructor(h: SqliteHandle, purgeEvery: number) {
    this.#h = h;
    this.#s = prepare(h.db);
    this.#purgeEvery = purgeEvery;
  }

  async incrementWindow(key: string, windowMs: number, now: number, by = 1): Promise<number> {
    const start = windowStart(windowMs, now);
    return this.#h.run('incrementWindow', () => {
      // Amortised, like the replay cache: finished windows are dead weight, never read again.
      if (++this.#calls % this.#purgeEvery === 0) this.#s.purge.run(now);
      return (this.#s.increment.get(key, windowMs, start, start + windowMs, by) as { count: number }).count;
    });
  }
}
