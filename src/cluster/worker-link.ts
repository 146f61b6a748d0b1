import cluster from 'node:cluster';
import type { StateChange } from '../store/records.js';
import type { Store } from '../store/store.js';
import { isLeashMessage, type PrimaryToWorker, type WorkerToPrimary } from './messages.js';

/** Longest a write waits for the primary's answer (its own timeout for siblings is shorter). */
const RELAY_GUARD_MS = 5000;

/** What the broker of one worker needs from its siblings (BrokerOptions.cluster). */
export interface ClusterLink {
  /** The store, with every revocation and suspension this worker writes relayed to its siblings before the write resolves. */
  wrapStore(store: Store): Store;
  /** This worker's key set changed: the siblings re-read the keyring now. */
  keysChanged(): void;
  /** A sibling's key set changed; returns an unsubscribe. */
  onSiblingKeysChanged(listener: () => void): () => void;
  /**
   * `/metrics` of the whole process group: every worker's registry (`local` is this
   * worker's, also sent when a sibling's scrape asks), aggregated by the primary.
   */
  scrapeAll(local: () => Promise<unknown[]>): Promise<string>;
  /** This worker's registry, for the scrapes that reach a sibling. */
  serveMetrics(local: () => Promise<unknown[]>): void;
}

/**
 * A worker's side of the cluster (primary.ts). The store's own change feed is per process
 * on SQLite (store/shared/change-hub.ts), so a revocation written here would reach a
 * sibling only at its next revocation sync: instead every revocation and suspension this
 * worker commits is sent through the primary to every sibling, which applies it to its
 * revocation view (the same idempotent path a Redis pub/sub message takes) and says so,
 * and the write resolves only then. So an answer this worker gives after a revocation is
 * never followed by a sibling answering from an older view. On Redis the relay runs too
 * (pub/sub reaches the siblings as well; applying twice is harmless).
 */
export class WorkerLink implements ClusterLink {
  readonly #listeners = new Set<(change: StateChange) => void>();
  readonly #keyListeners = new Set<() => void>();
  readonly #waiting = new Map<number, () => void>();
  readonly #scrapes = new Map<number, (text: string | undefined) => void>();
  #metrics: (() => Promise<unknown[]>) | undefined;
  #next = 0;
  readonly #onMessage = (m: unknown) => this.#receive(m);

  constructor() {
    if (!cluster.isWorker || !process.send) throw new TypeError('WorkerLink runs in a cluster worker only');
    process.on('message', this.#onMessage);
  }

  /** Tells the primary this worker serves (its start is no longer a start failure). */
  ready(): void {
    this.#send({ leash: 'ready' });
  }

  /** Tells the primary why this worker could not start (sent before it exits). */
  startFailed(error: string): void {
    this.#send({ leash: 'start-failed', error });
  }

  close(): void {
    process.off('message', this.#onMessage);
    for (const resolve of this.#waiting.values()) resolve();
    this.#waiting.clear();
    for (const resolve of this.#scrapes.values()) resolve(undefined);
    this.#scrapes.clear();
  }

  wrapStore(store: Store): Store {
    const relay = (change: StateChange) => this.#relay(change);
    const listeners = this.#listeners;
    const wrapped: Partial<Store> = {
      async addRevocation(r) {
        const stored = await store.addRevocation(r);
        await relay({ type: 'revocation', revocation: stored });
        return stored;
      },
      async suspendPlugin(s) {
        const changed = await store.suspendPlugin(s);
        await relay({ type: 'suspension', plugin: s.plugin, suspended: true });
        return changed;
      },
      async resumePlugin(plugin) {
        const changed = await store.resumePlugin(plugin);
        await relay({ type: 'suspension', plugin, suspended: false });
        return changed;
      },
      subscribe(listener) {
        const off = store.subscribe(listener);
        const entry = (c: StateChange) => listener(c);
        listeners.add(entry);
        return () => {
          off();
          listeners.delete(entry);
        };
      },
    };
    // Everything else is the store's own (bound: the stores keep their state in private fields).
    return new Proxy(store, {
      get(target, prop) {
        if (Object.hasOwn(wrapped, prop)) return wrapped[prop as keyof Store];
        const v: unknown = Reflect.get(target, prop, target);
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
  }

  keysChanged(): void {
    this.#send({ leash: 'keys-changed' });
  }

  onSiblingKeysChanged(listener: () => void): () => void {
    const entry = () => listener();
    this.#keyListeners.add(entry);
    return () => this.#keyListeners.delete(entry);
  }

  scrapeAll(local: () => Promise<unknown[]>): Promise<string> {
    this.#metrics = local;
    const id = ++this.#next;
    return new Promise((resolve, reject) => {
      const guard = setTimeout(() => {
        this.#scrapes.delete(id);
        reject(new Error('the primary did not answer the metrics collection'));
      }, RELAY_GUARD_MS);
      guard.unref();
      this.#scrapes.set(id, (text) => {
        clearTimeout(guard);
        if (text === undefined) reject(new Error("the workers' metrics could not be aggregated"));
        else resolve(text);
      });
      this.#send({ leash: 'metrics-request', id });
    });
  }

  /** Registers this worker's registry before any scrape reached it, so a sibling's scrape includes it. */
  serveMetrics(local: () => Promise<unknown[]>): void {
    this.#metrics = local;
  }

  #relay(change: StateChange): Promise<void> {
    // Closed or orphaned: nothing to tell; siblings (if any) catch up by their sync.
    if (!process.connected) return Promise.resolve();
    const id = ++this.#next;
    return new Promise((resolve) => {
      // The primary answers within its relay timeout; this bound only guards against a primary that is going away.
      const guard = setTimeout(() => this.#waiting.delete(id) && resolve(), RELAY_GUARD_MS);
      guard.unref();
      this.#waiting.set(id, () => {
        clearTimeout(guard);
        resolve();
      });
      this.#send({ leash: 'change', id, change });
    });
  }

  #receive(m: unknown): void {
    if (!isLeashMessage(m)) return;
    const msg = m as PrimaryToWorker;
    switch (msg.leash) {
      case 'change':
        for (const l of [...this.#listeners]) {
          try {
            l(msg.change);
          } catch (err) {
            process.emitWarning(`a relayed state-change listener threw: ${err instanceof Error ? err.message : String(err)}`, { code: 'LEASH_CHANGE_LISTENER' });
          }
        }
        this.#send({ leash: 'applied', id: msg.id, from: msg.from });
        break;
      case 'relayed': {
        const resolve = this.#waiting.get(msg.id);
        this.#waiting.delete(msg.id);
        resolve?.();
        break;
      }
      case 'keys-changed':
        for (const l of [...this.#keyListeners]) l();
        break;
      case 'metrics-collect': {
        const id = msg.id;
        void (this.#metrics?.() ?? Promise.resolve([])).then(
          (metrics) => this.#send({ leash: 'metrics-part', id, metrics }),
          () => this.#send({ leash: 'metrics-part', id, metrics: [] }),
        );
        break;
      }
      case 'metrics-result': {
        const resolve = this.#scrapes.get(msg.id);
        this.#scrapes.delete(msg.id);
        resolve?.(msg.text === '' ? undefined : msg.text);
        break;
      }
    }
  }

  #send(m: WorkerToPrimary): void {
    if (process.connected) process.send!(m, undefined, {}, () => undefined);
  }
}
