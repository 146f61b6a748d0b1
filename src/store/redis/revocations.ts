import type { Revocation } from '../records.js';
import type { RevocationStore } from '../store.js';
import type { RedisConnection } from './connection.js';
import { ADD_REVOCATION, PURGE_REVOCATIONS } from './redis-scripts.js';

/*
 * The revocation feed: a counter hands out seqs (only ever incremented), a sorted set holds
 * the records by seq and another their seqs by keepUntil (for the purge). Adding one is a
 * script that writes only in this handle's epoch and PUBLISHes the change with the write.
 */
export class RedisRevocations implements RevocationStore {
  readonly #c: RedisConnection;

  constructor(c: RedisConnection) {
    this.#c = c;
  }

  async addRevocation(r: Omit<Revocation, 'seq'>): Promise<Revocation> {
    const c = this.#c;
    // Field order fixed here; the script prepends `{"seq":N,`.
    const body = JSON.stringify({
      scope: r.scope,
      id: r.id,
      issuedBefore: r.issuedBefore,
      revokedAt: r.revokedAt,
      keepUntil: r.keepUntil,
      reason: r.reason,
      actor: r.actor,
      ...(r.audiences === undefined ? {} : { audiences: r.audiences }),
    }).slice(1);
    const raw = await c.call('addRevocation', () =>
      ADD_REVOCATION.run(c.client, [c.k.revocationSeq, c.k.revocationLog, c.k.revocationKeep, c.k.storeEpoch], [body, r.keepUntil, c.k.changes, c.identity.epoch ?? '']),
    );
    const stored = JSON.parse(String(raw)) as Revocation;
    c.revocationSeq = Math.max(c.revocationSeq, stored.seq);
    return stored;
  }

  async revocationsSince(cursor: number, limit: number, now: number): Promise<Revocation[]> {
    const c = this.#c;
    return c.call('revocationsSince', async () => {
      const out: Revocation[] = [];
      let from = cursor;
      // Records past keepUntil but not yet purged are skipped without cutting the page short.
      while (out.length < limit) {
        const want = limit - out.length;
        const raws = await c.client.zrangebyscore(c.k.revocationLog, `(${from}`, '+inf', 'LIMIT', 0, want);
        for (const raw of raws) {
          const rec = JSON.parse(raw) as Revocation;
          from = rec.seq;
          if (rec.keepUntil > now) out.push(rec);
        }
        c.revocationSeq = Math.max(c.revocationSeq, from);
        if (raws.length < want) break;
      }
      return out;
    });
  }

  async purgeRevocations(now: number): Promise<number> {
    const c = this.#c;
    return c.call('purgeRevocations', async () => {
      let total = 0;
      for (;;) {
        const n = Number(await PURGE_REVOCATIONS.run(c.client, [c.k.revocationKeep, c.k.revocationLog], [now, 1000]));
        total += n;
        if (n < 1000) return total;
      }
    });
  }
}
