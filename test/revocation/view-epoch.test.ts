import { afterEach, beforeEach, describe, expect, it } from '@jest/globals';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { isLeashError } from '../../src/errors/leash-error.js';
import { RevocationView } from '../../src/revocation/revocation-view.js';
import { openSqliteStore, type SqliteStore } from '../../src/store/sqlite/sqlite-store.js';
import { ManualClock } from '../../src/time/clock.js';

/**
 * The revocation view remembers the store epoch its cursor belongs to: a reset store fails
 * every check closed, and an accepted one is read again from the start, so revocations the
 * new epoch numbered below the old cursor are not skipped.
 */
describe('RevocationView across a store reset', () => {
  const clock = new ManualClock(Date.UTC(2026, 11, 1));
  const by = { actor: 'apikey:ops', reason: 'test' };
  const facts = (jti: string) => ({ jti, plugin: 'p', task: undefined, kid: undefined, iat: Math.floor(clock.now() / 1000) });
  let dir: string;
  let path: string;
  const handles: SqliteStore[] = [];
  const open = (identity: 'serve' | 'inspect' = 'serve') => {
    const s = openSqliteStore({ path, clock, identity });
    handles.push(s);
    return s;
  };

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'leash-view-epoch-'));
    path = join(dir, 'leash.db');
  });
  afterEach(async () => {
    for (const h of handles.splice(0)) await h.close().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  });

  function wipe(): void {
    const db = new Database(path);
    const tables = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT IN ('schema_version', 'sqlite_sequence')").all() as { name: string }[];
    db.transaction(() => {
      for (const t of tables) db.exec(`DELETE FROM "${t.name}"`);
      db.exec('DELETE FROM sqlite_sequence');
    })();
    db.close();
  }

  const code = async (p: Promise<unknown> | (() => unknown)) => {
    try {
      await (typeof p === 'function' ? p() : p);
    } catch (err) {
      return isLeashError(err) ? err.code : String(err);
    }
    return 'no error';
  };

  it('refuses while the reset is pending, then re-reads the accepted epoch from seq 0, keeping what it held', async () => {
    const store = open();
    const view = new RevocationView({ store, clock, syncIntervalMs: 60_000, maxStalenessMs: 60_000, maxTokenLifeMs: () => 600_000, revokers: new Map() });
    await view.start();
    try {
      for (const j of ['old-1', 'old-2', 'old-3']) await view.revokeToken(j, by);
      await view.sync();
      expect(view.isRevoked(facts('old-3'))).toBe(true);

      wipe();
      // a replica that never knew the old epoch starts (a new epoch) and, in its own process
      // (so nothing reaches this one by push), revokes: seq 1 of the new epoch
      const newcomer = open();
      const other = new Database(path);
      const seq = other
        .prepare("INSERT INTO revocations (scope, id, issued_before, revoked_at, keep_until, reason, actor) VALUES ('token', 'new-1', ?, ?, ?, 'r', 'a') RETURNING seq")
        .get(clock.now(), clock.now(), clock.now() + 600_000) as { seq: number };
      other.close();
      expect(seq.seq).toBe(1);

      expect(await code(view.sync())).toBe('ERR_STORE_RESET');
      expect(await code(() => view.assertFresh())).toBe('ERR_STORE_RESET');
      expect(await code(() => view.isRevoked(facts('anything')))).toBe('ERR_STORE_RESET');

      const accepted = await open('inspect').acceptReset('cli:ops', clock.now());
      expect(accepted?.epoch).toBe(newcomer.epoch());
      await view.sync();
      expect(() => view.assertFresh()).not.toThrow();
      // below the old cursor (3), yet read: the cursor belonged to the old epoch
      expect(view.isRevoked(facts('new-1'))).toBe(true);
      // what the store lost is still enforced here
      expect(view.isRevoked(facts('old-2'))).toBe(true);
      expect(view.isRevoked(facts('never'))).toBe(false);
    } finally {
      view.stop();
    }
  });
});
