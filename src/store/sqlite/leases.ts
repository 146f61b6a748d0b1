import type Database from 'better-sqlite3';
import type { LeaseRecord } from '../records.js';
import { LEASE_RETENTION_MS } from '../shared/retention.js';
import type { LeaseStore } from '../store.js';
import { isConstraintError, type SqliteHandle } from './handle.js';

type LeaseRow = { jti: string; lease_id: string; plugin: string; task: string | null; expires_at: number; revoked_at: number | null };

function prepareLeasesImpl(db: Database.Database): LeaseStatements {
  return {
    insert: db.prepare('INSERT INTO vault_leases (jti, lease_id, plugin, task, expires_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?)'),
    // One statement for any number of jtis: the list travels as one JSON parameter.
    forTokens: db.prepare('SELECT * FROM vault_leases WHERE jti IN (SELECT value FROM json_each(?)) AND revoked_at IS NULL ORDER BY expires_at, jti'),
    due: db.prepare('SELECT * FROM vault_leases WHERE revoked_at IS NULL AND expires_at <= ? ORDER BY expires_at, jti LIMIT ?'),
    revoke: db.prepare('UPDATE vault_leases SET revoked_at = ? WHERE jti = ? AND revoked_at IS NULL'),
    purge: db.prepare('DELETE FROM vault_leases WHERE revoked_at IS NOT NULL AND revoked_at <= ?'),
  };
}

// Named with the public Database.Statement type so the declaration emit can name it.
export type LeaseStatements = Record<'insert' | 'forTokens' | 'due' | 'revoke' | 'purge', Database.Statement>;

export function insertLease(s: LeaseStatements, l: LeaseRecord): void {
  s.insert.run(l.jti, l.leaseId, l.plugin, l.task ?? null, l.expiresAt, l.revokedAt ?? null);
}

export function leaseRows(rows: unknown[]): LeaseRecord[] {
  return (rows as LeaseRow[]).map((r) => ({
    jti: r.jti,
    leaseId: r.lease_id,
    plugin: r.plugin,
    task: r.task ?? undefined,
    expiresAt: r.expires_at,
    revokedAt: r.revoked_at ?? undefined,
  }));
}

/** Prepared once per handle; statements are typed by their bind parameters. */
export const prepareLeases: (db: Database.Database) => LeaseStatements = prepareLeasesImpl;

export class SqliteLeases implements LeaseStore {
  readonly #h: SqliteHandle;
  readonly #s: LeaseStatements;
  /** Purge revoked leases once every this many records. */
  readonly #purgeEvery: number;
  #records = 0;

  constructor(h: SqliteHandle, purgeEvery: number) {
    this.#h = h;
    this.#s = prepareLeases(h.db);
    this.#purgeEvery = purgeEvery;
  }

  async recordLease(l: LeaseRecord): Promise<void> {
    const h = this.#h;
    const now = h.clock.now();
    h.run('recordLease', () => {
      if (++this.#records % this.#purgeEvery === 0) this.#s.purge.run(now - LEASE_RETENTION_MS);
      try {
        // Fsynced: a lease forgotten in a crash would outlive its task's revocation.
        h.durably(() => insertLease(this.#s, l));
      } catch (err) {
        if (isConstraintError(err)) throw new TypeError('recordLease: a lease for this jti is already recorded', { cause: err });
        throw err;
      }
    });
  }

  async leasesForTokens(jtis: readonly string[]): Promise<LeaseRecord[]> {
    if (jtis.length === 0) return [];
    return this.#h.run('leasesForTokens', () => leaseRows(this.#s.forTokens.all(JSON.stringify(jtis))));
  }

  async dueLeases(now: number, limit: number): Promise<LeaseRecord[]> {
    return this.#h.run('dueLeases', () => leaseRows(this.#s.due.all(now, limit)));
  }

  async markLeaseRevoked(jti: string, at: number): Promise<boolean> {
    // Not fsynced: losing it only means the sweeper revokes the lease again (idempotent in Vault).
    return this.#h.run('markLeaseRevoked', () => this.#s.revoke.run(at, jti).changes === 1);
  }
}
