import type { ReplayCache } from './dpop-proof.js';

/**
 * A bounded in-memory replay cache for one resource-server process. When full it sweeps
 * expired entries, then drops the oldest: proofs are short-lived, so the oldest entry is
 * the one closest to expiring anyway. Several replicas of an API each keep their own: a
 * proof replayed to a different replica within its max age is not caught (RFC 9449 §11.1
 * accepts this trade-off; share a cache if that matters).
 */
export function createMemoryReplayCache(opts: { maxEntries?: number; now?: () => number } = {}): ReplayCache {
  const max = opts.maxEntries ?? 100_000;
  const now = opts.now ?? Date.now;
  const seen = new Map<string, number>();
  return {
    async remember(key: string, expiresAt: number): Promise<boolean> {
      const t = now();
      const prior = seen.get(key);
      if (prior !== undefined && prior > t) return false;
      if (prior !== undefined) seen.delete(key);
      if (seen.size >= max) {
        for (const [k, exp] of seen) if (exp <= t) seen.delete(k);
        while (seen.size >= max) {
          const oldest = seen.keys().next().value as string;
          seen.delete(oldest);
        }
      }
      seen.set(key, expiresAt);
      return true;
    },
  };
}
