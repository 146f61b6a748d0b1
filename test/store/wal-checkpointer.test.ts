import { describe, it, expect, afterEach, jest } from '@jest/globals';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { createMetrics } from '../../src/metrics/metrics.js';
import { CALLS_BEFORE_CHECKPOINTER } from '../../src/store/sqlite/handle.js';
import { openSqliteStore, type SqliteStore } from '../../src/store/sqlite/sqlite-store.js';
import { WalCheckpointer } from '../../src/store/sqlite/wal-checkpointer.js';
import { ManualClock } from '../../src/time/clock.js';

/*
 * The WAL checkpoint thread (src/store/sqlite/wal-checkpointer.ts) on real files: it starts
 * once a serving store has made enough calls, takes SQLite's in-commit checkpoints off the
 * event loop, keeps the WAL bounded under steady writes, and hands checkpointing back to
 * SQLite when it dies.
 */

const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));
const dirs: string[] = [];
const stores: SqliteStore[] = [];
afterEach(async () => {
  for (const s of stores.splice(0)) await s.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  jest.restoreAllMocks();
});

async function fileStore(opts: { identity?: 'inspect' } = {}): Promise<{ store: SqliteStore; path: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'leash-wal-'));
  dirs.push(dir);
  const path = join(dir, 'leash.db');
  if (opts.identity) await openSqliteStore({ path, clock: new ManualClock(1_700_000_000_000) }).close();
  const store = openSqliteStore({ path, clock: new ManualClock(1_700_000_000_000), ...opts });
  stores.push(store);
  return { store, path };
}

const autocheckpoint = (s: SqliteStore) => s.database.pragma('wal_autocheckpoint', { simple: true });
const walBytes = (path: string) => statSync(`${path}-wal`).size;

