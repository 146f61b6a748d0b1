import type { DecisionRollupRow } from '../store/records.js';
import type { DecisionHistory } from '../store/store.js';

/**
 * Evidence of use: what each plugin actually did, for the review's "use" rules (unused
 * plugins, grants and scopes; repeated denials; quota breaches; unanswered approvals).
 *
 * Today the only source is issuance (exchange and approval decisions in the audit log,
 * aggregated by the store). Usage records reported by resource servers (which scope was
 * really exercised, on which route) are a second source to come: a `UseEvidence` that reads
 * them returns the same summary shape (not built yet).
 */
export interface UseEvidence {
  /** Names the source in reports (`issuance`, later `usage-records`). */
  readonly source: string;
  collect(window: { readonly since: number; readonly until: number }): Promise<UseSummary>;
}

export interface ScopeUse {
  readonly count: number;
  readonly lastAt: number;
}

export interface AudienceUse {
  readonly count: number;
  readonly lastAt: number;
  readonly scopes: ReadonlyMap<string, ScopeUse>;
}

export interface PluginUse {
  /** Credentials issued in the window. */
  readonly issued: number;
  readonly lastIssuedAt: number | undefined;
  readonly audiences: ReadonlyMap<string, AudienceUse>;
  /** Denials in the window, by ERR_* reason. */
  readonly denied: ReadonlyMap<string, number>;
  readonly approvalsRequested: number;
  readonly approvalsDecided: number;
}

export interface UseSummary {
  readonly sources: readonly string[];
  readonly since: number;
  readonly until: number;
  /** The oldest evidence held (undefined: none). A window older than this proves no absence of use. */
  readonly oldestAt: number | undefined;
  readonly plugins: ReadonlyMap<string, PluginUse>;
}

type MutableAudience = { count: number; lastAt: number; scopes: Map<string, { count: number; lastAt: number }> };
type MutablePlugin = { issued: number; lastIssuedAt: number | undefined; audiences: Map<string, MutableAudience>; denied: Map<string, number>; approvalsRequested: number; approvalsDecided: number };

const emptyPlugin = (): MutablePlugin => ({ issued: 0, lastIssuedAt: undefined, audiences: new Map(), denied: new Map(), approvalsRequested: 0, approvalsDecided: 0 });

/** Build a summary from the store's grouped decision rows. */
export function summarize(rows: readonly DecisionRollupRow[], window: { since: number; until: number; oldestAt: number | undefined; sources: readonly string[] }): UseSummary {
  const plugins = new Map<string, MutablePlugin>();
  for (const r of rows) {
    if (r.plugin === undefined) continue;
    const p = plugins.get(r.plugin) ?? emptyPlugin();
    plugins.set(r.plugin, p);
    switch (r.type) {
      case 'exchange.issued': {
        p.issued += r.count;
        p.lastIssuedAt = Math.max(p.lastIssuedAt ?? 0, r.lastAt);
        if (r.audience === undefined) break;
        const a = p.audiences.get(r.audience) ?? { count: 0, lastAt: 0, scopes: new Map<string, { count: number; lastAt: number }>() };
        p.audiences.set(r.audience, a);
        a.count += r.count;
        a.lastAt = Math.max(a.lastAt, r.lastAt);
        for (const s of r.scopes) {
          const u = a.scopes.get(s) ?? { count: 0, lastAt: 0 };
          a.scopes.set(s, { count: u.count + r.count, lastAt: Math.max(u.lastAt, r.lastAt) });
        }
        break;
      }
      case 'exchange.denied':
        p.denied.set(r.reason ?? 'unknown', (p.denied.get(r.reason ?? 'unknown') ?? 0) + r.count);
        break;
      case 'approval.requested':
        p.approvalsRequested += r.count;
        break;
      case 'approval.approved':
      case 'approval.denied':
        p.approvalsDecided += r.count;
        break;
    }
  }
  return { sources: window.sources, since: window.since, until: window.until, oldestAt: window.oldestAt, plugins };
}

/** Issuance evidence from the store: the audit log's exchange and approval decisions, aggregated by the backend. */
export function issuanceEvidence(history: DecisionHistory): UseEvidence {
  return {
    source: 'issuance',
    async collect({ since, until }) {
      const { rows, oldestAt } = await history.decisionRollup(since, until);
      return summarize(rows, { since, until, oldestAt, sources: ['issuance'] });
    },
  };
}
