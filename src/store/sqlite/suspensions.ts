import type Database from 'better-sqlite3';
import type { Suspension } from '../records.js';
import type { SuspensionStore } from '../store.js';
import type { SqliteHandle } from './handle.js';

/* Plugin suspensions (the kill switch): fsynced, published to the handle's hub after the commit. */

type SuspensionRow = { plugin: string; since: number; actor: string; reason: string };

function prepare(db: Database.Database) {
  return {
    suspend: db.prepare('INSERT INTO suspensions (plugin, since, actor, reason) VALUES (?, ?, ?, ?) ON CONFLICT (plugin) DO NOTHING'),
    resume: db.prepare('DELETE FROM suspensions WHERE plugin = ?'),
    list: db.prepare('SELECT plugin, since, actor, reason FROM suspensions ORDER BY plugin'),
  };
}

export class SqliteSuspensions implements SuspensionStore {
  readonly #h: SqliteHandle;
  readonly #s: ReturnType<typeof prepare>;

  constructor(h: SqliteHandle) {
    this.#h = h;
    this.#s = prepare(h.db);
  }

  async suspendPlugin(sp: Suspension): Promise<boolean> {
    const h = this.#h;
    const changed = h.run('suspendPlugin', () => h.durably(() => this.#s.suspend.run(sp.plugin, sp.since, sp.actor, sp.reason).changes === 1));
    if (changed) h.publish({ type: 'suspension', plugin: sp.plugin, suspended: true });
    return changed;
  }

  async resumePlugin(plugin: string): Promise<boolean> {
    const h = this.#h;
    const changed = h.run('resumePlugin', () => h.durably(() => this.#s.resume.run(plugin).changes === 1));
    if (changed) h.publish({ type: 'suspension', plugin, suspended: false });
    return changed;
  }

  async listSuspensions(): Promise<Suspension[]> {
    const rows = this.#h.run('listSuspensions', () => this.#s.list.all() as SuspensionRow[]);
    return rows.map((r) => ({ plugin: r.plugin, since: r.since, actor: r.actor, reason: r.reason }));
  }
}
