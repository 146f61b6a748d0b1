import { LeashError } from '../errors/leash-error.js';
import type { Task } from '../store/records.js';
import type { TaskStore } from '../store/store.js';
import type { Clock } from '../time/clock.js';
import { parseBudgets } from '../usage/budgets.js';
import { randomId } from '../formats/random-id.js';

export interface OpenTaskInput {
  readonly plugins?: unknown;
  readonly ttl_seconds?: unknown;
  readonly attributes?: unknown;
  /** Call and byte budgets (see usage/budgets.ts). */
  readonly budgets?: unknown;
}

export interface TaskLimits {
  readonly defaultTtl: number;
  readonly maxTtl: number;
}

const ATTR_KEY = /^[A-Za-z0-9_.-]{1,64}$/;
const MAX_ATTRS = 32;
const MAX_ATTR_VALUE = 256;
const MAX_PLUGINS = 64;

/**
 * Task lifecycle: an orchestrator opens a task naming the plugins allowed in it; every
 * credential is bound to one task; an ended or expired task gets nothing more.
 */
export type TaskEndCause = 'ended' | 'expired';

export interface TaskServiceDeps {
  readonly store: TaskStore;
  readonly clock: Clock;
  readonly limits: () => TaskLimits;
  readonly knownPlugin: (id: string) => boolean;
  /** Runs once per opened task, before the caller hears of it: count and audit. */
  readonly onOpened?: (task: Task) => Promise<void>;
  /** Runs once per task, by whichever caller (or replica) actually ended it: revocation, audit. */
  readonly onEnded: (task: Task, cause: TaskEndCause, actor: string) => Promise<void>;
}

export class TaskService {
  private readonly store: TaskStore;
  private readonly clock: Clock;
  private readonly limits: () => TaskLimits;
  private readonly knownPlugin: (id: string) => boolean;

  constructor(private readonly deps: TaskServiceDeps) {
    this.store = deps.store;
    this.clock = deps.clock;
    this.limits = deps.limits;
    this.knownPlugin = deps.knownPlugin;
  }

  /** Validates untrusted admin input; ERR_ADMIN_INVALID says exactly what to fix. */
  async open(input: OpenTaskInput, createdBy: string): Promise<Task> {
    const problems: string[] = [];
    const { defaultTtl, maxTtl } = this.limits();

    const plugins = input.plugins;
    if (!Array.isArray(plugins) || plugins.length === 0 || plugins.length > MAX_PLUGINS || !plugins.every((p) => typeof p === 'string')) {
      problems.push(`plugins must be a non-empty array of at most ${MAX_PLUGINS} plugin ids`);
    } else {
      const unknown = plugins.filter((p) => !this.knownPlugin(p));
      if (unknown.length > 0) problems.push(`unknown plugins: ${unknown.slice(0, 5).join(', ')}`);
    }

    let ttl = defaultTtl;
    if (input.ttl_seconds !== undefined) {
      if (typeof input.ttl_seconds !== 'number' || !Number.isInteger(input.ttl_seconds) || input.ttl_seconds < 1 || input.ttl_seconds > maxTtl) {
        problems.push(`ttl_seconds must be a whole number between 1 and ${maxTtl}`);
      } else {
        ttl = input.ttl_seconds;
      }
    }

    const attributes: Record<string, string> = {};
    if (input.attributes !== undefined) {
      const a = input.attributes;
      if (a === null || typeof a !== 'object' || Array.isArray(a)) {
        problems.push('attributes must be an object of string values');
      } else {
        const entries = Object.entries(a);
        if (entries.length > MAX_ATTRS) problems.push(`at most ${MAX_ATTRS} attributes`);
        for (const [k, v] of entries) {
          if (!ATTR_KEY.test(k)) problems.push(`attribute name '${k.slice(0, 64)}' must match ${ATTR_KEY.source}`);
          else if (typeof v !== 'string' || v.length > MAX_ATTR_VALUE) problems.push(`attribute '${k}' must be a string of at most ${MAX_ATTR_VALUE} characters`);
          else attributes[k] = v;
        }
      }
    }
    const budgets = parseBudgets(input.budgets, problems);
    if (problems.length > 0) throw new LeashError('ERR_ADMIN_INVALID', problems.join('; '));

    const now = this.clock.now();
    const task: Task = {
      id: `tsk_${randomId()}`,
      plugins: [...new Set(plugins as string[])],
      attributes,
      createdAt: now,
      expiresAt: now + ttl * 1000,
      createdBy,
      state: 'active',
      endedAt: undefined,
      endedBy: undefined,
      ...(budgets !== undefined ? { budgets } : {}),
    };
    await this.store.createTask(task);
    await this.deps.onOpened?.(task);
    return task;
  }

  /** Open, unexpired tasks, the latest to expire first (the console's list). */
  async listActive(limit: number): Promise<Task[]> {
    return this.store.listActiveTasks(this.clock.now(), limit);
  }

  async get(id: string): Promise<Task | undefined> {
    return this.store.getTask(id);
  }

  /**
   * Ends a task (idempotent). The store keeps the first end, so the caller whose time and
   * actor were recorded is the one that ended it and runs `onEnded`: one revocation and
   * one audit event per task, however many replicas race.
   */
  async end(id: string, by: string, cause: TaskEndCause = 'ended'): Promise<Task | undefined> {
    const now = this.clock.now();
    const task = await this.store.endTask(id, now, by);
    if (task && task.endedAt === now && task.endedBy === by) await this.deps.onEnded(task, cause, by);
    return task;
  }

  /** Step "check task" of the exchange: the task is live and lets this plugin in. */
  async requireLive(taskId: string, pluginId: string, now: number): Promise<Task> {
    const task = await this.store.getTask(taskId);
    if (!task) throw new LeashError('ERR_TASK_UNKNOWN', 'no such task: open one with POST /tasks');
    if (task.state === 'ended') throw new LeashError('ERR_TASK_ENDED', 'the task has ended; credentials are no longer issued for it');
    if (task.expiresAt <= now) throw new LeashError('ERR_TASK_EXPIRED', 'the task has expired');
    if (!task.plugins.includes(pluginId)) {
      throw new LeashError('ERR_TASK_PLUGIN_NOT_ALLOWED', 'this plugin is not among the plugins allowed in the task');
    }
    return task;
  }
}

/** Public view of a task for the admin API. */
export function taskView(t: Task, now: number): Record<string, unknown> {
  return {
    id: t.id,
    state: t.state === 'active' && t.expiresAt <= now ? 'expired' : t.state,
    plugins: t.plugins,
    attributes: t.attributes,
    created_at: new Date(t.createdAt).toISOString(),
    expires_at: new Date(t.expiresAt).toISOString(),
    created_by: t.createdBy,
    ...(t.endedAt !== undefined ? { ended_at: new Date(t.endedAt).toISOString(), ended_by: t.endedBy } : {}),
    ...(t.budgets !== undefined ? { budgets: t.budgets } : {}),
  };
}
