import type { Task, TaskBudgets } from '../records.js';
import type { TaskStore } from '../store.js';
import type { RedisConnection } from './connection.js';
import { CREATE_TASK, END_TASK } from './redis-scripts.js';

/*
 * Tasks: one hash per task (the immutable head as JSON in `d`, the state in `st`, the end
 * in `e`) and a sorted set of active task ids by expiry. Creation and ending are scripts,
 * so a duplicate id never overwrites and an ended task never revives.
 */

type TaskHead = { id: string; plugins: string[]; attributes: Record<string, string>; createdAt: number; expiresAt: number; createdBy: string; budgets?: TaskBudgets };
type TaskEnd = { endedAt: number; endedBy: string };

export class RedisTasks implements TaskStore {
  readonly #c: RedisConnection;
  /** An ended task is forgotten this long after it ends (0 = kept forever). */
  readonly #endedRetentionMs: number;

  constructor(c: RedisConnection, endedRetentionMs: number) {
    this.#c = c;
    this.#endedRetentionMs = endedRetentionMs;
  }

  async createTask(task: Task): Promise<void> {
    const c = this.#c;
    const head: TaskHead = {
      id: task.id,
      plugins: [...task.plugins],
      attributes: { ...task.attributes },
      createdAt: task.createdAt,
      expiresAt: task.expiresAt,
      createdBy: task.createdBy,
      ...(task.budgets !== undefined ? { budgets: task.budgets } : {}),
    };
    const end = task.state === 'ended' ? JSON.stringify({ endedAt: task.endedAt, endedBy: task.endedBy }) : '';
    const created = await c.call('createTask', () => CREATE_TASK.run(c.client, [c.k.task(task.id), c.k.activeTasks], [JSON.stringify(head), task.state, end, task.expiresAt, task.id]));
    // Ids are random; a duplicate is a caller bug, and overwriting could revive an ended task.
    if (created !== 1) throw new TypeError('createTask: a task with this id already exists');
  }

  async getTask(id: string): Promise<Task | undefined> {
    const c = this.#c;
    const r = await c.call('getTask', () => c.client.hmget(c.k.task(id), 'd', 'st', 'e'));
    return toTask(r);
  }

  async endTask(id: string, at: number, by: string): Promise<Task | undefined> {
    const c = this.#c;
    const end: TaskEnd = { endedAt: at, endedBy: by };
    const r = await c.call('endTask', () => END_TASK.run(c.client, [c.k.task(id), c.k.activeTasks], [JSON.stringify(end), id, this.#endedRetentionMs]));
    return toTask(r);
  }

  async countActiveTasks(now: number): Promise<number> {
    const c = this.#c;
    return c.call('countActiveTasks', () => c.client.zcount(c.k.activeTasks, `(${now}`, '+inf'));
  }

  async listExpiredActiveTasks(now: number, limit: number): Promise<Task[]> {
    const c = this.#c;
    return c.call('listExpiredActiveTasks', async () => {
      const ids = await c.client.zrangebyscore(c.k.activeTasks, '-inf', now, 'LIMIT', 0, limit);
      if (ids.length === 0) return [];
      const p = c.client.pipeline();
      for (const id of ids) p.hmget(c.k.task(id), 'd', 'st', 'e');
      const tasks: Task[] = [];
      for (const [err, r] of (await p.exec()) ?? []) {
        if (err) throw err;
        const t = toTask(r);
        // An index entry whose task is gone (retention) or no longer active is skipped.
        if (t && t.state === 'active') tasks.push(t);
      }
      return tasks;
    });
  }
  async listActiveTasks(now: number, limit: number): Promise<Task[]> {
    const c = this.#c;
    return c.call('listActiveTasks', async () => {
      const ids = await c.client.zrevrangebyscore(c.k.activeTasks, '+inf', `(${now}`, 'LIMIT', 0, limit);
      if (ids.length === 0) return [];
      const p = c.client.pipeline();
      for (const id of ids) p.hmget(c.k.task(id), 'd', 'st', 'e');
      const tasks: Task[] = [];
      for (const [err, r] of (await p.exec()) ?? []) {
        if (err) throw err;
        const t = toTask(r);
        if (t && t.state === 'active') tasks.push(t);
      }
      return tasks;
    });
  }
}

function toTask(reply: unknown): Task | undefined {
  if (!Array.isArray(reply)) return undefined;
  const [d, st, e] = reply as Array<string | null>;
  if (typeof d !== 'string' || (st !== 'active' && st !== 'ended')) return undefined;
  const h = JSON.parse(d) as TaskHead;
  const end = typeof e === 'string' && e.length > 0 ? (JSON.parse(e) as Partial<TaskEnd>) : undefined;
  return {
    id: h.id,
    plugins: h.plugins,
    attributes: h.attributes,
    createdAt: h.createdAt,
    expiresAt: h.expiresAt,
    createdBy: h.createdBy,
    state: st,
    endedAt: end?.endedAt ?? undefined,
    endedBy: end?.endedBy ?? undefined,
    ...(h.budgets !== undefined ? { budgets: h.budgets } : {}),
  };
}
