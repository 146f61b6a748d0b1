import { randomBytes } from 'node:crypto';
import type { TaskStore } from '../store/store.js';
import type { Clock } from '../time/clock.js';
import { Sweeper } from '../time/periodic-pass.js';
import type { TaskService } from './task-service.js';

/**
 * Ends tasks whose expiry has passed, so their credentials are revoked. Driven by the
 * store, not by timers per task: a task that expired while every replica was down is
 * ended on the first sweep after start. Each replica sweeps; the store's first-end-wins
 * rule means each task is ended once.
 */
export class TaskSweeper extends Sweeper {
  readonly #actor = `system:expiry:${randomBytes(4).toString('hex')}`;

  constructor(
    private readonly store: TaskStore,
    private readonly tasks: TaskService,
    private readonly clock: Clock,
    intervalMs: number,
    log: (msg: string, fields?: Record<string, unknown>) => void = () => undefined,
  ) {
    super(intervalMs, (err) => log('task sweep failed', { error: err.message }));
  }

  /** One pass; returns how many tasks it ended. */
  protected async pass(): Promise<number> {
    let ended = 0;
    for (;;) {
      const due = await this.store.listExpiredActiveTasks(this.clock.now(), 100);
      for (const task of due) {
        const after = await this.tasks.end(task.id, this.#actor, 'expired');
        if (after?.endedBy === this.#actor) ended++;
      }
      if (due.length < 100) return ended;
    }
  }
}
