import type Database from 'better-sqlite3';
import type { IssuedToken } from '../records.js';
import { taskTokenLimitReached, type IssueLimit, type TokenIndex } from '../store.js';
import { GroupCommit, type ItemOutcome } from './group-commit.js';
import { isConstraintError, type SqliteHandle } from './handle.js';

/* The issued-token index (by id only, never the credential). On the hot path: not fsynced. */

type TokenRow = {
  jti: string;
  plugin: string;
  task: string | null;
  audience: string;
  scopes: string;
  kind: string;
  kid: string | null;
  issued_at: number;
  expires_at: number;
  jkt: string | null;
};

function prepare(db: Database.Database) {
  return {
    insert: db.prepare('INSERT INTO issued_tokens (jti, plugin, task, audience, scopes, kind, kid, issued_at, expires_at, jkt) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)'),
    get: db.prepare('SELECT * FROM issued_tokens WHERE jti = ?'),
    ofTask: db.prepare('SELECT * FROM issued_tokens WHERE task = ? ORDER BY issued_at, jti'),
    liveOfPlugin: db.prepare('SELECT * FROM issued_tokens WHERE plugin = ? AND expires_at > ? ORDER BY issued_at, jti'),
    countOfTask: db.prepare('SELECT count(*) AS n FROM issued_tokens WHERE task = ?'),
    countUp: db.prepare('INSERT INTO task_token_counts (task, plugin, n) VALUES (?, ?, 1) ON CONFLICT (task, plugin) DO UPDATE SET n = n + 1'),
    // Takes back the count of a row the index refused (a duplicate jti): the batch goes on.
    countDown: db.prepare('UPDATE task_token_counts SET n = n - 1 WHERE task = ? AND plugin = ?'),
    // Counts up only below the limit: 0 changes means the limit is reached (the first write of the transaction takes the lock).
    countUpBelow: db.prepare('INSERT INTO task_token_counts (task, plugin, n) SELECT ?, ?, 1 WHERE ? > 0 ON CONFLICT (task, plugin) DO UPDATE SET n = n + 1 WHERE n < ?'),
    // Through the expiry index, oldest first, a bounded batch per statement (the event loop waits for each).
    purge: db.prepare('DELETE FROM issued_tokens WHERE rowid IN (SELECT rowid FROM issued_tokens WHERE expires_at < ? ORDER BY expires_at LIMIT ?)'),
    countOfTaskPlugin: db.prepare('SELECT n FROM task_token_counts WHERE task = ? AND plugin = ?'),
  };
}

type Issue = { readonly t: IssuedToken; readonly scopes: string; readonly limit: number | undefined };

export class SqliteTokens implements TokenIndex {
  readonly #h: SqliteHandle;
  readonly #s: ReturnType<typeof prepare>;
  /** The rows of one turn's exchanges in one transaction; each waits for its commit. */
  readonly #group: GroupCommit<Issue, void>;

  constructor(h: SqliteHandle) {
    this.#h = h;
    const s = (this.#s = prepare(h.db));
    /**
     * Each row and its task's count together: the quota never sees one without the other,
     * and rows are counted in order, so of concurrent exchanges in one task past the limit
     * only those below it are recorded. A row refused (limit, duplicate jti) leaves the
     * others of the batch to commit.
     */
    const tx = h.db.transaction((batch: readonly Issue[]): ItemOutcome<void>[] => {
      const out: ItemOutcome<void>[] = [];
      for (const { t, scopes, limit } of batch) {
        if (t.task !== undefined && limit !== undefined) {
          if (s.countUpBelow.run(t.task, t.plugin, limit, limit).changes === 0) {
            out.push({ ok: false, error: taskTokenLimitReached(limit) });
            continue;
          }
        } else if (t.task !== undefined) s.countUp.run(t.task, t.plugin);
        try {
          s.insert.run(t.jti, t.plugin, t.task ?? null, t.audience, scopes, t.kind, t.kid ?? null, t.issuedAt, t.expiresAt, t.jkt ?? null);
          out.push({ ok: true, value: undefined });
        } catch (err) {
          // A refused statement is rolled back alone; the transaction stays open for the rest.
          if (!isConstraintError(err)) throw err;
          if (t.task !== undefined) s.countDown.run(t.task, t.plugin);
          out.push({ ok: false, error: new TypeError('recordIssued: a token with this jti is already recorded', { cause: err }) });
        }
      }
      return out;
    });
    // IMMEDIATE: the write lock from the start, so the count read by the limit is the one committed with the row.
    const insertTx = tx.immediate.bind(tx);
    this.#group = new GroupCommit((batch) => h.run('recordIssued', () => insertTx(batch)));
  }

  async recordIssued(t: IssuedToken, limit?: IssueLimit): Promise<void> {
    return this.#group.submit({ t, scopes: JSON.stringify(t.scopes), limit: limit?.tokensPerTask });
  }

  async getIssued(jti: string): Promise<IssuedToken | undefined> {
    const row = this.#h.run('getIssued', () => this.#s.get.get(jti) as TokenRow | undefined);
    return row && toToken(row);
  }

  async listIssuedForTask(taskId: string): Promise<IssuedToken[]> {
    const rows = this.#h.run('listIssuedForTask', () => this.#s.ofTask.all(taskId) as TokenRow[]);
    return rows.map(toToken);
  }

  async listLiveIssuedForPlugin(plugin: string, now: number): Promise<IssuedToken[]> {
    const rows = this.#h.run('listLiveIssuedForPlugin', () => this.#s.liveOfPlugin.all(plugin, now) as TokenRow[]);
    return rows.map(toToken);
  }

  async countIssuedForTask(taskId: string): Promise<number> {
    return this.#h.run('countIssuedForTask', () => (this.#s.countOfTask.get(taskId) as { n: number }).n);
  }

  async purgeIssued(before: number, limit: number): Promise<number> {
    return this.#h.run('purgeIssued', () => this.#s.purge.run(before, limit).changes);
  }

  async countIssuedForTaskPlugin(taskId: string, plugin: string): Promise<number> {
    return this.#h.run('countIssuedForTaskPlugin', () => (this.#s.countOfTaskPlugin.get(taskId, plugin) as { n: number } | undefined)?.n ?? 0);
  }
}

function toToken(r: TokenRow): IssuedToken {
  return {
    jti: r.jti,
    plugin: r.plugin,
    task: r.task ?? undefined,
    audience: r.audience,
    scopes: JSON.parse(r.scopes) as string[],
    kind: r.kind,
    kid: r.kid ?? undefined,
    issuedAt: r.issued_at,
    expiresAt: r.expires_at,
    jkt: r.jkt ?? undefined,
  };
}
