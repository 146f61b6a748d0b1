import { describe, it, expect, beforeEach, afterEach } from '@jest/globals';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { chainHash } from '../../src/audit/chain.js';
import { readAuditLog, verifyAuditLog } from '../../src/audit/verify.js';
import { isLeashError } from '../../src/errors/leash-error.js';
import type { AuditRecord } from '../../src/store/records.js';
import type { AuditLog } from '../../src/store/store.js';
import { openSqliteStore, type SqliteStore } from '../../src/store/sqlite/sqlite-store.js';
import { ManualClock } from '../../src/time/clock.js';

/**
 * Tampering as an attacker with write access to the file would: a second connection edits
 * the SQLite database directly, then a fresh store verifies it.
 */
describe('verifyAuditLog against a tampered SQLite file', () => {
  let dir: string;
  let path: string;
  let store: SqliteStore;
  let attacker: Database.Database;
  const N = 50;

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'leash-verify-'));
    path = join(dir, 'leash.db');
    const clock = new ManualClock();
    store = openSqliteStore({ path, clock });
    for (let i = 1; i <= N; i++) {
      await store.append(i % 3 ? 'exchange.issued' : 'exchange.denied', { plugin: `p${i % 4}`, jti: `jti-${i}`, scopes: ['read'] }, clock.now() + i);
    }
    attacker = new Database(path);
  });
  afterEach(async () => {
    attacker.close();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('verifies the untouched log in batches of any size', async () => {
    for (const batch of [1, 7, 50, 1000]) expect(await verifyAuditLog(store, { batch })).toEqual({ ok: true, count: N });
  });

  it('pinpoints an edited event', async () => {
    const row = attacker.prepare('SELECT event FROM audit WHERE seq = 17').get() as { event: string };
    attacker.prepare('UPDATE audit SET event = ? WHERE seq = 17').run(row.event.replace('"p1"', '"p3"'));
    expect(await verifyAuditLog(store, { batch: 7 })).toEqual({ ok: false, count: 16, brokenAt: 17, reason: expect.stringMatching(/modified/) });
  });

  it('pinpoints an edited type (a denial turned into an issue)', async () => {
    attacker.prepare("UPDATE audit SET type = 'exchange.issued' WHERE seq = 21").run();
    expect(await verifyAuditLog(store)).toMatchObject({ ok: false, brokenAt: 21 });
  });

  it('pinpoints a deleted row', async () => {
    attacker.prepare('DELETE FROM audit WHERE seq = 23').run();
    expect(await verifyAuditLog(store, { batch: 10 })).toEqual({ ok: false, count: 22, brokenAt: 23, reason: expect.stringMatching(/deleted/) });
  });

  it('pinpoints a deleted first row', async () => {
    attacker.prepare('DELETE FROM audit WHERE seq = 1').run();
    expect(await verifyAuditLog(store)).toMatchObject({ ok: false, count: 0, brokenAt: 1 });
  });

  it('catches an edit whose hash was recomputed, at the next record', async () => {
    const r = (await store.read(30, 1))[0]!;
    const event = { ...r.event, plugin: 'evil' };
    const hash = chainHash(r.prevHash, r.seq, r.ts, r.type, event);
    attacker.prepare('UPDATE audit SET event = ?, hash = ? WHERE seq = 30').run(JSON.stringify(event), hash);
    expect(await verifyAuditLog(store)).toMatchObject({ ok: false, count: 30, brokenAt: 31, reason: expect.stringMatching(/link/) });
  });

  it('catches two rows swapped in place', async () => {
    const a = attacker.prepare('SELECT ts, type, event, prev_hash, hash FROM audit WHERE seq = 10').get() as Record<string, unknown>;
    const b = attacker.prepare('SELECT ts, type, event, prev_hash, hash FROM audit WHERE seq = 11').get() as Record<string, unknown>;
    const put = attacker.prepare('UPDATE audit SET ts = @ts, type = @type, event = @event, prev_hash = @prev_hash, hash = @hash WHERE seq = @seq');
    put.run({ ...b, seq: 10 });
    put.run({ ...a, seq: 11 });
    expect(await verifyAuditLog(store)).toMatchObject({ ok: false, brokenAt: 10 });
  });

  it('with the head known from a previous run, catches a cut-off tail', async () => {
    const head = store.auditHead;
    expect(head.seq).toBe(N);
    attacker.prepare('DELETE FROM audit WHERE seq > 45').run();
    expect(await verifyAuditLog(store)).toEqual({ ok: true, count: 45 }); // a chain alone cannot see this
    expect(await verifyAuditLog(store, { head })).toMatchObject({ ok: false, count: 45, brokenAt: 46 });
  });

  it('verifies from an anchor onwards', async () => {
    const r = (await store.read(40, 1))[0]!;
    attacker.prepare('DELETE FROM audit WHERE seq < 40').run(); // archived elsewhere
    expect(await verifyAuditLog(store, { anchor: { seq: 40, hash: r.hash }, batch: 3 })).toEqual({ ok: true, count: 10 });
    expect(await verifyAuditLog(store)).toMatchObject({ ok: false, brokenAt: 1 });
  });

  it('a store outage is an error, never a verdict', async () => {
    await store.close();
    let caught: unknown;
    try {
      await verifyAuditLog(store);
    } catch (err) {
      caught = err;
    }
    expect(isLeashError(caught) && caught.code).toBe('ERR_BACKEND_UNAVAILABLE');
  });
});

describe('readAuditLog', () => {
  it('pages through a log with gaps without losing or repeating records', async () => {
    const seqs = [1, 2, 5, 6, 7, 9];
    const records: AuditRecord[] = seqs.map((seq) => ({ seq, ts: seq, type: 't', event: {}, prevHash: '', hash: '' }));
    const reads: Array<[number, number]> = [];
    const log: AuditLog = {
      append: () => Promise.reject(new Error('read only')),
      read: async (from, limit) => {
        reads.push([from, limit]);
        return records.filter((r) => r.seq >= from).slice(0, limit);
      },
    };
    const got: number[] = [];
    for await (const r of readAuditLog(log, { batch: 2 })) got.push(r.seq);
    expect(got).toEqual(seqs);
    expect(reads).toEqual([
      [1, 2],
      [3, 2],
      [7, 2],
      [10, 2],
    ]);
    await expect(readAuditLog(log, { batch: 0 }).next()).rejects.toThrow(TypeError);
  });
});
