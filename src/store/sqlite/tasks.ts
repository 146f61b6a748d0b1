import type Database from 'better-sqlite3';
import type { Task, TaskBudgets } from '../records.js';
import type { TaskStore } from '../store.js';
import { isConstraintError, type SqliteHandle } from './handle.js';

/* The tasks table. Opening and ending a task are fsynced: an end is a revocation that must never come undone. */

type TaskRow = {
  id: string;
  plugins: string;
  attributes: string;
  created_at: number;
  expires_at: number;
  created_by: string;
  state: 'active' | 'ended';
  ended_at: number | null;
  ended_by: string | null;
  budgets?: string | null;
};

function prepare(db: Database.Database) {
  return {
    insert: db.prepare('INSERT INTO tasks (id, plugins, attributes, created_at, expires_at, created_by, state, ended_at, ended_by, budgets) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)'),
    get: db.prepare('SELECT * FROM tasks WHERE id = ?'),
    end: db.prepare("UPDATE tasks SET state = 'ended', ended_at = ?, ended_by = ? WHERE id = ? AND state = 'active' RETURNING *"),
    countActive: db.prepare("SELECT count(*) AS n FROM tasks WHERE state = 'active' AND expires_at > ?"),
    expiredActive: db.prepare("SELECT * FROM tasks WHERE state = 'active' AND expires_at <= ? ORDER BY expires_at, id LIMIT ?"),
    liveActive: db.prepare("SELECT * FROM tasks WHERE state = 'active' AND expires_at > ? ORDER BY expires_at DESC, id LIMIT ?"),
  };
}

export class SqliteTasks implements TaskStore {
  readonly #h: SqliteHandle;
  readonly #s: ReturnType<typeof prepare>;

  constructor(h: SqliteHandle) {
    this.#h = h;
    this.#s = prepare(h.db);
  }

  async createTask(task: Task): Promise<void> {
    const plugins = JSON.stringify(task.plugins);
    const attributes = JSON.stringify(task.attributes);
    this.#h.run('createTask', () => {
      try {
        this.#h.durably(() =>
          this.#s.insert.run(
            task.id,
            plugins,
            attributes,
            task.createdAt,
            task.expiresAt,
            task.createdBy,
            task.state,
            task.endedAt ?? null,
            task.endedBy ?? null,
            task.budgets === undefined ? null : JSON.stringify(task.budgets),
          ),
        );
      } catch (err) {
        // Ids are random; a duplicate is a caller bug, and overwriting could revive an ended task.
        if (isConstraintError(err)) throw new TypeError(`createTask: a task with this id already exists`, { cause: err });
        throw err;
      }
    });
  }

  async getTask(id: string): Promise<Task | undefined> {
    const row = this.#h.run('getTask', () => this.#s.get.get(id) as TaskRow | undefined);
    return row && toTask(row);
  }

  async endTask(id: string, at: number, by: string): Promise<Task | undefined> {
    const row = this.#h.run('endTask', () => {
      // Only an active task changes: ending twice keeps the first end's time and actor.
      const ended = this.#h.durably(() => this.#s.end.get(at, by, id) as TaskRow | undefined);
      return ended ?? (this.#s.get.get(id) as TaskRow | undefined);
    });
    return row && toTask(row);
  }

  async countActiveTasks(now: number): Promise<number> {
    return this.#h.run('countActiveTasks', () => (this.#s.countActive.get(now) as { n: number }).n);
  }

  async listExpiredActiveTasks(now: number, limit: number): Promise<Task[]> {
    const rows = this.#h.run('listExpiredActiveTasks', () => this.#s.expiredActive.all(now, limit) as TaskRow[]);
    return rows.map(toTask);
  }

  async listActiveTasks(now: number, limit: number): Promise<Task[]> {
    const rows = this.#h.run('listActiveTasks', () => this.#s.liveActive.all(now, limit) as TaskRow[]);
    return rows.map(toTask);
  }
}

function toTask(r: TaskRow): Task {
  return {
    id: r.id,
    plugins: JSON.parse(r.plugins) as string[],
    attributes: JSON.parse(r.attributes) as Record<string, string>,
    createdAt: r.created_at,
    expiresAt: r.expires_at,
    createdBy: r.created_by,
    state: r.state,
    endedAt: r.ended_at ?? undefined,
    endedBy: r.ended_by ?? undefined,
    ...(typeof r.budgets === 'string' ? { budgets: JSON.parse(r.budgets) as TaskBudgets } : {}),
  };
}
