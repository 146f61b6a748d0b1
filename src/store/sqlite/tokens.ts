import type Database from 'better-sqlite3';
import type { IssuedToken } from '../records.js';
import type { TokenIndex } from '../store.js';
import { isConstraintError, type SqliteHandle } from './handle.js';

/* The issued-token index (by id only, never the credential). On the hot path: not fsynced, group-committed per turn. */

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
  };
}

type PendingRow = { readonly t: IssuedToken; readonly scopes: string; readonly resolve: () => void; readonly reject: (err: unknown) => void };

export class SqliteTokens implements TokenIndex {
  readonly #h: SqliteHandle;
  readonly #s: ReturnType<typeof prepare>;
  readonly #insertAll: (rows: readonly PendingRow[]) => Array<Error | undefined>;
  #pending: PendingRow[] = [];

  constructor(h: SqliteHandle) {
    this.#h = h;
    const s = (this.#s = prepare(h.db));
    this.#insertAll = h.db.transaction((rows: readonly PendingRow[]) =>
      rows.map(({ t, scopes }) => {
        try {
          s.insert.run(t.jti, t.plugin, t.task ?? null, t.audience, scopes, t.kind, t.kid ?? null, t.issuedAt, t.expiresAt, t.jkt ?? null);
          return undefined;
        } catch (err) {
          // A constraint failure undoes that statement only: the others of the group stand.
          if (isConstraintError(err)) return new TypeError('recordIssued: a token with this jti is already recorded', { cause: err });
          throw err;
        }
      }),
    );
  }

  /**
   * Group commit: the rows of every exchange that reaches this point in one event-loop turn
   * are written in one transaction at the end of the turn, and each call resolves only once
   * that transaction has committed (one WAL commit per turn instead of one per exchange).
   */
  recordIssued(t: IssuedToken): Promise<void> {
    const scopes = JSON.stringify(t.scopes);
    return new Promise<void>((resolve, reject) => {
      this.#pending.push({ t, scopes, resolve, reject });
      if (this.#pending.length === 1) setImmediate(() => this.#flush());
    });
  }

  #flush(): void {
    const rows = this.#pending;
    this.#pending = [];
    let outcomes: Array<Error | undefined>;
    try {
      outcomes = this.#h.run('recordIssued', () => this.#insertAll(rows));
    } catch (err) {
      for (const r of rows) r.reject(err);
      return;
    }
    rows.forEach((r, i) => (outcomes[i] ? r.reject(outcomes[i]) : r.resolve()));
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
