import type { Check } from './context.js';

const DAY_MS = 86_400_000;

/**
 * Rules that need history. A rule about absence (unused plugin, grant, scope) fires only
 * when the evidence reaches back over the whole window: a store younger than the window
 * cannot show that something was never used.
 */
export const useChecks: Check = (ctx, emit) => {
  const use = ctx.use;
  if (use) {
    const review = ctx.config.settings.review;
    const days = Math.round((use.until - use.since) / DAY_MS);
    const covers = use.oldestAt !== undefined && use.oldestAt <= use.since;
    const byOwner = new Map<string, { requested: number; decided: number; plugins: string[]; index: number }>();
    (ctx.config.plugins ?? []).forEach((plugin, p) => {
      const u = use.plugins.get(plugin.id);
      const at = `/plugins/${p}`;
      if (covers && !plugin.disabled && (u === undefined || u.issued === 0)) {
        emit({
          rule: 'unused-plugin',
          plugin: plugin.id,
          pointer: at,
          key: plugin.id,
          message: `plugin '${plugin.id}' (owner ${plugin.owner}) got no credential in the last ${days} days`,
          fix: `disable or remove '${plugin.id}' (offboard it); its owner can ask for it back`,
          evidence: { window_days: days, denied: u ? Object.fromEntries(u.denied) : {} },
        });
      } else if (covers && u) {
        plugin.grants.forEach((grant, g) => {
          const a = u.audiences.get(grant.audience);
          if (!a) {
            emit({
              rule: 'unused-grant',
              plugin: plugin.id,
              grant: grant.audience,
              pointer: `${at}/grants/${g}`,
              key: `${plugin.id}|${grant.audience}`,
              message: `plugin '${plugin.id}' was never issued a credential for ${grant.audience} in the last ${days} days`,
              fix: `remove the grant for ${grant.audience} from '${plugin.id}'`,
              evidence: { window_days: days },
            });
            return;
          }
          grant.scopes.forEach((scope, s) => {
            if (a.scopes.has(scope)) return;
            emit({
              rule: 'unused-scope',
              plugin: plugin.id,
              grant: grant.audience,
              pointer: `${at}/grants/${g}/scopes/${s}`,
              key: `${plugin.id}|${grant.audience}|${scope}`,
              message: `plugin '${plugin.id}' used ${grant.audience} ${a.count} times in the last ${days} days but never with scope '${scope}'`,
              fix: `remove '${scope}' from the grant (issued: ${[...a.scopes.keys()].sort().join(' ')})`,
              evidence: { window_days: days, issued_scopes: [...a.scopes.keys()].sort() },
            });
          });
        });
      }
      if (u) {
        for (const [reason, count] of u.denied) {
          if (reason === 'ERR_QUOTA_EXCEEDED') {
            emit({
              rule: 'quota-breach',
              plugin: plugin.id,
              pointer: plugin.quotas ? `${at}/quotas` : at,
              key: plugin.id,
              message: `plugin '${plugin.id}' ran into its quota ${count} time${count === 1 ? '' : 's'} in the last ${days} days`,
              fix: `find the task that looped; raise the quota of '${plugin.id}' only if the load is expected`,
              evidence: { count, window_days: days },
            });
          } else if (count >= review.repeated_denials) {
            emit({
              rule: 'repeated-denials',
              plugin: plugin.id,
              pointer: at,
              key: `${plugin.id}|${reason}`,
              message: `plugin '${plugin.id}' was denied ${count} times for ${reason} in the last ${days} days`,
              fix: `look at why (${reason}): fix the plugin or the policy, or suspend '${plugin.id}' if it is probing`,
              evidence: { reason, count, window_days: days },
            });
          }
        }
        const o = byOwner.get(plugin.owner) ?? { requested: 0, decided: 0, plugins: [], index: p };
        o.requested += u.approvalsRequested;
        o.decided += u.approvalsDecided;
        if (u.approvalsRequested > 0) o.plugins.push(plugin.id);
        byOwner.set(plugin.owner, o);
      }
    });
    for (const [owner, o] of byOwner) {
      if (o.requested === 0 || o.decided > 0) continue;
      emit({
        rule: 'unanswered-approvals',
        plugin: o.plugins[0],
        pointer: `/plugins/${o.index}/owner`,
        key: owner,
        message: `${o.requested} approval request${o.requested === 1 ? '' : 's'} for plugins of ${owner} (${o.plugins.join(', ')}) went undecided in the last ${days} days`,
        fix: `name an owner who answers, add an approver group (settings.approvals.approver_groups), or retire ${o.plugins.join(', ')}`,
        evidence: { owner, requested: o.requested, decided: o.decided, plugins: o.plugins },
      });
    }
  }
  if (ctx.suspensions) {
    const limit = ctx.config.settings.review.suspended_days * DAY_MS;
    const index = new Map((ctx.config.plugins ?? []).map((p, i) => [p.id, i]));
    for (const s of ctx.suspensions) {
      const p = index.get(s.plugin);
      if (p === undefined || ctx.now - s.since <= limit) continue;
      const days = Math.floor((ctx.now - s.since) / DAY_MS);
      emit({
        rule: 'stale-suspension',
        plugin: s.plugin,
        pointer: `/plugins/${p}`,
        key: s.plugin,
        message: `plugin '${s.plugin}' has been suspended for ${days} days (since ${new Date(s.since).toISOString().slice(0, 10)} by ${s.actor}: ${s.reason})`,
        fix: `remove '${s.plugin}' from policy, or resume it once the cause is fixed`,
        evidence: { since: new Date(s.since).toISOString(), actor: s.actor, reason: s.reason, days },
      });
    }
  }
};
