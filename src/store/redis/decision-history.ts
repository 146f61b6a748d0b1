import { DecisionFold } from '../decision-rollup.js';
import type { DecisionRollupRow } from '../records.js';
import type { AuditLog, DecisionHistory } from '../store.js';

/** Redis cannot group: the log is read in pages and folded here (the SQLite store does it in SQL). */
export class RedisDecisionHistory implements DecisionHistory {
  readonly #audit: AuditLog;

  constructor(audit: AuditLog) {
    this.#audit = audit;
  }

  async decisionRollup(since: number, until: number): Promise<{ rows: DecisionRollupRow[]; oldestAt: number | undefined }> {
    const fold = new DecisionFold();
    let oldestAt: number | undefined;
    // Whole UTC days, as the SQLite rollup counts them.
    const from = Math.floor(since / 86_400_000) * 86_400_000;
    const to = (Math.floor((until - 1) / 86_400_000) + 1) * 86_400_000;
    for (let seq = 1; ;) {
      const page = await this.#audit.read(seq, 1000);
      if (page.length === 0) break;
      oldestAt ??= page[0]!.ts;
      for (const r of page) if (r.ts >= from && r.ts < to) fold.add(r);
      seq = page[page.length - 1]!.seq + 1;
      if (page.length < 1000) break;
    }
    return { rows: fold.rows(), oldestAt };
  }
}
