import { afterEach, describe, expect, it } from '@jest/globals';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openSqliteStore } from '../../src/store/sqlite/sqlite-store.js';
import type { UsageBatch } from '../../src/store/usage-store.js';
import { systemClock } from '../../src/time/clock.js';
import { CRM_RS_SECRET, basic, ticketsKey, withResourceServers } from '../http/introspect-support.js';
import { CRM_API, startTestBroker, type TestBroker } from '../support/broker.js';

/**
 * `settings.usage.commit_window_ms`: a resource server's batches that arrive within the
 * window are written in one store transaction (reports of the same token and route share a
 * row), and every batch is answered only after that write.
 * `settings.usage.flush_interval_ms`: the per-minute call counts of committed batches are
 * held and written together, one row per token, route and minute.
 */

const cleanup: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

async function brokerWithWindow(windowMs: number, flushMs = 0, failWrites?: (b: UsageBatch) => boolean): Promise<{ tb: TestBroker; writes: UsageBatch[]; logs: string[] }> {
  const dir = await mkdtemp(join(tmpdir(), 'leash-window-'));
  cleanup.push(() => rm(dir, { recursive: true, force: true }));
  const clock = systemClock;
  const store = openSqliteStore({ path: join(dir, 'leash.db'), clock });
  const writes: UsageBatch[] = [];
  const ingest = store.ingestUsage.bind(store);
  store.ingestUsage = async (b: UsageBatch) => {
    // As written then: a failed write's rows are held again, and later reports add to them.
    writes.push(structuredClone(b));
    if (failWrites?.(b)) throw new Error('store unavailable (test)');
    return ingest(b);
  };
  const tickets = await ticketsKey();
  const logs: string[] = [];
  const tb = await startTestBroker({
    dir,
    broker: { clock, store, write: (line: string) => void logs.push(line) },
    patch: withResourceServers(tickets, (cfg) => (cfg.settings.usage = { ...cfg.settings.usage, commit_window_ms: windowMs, flush_interval_ms: flushMs })),
  });
  cleanup.push(() => tb.close());
  return { tb, writes, logs };
}

const record = (over: Record<string, unknown> = {}) => ({ at: Date.now(), jti: 'jti-window', audience: CRM_API, method: 'GET', route: '/contacts/:id', status: 200, bytes: 10, ...over });
const post = (tb: TestBroker, records: unknown[]) =>
  fetch(`${tb.url}/usage`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: basic('crm-api', CRM_RS_SECRET) }, body: JSON.stringify({ records }) });

describe('usage commit window', () => {
  it('batches of one server within the window: one store write, rows shared, each batch answered after it', async () => {
    const { tb, writes } = await brokerWithWindow(300);
    const started = performance.now();
    const answers = await Promise.all(
      [0, 40, 80].map(async (delay) => {
        await new Promise((r) => setTimeout(r, delay));
        const res = await post(tb, [record(), record({ route: '/contacts' })]);
        return { status: res.status, body: (await res.json()) as { accepted: number }, at: performance.now() - started };
      }),
    );
    expect(answers.map((a) => [a.status, a.body.accepted])).toEqual([
      [200, 2],
      [200, 2],
      [200, 2],
    ]);
    expect(writes).toHaveLength(1);
    // Six calls, two (jti, route, minute) rows: the window's reports aggregated before the write.
    expect(writes[0]!.aggregates.map((a) => [a.route, a.calls])).toEqual([
      ['/contacts/:id', 3],
      ['/contacts', 3],
    ]);
    // Nobody was answered before the window closed and the write committed.
    expect(Math.min(...answers.map((a) => a.at))).toBeGreaterThanOrEqual(290);
  });

  it('0: one write per event-loop turn, so batches sent one after another are written one by one', async () => {
    const { tb, writes } = await brokerWithWindow(0);
    for (let i = 0; i < 3; i++) expect((await post(tb, [record()])).status).toBe(200);
    expect(writes).toHaveLength(3);
  });

  it('flush interval: the call counts of batches committed one by one are written once, together; what decides is not held', async () => {
    const { tb, writes } = await brokerWithWindow(0, 1000);
    for (let i = 0; i < 3; i++) expect((await post(tb, [record(), record({ route: '/contacts' })])).status).toBe(200);
    // Answered before the volume write: three window writes carried no call counts.
    expect(writes).toHaveLength(3);
    expect(writes.every((w) => w.aggregates.length === 0)).toBe(true);
    // The interval's timer writes them (no idle() here), once.
    for (let waited = 0; writes.length < 4 && waited < 3000; waited += 50) await new Promise((r) => setTimeout(r, 50));
    expect(writes).toHaveLength(4);
    expect(writes[3]!.aggregates.map((a) => [a.route, a.calls, a.bytes])).toEqual([
      ['/contacts/:id', 3, 30],
      ['/contacts', 3, 30],
    ]);
    expect(writes[3]!.uses.length + writes[3]!.taskDeltas.length + writes[3]!.marks.length).toBe(0);
  });

  it('flush interval: a failed volume write keeps its counts for the next one; a graceful stop writes what is held', async () => {
    let failing = true;
    const { tb, writes, logs } = await brokerWithWindow(0, 200, (b) => failing && b.aggregates.length > 0);
    expect((await post(tb, [record(), record()])).status).toBe(200);
    await tb.broker.usage.idle();
    expect(logs.some((l) => l.includes('writing usage aggregates failed; kept for the next write'))).toBe(true);
    expect((await post(tb, [record()])).status).toBe(200);
    failing = false;
    await tb.broker.usage.idle();
    const written = writes.filter((w) => w.aggregates.length > 0);
    // Two failed attempts, then one write with all three calls: none lost, none counted twice.
    expect(written.at(-1)!.aggregates.map((a) => a.calls)).toEqual([3]);
    expect(written.slice(0, -1).every((w) => w.aggregates[0]!.calls <= 2)).toBe(true);
    expect((await post(tb, [record()])).status).toBe(200);
    const before = writes.length;
    await tb.close();
    expect(writes.length).toBe(before + 1);
    expect(writes.at(-1)!.aggregates.map((a) => a.calls)).toEqual([1]);
  });
});
