import type { AuditEventType } from '../audit/events.js';
import type { Settings } from '../config/schema.js';
import { LeashError } from '../errors/leash-error.js';
import type { Metrics } from '../metrics/metrics.js';
import type { RevocationService } from '../revocation/revocation-service.js';
import type { Task, TaskBudgets } from '../store/records.js';
import type { TaskStore, TokenIndex } from '../store/store.js';
import { ALL_AUDIENCES, type TaskUsageTotals, type UsageStore } from '../store/usage-store.js';
import type { Clock } from '../time/clock.js';

const MAX_AUDIENCES = 32;
const MAX_LIMIT = 2 ** 50;
const DAY = 86_400_000;
const ACTOR = 'system:budget';

/**
 * Validates the `budgets` member of `POST /tasks`:
 * `{ "calls": 1000, "bytes": 50000000, "audiences": { "https://api.example.com": { "calls": 100 } } }`.
 * Returns the problems (admin input, ERR_ADMIN_INVALID) or the budgets.
 */
export function parseBudgets(input: unknown, problems: string[]): TaskBudgets | undefined {
  if (input === undefined) return undefined;
  if (input === null || typeof input !== 'object' || Array.isArray(input)) {
    problems.push('budgets must be an object: { calls?, bytes?, audiences?: { <audience>: { calls?, bytes? } } }');
    return undefined;
  }
  const b = input as Record<string, unknown>;
  const limits = (v: Record<string, unknown>, at: string): { calls?: number; bytes?: number } | undefined => {
    const out: { calls?: number; bytes?: number } = {};
    for (const [k, n] of Object.entries(v)) {
      if (k !== 'calls' && k !== 'bytes' && !(at === 'budgets' && k === 'audiences')) {
        problems.push(`${at}.${k.slice(0, 64)} is not a budget: use calls or bytes`);
        continue;
      }
      if (k === 'audiences') continue;
      if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 1 || n > MAX_LIMIT) problems.push(`${at}.${k} must be a whole number of at least 1`);
      else out[k] = n;
    }
    return out;
  };
  const total = limits(b, 'budgets');
  let audiences: Record<string, { calls?: number; bytes?: number }> | undefined;
  if (b.audiences !== undefined) {
    if (b.audiences === null || typeof b.audiences !== 'object' || Array.isArray(b.audiences)) problems.push('budgets.audiences must be an object of audience → { calls?, bytes? }');
    else {
      const entries = Object.entries(b.audiences as Record<string, unknown>);
      if (entries.length > MAX_AUDIENCES) problems.push(`budgets.audiences: at most ${MAX_AUDIENCES} audiences`);
      audiences = {};
      for (const [aud, v] of entries.slice(0, MAX_AUDIENCES)) {
        if (aud.length === 0 || aud.length > 256 || aud === ALL_AUDIENCES) problems.push('budgets.audiences keys must be audiences (1-256 characters)');
        else if (v === null || typeof v !== 'object' || Array.isArray(v)) problems.push(`budgets.audiences["${aud.slice(0, 64)}"] must be { calls?, bytes? }`);
        else {
          const l = limits(v as Record<string, unknown>, `budgets.audiences["${aud.slice(0, 64)}"]`);
          if (l && (l.calls !== undefined || l.bytes !== undefined)) audiences[aud] = l;
        }
      }
    }
  }
  const budgets: TaskBudgets = { ...total, ...(audiences && Object.keys(audiences).length > 0 ? { audiences } : {}) };
  if (budgets.calls === undefined && budgets.bytes === undefined && budgets.audiences === undefined) {
    problems.push('budgets must set calls, bytes or audiences');
    return undefined;
  }
  return budgets;
}

/** The limits that apply to one audience's counters (`*`: the task in total). */
export function limitsFor(budgets: TaskBudgets, audience: string): { calls?: number; bytes?: number } {
  return audience === ALL_AUDIENCES ? { calls: budgets.calls, bytes: budgets.bytes } : { ...budgets.audiences?.[audience] };
}

export interface BudgetDeps {
  readonly store: UsageStore & Pick<TaskStore, 'getTask'> & Pick<TokenIndex, 'getIssued' | 'listIssuedForTask'>;
  readonly clock: Clock;
  readonly settings: () => Settings;
  readonly revocation: RevocationService;
  readonly audit: { record(type: AuditEventType, event: Record<string, unknown>): Promise<unknown> };
  readonly metrics: Metrics;
}

/** A synchronous check's answer (`POST /usage/budget`). */
export interface BudgetAnswer {
  readonly allowed: boolean;
  readonly task?: string;
  /** Why not: `exhausted`, `unknown_token`, `wrong_audience`. */
  readonly reason?: string;
  readonly used?: { readonly calls: number; readonly audience_calls: number };
}

/**
 * Per-task budgets: calls (in total or per audience) and bytes read, counted from the usage
 * stream (and by synchronous checks). When a budget is used up, once across replicas (a
 * marker in the store): the task's live credentials concerned are revoked (all of them for
 * the total, those of the audience otherwise), the event is audited, and new exchanges for
 * the task (or that audience) are refused.
 */
