import type { Settings } from '../config/schema.js';
import { LeashError } from '../errors/leash-error.js';
import type { CompiledPlugin, CompiledPolicy } from '../policy/types.js';
import type { Upstream } from './delegation.js';

/**
 * Step "delegation target", before the task step. In order: every plugin of the chain is
 * still in policy and enabled; the upstream plugin names this plugin in `delegate_to`
 * (RFC 8693 `may_act`, read from the CURRENT policy, not from the token); no plugin acts
 * twice in one chain; the actors after this hop fit `settings.delegation.max_depth`; the
 * upstream token is bound to a task and the request names no other. Returns that task id.
 */
export function checkDelegationTarget(
  upstream: Upstream,
  plugin: CompiledPlugin,
  requestTaskId: string | undefined,
  policy: CompiledPolicy,
  settings: Settings,
): { readonly taskId: string | undefined; readonly reasons: readonly string[] } {
  const chain = upstream.chain;
  const detail = { chain: [...chain], target: plugin.id, upstream_jti: upstream.claims.jti };
  for (const id of chain) {
    const hop = policy.plugins.get(id);
    if (!hop || hop.disabled) throw new LeashError('ERR_DELEGATION_NOT_ALLOWED', `plugin '${id}' of the upstream chain is no longer enabled in policy`, detail);
  }
  const from = chain[chain.length - 1]!;
  if (!policy.plugins.get(from)!.config.delegate_to.includes(plugin.id)) {
    throw new LeashError('ERR_DELEGATION_NOT_ALLOWED', `plugin '${from}' may not delegate to '${plugin.id}' (not in its delegate_to)`, detail);
  }
  if (chain.includes(plugin.id)) {
    throw new LeashError('ERR_DELEGATION_CYCLE', `plugin '${plugin.id}' already acts in this chain (${chain.join(' -> ')}); a chain may not loop`, detail);
  }
  // The root is the principal; every plugin after it, this one included, is an actor. Under a person every plugin is an actor.
  const actors = upstream.person !== undefined ? chain.length + 1 : chain.length;
  const max = settings.delegation.max_depth;
  if (actors > max) {
    throw new LeashError('ERR_DELEGATION_DEPTH', `this hop would make ${actors} actors after the root; at most ${max} allowed`, { ...detail, depth: actors, max_depth: max });
  }
  const task = upstream.claims.task;
  if (task === undefined) throw new LeashError('ERR_DELEGATION_TASK_MISMATCH', 'the upstream token is bound to no task; delegation happens within one task', detail);
  if (requestTaskId !== undefined && requestTaskId !== task) {
    throw new LeashError('ERR_DELEGATION_TASK_MISMATCH', "the 'task' parameter differs from the upstream token's task; a chain stays within one task", detail);
  }
  return { taskId: task, reasons: targetReasons(upstream, plugin, max) };
}

/** Human lines naming the chain and the rules that let this hop through. */
export function targetReasons(upstream: Upstream, plugin: CompiledPlugin, maxDepth: number): string[] {
  const chain = upstream.chain;
  const actors = upstream.person !== undefined ? chain.length + 1 : chain.length;
  return [
    `delegation: ${[...chain, plugin.id].join(' → ')} (root '${chain[0]}'${upstream.person !== undefined ? `, for the person ${upstream.person}` : ''}, upstream jti ${upstream.claims.jti})`,
    `'${chain[chain.length - 1]}' lists '${plugin.id}' in delegate_to; no cycle; ${actors} of at most ${maxDepth} actors; task ${upstream.claims.task}`,
  ];
}
