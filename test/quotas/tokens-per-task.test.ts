import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Store } from '../../src/store/store.js';
import { openSqliteStore } from '../../src/store/sqlite/sqlite-store.js';
import { ManualClock } from '../../src/time/clock.js';
import { CRM_API, EXCHANGE, JWT_TYPE, startTestBroker, type TestBroker } from '../support/broker.js';

/*
 * Issue 18: the tokens-per-task quota listed every token of the task on every exchange (30
 * exchanges/s after 10,000 tokens). It reads a counter kept with the token index now; the
 * real SQLite store is watched for listings of a task's tokens on the exchange path.
 */
describe('tokens_per_task is counted, not listed', () => {
  let tb: TestBroker;
  const clock = new ManualClock(Date.now());
  const listings: string[] = [];

  beforeAll(async () => {
    const dir = await mkdtemp(join(tmpdir(), 'leash-quota-'));
    const real = openSqliteStore({ path: join(dir, 'watched.db'), clock });
    const watched = new Proxy(real, {
      get(target, prop) {
        if (prop === 'listIssuedForTask') listings.push(String(prop));
        const value: unknown = Reflect.get(target, prop);
        return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
      },
    }) as unknown as Store;
    tb = await startTestBroker({
      dir,
      broker: { clock, store: watched },
      patch: (cfg) => {
        cfg.plugins.find((p: { id: string }) => p.id === 'crm-reader').quotas = { tokens_per_task: 10_003, on_breach: 'refuse' };
      },
    });
  });
  afterAll(async () => tb.close());

  const exchange = async (task: string) =>
    tb.exchange({
      grant_type: EXCHANGE,
      client_id: 'crm-reader',
      subject_token: await tb.cluster.saToken({ sa: 'crm-reader', nowSeconds: Math.floor(clock.now() / 1000) }),
      subject_token_type: JWT_TYPE,
      resource: CRM_API,
      task,
    });

  it('10,000 tokens already in the task: the quota still holds at its limit, without listing the task', async () => {
    const task = await tb.openTask({ plugins: ['crm-reader'] });
    const store = tb.broker.testing.store;
    const now = clock.now();
    for (let i = 0; i < 10_000; i++) {
      await store.recordIssued({
        jti: `hist-${i}`,
        plugin: 'crm-reader',
        task,
        audience: CRM_API,
        scopes: ['contacts:read'],
        kind: 'jwt',
        kid: undefined,
        issuedAt: now,
        expiresAt: now + 60_000,
        jkt: undefined,
      });
    }
    // Tokens of the same plugin in another task do not count here.
    await store.recordIssued({
      jti: 'elsewhere',
      plugin: 'crm-reader',
      task: 'tsk_elsewhere',
      audience: CRM_API,
      scopes: ['contacts:read'],
      kind: 'jwt',
      kid: undefined,
      issuedAt: now,
      expiresAt: now + 60_000,
      jkt: undefined,
    });
    listings.length = 0;
    for (let i = 0; i < 3; i++) expect((await exchange(task)).status).toBe(200);
    const over = await exchange(task);
    expect(over.status).toBe(429);
    expect(over.body).toMatchObject({ error_description: expect.stringContaining('already 10003 credentials in this task (limit 10003)') });
    expect(listings).toEqual([]);
    expect(await store.countIssuedForTaskPlugin(task, 'crm-reader')).toBe(10_003);
  });
});
