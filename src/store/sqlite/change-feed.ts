import type { StateChange } from '../records.js';
import type { ChangeFeed } from '../store.js';
import type { SqliteHandle } from './handle.js';

/*
 * In-process only. Every handle this process opens on the same file shares one hub
 * (shared/change-hub.ts), so a revocation written through one handle reaches the
 * subscribers of all of them, synchronously, after the commit and before the write's
 * promise resolves. Another process on the same file learns nothing by push; it catches
 * up with `revocationsSince`.
 */
export class SqliteChangeFeed implements ChangeFeed {
  readonly #h: SqliteHandle;

  constructor(h: SqliteHandle) {
    this.#h = h;
  }

  subscribe(listener: (change: StateChange) => void): () => void {
    if (this.#h.closed) return () => undefined;
    return this.#h.subscriptions.subscribe(this.#h.hub, listener);
  }

  subscribed(): boolean {
    return !this.#h.closed;
  }
}
