import { afterEach, describe, expect, it } from '@jest/globals';
import { openSqliteStore } from '../../src/store/sqlite/sqlite-store.js';
import { TOKEN_RETENTION_MS } from '../../src/store/shared/retention.js';
import { TOKEN_PURGE_BATCH, TokenRetention } from '../../src/store/token-retention.js';
import { ManualClock } from '../../src/time/clock.js';
import { aToken } from './describe-store.js';

/*
 * Issue 18, goal 6: the issued-token index stays bounded. The pass deletes what expired past
 * the retention, in batches with the event loop free between them, and keeps what a live
 * task may still need.
 */
describe('token retention pass (SQLite)', () => {
  const clock = new ManualClock(Date.UTC(2026, 11, 5, 12));
  const stores: { close(): Promise<void> }[] = [];
  afterEach(async () => {
    for (const s of stores.splice(0)) await s.close();
  });

  it('deletes tokens expired longer ago than the retention, in batches, and keeps the rest', async () => {
    const store = openSqliteStore({ path: ':memory:', clock });
    stores.push(store);
    const now = clock.now();
    const insert = store.database.prepare("INSERT INTO issued_tokens (jti, plugin, task, audience, scopes, kind, issued_at, expires_at) VALUES (?, 'p', 'tsk_old', 'aud', '[]', 'jwt', ?, ?)");
    const expired = 2 * TOKEN_PURGE_BATCH + 17;
    store.database.transaction(() => {
      for (let i = 0; i < expired; i++) insert.run(`old-${i}`, now - TOKEN_RETENTION_MS - 600_000, now - TOKEN_RETENTION_MS - 300_000 + i);
    })();
    const recent = aToken(clock, { issuedAt: now - 600_000, expiresAt: now - 300_000 }); // expired, but within the retention
    const live = aToken(clock, { expiresAt: now + 300_000 });
    await store.recordIssued(recent);
    await store.recordIssued(live);

    // The event loop gets turns during the pass: a timer set before it fires before it ends.
    let ticks = 0;
    const ticker = setInterval(() => ticks++, 0);
    const pass = new TokenRetention(store, clock, { intervalMs: 60_000, taskMaxTtlSeconds: 3600 });
    let purged: number;
    try {
      purged = await pass.sweep();
    } finally {
      clearInterval(ticker);
    }
    expect(purged).toBe(expired);
    expect(ticks).toBeGreaterThan(0);
    expect((store.database.prepare('SELECT count(*) AS n FROM issued_tokens').get() as { n: number }).n).toBe(2);
    expect(await store.getIssued(recent.jti)).toEqual(recent);
    expect(await store.getIssued(live.jti)).toEqual(live);
    // The quota's counts are not the rows: a task's count survives its tokens' retention.
    expect(await pass.sweep()).toBe(0);
  });

  it('keeps tokens as long as the longest task may run, when that is longer than the retention', async () => {
    const store = openSqliteStore({ path: ':memory:', clock });
    stores.push(store);
    const now = clock.now();
    const t = aToken(clock, { issuedAt: now - TOKEN_RETENTION_MS - 7200_000, expiresAt: now - TOKEN_RETENTION_MS - 3600_000 });
    await store.recordIssued(t);
    const longTasks = new TokenRetention(store, clock, { intervalMs: 60_000, taskMaxTtlSeconds: TOKEN_RETENTION_MS / 1000 + 86400 });
    expect(await longTasks.sweep()).toBe(0);
    expect(await store.getIssued(t.jti)).toEqual(t);
    expect(await new TokenRetention(store, clock, { intervalMs: 60_000, taskMaxTtlSeconds: 3600 }).sweep()).toBe(1);
  });
});
