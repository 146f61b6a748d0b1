import { describe, it, expect, beforeEach, afterEach, jest } from '@jest/globals';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, existsSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { verifyAuditLog } from '../../src/audit/verify.js';
import { isLeashError, type LeashError } from '../../src/errors/leash-error.js';
import { SqliteHandle } from '../../src/store/sqlite/handle.js';
import { openSqliteStore, type SqliteStore } from '../../src/store/sqlite/sqlite-store.js';
import { MIGRATIONS, SCHEMA_VERSION } from '../../src/store/sqlite/migrations.js';
import { ManualClock } from '../../src/time/clock.js';
import type { StateChange } from '../../src/store/records.js';
import type { EvidenceMark, UsageBatch } from '../../src/store/usage-store.js';
import { aLease, aRevocation, aTask, aToken, anApproval, describeStore } from './describe-store.js';

const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));

describeStore('sqlite', async ({ clock }) => {
  const dir = mkdtempSync(join(tmpdir(), 'leash-store-'));
  const path = join(dir, 'state', 'leash.db');
  return {
    store: openSqliteStore({ path, clock }),
    reopen: async () => openSqliteStore({ path, clock }),
    sibling: async () => openSqliteStore({ path, clock }),
    inspect: async () => openSqliteStore({ path, clock, identity: 'inspect' }),
    // As a replaced or re-created file would be: every row gone, AUTOINCREMENT counters too.
    wipe: async () => {
      const db = new Database(path);
      try {
        const tables = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT IN ('schema_version', 'sqlite_sequence')").all() as { name: string }[];
        db.transaction(() => {
          for (const t of tables) db.exec(`DELETE FROM "${t.name}"`);
          db.exec('DELETE FROM sqlite_sequence');
        })();
      } finally {
        db.close();
      }
    },
    cleanup: async () => rmSync(dir, { recursive: true, force: true }),
  };
});

function leashCode(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    return isLeashError(err) ? err.code : `not a LeashError: ${String(err)}`;
  }
  return 'no error';
}

async function rejection(p: Promise<unknown>): Promise<LeashError> {
  try {
    await p;
  } catch (err) {
    if (isLeashError(err)) return err;
    throw err;
  }
  throw new Error('expected a rejection');
}

