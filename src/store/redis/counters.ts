import { windowStart } from '../shared/record-checks.js';
import type { CounterStore } from '../store.js';
import type { RedisConnection } from './connection.js';

/* Fixed-window counters: one key per window, INCRBY and PEXPIRE in one MULTI. */
export class RedisCounters implements CounterStore {
  readonly #c: RedisConnection;

  constructor(c: RedisConnection) {
    this.#c = c;
  }

  async incrementWindow(key: string, windowMs: number, now: number, by = 1): Promise<number> {
    const c = this.#c;
    const start = windowStart(windowMs, now);
    const k = c.k.counter(key, windowMs, start);
    // The key outlives its window by a minute, for replicas whose clocks lag a little.
    const ttl = start + windowMs - now + 60_000;
    return c.call('incrementWindow', async () => {
      const res = await c.client.multi().incrby(k, by).pexpire(k, ttl).exec();
      if (!res) throw new Error('incrementWindow: transaction aborted');
      const [err, value] = res[0]!;
      if (err) throw err;
      return Number(value);
    });
  }
}
