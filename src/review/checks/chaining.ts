import type { Severity } from '../rules.js';
import type { Blocking, PluginGraph } from '../graph.js';
import type { ReviewContext, Emit } from './context.js';

const severityOf = (b: Blocking, open: Severity): Severity => (b === 'deny' || b === 'narrowing' ? 'low' : b === 'approval' ? 'medium' : open);

/** Chaining findings from the plugin graph (built once per review, shared with the picture). */
export function chainingChecks(ctx: ReviewContext, graph: PluginGraph, emit: Emit): void {
  const index = new Map(graph.plugins.map((p) => [p.id, p.index]));
  for (const path of graph.paths) {
    const hops = path.hops.join(' → ');
    const root = index.get(path.hops[0]!)!;
    if (path.kind === 'toxic') {
      emit({
        rule: 'toxic-delegation-path',
        severity: severityOf(path.blocking, 'high'),
        plugin: path.from.plugin,
        grant: path.from.audience,
        pointer: `/plugins/${root}/delegate_to`,
        key: `${hops}|${path.to.audience}`,
        message: `${hops}: '${path.from.plugin}' reads sensitive data at ${path.from.audience} and '${path.to.plugin}' can send data out at ${path.to.audience}; exchange-time rules: ${path.blocking} (${path.why})`,
        fix:
          path.blocking === 'deny'
            ? 'keep the deny rule; remove the delegation edge if it is not needed'
            : `remove '${path.hops[1]}' from delegate_to of '${path.hops[0]}', or add a delegation toxic-combination rule with action: deny`,
        evidence: { hops: path.hops, from: path.from, to: path.to, blocked: path.blocking !== 'open', blocking: path.blocking, why: path.why },
      });
    } else {
      emit({
        rule: 'cross-system-write-path',
        severity: severityOf(path.blocking, 'medium'),
        plugin: path.from.plugin,
        grant: path.from.audience,
        pointer: `/plugins/${root}/delegate_to`,
        key: `${hops}|${path.to.audience}`,
        message: `${hops}: what '${path.from.plugin}' reads at ${path.from.audience} drives a write by '${path.to.plugin}' at ${path.to.audience}; exchange-time rules: ${path.blocking} (${path.why})`,
        fix:
          path.blocking === 'narrowing'
            ? 'nothing at exchange time gets through; remove the edge if the write never needs the read'
            : `remove the delegation edge, or gate the write at ${path.to.audience} with approval: human`,
        evidence: { hops: path.hops, from: path.from, to: path.to, blocked: path.blocking !== 'open', blocking: path.blocking, why: path.why },
      });
    }
  }
  for (const pair of graph.taskPairs) {
    const p = index.get(pair.reader)!;
    const grant = ctx.config.plugins[p]!.grants.findIndex((g) => g.effect === 'read-sensitive');
    emit({
      rule: 'toxic-task-pair',
      severity: severityOf(pair.blocking, 'high'),
      plugin: pair.reader,
      grant: ctx.config.plugins[p]!.grants[grant]?.audience,
      pointer: `/plugins/${p}/grants/${grant}/effect`,
      key: pair.reader,
      message: `'${pair.reader}' reads sensitive data and may share a task with ${pair.exfiltrators.length} plugin${pair.exfiltrators.length === 1 ? '' : 's'} that can exfiltrate (${pair.exfiltrators.slice(0, 8).join(', ')}${pair.exfiltrators.length > 8 ? ', ...' : ''}); exchange-time rules: ${pair.blocking} (${pair.why})`,
      fix: pair.blocking === 'deny' ? 'keep settings.tasks.toxic_combinations denying the pair' : 'set settings.tasks.toxic_combinations to [{ effects: [read-sensitive, exfiltrate], action: deny }]',
      evidence: { exfiltrators: pair.exfiltrators, blocked: pair.blocking !== 'open', blocking: pair.blocking, why: pair.why },
    });
  }
}
