import type { ReplayCache } from '../store.js';
import type { RedisConnection } from './connection.js';
import { REMEMBER } from './redis-scripts.js';

/* The replay cache: expiry compared by the injected clock in the script; the key's TTL is only garbage collection. */
export class RedisReplay implements ReplayCache {
  readonly #c: RedisConnection;

  constructor(c: RedisConnection) {
    this.#c = c;
  }

  async remember(key: string, expiresAt: number): Promise<boolean> {
    const c = this.#c;
    const now = c.clock.now();
    const ttl = Math.max(1, Math.ceil(expiresAt - now));
    const r = await c.call('remember', () => REMEMBER.run(c.client, [c.k.replay(key)], [expiresAt, now, ttl]));
    return r === 1;
  }
}