export class TaskBudgetEnforcer {
  readonly #d: BudgetDeps;

  constructor(deps: BudgetDeps) {
    this.#d = deps;
  }

  /** The exchange's step: a task whose budget for this audience (or in total) is spent gets nothing more. */
  async assertOpen(task: Task, audience: string): Promise<void> {
    if (!task.budgets) return;
    const spent = await this.#d.store.budgetExhaustions(task.id);
    const which = spent[ALL_AUDIENCES] !== undefined ? 'total' : spent[audience] !== undefined ? audience : undefined;
    if (which !== undefined) throw new LeashError('ERR_TASK_BUDGET_EXHAUSTED', "the task's budget is used up: no more credentials for it", { task: task.id, budget: which });
  }

  /** Told the counters a usage batch touched: any budget reached is enforced. */
  readonly onTotals = async (totals: readonly TaskUsageTotals[], tasks: ReadonlyMap<string, Task>): Promise<void> => {
    for (const t of totals) {
      const task = tasks.get(t.task);
      if (task?.budgets) await this.#enforceIfSpent(task, t);
    }
  };

  /** `POST /usage/budget`: charges one call for the token's task if its budgets allow it. */
  async charge(server: { readonly audiences: readonly string[] }, jti: string, audience: string): Promise<BudgetAnswer> {
    const issued = await this.#d.store.getIssued(jti);
    if (!issued) return { allowed: false, reason: 'unknown_token' };
    if (issued.audience !== audience || !server.audiences.includes(audience)) return { allowed: false, reason: 'wrong_audience' };
    if (issued.task === undefined) {
      this.#d.metrics.budgetChecks.inc({ result: 'unbudgeted' });
      return { allowed: true };
    }
    const task = await this.#d.store.getTask(issued.task);
    if (!task?.budgets) {
      this.#d.metrics.budgetChecks.inc({ result: 'unbudgeted' });
      return { allowed: true, task: issued.task };
    }
    const spent = await this.#d.store.budgetExhaustions(task.id);
    if (spent[ALL_AUDIENCES] !== undefined || spent[audience] !== undefined) return this.#refused(task.id);
    const keepUntil = task.expiresAt + this.#d.settings().usage.retention_days * DAY;
    const { charged, totals } = await this.#d.store.chargeTaskUsage(task.id, audience, 1, { totalCalls: task.budgets.calls, audienceCalls: task.budgets.audiences?.[audience]?.calls }, keepUntil);
    const mine = totals.find((t) => t.audience === audience);
    const all = totals.find((t) => t.audience === ALL_AUDIENCES);
    // Refused, or this call was the last one a budget allows: enforce now.
    for (const t of totals) await this.#enforceIfSpent(task, t, !charged);
    if (!charged) return this.#refused(task.id);
    this.#d.metrics.budgetChecks.inc({ result: 'allowed' });
    return { allowed: true, task: task.id, used: { calls: all?.calls ?? 0, audience_calls: mine?.calls ?? 0 } };
  }

  #refused(task: string): BudgetAnswer {
    this.#d.metrics.budgetChecks.inc({ result: 'exhausted' });
    return { allowed: false, task, reason: 'exhausted' };
  }

  async #enforceIfSpent(task: Task, t: TaskUsageTotals, refused = false): Promise<void> {
    const limits = limitsFor(task.budgets!, t.audience);
    const kind = limits.calls !== undefined && (t.calls >= limits.calls || refused) ? 'calls' : limits.bytes !== undefined && t.bytes >= limits.bytes ? 'bytes' : undefined;
    if (kind === undefined) return;
    const now = this.#d.clock.now();
    const keepUntil = task.expiresAt + this.#d.settings().usage.retention_days * DAY;
    if (!(await this.#d.store.markBudgetExhausted(task.id, t.audience, now, keepUntil))) return;
    const budget = t.audience === ALL_AUDIENCES ? 'total' : t.audience;
    const reason = `task budget used up (${budget}, ${kind})`;
    let revoked: number;
    if (t.audience === ALL_AUDIENCES) {
      await this.#d.revocation.revokeTask(task.id, { actor: ACTOR, reason });
      revoked = (await this.#d.store.listIssuedForTask(task.id)).filter((i) => i.expiresAt > now).length;
    } else {
      const live = (await this.#d.store.listIssuedForTask(task.id)).filter((i) => i.audience === t.audience && i.expiresAt > now).map((i) => i.jti);
      if (live.length > 0) await this.#d.revocation.revokeTokens(live, { actor: ACTOR, reason });
      revoked = live.length;
    }
    this.#d.metrics.usageAnomalies.inc({ type: 'task.budget_exceeded' });
    await this.#d.audit.record('task.budget_exceeded', {
      task: task.id,
      budget,
      kind,
      limit: limits[kind],
      used: kind === 'calls' ? t.calls : t.bytes,
      credentials_revoked: revoked,
      actor: ACTOR,
    });
  }
}