describe('SQLite store specifics', () => {
  let dir: string;
  let path: string;
  const clock = new ManualClock();
  const toClose: Array<{ close(): unknown }> = [];

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'leash-sqlite-'));
    path = join(dir, 'a', 'b', 'leash.db');
  });
  afterEach(async () => {
    for (const c of toClose.splice(0)) await Promise.resolve(c.close()).catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  });

  function open(extra: Partial<Parameters<typeof openSqliteStore>[0]> = {}): SqliteStore {
    const s = openSqliteStore({ path, clock, ...extra });
    toClose.push(s);
    return s;
  }

  it('creates the parent folders, runs in WAL mode and records the schema version', () => {
    const s = open();
    expect(existsSync(path)).toBe(true);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(statSync(`${path}-wal`).mode & 0o777).toBe(0o600);
    expect(s.kind).toBe('sqlite');
    expect(s.database.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(s.database.pragma('synchronous', { simple: true })).toBe(1); // NORMAL
    expect(s.database.prepare('SELECT version FROM schema_version').all()).toEqual([{ version: SCHEMA_VERSION }]);
  });

  it('migrates idempotently: reopening keeps one version row and the data', async () => {
    const s = open();
    await s.createTask(aTask(clock, { id: 'tsk_keep' }));
    await s.close();
    const again = open();
    expect(again.database.prepare('SELECT version FROM schema_version').all()).toEqual([{ version: SCHEMA_VERSION }]);
    expect((await again.getTask('tsk_keep'))?.id).toBe('tsk_keep');
  });

  it('refuses a database written by a newer schema, failing closed', async () => {
    const s = open();
    s.database.prepare('UPDATE schema_version SET version = ?').run(SCHEMA_VERSION + 1);
    await s.close();
    let caught: unknown;
    try {
      open();
    } catch (err) {
      caught = err;
    }
    expect(isLeashError(caught) && caught.code).toBe('ERR_BACKEND_UNAVAILABLE');
    expect(isLeashError(caught) && String(caught.detail?.message)).toMatch(/newer than this Leash supports/);
  });

  it('fails closed at open when the path cannot be created', () => {
    const blocker = join(dir, 'file');
    writeFileSync(blocker, 'not a folder');
    expect(leashCode(() => openSqliteStore({ path: join(blocker, 'leash.db'), clock }))).toBe('ERR_BACKEND_UNAVAILABLE');
  });

  it('fails closed when the connection is closed underneath it, the cause in detail only', async () => {
    const s = open();
    await s.append('task.opened', { task: 't' }, 1);
    s.database.close();
    const err = await rejection(s.append('task.ended', { task: 't' }, 2));
    expect(err.code).toBe('ERR_BACKEND_UNAVAILABLE');
    expect(err.description).toBe('the state store is unavailable; retry later');
    expect(err.detail).toMatchObject({ backend: 'sqlite', op: 'append' });
    expect(String(err.detail?.message)).toMatch(/not open/);
    expect((await rejection(s.getTask('t'))).code).toBe('ERR_BACKEND_UNAVAILABLE');
    expect((await rejection(s.remember('k', clock.now() + 1000))).code).toBe('ERR_BACKEND_UNAVAILABLE');
    expect((await rejection(s.endTask('t', 1, 'x'))).code).toBe('ERR_BACKEND_UNAVAILABLE');
  });

  it("waits out another process's short hold of the write lock and writes once", async () => {
    const s = open({ busyTimeoutMs: 5000 });
    await s.append('task.opened', { n: 1 }, 1);
    // A second process takes the write lock, says so, and holds it for 150 ms.
    const holder = spawn(
      process.execPath,
      [
        '-e',
        `const D = require('better-sqlite3'); const db = new D(${JSON.stringify(path)}); db.exec('BEGIN IMMEDIATE'); console.log('held'); setTimeout(() => { db.exec('COMMIT'); db.close(); }, 150);`,
      ],
      { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    await new Promise<void>((res, rej) => {
      holder.stdout.on('data', (d: Buffer) => d.toString().includes('held') && res());
      holder.on('exit', (code) => rej(new Error(`lock holder exited early (${code})`)));
    });
    const r = await s.append('task.opened', { n: 2 }, 2);
    expect(r.seq).toBe(2);
    expect((await s.read(1, 10)).map((x) => x.seq)).toEqual([1, 2]);
    await new Promise((res) => holder.once('exit', res));
  }, 20_000);

  it('fails closed while another process holds the write lock, then recovers', async () => {
    const s = open({ busyTimeoutMs: 20 });
    await s.append('task.opened', { n: 1 }, 1);
    const other = new Database(path);
    toClose.push(other);
    other.exec('BEGIN EXCLUSIVE');
    const err = await rejection(s.append('task.opened', { n: 2 }, 2));
    expect(err.code).toBe('ERR_BACKEND_UNAVAILABLE');
    expect(String(err.detail?.code)).toMatch(/^SQLITE_BUSY/);
    expect((await rejection(s.endTask('t', 1, 'x'))).code).toBe('ERR_BACKEND_UNAVAILABLE');
    other.exec('ROLLBACK');
    const r = await s.append('task.opened', { n: 3 }, 3);
    expect(r.seq).toBe(2);
    expect(await verifyAuditLog(s)).toEqual({ ok: true, count: 2 });
  });

  it('fsyncs a task end (synchronous=FULL for that commit) and returns to NORMAL after', async () => {
    const s = open();
    const task = aTask(clock);
    await s.createTask(task);
    // Observe the level in effect while the UPDATE runs, from a trigger inside that commit.
    s.database.exec('CREATE TABLE probe (level INTEGER); CREATE TRIGGER probe_end AFTER UPDATE ON tasks BEGIN INSERT INTO probe SELECT synchronous FROM pragma_synchronous; END');
    await s.endTask(task.id, clock.now(), 'x');
    await s.createTask(aTask(clock));
    expect(s.database.prepare('SELECT level FROM probe').all()).toEqual([{ level: 2 }]); // FULL during the task end
    expect(s.database.pragma('synchronous', { simple: true })).toBe(1);
  });

  it('can fsync every commit', () => {
    const s = open({ fsync: 'every-commit' });
    expect(s.database.pragma('synchronous', { simple: true })).toBe(2);
  });

  it('writes the token records and the audit events of one turn in one transaction each (group commit)', async () => {
    const s = open();
    const run = jest.spyOn(SqliteHandle.prototype, 'run');
    try {
      const tokens = Array.from({ length: 10 }, () => aToken(clock, { task: 'tsk_group', plugin: 'p1' }));
      const [records, appends] = await Promise.all([
        Promise.all(
          tokens.map((t) =>
            s.recordIssued(t, { tokensPerTask: 8 }).then(
              () => 'ok',
              (e: LeashError) => e.code,
            ),
          ),
        ),
        Promise.all(tokens.map((t, i) => s.append('exchange.issued', { jti: t.jti, i }, 10 + i))),
      ]);
      const ops = run.mock.calls.map((c) => c[0]);
      expect(ops.filter((op) => op === 'recordIssued')).toHaveLength(1);
      expect(ops.filter((op) => op === 'append')).toHaveLength(1);
      // The limit holds inside the batch: the first 8 in order, then refusals.
      expect(records).toEqual([...Array<string>(8).fill('ok'), 'ERR_QUOTA_EXCEEDED', 'ERR_QUOTA_EXCEEDED']);
      expect(await s.countIssuedForTaskPlugin('tsk_group', 'p1')).toBe(8);
      expect(appends.map((r) => r.seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
      // The handle's head is the batch's last record once it has committed.
      expect(s.database.prepare('SELECT max(seq) AS seq FROM audit').get()).toEqual({ seq: 10 });
      await s.append('task.ended', { task: 'tsk_group' }, 99);
      expect(await verifyAuditLog(s)).toEqual({ ok: true, count: 11 });
    } finally {
      run.mockRestore();
    }
  });

  it('writes the rows of one timeline-index, downstream or credential-link write in one commit, not one per row', async () => {
    const s = open();
    const n = 200;
    const keep = clock.now() + 86_400_000;
    // WAL frames written since the last reset: each commit adds at least one, so n rows
    // committed one by one would add n or more.
    const framesOf = async (write: () => Promise<unknown>) => {
      s.database.pragma('wal_checkpoint(TRUNCATE)');
      await write();
      return (s.database.pragma('wal_checkpoint(PASSIVE)') as Array<{ log: number }>)[0]!.log;
    };
    const refs = Array.from({ length: n }, (_, i) => ({ task: `tsk_${i % 7}`, seq: i + 1, ts: 1000 + i, type: 'exchange.issued' }));
    expect(await framesOf(() => s.indexTaskEvents(refs, keep))).toBeLessThan(n / 4);
    expect(await s.listTaskEvents('tsk_0', 1000)).toHaveLength(Math.ceil(n / 7));
    const events = Array.from({ length: n }, (_, i) => ({
      id: `evt-${i}`,
      source: 'cloudtrail' as const,
      at: 1000 + i,
      task: 'tsk_d',
      plugin: 'p1',
      jti: '',
      action: 's3:GetObject',
      target: '',
      outcome: 'success' as const,
      principal: 'arn:aws:sts::1:assumed-role/r/s',
      link: 'session_tag',
      sourceAddress: '',
    }));
    let added = 0;
    expect(await framesOf(async () => (added = await s.recordDownstream(events, keep)))).toBeLessThan(n / 4);
    expect(added).toBe(n);
    expect(await s.recordDownstream(events.slice(0, 3), keep)).toBe(0);
    const links = Array.from({ length: n }, (_, i) => ({ kind: 'vault_lease' as const, id: `lease-${i}`, jti: `j${i}`, plugin: 'p1', task: 'tsk_l' }));
    expect(await framesOf(() => s.linkCredentials(links, keep))).toBeLessThan(n / 4);
    expect(await s.resolveCredentialLinks('vault_lease', ['lease-0', `lease-${n - 1}`])).toHaveLength(2);
  });

  it('a batch whose commit fails refuses every write in it and keeps none', async () => {
    const s = open({ busyTimeoutMs: 20 });
    await s.append('task.opened', { n: 1 }, 1);
    const other = new Database(path);
    toClose.push(other);
    other.exec('BEGIN EXCLUSIVE');
    const tokens = [aToken(clock), aToken(clock)];
    const results = await Promise.allSettled([...tokens.map((t) => s.recordIssued(t)), s.append('task.opened', { n: 2 }, 2), s.append('task.opened', { n: 3 }, 3)]);
    expect(results.map((r) => (r.status === 'rejected' ? (r.reason as LeashError).code : 'ok'))).toEqual(Array<string>(4).fill('ERR_BACKEND_UNAVAILABLE'));
    other.exec('ROLLBACK');
    expect(await s.getIssued(tokens[0]!.jti)).toBeUndefined();
    expect(await s.getIssued(tokens[1]!.jti)).toBeUndefined();
    expect((await s.append('task.opened', { n: 4 }, 4)).seq).toBe(2);
    expect(await verifyAuditLog(s)).toEqual({ ok: true, count: 2 });
  });

  it('stores the audit event as canonical JSON, the exact text it hashed', async () => {
    const s = open();
    await s.append('policy.loaded', { z: 1, a: { d: [2, 1], c: 'x' }, u: undefined }, 9);
    const row = s.database.prepare('SELECT event FROM audit WHERE seq = 1').get() as { event: string };
    expect(row.event).toBe('{"a":{"c":"x","d":[2,1]},"z":1}');
  });

  it('purges expired replay keys every N calls, and only expired ones', async () => {
    const s = open({ replayPurgeEvery: 4 });
    const count = () => (s.database.prepare('SELECT count(*) AS n FROM replay').get() as { n: number }).n;
    await s.remember('old-1', clock.now() + 1000);
    await s.remember('old-2', clock.now() + 1000);
    await s.remember('live', clock.now() + 3600_000);
    expect(count()).toBe(3);
    clock.advance(5);
    await s.remember('new', clock.now() + 1000); // 4th call: purge first
    expect(count()).toBe(2);
    expect(await s.remember('live', clock.now() + 3600_000)).toBe(false);
  });

  it('rejects a bad option as a TypeError', () => {
    expect(() => openSqliteStore({ path, clock, replayPurgeEvery: 0 })).toThrow(TypeError);
    expect(() => openSqliteStore({ path, clock, counterPurgeEvery: 0 })).toThrow(TypeError);
    expect(() => openSqliteStore({ path, clock, recordPurgeEvery: 0 })).toThrow(TypeError);
  });

  it('fsyncs revocations and suspension changes (synchronous=FULL for those commits)', async () => {
    const s = open();
    s.database.exec(`
      CREATE TABLE probe (what TEXT, level INTEGER);
      CREATE TRIGGER probe_rev AFTER INSERT ON revocations BEGIN INSERT INTO probe SELECT 'revocation', synchronous FROM pragma_synchronous; END;
      CREATE TRIGGER probe_susp AFTER INSERT ON suspensions BEGIN INSERT INTO probe SELECT 'suspend', synchronous FROM pragma_synchronous; END;
      CREATE TRIGGER probe_resume AFTER DELETE ON suspensions BEGIN INSERT INTO probe SELECT 'resume', synchronous FROM pragma_synchronous; END;
      CREATE TRIGGER probe_ctr AFTER INSERT ON counters BEGIN INSERT INTO probe SELECT 'counter', synchronous FROM pragma_synchronous; END;
    `);
    await s.addRevocation(aRevocation(clock));
    await s.suspendPlugin({ plugin: 'p', since: 1, actor: 'apikey:security', reason: '' });
    await s.resumePlugin('p');
    await s.incrementWindow('k', 1000, clock.now());
    expect(s.database.prepare('SELECT what, level FROM probe').all()).toEqual([
      { what: 'revocation', level: 2 },
      { what: 'suspend', level: 2 },
      { what: 'resume', level: 2 },
      { what: 'counter', level: 1 }, // a quota counter is not worth an fsync
    ]);
    expect(s.database.pragma('synchronous', { simple: true })).toBe(1);
  });

  it('an acknowledged revocation survives SIGKILL of the writing process', async () => {
    // A child process opens the store, writes, reports the ack, and is killed before it can
    // close anything; this process then reopens the file.
    const script = join(dir, 'writer.mts'); // .mts: ESM outside the package too
    const storeModule = relative(dir, join(ROOT, 'src/store/sqlite/sqlite-store.ts')).replaceAll('\\', '/');
    writeFileSync(
      script,
      `import { openSqliteStore } from '${storeModule.startsWith('.') ? storeModule : './' + storeModule}';
const s = openSqliteStore({ path: ${JSON.stringify(path)} });
const r = await s.addRevocation({ scope: 'plugin', id: 'p1', issuedBefore: 1, revokedAt: 1, keepUntil: 9e12, reason: 'kill', actor: 'apikey:security' });
await s.suspendPlugin({ plugin: 'p1', since: 1, actor: 'apikey:security', reason: 'kill' });
process.stdout.write('ack ' + r.seq + '\\n');
setInterval(() => undefined, 1000);
`,
    );
    const child = spawn(process.execPath, ['--import', 'tsx', script], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const seq = await new Promise<number>((res, rej) => {
      const t = setTimeout(() => rej(new Error(`writer did not ack: ${err}`)), 20_000);
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        const m = /ack (\d+)\n/.exec(out);
        if (m) {
          clearTimeout(t);
          res(Number(m[1]));
        }
      });
      child.on('exit', (code) => rej(new Error(`writer exited early (${code}): ${err}`)));
    });
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    const s = open();
    const revs = await s.revocationsSince(0, 10, clock.now());
    expect(revs.map((r) => [r.seq, r.scope, r.id])).toEqual([[seq, 'plugin', 'p1']]);
    expect((await s.listSuspensions()).map((x) => x.plugin)).toEqual(['p1']);
  }, 30_000);

  it('shares one change hub per file, however the path is spelled; :memory: stores share nothing', async () => {
    const a = open();
    const b = open({ path: relative(process.cwd(), path) });
    const seen: StateChange[] = [];
    a.subscribe((c) => seen.push(c));
    const r = await b.addRevocation(aRevocation(clock));
    expect(seen).toEqual([{ type: 'revocation', revocation: r }]); // synchronous: before the write resolved
    const m1 = open({ path: ':memory:' });
    const m2 = open({ path: ':memory:' });
    const seenMem: StateChange[] = [];
    m1.subscribe((c) => seenMem.push(c));
    await m2.addRevocation(aRevocation(clock));
    expect(seenMem).toEqual([]);
    await m1.addRevocation(aRevocation(clock));
    expect(seenMem).toHaveLength(1);
  });

  it("closing a handle drops its own subscriptions but not a sibling's", async () => {
    const a = open();
    const b = open();
    const seenA: StateChange[] = [];
    const seenB: StateChange[] = [];
    a.subscribe((c) => seenA.push(c));
    b.subscribe((c) => seenB.push(c));
    await a.close();
    expect(a.subscribed()).toBe(false);
    await b.addRevocation(aRevocation(clock));
    expect(seenA).toEqual([]);
    expect(seenB).toHaveLength(1);
  });

  it('purges finished counter windows every N increments, never the current one', async () => {
    const s = open({ counterPurgeEvery: 3 });
    const rows = () => (s.database.prepare('SELECT count(*) AS n FROM counters').get() as { n: number }).n;
    const w = 1000;
    const t0 = Math.floor(clock.now() / w) * w;
    await s.incrementWindow('a', w, t0);
    await s.incrementWindow('b', w, t0);
    expect(rows()).toBe(2);
    expect(await s.incrementWindow('a', w, t0 + w)).toBe(1); // 3rd call: purges the finished window first
    expect(rows()).toBe(1);
    expect(await s.incrementWindow('a', w, t0 + w + 1)).toBe(2);
  });

  it('fsyncs approval creation, decision, redemption and lease records; not polls or lease revocations', async () => {
    const s = open();
    s.database.exec(`
      CREATE TABLE probe (what TEXT, level INTEGER);
      CREATE TRIGGER probe_apr_ins AFTER INSERT ON approvals BEGIN INSERT INTO probe SELECT 'create', synchronous FROM pragma_synchronous; END;
      CREATE TRIGGER probe_apr_upd AFTER UPDATE ON approvals BEGIN INSERT INTO probe SELECT new.state || ':' || coalesce(new.last_poll_at, ''), synchronous FROM pragma_synchronous; END;
      CREATE TRIGGER probe_lease_ins AFTER INSERT ON vault_leases BEGIN INSERT INTO probe SELECT 'lease', synchronous FROM pragma_synchronous; END;
      CREATE TRIGGER probe_lease_upd AFTER UPDATE ON vault_leases BEGIN INSERT INTO probe SELECT 'revoked', synchronous FROM pragma_synchronous; END;
    `);
    const a = anApproval(clock);
    await s.createApproval(a);
    await s.recordApprovalPoll(a.id, 5, 1000);
    await s.decideApproval(a.id, { state: 'approved', by: 'x', reason: undefined, at: clock.now(), redeemBy: clock.now() + 1000 });
    await s.consumeApproval(a.id, clock.now());
    const l = aLease(clock);
    await s.recordLease(l);
    await s.markLeaseRevoked(l.jti, clock.now());
    expect(s.database.prepare('SELECT what, level FROM probe').all()).toEqual([
      { what: 'create', level: 2 },
      { what: 'pending:5', level: 1 },
      { what: 'approved:5', level: 2 },
      { what: 'used:5', level: 2 },
      { what: 'lease', level: 2 },
      { what: 'revoked', level: 1 },
    ]);
    expect(s.database.pragma('synchronous', { simple: true })).toBe(1);
  });

  it('purges approvals 7 days after they last mattered and leases 1 day after revocation, every N records', async () => {
    const s = open({ recordPurgeEvery: 2 });
    const n = (table: string) => (s.database.prepare(`SELECT count(*) AS n FROM ${table}`).get() as { n: number }).n;
    const DAY = 86400_000;
    const t0 = clock.now();
    const expired = anApproval(clock, { expiresAt: t0 + 1000 });
    const redeemable = anApproval(clock, { expiresAt: t0 + 1000, state: 'approved', decidedAt: t0, redeemBy: t0 + 3 * DAY });
    await s.createApproval(expired);
    await s.createApproval(redeemable); // 2nd: purge (nothing old yet)
    expect(n('approvals')).toBe(2);
    clock.set(t0 + 7 * DAY + 1000);
    await s.createApproval(anApproval(clock));
    await s.createApproval(anApproval(clock)); // 4th: purge
    expect(await s.getApproval(expired.id)).toBeUndefined();
    expect(await s.getApproval(redeemable.id)).toBeDefined(); // its redeemBy was later
    expect(n('approvals')).toBe(3);

    const revoked = aLease(clock);
    const live = aLease(clock, { expiresAt: clock.now() - 10 * DAY }); // overdue but unrevoked: kept
    await s.recordLease(revoked);
    await s.markLeaseRevoked(revoked.jti, clock.now());
    await s.recordLease(live);
    clock.advance(86400 + 1);
    await s.recordLease(aLease(clock));
    await s.recordLease(aLease(clock)); // 4th: purge
    expect(n('vault_leases')).toBe(3);
    expect(await s.dueLeases(clock.now(), 10)).toEqual([live]);
  });

  it('migrates a version-9 database with tokens: the tokens-per-task counts start from the tokens already recorded', async () => {
    const file = path.replace('a/b/', 'v9-');
    const db = new Database(file);
    toClose.push(db);
    db.exec('CREATE TABLE schema_version (version INTEGER NOT NULL); INSERT INTO schema_version VALUES (9)');
    for (const m of MIGRATIONS.slice(0, 9)) db.exec(m);
    const insert = db.prepare("INSERT INTO issued_tokens (jti, plugin, task, audience, scopes, kind, issued_at, expires_at) VALUES (?, ?, ?, 'aud', '[]', 'jwt', 1, 2)");
    insert.run('j1', 'p1', 'tsk_old');
    insert.run('j2', 'p1', 'tsk_old');
    insert.run('j3', 'p2', 'tsk_old');
    insert.run('j4', 'p1', null);
    db.close();
    const s = openSqliteStore({ path: file, clock });
    toClose.push(s);
    expect(await s.countIssuedForTaskPlugin('tsk_old', 'p1')).toBe(2);
    expect(await s.countIssuedForTaskPlugin('tsk_old', 'p2')).toBe(1);
    await s.recordIssued(aToken(clock, { task: 'tsk_old', plugin: 'p2' }));
    expect(await s.countIssuedForTaskPlugin('tsk_old', 'p2')).toBe(2);
  });

  it('migrates a version-3 database with data: earlier revocations concern every resource server, approvals open with limits', async () => {
    const file = path.replace('a/b/', 'v3-');
    const db = new Database(file);
    toClose.push(db);
    db.exec('CREATE TABLE schema_version (version INTEGER NOT NULL); INSERT INTO schema_version VALUES (3)');
    for (const m of MIGRATIONS.slice(0, 3)) db.exec(m);
    db.prepare("INSERT INTO revocations (scope, id, issued_before, revoked_at, keep_until, reason, actor) VALUES ('task', 'tsk_old', 1, 1, 9e12, 'r', 'a')").run();
    db.close();
    const s = openSqliteStore({ path: file, clock });
    toClose.push(s);
    expect(s.database.prepare('SELECT version FROM schema_version').all()).toEqual([{ version: SCHEMA_VERSION }]);
    const [old] = await s.revocationsSince(0, 10, clock.now());
    expect(old).toMatchObject({ scope: 'task', id: 'tsk_old' });
    expect(old!.audiences).toBeUndefined();
    const a = anApproval(clock);
    expect(await s.openApproval(a, { dedupeKey: 'k', maxPerPlugin: 1, maxPerTask: 1 })).toEqual({ outcome: 'created' });
    expect((await s.openApproval(anApproval(clock, { requestHash: 'other' }), { dedupeKey: 'other', maxPerPlugin: 1, maxPerTask: 1 })).outcome).toBe('limited');
  });

  it('migrates a version-2 database with data to the approval and lease tables', async () => {
    const db = new Database(path.replace('a/b/', ''));
    toClose.push(db);
    db.exec('CREATE TABLE schema_version (version INTEGER NOT NULL); INSERT INTO schema_version VALUES (2)');
    db.exec(MIGRATIONS[0]!);
    db.exec(MIGRATIONS[1]!);
    db.prepare("INSERT INTO suspensions (plugin, since, actor, reason) VALUES ('p', 1, 'a', 'r')").run();
    db.close();
    const s = openSqliteStore({ path: path.replace('a/b/', ''), clock });
    toClose.push(s);
    expect(s.database.prepare('SELECT version FROM schema_version').all()).toEqual([{ version: SCHEMA_VERSION }]);
    expect(await s.listSuspensions()).toEqual([{ plugin: 'p', since: 1, actor: 'a', reason: 'r' }]);
    const a = anApproval(clock);
    await s.createApproval(a);
    expect(await s.getApproval(a.id)).toEqual(a);
    const indexes = (
      s.database.prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name IN ('approvals', 'vault_leases') AND name NOT LIKE 'sqlite_%' ORDER BY name").all() as Array<{
        name: string;
      }>
    ).map((r) => r.name);
    expect(indexes).toEqual(['approvals_pending_plugin', 'approvals_pending_task', 'approvals_requested', 'approvals_state', 'vault_leases_due', 'vault_leases_revoked']);
  });

  describe("a token's recorded sources, remembered by the process", () => {
    const HOUR = 3_600_000;
    const use = (source: string) => ({ jti: 'jti-mem', source, at: clock.now(), keepUntil: clock.now() + HOUR });
    const batch = (over: Partial<UsageBatch> = {}): UsageBatch => ({ aggregates: [], uses: [], taskDeltas: [], marks: [], retentionMs: HOUR, ...over });
    const version = (s: SqliteStore) => s.database.prepare('SELECT v FROM usage_sources_version').pluck().get();

    it('a rolled-back batch is forgotten: its first use is a first use again', async () => {
      const s = open();
      // A mark the database refuses fails the batch after its use was learned.
      s.database.exec("CREATE TEMP TRIGGER refuse_marks BEFORE INSERT ON usage_evidence BEGIN SELECT RAISE(ABORT, 'refused'); END");
      const mark: EvidenceMark = { plugin: 'p', audience: 'https://a', kind: 'grant', name: '', at: clock.now(), calls: 1 };
      await expect(s.ingestUsage(batch({ uses: [use('jkt:A')], marks: [mark] }))).rejects.toThrow();
      s.database.exec('DROP TRIGGER refuse_marks');
      expect(s.database.prepare("SELECT count(*) FROM usage_tokens WHERE jti = 'jti-mem'").pluck().get()).toBe(0);
      expect((await s.ingestUsage(batch({ uses: [use('jkt:A')] }))).uses[0]).toEqual({ jti: 'jti-mem', first: true, newSource: false, sources: 1 });
    });

    it('moves the version for a source added or rows purged, not for a first use or a repeat', async () => {
      const s = open();
      const v0 = version(s);
      await s.ingestUsage(batch({ uses: [use('jkt:A')] }));
      await s.ingestUsage(batch({ uses: [use('jkt:A'), use('')] }));
      expect(version(s)).toBe(v0);
      expect((await s.ingestUsage(batch({ uses: [use('jkt:B'), use('jkt:A')] }))).uses.map((u) => u.sources)).toEqual([2, 2]);
      expect(version(s)).toBe(Number(v0) + 1);
      clock.advance(2 * 3600);
      expect(await s.purgeUsage(clock.now(), HOUR)).toBeGreaterThan(0);
      expect(version(s)).toBe(Number(v0) + 2);
      expect((await s.ingestUsage(batch({ uses: [use('jkt:B')] }))).uses[0]).toEqual({ jti: 'jti-mem', first: true, newSource: false, sources: 1 });
    });
  });
});
