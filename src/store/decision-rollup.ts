import { DECISION_TYPES, type AuditRecord, type DecisionRollupRow } from './records.js';

const TYPES: ReadonlySet<string> = new Set(DECISION_TYPES);
const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

/**
 * Fold audit records into decision groups, for backends that cannot aggregate themselves
 * (Redis): the same grouping SQLite does in SQL (see sqlite/decision-history.ts).
 */
export class DecisionFold {
  readonly #groups = new Map<string, { row: Omit<DecisionRollupRow, 'count' | 'lastAt'>; count: number; lastAt: number }>();

  add(r: AuditRecord): void {
    if (!TYPES.has(r.type)) return;
    const e = r.event;
    const issued = r.type === 'exchange.issued';
    const row = {
      type: r.type as DecisionRollupRow['type'],
      plugin: str(e.plugin),
      reason: r.type === 'exchange.denied' ? str(e.reason) : undefined,
      audience: issued ? str(e.audience) : undefined,
      scopes: issued && Array.isArray(e.scopes) ? e.scopes.filter((s): s is string => typeof s === 'string') : [],
    };
    const key = JSON.stringify([row.type, row.plugin, row.reason, row.audience, row.scopes]);
    const g = this.#groups.get(key);
    if (g) {
      g.count++;
      g.lastAt = Math.max(g.lastAt, r.ts);
    } else {
      this.#groups.set(key, { row, count: 1, lastAt: r.ts });
    }
  }

  rows(): DecisionRollupRow[] {
    return [...this.#groups.values()].map((g) => ({ ...g.row, count: g.count, lastAt: g.lastAt }));
  }
}
