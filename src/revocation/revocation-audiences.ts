import type { RevocationScope } from '../store/records.js';
import type { TaskStore, TokenIndex } from '../store/store.js';

export interface AudienceSources {
  readonly tokens: Pick<TokenIndex, 'getIssued' | 'listIssuedForTask'>;
  readonly tasks: Pick<TaskStore, 'getTask'>;
  /** The audiences a plugin's grants reach in the policy in force ([] for an unknown plugin). */
  readonly grantedAudiences: (plugin: string) => readonly string[];
}

/**
 * Which audiences a revocation concerns; undefined means every resource server. `memo`
 * (one per batch of revocations, e.g. a reload revoking many tokens of one task) keeps
 * each task's audiences, so a batch reads each task's index once.
 */
export type AudienceResolver = (scope: RevocationScope, id: string, memo?: Map<string, readonly string[]>) => Promise<readonly string[] | undefined>;

/**
 * Fixed once, when the revocation is made, so the feed filters each record by a field it
 * carries and never looks anything up per record (its cost does not grow with history):
 *
 * - `task`: the audiences of every credential issued in the task, plus those the task's
 *   plugins are granted now (a credential being issued while the task is revoked is for
 *   one of them, even if it is not in the index yet).
 * - `token`: the same for the token's task, since a token-scope revocation also covers
 *   every token delegated from it (`chain_jti`), and a chain stays within one task and
 *   reaches its other audiences; a token without a task concerns its own audience. A jti
 *   Leash has no record of concerns every resource server: it cannot tell, and errs toward
 *   reaching.
 * - `plugin` and `key`: every resource server (a plugin revocation covers the tokens
 *   delegated from its tokens, at any audience; a key signed for all of them).
 */
export function createAudienceResolver(src: AudienceSources): AudienceResolver {
  async function ofTask(taskId: string, memo: Map<string, readonly string[]> | undefined): Promise<readonly string[]> {
    const known = memo?.get(taskId);
    if (known) return known;
    const into = new Set<string>();
    for (const t of await src.tokens.listIssuedForTask(taskId)) into.add(t.audience);
    const task = await src.tasks.getTask(taskId);
    for (const plugin of task?.plugins ?? []) for (const a of src.grantedAudiences(plugin)) into.add(a);
    const found = [...into];
    memo?.set(taskId, found);
    return found;
  }

  return async (scope, id, memo) => {
    if (scope === 'plugin' || scope === 'key') return undefined;
    if (scope === 'task') return [...(await ofTask(id, memo))].sort();
    const issued = await src.tokens.getIssued(id);
    if (!issued) return undefined;
    const audiences = new Set([issued.audience]);
    if (issued.task !== undefined) for (const a of await ofTask(issued.task, memo)) audiences.add(a);
    return [...audiences].sort();
  };
}

/** Whether a resource server answering for `audiences` is told about this revocation. */
export function concerns(revocation: { readonly audiences?: readonly string[] | undefined }, audiences: readonly string[]): boolean {
  return revocation.audiences === undefined || revocation.audiences.some((a) => audiences.includes(a));
}
