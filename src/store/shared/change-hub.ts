import type { StateChange } from '../records.js';

export type ChangeListener = (change: StateChange) => void;

/**
 * In-process fan-out of state changes. Not an EventEmitter: one listener that throws must
 * neither reach the writer (its commit already succeeded) nor starve the listeners after it.
 */
export class ChangeHub {
  readonly #listeners = new Set<ChangeListener>();

  add(listener: ChangeListener): () => void {
    // A wrapper per call, so subscribing the same function twice gives two independent subscriptions.
    const entry: ChangeListener = (c) => listener(c);
    this.#listeners.add(entry);
    return () => {
      this.#listeners.delete(entry);
    };
  }

  publish(change: StateChange): void {
    for (const listener of [...this.#listeners]) {
      try {
        listener(change);
      } catch (err) {
        process.emitWarning(`a state-change listener threw: ${err instanceof Error ? err.message : String(err)}`, { code: 'LEASH_CHANGE_LISTENER' });
      }
    }
  }
}

/** The subscriptions one store handle made on a hub, so closing the handle drops exactly those. */
export class HandleSubscriptions {
  readonly #offs = new Set<() => void>();

  subscribe(hub: ChangeHub, listener: ChangeListener): () => void {
    const off = hub.add(listener);
    const unsubscribe = () => {
      off();
      this.#offs.delete(unsubscribe);
    };
    this.#offs.add(unsubscribe);
    return unsubscribe;
  }

  closeAll(): void {
    for (const off of [...this.#offs]) off();
  }
}

/**
 * One hub per database file, shared by every handle this process opens on it, so a
 * sibling handle's revocation reaches this one's subscribers. Other processes on the same
 * file are not notified: they catch up by polling `revocationsSince` (cross-process and
 * cross-replica notification is what the Redis store's pub/sub is for).
 */
const shared = new Map<string, { hub: ChangeHub; refs: number }>();

export function acquireHub(fileKey: string | undefined): { hub: ChangeHub; release(): void } {
  if (fileKey === undefined) return { hub: new ChangeHub(), release: () => undefined };
  let entry = shared.get(fileKey);
  if (!entry) {
    entry = { hub: new ChangeHub(), refs: 0 };
    shared.set(fileKey, entry);
  }
  entry.refs += 1;
  const e = entry;
  let released = false;
  return {
    hub: e.hub,
    release: () => {
      if (released) return;
      released = true;
      e.refs -= 1;
      if (e.refs === 0 && shared.get(fileKey) === e) shared.delete(fileKey);
    },
  };
}
