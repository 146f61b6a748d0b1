import type { LeaseRecord } from '../records.js';
import { LEASE_RETENTION_MS } from '../shared/retention.js';
import type { LeaseStore } from '../store.js';
import type { RedisConnection } from './connection.js';
import { byExpiryThenJti, fromLeaseFields, leaseHead } from './record-fields.js';
import { RECORD_LEASE, REVOKE_LEASE } from './redis-scripts.js';

/* Vault leases: one hash per jti (record-fields.ts) and a sorted set of unrevoked ones by expiry; a revoked lease goes LEASE_RETENTION_MS later. */
export class RedisLeases implements LeaseStore {
  readonly #c: RedisConnection;

  constructor(c: RedisConnection) {
    this.#c = c;
  }

  async recordLease(l: LeaseRecord): Promise<void> {
    const c = this.#c;
    const ttl = l.revokedAt === undefined ? 0 : Math.max(1, l.revokedAt + LEASE_RETENTION_MS - c.clock.now());
    const r = await c.call('recordLease', () => RECORD_LEASE.run(c.client, [c.k.lease(l.jti), c.k.leasesDue], [l.jti, leaseHead(l), l.expiresAt, l.revokedAt ?? '', ttl]));
    if (r !== 1) throw new TypeError('recordLease: a lease for this jti is already recorded');
  }

  async leasesForTokens(jtis: readonly string[]): Promise<LeaseRecord[]> {
    if (jtis.length === 0) return [];
    return this.#c.call('leasesForTokens', async () => {
      const leases = await this.#leases([...new Set(jtis)]);
      return leases.filter((l) => l.revokedAt === undefined).sort(byExpiryThenJti);
    });
  }

  async dueLeases(now: number, limit: number): Promise<LeaseRecord[]> {
    const c = this.#c;
    return c.call('dueLeases', async () => {
      const out: LeaseRecord[] = [];
      for (let start = 0; out.length < limit;) {
        const want = limit - out.length;
        const jtis = await c.client.zrangebyscore(c.k.leasesDue, '-inf', now, 'LIMIT', start, want);
        start += jtis.length;
        // The due index only holds unrevoked leases; the filter guards a record lost underneath it.
        for (const l of await this.#leases(jtis)) if (l.revokedAt === undefined) out.push(l);
        if (jtis.length < want) break;
      }
      return out;
    });
  }

  async markLeaseRevoked(jti: string, at: number): Promise<boolean> {
    const c = this.#c;
    const ttl = Math.max(1, at + LEASE_RETENTION_MS - c.clock.now());
    const r = await c.call('markLeaseRevoked', () => REVOKE_LEASE.run(c.client, [c.k.lease(jti), c.k.leasesDue], [jti, at, ttl]));
    return r === 1;
  }

  async #leases(jtis: readonly string[]): Promise<LeaseRecord[]> {
    const c = this.#c;
    const out: LeaseRecord[] = [];
    for (let i = 0; i < jtis.length; i += 500) {
      const p = c.client.pipeline();
      for (const jti of jtis.slice(i, i + 500)) p.hmget(c.k.lease(jti), 'd', 'r');
      for (const [err, r] of (await p.exec()) ?? []) {
        if (err) throw err;
        const l = fromLeaseFields(r);
        if (l) out.push(l);
      }
    }
    return out;
  }
}
