/** A task's budgets as far as the claim needs them (the store's TaskBudgets has this shape). */
interface Limits {
  readonly calls?: number | undefined;
  readonly bytes?: number | undefined;
}
type Budgets = Limits & { readonly audiences?: Readonly<Record<string, Limits>> | undefined };

/**
 * The `task_budget` claim of a token for `audience`: the tightest call and byte limits the
 * task puts on that audience (in total or for it), so a resource server can enforce them
 * locally (counting the calls it sees). Undefined when the task has no budget there.
 */
export function budgetClaim(budgets: Budgets | undefined, audience: string): { calls?: number; bytes?: number } | undefined {
  if (!budgets) return undefined;
  const own = budgets.audiences?.[audience];
  const min = (a: number | undefined, b: number | undefined) => (a === undefined ? b : b === undefined ? a : Math.min(a, b));
  const calls = min(budgets.calls, own?.calls);
  const bytes = min(budgets.bytes, own?.bytes);
  if (calls === undefined && bytes === undefined) return undefined;
  return { ...(calls !== undefined ? { calls } : {}), ...(bytes !== undefined ? { bytes } : {}) };
}
