import type Database from 'better-sqlite3';
import type { LeaseRecord } from '../records.js';

/** A revoked lease is forgotten this long after its revocation. */
export const LEASE_RETENTION_MS = 86400_000;

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
