import type Database from 'better-sqlite3';
import type { Revocation } from '../records.js';
import { revocationChange } from '../shared/record-checks.js';
import type { RevocationStore } from '../store.js';
import type { SqliteHandle } from './handle.js';

/*
 * The revocation feed's records. An added revocation is fsynced (acknowledged means on
 * disk), written only in this handle's epoch, and published to the handle's hub after the
 * commit; the feed's `seq` is SQLite's AUTOINCREMENT, never reused.
 */

type RevocationRow = {
  seq: number;
  scope: Revocation['scope'];
  id: string;
  issued_before: number;
  revoked_at: number;
  keep_until: number;
  reason: string;
  actor: string;
  /** JSON array; NULL: every resource server. */
  audiences: string | null;
};

function prepare(db: Database.Database) {
  return {
    insert: db.prepare('INSERT INTO revocations (scope, id, issued_before, revoked_at, keep_until, reason, actor, audiences) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING *'),
    since: db.prepare('SELECT * FROM revocations WHERE seq > ? AND keep_until > ? ORDER BY seq LIMIT ?'),
    purge: db.prepare('DELETE FROM revocations WHERE keep_until <= ?'),
  };
}

export class SqliteRevocations implements RevocationStore {
  readonly #h: SqliteHandle;
  readonly #s: ReturnType<typeof prepare>;
  readonly #addTx: (r: Omit<Revocation, 'seq'>) => RevocationRow;

  constructor(h: SqliteHandle) {
    this.#h = h;
    const s = (this.#s = prepare(h.db));
    const addTx = h.db.transaction((r: Omit<Revocation, 'seq'>): RevocationRow => {
      h.assertEpoch();
      return s.insert.get(r.scope, r.id, r.issuedBefore, r.revokedAt, r.keepUntil, r.reason, r.actor, r.audiences === undefined ? null : JSON.stringify(r.audiences)) as RevocationRow;
    });
    this.#addTx = addTx.immediate.bind(addTx);
  }

  async addRevocation(r: Omit<Revocation, 'seq'>): Promise<Revocation> {
    const h = this.#h;
    const row = h.run('addRevocation', () => h.durably(() => this.#addTx(r)));
    const stored = toRevocation(row);
    h.revocationSeq = Math.max(h.revocationSeq, stored.seq);
    h.publish(revocationChange(stored));
    return stored;
  }

  async revocationsSince(cursor: number, limit: number, now: number): Promise<Revocation[]> {
    const h = this.#h;
    const rows = h.run('revocationsSince', () => this.#s.since.all(cursor, now, limit) as RevocationRow[]);
    if (rows.length > 0) h.revocationSeq = Math.max(h.revocationSeq, rows[rows.length - 1]!.seq);
    return rows.map(toRevocation);
  }

  async purgeRevocations(now: number): Promise<number> {
    return this.#h.run('purgeRevocations', () => this.#s.purge.run(now).changes);
  }
}

function toRevocation(r: RevocationRow): Revocation {
  return {
    seq: r.seq,
    scope: r.scope,
    id: r.id,
    issuedBefore: r.issued_before,
    revokedAt: r.revoked_at,
    keepUntil: r.keep_until,
    reason: r.reason,
    actor: r.actor,
    ...(r.audiences === null ? {} : { audiences: JSON.parse(r.audiences) as string[] }),
  };
}
