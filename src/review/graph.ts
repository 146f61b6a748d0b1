import type { Effect, LeashConfig } from '../config/schema.js';

/**
 * The plugin graph: plugins, the audiences they reach (with the effect), the delegation
 * edges (`delegate_to`), and the paths that matter: from a sensitive read to exfiltration
 * (through delegation, or by meeting in one task) and from a read on one system to a write
 * on another. Each path says whether the exchange-time rules block it.
 */

export interface GraphPlugin {
  readonly id: string;
  readonly index: number;
  readonly risk: string;
  readonly owner: string;
  readonly effects: ReadonlySet<Effect>;
  readonly grants: readonly { readonly audience: string; readonly effect: Effect; readonly scopes: readonly string[] }[];
}

/** How the exchange treats a path: `deny` / `approval` by a toxic-combination rule, `narrowing` (the chain's root cannot reach the API), or `open`. */
export type Blocking = 'deny' | 'approval' | 'narrowing' | 'open';

export interface DelegationPath {
  readonly kind: 'toxic' | 'cross-write';
  /** Plugins, root first. */
  readonly hops: readonly string[];
  /** The read at the start: its audience and effect. */
  readonly from: { readonly plugin: string; readonly audience: string; readonly effect: Effect };
  /** The action at the end. */
  readonly to: { readonly plugin: string; readonly audience: string; readonly effect: Effect };
  readonly blocking: Blocking;
  readonly why: string;
}

export interface TaskPair {
  readonly reader: string;
  /** Plugins that can exfiltrate and may share a task with `reader` (itself included when it can). */
  readonly exfiltrators: readonly string[];
  readonly blocking: Blocking;
  readonly why: string;
}

export interface PluginGraph {
  readonly plugins: readonly GraphPlugin[];
  readonly audiences: readonly string[];
  readonly delegation: readonly { readonly from: string; readonly to: string }[];
  readonly paths: readonly DelegationPath[];
  readonly taskPairs: readonly TaskPair[];
}

/** Paths reported per starting plugin and kind, at most (dense delegation graphs stay readable). */
const MAX_PATHS_PER_START = 50;

export function buildGraph(config: LeashConfig): PluginGraph {
  const plugins: GraphPlugin[] = (config.plugins ?? []).map((p, index) => ({
    id: p.id,
    index,
    risk: p.risk,
    owner: p.owner,
    effects: new Set(p.grants.map((g) => g.effect)),
    grants: p.grants.map((g) => ({ audience: g.audience, effect: g.effect, scopes: g.scopes })),
  }));
  const byId = new Map(plugins.map((p) => [p.id, p]));
  const audiences = [...new Set(plugins.flatMap((p) => p.grants.map((g) => g.audience)))].sort();
  const edges = new Map<string, string[]>();
  const delegation: { from: string; to: string }[] = [];
  for (const p of config.plugins ?? []) {
    const targets = (p.delegate_to ?? []).filter((t) => byId.has(t) && t !== p.id);
    edges.set(p.id, targets);
    for (const t of targets) delegation.push({ from: p.id, to: t });
  }
  const maxDepth = config.settings.delegation.max_depth;
  const toxicRule = config.settings.delegation.toxic_combinations.find((r) => r.upstream === 'read-sensitive' && r.downstream === 'exfiltrate');

  const paths: DelegationPath[] = [];
  for (const root of plugins) {
    const reads = root.grants.filter((g) => g.effect === 'read' || g.effect === 'read-sensitive');
    if (reads.length === 0) continue;
    const sensitive = root.grants.find((g) => g.effect === 'read-sensitive');
    let toxicCount = 0;
    let writeCount = 0;
    // Depth-first over simple paths; the root is the principal, so a chain holds at most max_depth actors after it.
    const walk = (hops: string[]) => {
      if (hops.length - 1 >= maxDepth) return;
      for (const next of edges.get(hops[hops.length - 1]!) ?? []) {
        if (hops.includes(next)) continue;
        const chain = [...hops, next];
        const target = byId.get(next)!;
        if (sensitive && toxicCount < MAX_PATHS_PER_START) {
          const exfil = target.grants.find((g) => g.effect === 'exfiltrate');
          if (exfil) {
            toxicCount++;
            paths.push({
              kind: 'toxic',
              hops: chain,
              from: { plugin: root.id, audience: sensitive.audience, effect: 'read-sensitive' },
              to: { plugin: next, audience: exfil.audience, effect: 'exfiltrate' },
              blocking: toxicRule ? toxicRule.action : 'open',
              why: toxicRule
                ? `settings.delegation.toxic_combinations: read-sensitive upstream, exfiltrate downstream → ${toxicRule.action}`
                : 'no delegation toxic-combination rule covers read-sensitive → exfiltrate',
            });
          }
        }
        if (writeCount < MAX_PATHS_PER_START) {
          for (const w of target.grants.filter((g) => g.effect === 'write')) {
            const read = reads.find((r) => r.audience !== w.audience);
            if (!read || reads.some((r) => r.audience === w.audience)) continue;
            writeCount++;
            // A chain never reaches an API its root holds no grant for, and scopes only narrow.
            const rootGrant = root.grants.find((g) => g.audience === w.audience);
            const reachable = rootGrant ? w.scopes.filter((s) => rootGrant.scopes.includes(s)) : [];
            paths.push({
              kind: 'cross-write',
              hops: chain,
              from: { plugin: root.id, audience: read.audience, effect: read.effect },
              to: { plugin: next, audience: w.audience, effect: 'write' },
              blocking: reachable.length === 0 ? 'narrowing' : 'open',
              why:
                reachable.length === 0
                  ? `the chain's root '${root.id}' holds no grant for ${w.audience}${rootGrant ? ' with a common scope' : ''}: scope narrowing refuses the hop`
                  : `root '${root.id}' also holds ${w.audience} (${reachable.join(' ')}): the write goes through`,
            });
          }
        }
        walk(chain);
      }
    };
    walk([root.id]);
  }

  const taskRule = config.settings.tasks.toxic_combinations.find(
    (r) => (r.effects[0] === 'read-sensitive' && r.effects[1] === 'exfiltrate') || (r.effects[0] === 'exfiltrate' && r.effects[1] === 'read-sensitive'),
  );
  const exfiltrators = plugins.filter((p) => p.effects.has('exfiltrate')).map((p) => p.id);
  const taskPairs: TaskPair[] =
    exfiltrators.length === 0
      ? []
      : plugins
          .filter((p) => p.effects.has('read-sensitive'))
          .map((p) => ({
            reader: p.id,
            exfiltrators,
            blocking: taskRule ? taskRule.action : 'open',
            why: taskRule
              ? `settings.tasks.toxic_combinations: read-sensitive and exfiltrate in one task → ${taskRule.action}`
              : 'no task toxic-combination rule covers read-sensitive with exfiltrate',
          }));
  return { plugins, audiences, delegation, paths, taskPairs };
}
