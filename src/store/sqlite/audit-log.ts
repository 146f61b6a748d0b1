import type Database from 'better-sqlite3';
import { canonicalJson } from '../../formats/canonical-json.js';
import { chainHashCanonical } from '../../formats/chain-hash.js';
import type { AuditRecord } from '../records.js';
import type { AuditLog } from '../store.js';
import { genesisAnchor } from '../store-identity.js';
import { GroupCommit, type ItemOutcome } from './group-commit.js';
import type { SqliteHandle } from './handle.js';
import { readGenesis } from './identity.js';

/*
 * The audit hash chain. The appends of one event-loop turn are one IMMEDIATE transaction
 * (group-commit.ts) that re-reads the head under the write lock, so another process sharing
 * the file cannot append between our read and our inserts and fork the chain; the events
 * are chained in the order they were appended. Not fsynced: a crash can only shorten the chain.
 */

type AuditRow = { seq: number; ts: number; type: string; event: string; prev_hash: string; hash: string };

function prepare(db: Database.Database) {
  return {
    insert: db.prepare('INSERT INTO audit (seq, ts, type, event, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?)'),
    read: db.prepare('SELECT seq, ts, type, event, prev_hash, hash FROM audit WHERE seq >= ? ORDER BY seq LIMIT ?'),
  };
}

type Append = { readonly type: string; readonly canonical: string; readonly ts: number };

export class SqliteAuditLog implements AuditLog {
  readonly #h: SqliteHandle;
  readonly #s: ReturnType<typeof prepare>;
  readonly #group: GroupCommit<Append, AuditRow>;

  constructor(h: SqliteHandle) {
    this.#h = h;
    const s = (this.#s = prepare(h.db));
    const appendTx = h.db.transaction((batch: readonly Append[]): ItemOutcome<AuditRow>[] => {
      h.assertEpoch();
      // An empty chain begins at its genesis (seq 1, or where an accepted reset continued it).
      let head = h.auditHeadRow() ?? genesisAnchor(readGenesis(h.identityRows));
      const out: ItemOutcome<AuditRow>[] = [];
      for (const { type, canonical, ts } of batch) {
        const seq = head.seq + 1;
        const hash = chainHashCanonical(head.hash, seq, ts, type, canonical);
        s.insert.run(seq, ts, type, canonical, head.hash, hash);
        out.push({ ok: true, value: { seq, ts, type, event: canonical, prev_hash: head.hash, hash } });
        head = { seq, hash };
      }
      return out;
    });
    const append = appendTx.immediate.bind(appendTx);
    this.#group = new GroupCommit((batch) =>
      h.run('append', () => {
        const out = append(batch);
        // After the commit: a head that rolled back is never taken for the chain's.
        const last = out.at(-1);
        if (last?.ok) h.head = { seq: last.value.seq, hash: last.value.hash };
        return out;
      }),
    );
  }

  async append(type: string, event: Record<string, unknown>, ts: number): Promise<AuditRecord> {
    // Stored text = hashed text, so what read() returns re-hashes to the same value.
    return toAudit(await this.#group.submit({ type, canonical: canonicalJson(event), ts }));
  }

  async read(fromSeq: number, limit: number): Promise<AuditRecord[]> {
    const rows = this.#h.run('read', () => this.#s.read.all(fromSeq, limit) as AuditRow[]);
    return rows.map(toAudit);
  }
}

function toAudit(r: AuditRow): AuditRecord {
  return { seq: r.seq, ts: r.ts, type: r.type, event: JSON.parse(r.event) as Record<string, unknown>, prevHash: r.prev_hash, hash: r.hash };
}
