import type { ReplayCache, ReplayView } from '../store.js';
import type { RedisConnection } from './connection.js';
import { REMEMBER } from './redis-scripts.js';

/* The replay cache: expiry compared by the injected clock in the script; the key's TTL is only garbage collection. */
export class RedisReplay implements ReplayCache, ReplayView {
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

  async seen(key: string): Promise<boolean> {
    const c = this.#c;
    const now = c.clock.now();
    // The same test as REMEMBER's: a value whose expiry has passed is forgotten, whatever Redis still holds.
    const v = await c.call('seen', () => c.client.get(c.k.replay(key)));
    return v !== null && Number(v) > now;
  }
}