async function until(what: string, ok: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** The store's calls, until its thread starts. */
async function startThread(store: SqliteStore): Promise<WalCheckpointer> {
  for (let i = 0; i < CALLS_BEFORE_CHECKPOINTER; i++) await store.ping();
  const c = store.walCheckpointer;
  expect(c).toBeInstanceOf(WalCheckpointer);
  await until('the thread online (SQLite checkpoints off)', () => autocheckpoint(store) === 0);
  return c!;
}

let n = 0;
/** `commits` commits of an issued token and its audit event, in bursts with pauses between (the thread's ticks). */
async function write(store: SqliteStore, commits: number): Promise<void> {
  for (let i = 0; i < commits; i++) {
    const now = 1_700_000_000_000;
    const jti = `jti-${++n}-${'x'.repeat(20)}`;
    await Promise.all([
      store.recordIssued({ jti, plugin: 'p', task: `tsk_${n % 97}`, audience: 'https://api.example', scopes: ['a'], kind: 'jwt', kid: 'k', issuedAt: now, expiresAt: now + 300_000, jkt: undefined }),
      store.append('token.issued', { plugin: 'p', jti }, now),
    ]);
    if (i % 50 === 49) await new Promise((r) => setTimeout(r, 5));
  }
}

describe('WAL checkpoint thread', () => {
  it('is not started by a store that has made few calls: SQLite checkpoints as it always did', async () => {
    const { store } = await fileStore();
    for (let i = 0; i < CALLS_BEFORE_CHECKPOINTER - 1; i++) await store.ping();
    expect(store.walCheckpointer).toBeUndefined();
    expect(autocheckpoint(store)).toBe(1000);
    expect(store.walCheckpoint()).toEqual({ thread: false, pages: undefined });
  });

  it('is never started for an in-memory store or an inspecting (read-only) one', async () => {
    const mem = openSqliteStore({ path: ':memory:' });
    stores.push(mem);
    const { store: inspect } = await fileStore({ identity: 'inspect' });
    for (let i = 0; i < CALLS_BEFORE_CHECKPOINTER + 10; i++) {
      await mem.ping();
      await inspect.ping();
    }
    expect(mem.walCheckpointer).toBeUndefined();
    expect(inspect.walCheckpointer).toBeUndefined();
  });

  it('takes over checkpoints and keeps the WAL bounded under steady writes', async () => {
    const { store, path } = await fileStore();
    const thread = await startThread(store);
    // ~7 pages a commit: without any checkpoint 3,000 commits leave a WAL of ~80 MB.
    await write(store, 3000);
    await until('a checkpoint of those writes', () => (thread.last?.checkpointed ?? 0) > 0);
    expect(autocheckpoint(store)).toBe(0);
    const state = store.walCheckpoint();
    expect(state.thread).toBe(true);
    expect(state.pages).toBeGreaterThan(0);
    // RESTART past 1,000 pages (~4 MB); the journal size limit cuts back anything larger.
    expect(walBytes(path)).toBeLessThan(20 * 1024 * 1024);
    // Everything committed is there for another connection, the main file included once copied.
    const other = new Database(path, { readonly: true });
    try {
      expect(other.prepare("SELECT count(*) FROM audit WHERE type = 'token.issued'").pluck().get()).toBe(3000);
    } finally {
      other.close();
    }
  });

  it('gives checkpoints back to SQLite, with a warning, when the thread dies', async () => {
    const warn = jest.spyOn(process, 'emitWarning').mockImplementation(() => undefined);
    const { store, path } = await fileStore();
    const thread = await startThread(store);
    await thread.thread.terminate();
    await until('SQLite checkpoints on again', () => autocheckpoint(store) === 1000);
    expect(store.walCheckpoint().thread).toBe(false);
    expect(warn).toHaveBeenCalledWith(expect.stringMatching(/WAL checkpoint thread exited.*SQLite checkpoints in the commits again/), { code: 'LEASH_WAL_CHECKPOINT' });
    // And they bound the WAL again (in the commits, as before the thread).
    await write(store, 3000);
    expect(walBytes(path)).toBeLessThan(20 * 1024 * 1024);
  });

  it('reports a thread that cannot open its file, and stops when asked without a warning', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'leash-wal-'));
    dirs.push(dir);
    const failures: string[] = [];
    const bad = new WalCheckpointer({ path: join(dir, 'missing.db'), intervalMs: 10, onOnline: () => failures.push('online'), onFailure: (why) => failures.push(why) });
    await until('the failure', () => failures.length > 0);
    expect(failures[0]).toMatch(/WAL checkpoint thread failed/);
    bad.stop();

    const { store } = await fileStore();
    const thread = await startThread(store);
    const warn = jest.spyOn(process, 'emitWarning').mockImplementation(() => undefined);
    const exited = new Promise((r) => thread.thread.once('exit', r));
    await store.close();
    stores.splice(stores.indexOf(store), 1);
    await exited;
    expect(warn).not.toHaveBeenCalled();
  });

  it('never keeps a process alive: one that forgets to close its store still exits', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'leash-wal-'));
    dirs.push(dir);
    const script = join(dir, 'forgets.mts');
    writeFileSync(
      script,
      `import { openSqliteStore } from ${JSON.stringify(join(ROOT, 'src/store/sqlite/sqlite-store.ts'))};
const store = openSqliteStore({ path: ${JSON.stringify(join(dir, 'leash.db'))} });
for (let i = 0; i < ${CALLS_BEFORE_CHECKPOINTER}; i++) await store.ping();
while (store.database.pragma('wal_autocheckpoint', { simple: true }) !== 0) await new Promise((r) => setTimeout(r, 10));
console.log('thread online');
`,
    );
    const child = spawn(process.execPath, ['--import', 'tsx', script], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const code = await new Promise<number | null | 'hung'>((res) => {
      const t = setTimeout(() => {
        child.kill('SIGKILL');
        res('hung');
      }, 20_000);
      child.once('exit', (c) => {
        clearTimeout(t);
        res(c);
      });
    });
    expect({ code, out: out.trim() }).toEqual({ code: 0, out: 'thread online' });
  }, 30_000);

  it('shows in the metrics: who checkpoints, and the WAL at the last checkpoint; no gauges without the source', async () => {
    const { store } = await fileStore();
    const metrics = createMetrics({ activeTasks: async () => 0, signingKeys: () => [], walCheckpoint: () => store.walCheckpoint() }, { defaultMetrics: false });
    const scrape = async () => metrics.registry.metrics();
    expect(await scrape()).toMatch(/^leash_store_wal_checkpoint_thread 0$/m);
    expect(await scrape()).toMatch(/^leash_store_wal_pages 0$/m);
    const thread = await startThread(store);
    await write(store, 300);
    await until('a checkpoint', () => thread.last !== undefined);
    const text = await scrape();
    expect(text).toMatch(/^leash_store_wal_checkpoint_thread 1$/m);
    expect(Number(/^leash_store_wal_pages (\d+)$/m.exec(text)?.[1])).toBeGreaterThan(0);

    const none = createMetrics({ activeTasks: async () => 0, signingKeys: () => [] }, { defaultMetrics: false });
    expect(await none.registry.metrics()).not.toMatch(/leash_store_wal/);
  });
});
