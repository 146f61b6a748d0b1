import type { IssuedToken } from '../records.js';
import { taskTokenLimitReached, type IssueLimit, type TokenIndex } from '../store.js';
import { closedError, type RedisConnection } from './connection.js';
import { RECORD_ISSUED } from './redis-scripts.js';

/*
 * The issued-token index: one JSON string per jti (kept past expiry by a margin), and
 * sorted sets of the jtis of each task (by issue time) and each plugin (by expiry).
 */

type TokenJson = Omit<IssuedToken, 'task' | 'kid' | 'jkt'> & { task: string | null; kid: string | null; jkt: string | null };

export class RedisTokens implements TokenIndex {
  readonly #c: RedisConnection;
  /** Records outlive their expiry by this much (clock skew, late introspection). */
  readonly #marginMs: number;
  /** The per-task index (the tokens-per-task quota) lives this long past its last token. */
  readonly #taskIndexRetentionMs: number;

  constructor(c: RedisConnection, marginMs: number, taskIndexRetentionMs: number) {
    this.#c = c;
    this.#marginMs = marginMs;
    this.#taskIndexRetentionMs = taskIndexRetentionMs;
  }

  async recordIssued(t: IssuedToken, limit?: IssueLimit): Promise<void> {
    const c = this.#c;
    const now = c.clock.now();
    const json = JSON.stringify(tokenJson(t));
    const ttl = Math.max(1, t.expiresAt - now + this.#marginMs);
    const recorded = await c.call('recordIssued', () =>
      RECORD_ISSUED.run(
        c.client,
        [
          c.k.token(t.jti),
          t.task === undefined ? c.k.tokensOfTask('') : c.k.tokensOfTask(t.task),
          c.k.tokensOfPlugin(t.plugin),
          t.task === undefined ? c.k.tokenCountsOfTask('') : c.k.tokenCountsOfTask(t.task),
        ],
        [
          json,
          ttl,
          t.issuedAt,
          t.jti,
          t.expiresAt,
          t.task === undefined ? '0' : '1',
          ttl + this.#taskIndexRetentionMs,
          now - this.#marginMs,
          t.plugin,
          c.k.token(''),
          limit?.tokensPerTask === undefined ? '' : String(limit.tokensPerTask),
        ],
      ),
    );
    if (recorded === -1) throw taskTokenLimitReached(limit!.tokensPerTask!);
    if (recorded !== 1) throw new TypeError('recordIssued: a token with this jti is already recorded');
  }

  async getIssued(jti: string): Promise<IssuedToken | undefined> {
    const c = this.#c;
    const raw = await c.call('getIssued', () => c.client.get(c.k.token(jti)));
    return raw === null ? undefined : fromTokenJson(raw);
  }

  async listIssuedForTask(taskId: string): Promise<IssuedToken[]> {
    const c = this.#c;
    return c.call('listIssuedForTask', async () => {
      const jtis = await c.client.zrange(c.k.tokensOfTask(taskId), '0', '-1');
      return this.#tokens(jtis);
    });
  }

  async listLiveIssuedForPlugin(plugin: string, now: number): Promise<IssuedToken[]> {
    const c = this.#c;
    return c.call('listLiveIssuedForPlugin', async () => {
      const jtis = await c.client.zrangebyscore(c.k.tokensOfPlugin(plugin), `(${now}`, '+inf');
      const tokens = (await this.#tokens(jtis)).filter((t) => t.expiresAt > now);
      return tokens.sort((a, b) => a.issuedAt - b.issuedAt || (a.jti < b.jti ? -1 : a.jti > b.jti ? 1 : 0));
    });
  }

  async countIssuedForTask(taskId: string): Promise<number> {
    const c = this.#c;
    return c.call('countIssuedForTask', () => c.client.zcard(c.k.tokensOfTask(taskId)));
  }

  /** Token records expire by TTL (expiry + margin) and task indexes by theirs: nothing to delete. */
  async purgeIssued(_before: number, _limit: number): Promise<number> {
    if (this.#c.closed) throw closedError('purgeIssued');
    return 0;
  }

  async countIssuedForTaskPlugin(taskId: string, plugin: string): Promise<number> {
    const c = this.#c;
    return c.call('countIssuedForTaskPlugin', async () => {
      const [n, counted] = await Promise.all([c.client.hget(c.k.tokenCountsOfTask(taskId), plugin), c.client.exists(c.k.tokenCountsOfTask(taskId))]);
      if (counted === 1) return n === null ? 0 : Number(n);
      // A task last recorded before the counts existed (its next token counts it): read its index.
      return (await this.listIssuedForTask(taskId)).filter((t) => t.plugin === plugin).length;
    });
  }

  async #tokens(jtis: string[]): Promise<IssuedToken[]> {
    const c = this.#c;
    const out: IssuedToken[] = [];
    for (let i = 0; i < jtis.length; i += 500) {
      const batch = jtis.slice(i, i + 500);
      const raws = await c.client.mget(...batch.map((j) => c.k.token(j)));
      // A record past its retention is gone while its index entry lingers: skip it.
      for (const raw of raws) if (raw !== null) out.push(fromTokenJson(raw));
    }
    return out;
  }
}

function tokenJson(t: IssuedToken): TokenJson {
  return {
    jti: t.jti,
    plugin: t.plugin,
    task: t.task ?? null,
    audience: t.audience,
    scopes: [...t.scopes],
    kind: t.kind,
    kid: t.kid ?? null,
    issuedAt: t.issuedAt,
    expiresAt: t.expiresAt,
    jkt: t.jkt ?? null,
  };
}

function fromTokenJson(raw: string): IssuedToken {
  const j = JSON.parse(raw) as TokenJson;
  return { ...j, task: j.task ?? undefined, kid: j.kid ?? undefined, jkt: j.jkt ?? undefined };
}
