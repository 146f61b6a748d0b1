import type { WorkloadIdentity } from './attestor.js';

interface Entry {
  readonly identity: WorkloadIdentity;
  /** Epoch ms after which the entry is never returned. */
  readonly until: number;
}

/**
 * Verified identities by token digest, bounded and least-recently-used, so a pod that
 * presents the same projected token on every exchange is verified once. An entry is dead
 * from `until` on, which the caller sets no later than the token's own `exp`.
 */
export class IdentityCache {
  readonly #entries = new Map<string, Entry>();

  constructor(private readonly maxEntries: number) {
    if (!Number.isInteger(maxEntries) || maxEntries < 0) throw new TypeError('IdentityCache: maxEntries must be a non-negative integer');
  }

  get(digest: string, nowMs: number): WorkloadIdentity | undefined {
    const entry = this.#entries.get(digest);
    if (!entry) return undefined;
    this.#entries.delete(digest);
    if (nowMs >= entry.until) return undefined;
    this.#entries.set(digest, entry); // most recently used goes last
    return entry.identity;
  }

  set(digest: string, identity: WorkloadIdentity, until: number): void {
    if (this.maxEntries === 0) return;
    this.#entries.delete(digest);
    this.#entries.set(digest, { identity, until });
    if (this.#entries.size > this.maxEntries) {
      const oldest = this.#entries.keys().next().value;
      if (oldest !== undefined) this.#entries.delete(oldest);
    }
  }

  get size(): number {
    return this.#entries.size;
  }
}
