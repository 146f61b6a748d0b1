import { canonicalJson } from '../../formats/canonical-json.js';
import { chainHashCanonical } from '../../formats/chain-hash.js';
import type { AuditRecord } from '../records.js';
import type { AuditLog } from '../store.js';
import { genesisAnchor } from '../store-identity.js';
import { closedError, formatHead, parseHead, type RedisConnection } from './connection.js';
import { AUDIT_APPEND } from './redis-scripts.js';

/*
 * The audit hash chain: a hash of seq -> record and a head key. The hash is sha256 over
 * canonical JSON computed in Node by the same function SQLite uses (Redis Lua has no
 * sha256, and cjson would not reproduce canonical JSON byte for byte). Appends are a
 * compare-and-set: compute the records from the head this process last saw, then a script
 * appends only if the head is still that one (and the store still in this handle's epoch);
 * on conflict it returns the current head and we recompute and retry.
 */

type PendingAppend = { type: string; canonical: string; ts: number; resolve: (r: AuditRecord) => void; reject: (err: unknown) => void };

export class RedisAuditLog implements AuditLog {
  readonly #c: RedisConnection;
  readonly #pending: PendingAppend[] = [];
  #appending = false;

  constructor(c: RedisConnection) {
    this.#c = c;
  }

  async append(type: string, event: Record<string, unknown>, ts: number): Promise<AuditRecord> {
    const canonical = canonicalJson(event);
    if (this.#c.closed) throw closedError('append');
    return new Promise<AuditRecord>((resolve, reject) => {
      this.#pending.push({ type, canonical, ts, resolve, reject });
      if (!this.#appending) void this.#flush();
    });
  }

  /**
   * Group commit: appends waiting in this process go in one compare-and-set, so local
   * writers never race each other for the head (only other replicas can), and a burst costs
   * one round trip (one fsync under appendfsync always) instead of one each.
   */
  async #flush(): Promise<void> {
    this.#appending = true;
    try {
      while (this.#pending.length > 0) {
        const batch = this.#pending.splice(0, 256);
        try {
          const records = await this.#c.call('append', () => this.#appendBatch(batch));
          records.forEach((r, i) => batch[i]!.resolve(r));
        } catch (err) {
          for (const p of batch) p.reject(err);
        }
      }
    } finally {
      this.#appending = false;
    }
  }

  async #appendBatch(batch: readonly PendingAppend[]): Promise<AuditRecord[]> {
    const c = this.#c;
    let head = c.head;
    // Each conflict means another writer (a replica, or another worker of this one) appended
    // in between; with group commit a round of N contending writers lets at least one
    // through, so this ends quickly. The conflict answers the head as it is now, so the
    // retry goes at once: a pause would make that head stale again while the other writer
    // keeps appending (with 2 workers, pausing after the 3rd conflict starved one worker
    // for hundreds of ms and made 2 workers slower than 1). Only a long run of conflicts,
    // which takes many writers, pauses briefly to break the lockstep.
    for (let attempt = 0; attempt < 100; attempt++) {
      const records: AuditRecord[] = [];
      const args: Array<string | number> = [formatHead(genesisAnchor(c.genesis)), formatHead(head), batch.length];
      let prev = head;
      for (const p of batch) {
        const seq = prev.seq + 1;
        const hash = chainHashCanonical(prev.hash, seq, p.ts, p.type, p.canonical);
        args.push(seq, JSON.stringify([p.ts, p.type, p.canonical, prev.hash, hash]));
        records.push({ seq, ts: p.ts, type: p.type, event: JSON.parse(p.canonical) as Record<string, unknown>, prevHash: prev.hash, hash });
        prev = { seq, hash };
      }
      args.push(formatHead(prev), c.identity.epoch ?? '');
      const r = await AUDIT_APPEND.run(c.client, [c.k.auditHead, c.k.auditLog, c.k.storeEpoch], args);
      if (r === 1) {
        c.head = prev;
        return records;
      }
      head = parseHead(String(r));
      c.head = head;
      if (attempt >= 16) await new Promise((res) => setTimeout(res, Math.random() * 2));
    }
    throw new Error('audit append: the chain head kept moving (100 conflicts)');
  }

  async read(fromSeq: number, limit: number): Promise<AuditRecord[]> {
    const c = this.#c;
    const first = Math.max(1, fromSeq);
    return c.call('read', async () => {
      const fields = Array.from({ length: limit }, (_, i) => String(first + i));
      const raws = await c.client.hmget(c.k.auditLog, ...fields);
      const out: AuditRecord[] = [];
      for (let i = 0; i < raws.length; i++) {
        const raw = raws[i];
        // Seqs are contiguous: the first hole is the end of the log.
        if (raw === null || raw === undefined) break;
        const [ts, type, event, prevHash, hash] = JSON.parse(raw) as [number, string, string, string, string];
        out.push({ seq: first + i, ts, type, event: JSON.parse(event) as Record<string, unknown>, prevHash, hash });
      }
      return out;
    });
  }
}
