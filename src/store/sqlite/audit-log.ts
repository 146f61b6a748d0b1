import type Database from 'better-sqlite3';
import { canonicalJson } from '../../formats/canonical-json.js';
import { chainHashCanonical } from '../../formats/chain-hash.js';
import type { AuditRecord } from '../records.js';
import type { AuditLog } from '../store.js';
import { genesisAnchor } from '../store-identity.js';
import type { SqliteHandle } from './handle.js';
import { readGenesis } from './identity.js';

/*
 * The audit hash chain. An append is one IMMEDIATE transaction that re-reads the head
 * under the write lock, so another process sharing the file cannot append between our read
 * and our insert and fork the chain. Not fsynced: a crash can only shorten the chain.
 */

type AuditRow = { seq: number; ts: number; type: string; event: string; prev_hash: string; hash: string };

function prepare(db: Database.Database) {
  return {
    insert: db.prepare('INSERT INTO audit (seq, ts, type, event, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?)'),
    read: db.prepare('SELECT seq, ts, type, event, prev_hash, hash FROM audit WHERE seq >= ? ORDER BY seq LIMIT ?'),
  };
}

export class SqliteAuditLog implements AuditLog {
  readonly #h: SqliteHandle;
  readonly #s: ReturnType<typeof prepare>;
  readonly #appendTx: (type: string, canonicalEvent: string, ts: number) => AuditRow;

  constructor(h: SqliteHandle) {
    this.#h = h;
    const s = (this.#s = prepare(h.db));
    const appendTx = h.db.transaction((type: string, canonicalEvent: string, ts: number): AuditRow => {
      h.assertEpoch();
      // An empty chain begins at its genesis (seq 1, or where an accepted reset continued it).
      const head = h.auditHeadRow() ?? genesisAnchor(readGenesis(h.identityRows));
      const seq = head.seq + 1;
      const hash = chainHashCanonical(head.hash, seq, ts, type, canonicalEvent);
      s.insert.run(seq, ts, type, canonicalEvent, head.hash, hash);
      return { seq, ts, type, event: canonicalEvent, prev_hash: head.hash, hash };
    });
    this.#appendTx = appendTx.immediate.bind(appendTx);
  }

  async append(type: string, event: Record<string, unknown>, ts: number): Promise<AuditRecord> {
    // Stored text = hashed text, so what read() returns re-hashes to the same value.
    const canonical = canonicalJson(event);
    const row = this.#h.run('append', () => this.#appendTx(type, canonical, ts));
    this.#h.head = { seq: row.seq, hash: row.hash };
    return toAudit(row);
  }

  async read(fromSeq: number, limit: number): Promise<AuditRecord[]> {
    const rows = this.#h.run('read', () => this.#s.read.all(fromSeq, limit) as AuditRow[]);
    return rows.map(toAudit);
  }
}

function toAudit(r: AuditRow): AuditRecord {
  return { seq: r.seq, ts: r.ts, type: r.type, event: JSON.parse(r.event) as Record<string, unknown>, prevHash: r.prev_hash, hash: r.hash };
}
