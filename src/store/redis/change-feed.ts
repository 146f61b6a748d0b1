import type { StateChange } from '../records.js';
import type { ChangeFeed } from '../store.js';
import type { RedisConnection } from './connection.js';

/*
 * Writes that change what replicas must know (revocations, suspensions) PUBLISH the change
 * in the same script as the write, on `<prefix>changes`. The connection's subscriber
 * delivers them to local listeners, the writer's own included (so every replica, this one
 * too, sees one ordered stream). Pub/sub is at-most-once: a replica catches up after a gap
 * with `revocationsSince`.
 */
export class RedisChangeFeed implements ChangeFeed {
  readonly #c: RedisConnection;

  constructor(c: RedisConnection) {
    this.#c = c;
  }

  subscribe(listener: (change: StateChange) => void): () => void {
    if (this.#c.closed) return () => undefined;
    return this.#c.subscriptions.subscribe(this.#c.hub, listener);
  }

  subscribed(): boolean {
    // A server refused for lack of AOF is no source of truth: the revocation view must not
    // keep answering from pub/sub for its staleness window, but refuse at once.
    // Not while a reconnection is still being verified: it may be to a server that lost the
    // data; nor while the main connection is down (the subscriber may be back first).
    return this.#c.listening && !this.#c.closed && this.#c.refusal === undefined && this.#c.trusted;
  }
}
