import { LeashError } from '../errors/leash-error.js';
import type { CompiledPlugin } from '../policy/types.js';
import type { RevocationService } from '../revocation/revocation-service.js';
import type { Task } from '../store/records.js';
import type { CounterStore, TokenIndex } from '../store/store.js';

export interface QuotaDeps {
  readonly store: CounterStore & TokenIndex;
  readonly revocation: RevocationService;
  /** Called when a breach suspends the plugin (audit, metrics). */
  readonly onSuspended: (plugin: string, reason: string) => Promise<void>;
}

const MINUTE = 60_000;

/** A dry run (explain, candidate policy): nothing counted, nobody suspended. */
export interface QuotaDryRun {
  /** The live exchange already counted this request in the per-minute window. */
  readonly counted: boolean;
}

/**
 * Step "quotas": limits that stop a runaway plugin. Counted in the store, so the limits
 * hold across replicas. Costs nothing for plugins without quotas.
 */
export async function enforceQuotas(deps: QuotaDeps, plugin: CompiledPlugin, task: Task | undefined, now: number, dryRun?: QuotaDryRun): Promise<void> {
  const q = plugin.config.quotas;
  if (!q) return;
  let breach: string | undefined;
  if (q.exchanges_per_minute !== undefined) {
    // A dry run reads the window (adds 0) and counts this request unless the live exchange already did.
    const n = dryRun
      ? (await deps.store.incrementWindow(`exchanges:${plugin.id}`, MINUTE, now, 0)) + (dryRun.counted ? 0 : 1)
      : await deps.store.incrementWindow(`exchanges:${plugin.id}`, MINUTE, now);
    if (n > q.exchanges_per_minute) breach = `more than ${q.exchanges_per_minute} exchanges in a minute`;
  }
  if (!breach && q.tokens_per_task !== undefined && task) {
    // A counter kept with the token index: the same cost on a task's 10,000th token as on its first.
    const issued = await deps.store.countIssuedForTaskPlugin(task.id, plugin.id);
    if (issued >= q.tokens_per_task) breach = `already ${issued} credentials in this task (limit ${q.tokens_per_task})`;
  }
  if (!breach && q.live_tokens !== undefined) {
    const live = (await deps.store.listLiveIssuedForPlugin(plugin.id, now)).filter(
      (t) => !deps.revocation.isRevoked({ jti: t.jti, plugin: t.plugin, task: t.task, kid: t.kid, iat: Math.floor(t.issuedAt / 1000) }),
    ).length;
    if (live >= q.live_tokens) breach = `already ${live} live credentials (limit ${q.live_tokens})`;
  }
  if (!breach) return;
  if (dryRun) throw new LeashError('ERR_QUOTA_EXCEEDED', `quota exceeded: ${breach}${q.on_breach === 'suspend' ? '; the exchange would suspend the plugin' : '; retry later'}`);
  if (q.on_breach === 'suspend') {
    const reason = `quota breached: ${breach}`;
    await deps.revocation.suspend(plugin.id, { actor: 'system:quota', reason });
    await deps.onSuspended(plugin.id, reason);
    throw new LeashError('ERR_QUOTA_EXCEEDED', `quota exceeded (${breach}); the plugin has been suspended`);
  }
  throw new LeashError('ERR_QUOTA_EXCEEDED', `quota exceeded: ${breach}; retry later`);
}
