import type { Settings } from '../config/schema.js';
import { LeashError } from '../errors/leash-error.js';
import type { CompiledGrant, CompiledPlugin, CompiledPolicy } from '../policy/types.js';
import type { Task } from '../store/records.js';
import type { TokenIndex } from '../store/store.js';

export interface TaskToxicOutcome {
  /** A rule with `action: approval` matched: a person decides. */
  readonly needsApproval: boolean;
  readonly reasons: readonly string[];
}

const NONE: TaskToxicOutcome = Object.freeze({ needsApproval: false, reasons: Object.freeze([]) });

/**
 * Step "task toxic combinations", without delegation: two plugins in one task, one that can
 * read sensitive data and one that can send data out, never meet through a delegation chain,
 * so the chain rules cannot see them. A task that already holds a live credential of one
 * effect of a pair and asks for the other is refused (or waits for a person).
 *
 * The store is read only when the requested grant's effect is part of a rule, and then only
 * this task's credentials: a bounded read (quota `tokens_per_task`), not history.
 */
export async function checkTaskToxicCombinations(
  tokens: Pick<TokenIndex, 'listIssuedForTask'>,
  input: {
    readonly task: Task | undefined;
    readonly plugin: CompiledPlugin;
    readonly grant: CompiledGrant;
    readonly policy: CompiledPolicy;
    readonly settings: Settings;
    readonly now: number;
    /** A delegation hop: the chain's own tokens, whose effects the chain rules already judged. */
    readonly chainJtis?: readonly string[] | undefined;
  },
): Promise<TaskToxicOutcome> {
  const { task, grant } = input;
  if (!task) return NONE;
  const rules = input.settings.tasks.toxic_combinations.filter((r) => r.effects.includes(grant.effect));
  if (rules.length === 0) return NONE;
  const held = new Map<string, string>();
  for (const t of await tokens.listIssuedForTask(task.id)) {
    if (t.expiresAt <= input.now || input.chainJtis?.includes(t.jti)) continue;
    const effect = input.policy.plugins.get(t.plugin)?.grants.find((g) => g.audience === t.audience)?.effect;
    if (effect !== undefined && !held.has(effect)) held.set(effect, t.plugin);
  }
  const reasons: string[] = [];
  let needsApproval = false;
  for (const rule of rules) {
    const [a, b] = rule.effects as [string, string];
    const other = grant.effect === a ? b : a;
    const holder = held.get(other);
    if (holder === undefined) continue;
    const line = `task toxic combination: task ${task.id} holds a '${other}' credential (plugin '${holder}'), '${input.plugin.id}' asks for '${grant.effect}' → ${rule.action}`;
    reasons.push(line);
    if (rule.action === 'deny') {
      throw new LeashError('ERR_TASK_TOXIC', `this task already holds a '${other}' credential; a '${grant.effect}' credential may not join it in the same task`, {
        rule: { effects: [a, b], action: rule.action },
        holder,
        reasons,
      });
    }
    needsApproval = true;
  }
  return { needsApproval, reasons };
}
