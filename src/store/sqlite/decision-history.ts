import type Database from 'better-sqlite3';
import { DECISION_TYPES, type DecisionRollupRow } from '../records.js';
import type { DecisionHistory } from '../store.js';
import type { SqliteHandle } from './handle.js';

/** Audit seqs folded into the decision rollup per write transaction: short, so appends interleave. */
const ROLLUP_BATCH = 20_000;

/** Fold audit decisions with `from < seq <= to` into per-day groups (type, plugin, denial reason, issued audience and scopes). */
const FOLD_SQL = `
  INSERT INTO decision_rollup (day, type, plugin, reason, audience, scopes, n, last_at)
  SELECT ts / 86400000,
         type,
         coalesce(json_extract(event, '$.plugin'), ''),
         CASE WHEN type = 'exchange.denied' THEN coalesce(json_extract(event, '$.reason'), '') ELSE '' END,
         CASE WHEN type = 'exchange.issued' THEN coalesce(json_extract(event, '$.audience'), '') ELSE '' END,
         CASE WHEN type = 'exchange.issued' THEN coalesce(json_extract(event, '$.scopes'), '') ELSE '' END,
         count(*),
         max(ts)
    FROM audit
   WHERE seq > ? AND seq <= ?
     AND type IN (${DECISION_TYPES.map((t) => `'${t}'`).join(', ')})
   GROUP BY 1, 2, 3, 4, 5, 6
  ON CONFLICT (day, type, plugin, reason, audience, scopes) DO UPDATE SET n = n + excluded.n, last_at = max(last_at, excluded.last_at)`;

/** The days in the window, summed over days. */
const ROLLUP_SQL = `
  SELECT type, plugin, reason, audience, scopes, sum(n) AS n, max(last_at) AS last_at
    FROM decision_rollup
   WHERE day >= ? AND day <= ?
   GROUP BY 1, 2, 3, 4, 5`;

type RollupStatements = { cursor: Database.Statement; setCursor: Database.Statement; fold: Database.Statement; read: Database.Statement; oldest: Database.Statement };

export class SqliteDecisionHistory implements DecisionHistory {
  readonly #h: SqliteHandle;
  /** Prepared on first use: only the review runs them. */
  #s: RollupStatements | undefined;

  constructor(h: SqliteHandle) {
    this.#h = h;
  }

  /**
   * From the per-day rollup, brought up to date first: audit rows after the rollup's cursor
   * are folded in SQL (each event's JSON parsed once, ever), in short write transactions so
   * appends are never held up for long. A store's first review folds its whole history;
   * later ones only what was appended since. Day granularity: the window's first and last
   * days count whole.
   */
  async decisionRollup(since: number, until: number): Promise<{ rows: DecisionRollupRow[]; oldestAt: number | undefined }> {
    const h = this.#h;
    const db = h.db;
    const r = (this.#s ??= {
      cursor: db.prepare('SELECT seq FROM decision_rollup_cursor WHERE id = 1'),
      setCursor: db.prepare('INSERT INTO decision_rollup_cursor (id, seq) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET seq = excluded.seq'),
      fold: db.prepare(FOLD_SQL),
      read: db.prepare(ROLLUP_SQL),
      oldest: db.prepare('SELECT ts FROM audit ORDER BY seq LIMIT 1'),
    });
    const head = h.run('decisionRollup', () => h.auditHeadRow()?.seq ?? 0);
    for (;;) {
      const done = h.run('decisionRollup', () =>
        db
          .transaction(() => {
            // Re-read inside the write lock: another process may have folded meanwhile.
            const from = (r.cursor.get() as { seq: number } | undefined)?.seq ?? 0;
            if (from >= head) return true;
            const to = Math.min(head, from + ROLLUP_BATCH);
            r.fold.run(from, to);
            r.setCursor.run(to);
            return to >= head;
          })
          .immediate(),
      );
      if (done) break;
      // Let appends waiting for the write lock in.
      await new Promise((resolve) => setImmediate(resolve));
    }
    return h.run('decisionRollup', () => {
      const rows = r.read.all(Math.floor(since / 86_400_000), Math.floor((until - 1) / 86_400_000)) as {
        type: DecisionRollupRow['type'];
        plugin: string;
        reason: string;
        audience: string;
        scopes: string;
        n: number;
        last_at: number;
      }[];
      const oldest = r.oldest.get() as { ts: number } | undefined;
      return {
        rows: rows.map((x) => ({
          type: x.type,
          plugin: x.plugin || undefined,
          reason: x.reason || undefined,
          audience: x.audience || undefined,
          scopes: x.scopes ? (JSON.parse(x.scopes) as unknown[]).filter((v): v is string => typeof v === 'string') : [],
          count: x.n,
          lastAt: x.last_at,
        })),
        oldestAt: oldest?.ts,
      };
    });
  }
}
