import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'node:net';
import { ConfigError } from '../../src/config/config-error.js';
import { parseConfig } from '../../src/config/load.js';
import { createLogger } from '../../src/log/logger.js';
import { openSqliteStore } from '../../src/store/sqlite/sqlite-store.js';
import type { Store } from '../../src/store/store.js';
import { CRM_API, EXCHANGE, JWT_TYPE, startTestBroker, type TestBroker } from '../support/broker.js';
import { waitFor } from '../support/wait.js';
import { patched } from '../config/fixtures.js';

/**
 * A real SQLite store whose task reads can be held, as a slow backend would: an exchange
 * naming a task stops in the pipeline (before quotas, policy, signing) until released.
 */
function holdableStore(inner: Store): Store & { hold(): void; release(): void; readonly waiting: number } {
  let gate: Promise<void> | undefined;
  let open: (() => void) | undefined;
  let waiting = 0;
  const controls = {
    hold() {
      gate = new Promise<void>((r) => (open = r));
    },
    release() {
      gate = undefined;
      open?.();
    },
    get waiting() {
      return waiting;
    },
  };
  return new Proxy(inner, {
    get(target, prop) {
      if (prop in controls) return Reflect.get(controls, prop) as unknown;
      const value = Reflect.get(target, prop, target) as unknown;
      if (typeof value !== 'function') return value;
      if (prop !== 'getTask') return value.bind(target);
      return async (...args: unknown[]) => {
        if (gate) {
          waiting += 1;
          try {
            await gate;
          } finally {
            waiting -= 1;
          }
        }
        return (value as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  }) as Store & { hold(): void; release(): void; readonly waiting: number };
}

const QUEUE_TIMEOUT_MS = 400;

describe('admission control: overload is refused at once, not queued', () => {
  let dir: string;
  let tb: TestBroker;
  let store: ReturnType<typeof holdableStore>;
  let task: string;
  let subject: string;
  const logLines: string[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'leash-admission-'));
    store = holdableStore(openSqliteStore({ path: join(dir, 'leash.db') }));
    tb = await startTestBroker({
      dir,
      broker: { store, logger: createLogger({ write: (line) => logLines.push(line) }) },
      patch: (cfg) => (cfg.settings.admission = { max_in_flight: 2, max_queue: 1, queue_timeout_ms: QUEUE_TIMEOUT_MS, max_event_loop_delay_ms: 0 }),
    });
    task = await tb.openTask();
    subject = await tb.cluster.saToken();
  });
  afterAll(async () => {
    store.release();
    await tb.close();
    await rm(dir, { recursive: true, force: true });
  });

  const form = (taskId: string) => new URLSearchParams({ grant_type: EXCHANGE, client_id: 'crm-reader', subject_token: subject, subject_token_type: JWT_TYPE, resource: CRM_API, task: taskId });
  const exchange = (taskId = task, signal?: AbortSignal) =>
    fetch(`${tb.url}/token`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: form(taskId), signal }).then(async (res) => ({
      status: res.status,
      retryAfter: res.headers.get('retry-after'),
      body: (await res.json()) as Record<string, unknown>,
      at: performance.now(),
    }));
  const timed = async <T>(p: Promise<T>) => {
    const t0 = performance.now();
    const value = await p;
    return { value, ms: performance.now() - t0 };
  };
  const metrics = async () => (await fetch(`${tb.managementUrl}/metrics`)).text();
  const metric = async (line: string) => {
    const text = await metrics();
    const found = text.split('\n').find((l) => l.startsWith(`${line} `));
    return found === undefined ? undefined : Number(found.slice(line.length + 1));
  };
  const exchangeEvents = async () => (await tb.broker.testing.auditEvents()).filter((e) => e.type.startsWith('exchange.'));

  it('answers the excess at once with 503 temporarily_unavailable + Retry-After; a queued request past the deadline gets 503 unprocessed; probes and metrics answer throughout', async () => {
    const before = (await exchangeEvents()).length;
    store.hold();
    const a = exchange();
    const b = exchange();
    await waitFor(async () => store.waiting === 2);
    expect(await metric('leash_admission_in_flight')).toBe(2);

    // The third waits in the queue (max_queue 1)...
    const c0 = performance.now();
    const c = exchange();
    await waitFor(async () => (await metric('leash_admission_queued')) === 1);

    // ...the fourth finds the queue full: refused at once, while the first two are stuck.
    const d = await timed(exchange());
    expect(d.value.status).toBe(503);
    expect(d.value.body.error).toBe('temporarily_unavailable');
    expect(String(d.value.body.error_description)).toContain('ERR_OVERLOADED');
    expect(Number(d.value.retryAfter)).toBeGreaterThan(0);
    expect(d.ms).toBeLessThan(100);
    expect(store.waiting).toBe(2);

    // Shed before express (the access-log middleware never ran), yet the same answer: the
    // caller's request id echoed, no-store, nosniff, JSON, and its own access line.
    const shed = await fetch(`${tb.url}/token/?x=1`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-request-id': 'shed-probe-1' }, body: form(task) });
    expect(shed.status).toBe(503);
    expect(shed.headers.get('x-request-id')).toBe('shed-probe-1');
    expect(shed.headers.get('cache-control')).toBe('no-store');
    expect(shed.headers.get('x-content-type-options')).toBe('nosniff');
    expect(shed.headers.get('content-type')).toBe('application/json; charset=utf-8');
    expect(shed.headers.get('retry-after')).toBe('2');
    expect(((await shed.json()) as { error: string }).error).toBe('temporarily_unavailable');
    const line = logLines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.request_id === 'shed-probe-1');
    expect(line).toMatchObject({ msg: 'request', method: 'POST', route: '/token', status: 503, shed: true });

    // Introspection and usage share the bound; documents and the management listener do not.
    const introspect = await timed(fetch(`${tb.url}/introspect`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'token=x' }));
    expect(introspect.value.status).toBe(503);
    expect(((await introspect.value.json()) as { error: string }).error).toBe('temporarily_unavailable');
    expect(introspect.ms).toBeLessThan(100);
    const usage = await fetch(`${tb.url}/usage`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    expect(usage.status).toBe(503);
    expect(usage.headers.get('retry-after')).not.toBeNull();
    expect((await fetch(`${tb.url}/jwks`)).status).toBe(200);
    const health = await timed(fetch(`${tb.managementUrl}/healthz`));
    expect(health.value.status).toBe(200);
    expect(health.ms).toBeLessThan(1000);
    const scrape = await fetch(`${tb.managementUrl}/metrics`);
    expect(scrape.status).toBe(200);
    expect(await scrape.text()).toContain('leash_admission_rejected_total{reason="queue_full"} 4');

    // The queued one is answered at its deadline, never worked on.
    const cr = await c;
    expect(cr.status).toBe(503);
    expect(cr.body.error).toBe('temporarily_unavailable');
    expect(String(cr.body.error_description)).toContain('ERR_OVERLOADED');
    expect(cr.retryAfter).not.toBeNull();
    // By the deadline: up to a loop turn early (at most half the deadline), so that a busy loop does not answer it past it.
    expect(cr.at - c0).toBeGreaterThanOrEqual(QUEUE_TIMEOUT_MS / 2);
    expect(cr.at - c0).toBeLessThan(QUEUE_TIMEOUT_MS + 1500);
    expect(store.waiting).toBe(2);
    expect(await metric('leash_admission_rejected_total{reason="queue_timeout"}')).toBe(1);
    // leash_admission_wait_seconds: the four refused at once and the one refused at its deadline (it waited ≥ 400 ms).
    expect(await metric('leash_admission_wait_seconds_count{outcome="refused"}')).toBe(5);
    const past = (await metric('leash_admission_wait_seconds_bucket{le="+Inf",outcome="refused"}'))! - (await metric('leash_admission_wait_seconds_bucket{le="0.25",outcome="refused"}'))!;
    expect(past).toBeGreaterThanOrEqual(1);

    store.release();
    const [ar, br] = await Promise.all([a, b]);
    expect(ar.status).toBe(200);
    expect(br.status).toBe(200);
    expect(typeof ar.body.access_token).toBe('string');
    // Exactly the two admitted exchanges were decided: the refused and the timed-out one left no event.
    const events = (await exchangeEvents()).slice(before);
    expect(events.map((e) => e.type)).toEqual(['exchange.issued', 'exchange.issued']);
    expect(await metric('leash_admission_in_flight')).toBe(0);
    expect(await metric('leash_admission_queued')).toBe(0);
  });

  it('a queued request that gets a slot before its deadline is served', async () => {
    store.hold();
    const a = exchange();
    const b = exchange();
    await waitFor(async () => store.waiting === 2);
    const c = exchange();
    await waitFor(async () => (await metric('leash_admission_queued')) === 1);
    store.release();
    const results = await Promise.all([a, b, c]);
    expect(results.map((r) => r.status)).toEqual([200, 200, 200]);
  });

  it('a client that leaves while queued frees its place (client_gone)', async () => {
    store.hold();
    const a = exchange();
    const b = exchange();
    await waitFor(async () => store.waiting === 2);
    const abort = new AbortController();
    const c = exchange(task, abort.signal).catch((e: Error) => e.name);
    await waitFor(async () => (await metric('leash_admission_queued')) === 1);
    abort.abort();
    expect(await c).toBe('AbortError');
    await waitFor(async () => (await metric('leash_admission_rejected_total{reason="client_gone"}')) === 1);
    expect(await metric('leash_admission_queued')).toBe(0);
    store.release();
    expect((await Promise.all([a, b])).map((r) => r.status)).toEqual([200, 200]);
  });

  it('a client that hangs up before the answer is issued no token: no record, audited as exchange.abandoned', async () => {
    const own = await tb.openTask();
    store.hold();
    const abort = new AbortController();
    const pending = exchange(own, abort.signal).catch((e: Error) => e.name);
    await waitFor(async () => store.waiting === 1);
    abort.abort();
    expect(await pending).toBe('AbortError');
    // The server has seen the connection close (its admission slot is back) before the pipeline resumes.
    await waitFor(async () => (await metric('leash_admission_in_flight')) === 0);
    store.release();
    await waitFor(async () => (await tb.broker.testing.auditEvents('exchange.abandoned')).some((e) => e.event.task === own));
    const event = (await tb.broker.testing.auditEvents('exchange.abandoned')).find((e) => e.event.task === own)!.event;
    expect(event.decision).toBe('abandoned');
    expect(event.reason).toBe('ERR_CLIENT_GONE');
    expect(event.plugin).toBe('crm-reader');
    expect(event.jti).toBeUndefined();
    expect(await tb.broker.testing.store.listIssuedForTask(own)).toEqual([]);
    expect((await tb.broker.testing.auditEvents('exchange.issued')).some((e) => e.event.task === own)).toBe(false);
    expect(await metric('leash_exchanges_total{outcome="abandoned",reason="ERR_CLIENT_GONE",plugin="crm-reader"}')).toBe(1);
    expect(await metric('leash_tokens_issued_total{kind="jwt",plugin="crm-reader"}')).toBe(2 + 3 + 2);

    // The same request from a client that stays is served.
    const ok = await exchange(own);
    expect(ok.status).toBe(200);
    expect(await tb.broker.testing.store.listIssuedForTask(own)).toHaveLength(1);
  });
});

describe('admission control: a request read while the event loop ran late is refused at once', () => {
  let tb: TestBroker;
  beforeAll(async () => {
    tb = await startTestBroker({ patch: (cfg) => (cfg.settings.admission = { max_event_loop_delay_ms: 150 }) });
  });
  afterAll(async () => {
    await tb.close();
  });

  /** One raw HTTP request, written to the socket before this process blocks its own loop for `blockMs` (broker and test share it). */
  async function sendThenBlock(body: string, blockMs: number): Promise<string> {
    const url = new URL(tb.url);
    const socket = connect(Number(url.port), url.hostname);
    await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    let answer = '';
    socket.on('data', (chunk: Buffer) => (answer += chunk.toString('utf8')));
    const ended = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    socket.write(`POST /token HTTP/1.1\r\nHost: ${url.host}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
    // The request sits in the broker's socket while the loop is stuck, as on a CPU-starved process.
    const until = performance.now() + blockMs;
    while (performance.now() < until) {
      // busy
    }
    await ended;
    return answer;
  }

  it('answers 503 temporarily_unavailable with Retry-After, then serves again once the loop is on time', async () => {
    // Prime the loop-delay timer (it runs only while admitted routes get requests).
    const task = await tb.openTask();
    const params = { grant_type: EXCHANGE, client_id: 'crm-reader', subject_token: await tb.cluster.saToken(), subject_token_type: JWT_TYPE, resource: CRM_API, task };
    // On a loaded machine the loop may really be late now and then: retried until served.
    await waitFor(async () => (await tb.exchange(params)).status === 200);
    const raw = await sendThenBlock(new URLSearchParams(params).toString(), 500);
    expect(raw.split('\r\n')[0]).toBe('HTTP/1.1 503 Service Unavailable');
    expect(raw).toMatch(/\r\nretry-after: \d+\r\n/i);
    expect(raw).toContain('"error":"temporarily_unavailable"');
    expect(raw).toContain('ERR_OVERLOADED');
    const text = await (await fetch(`${tb.managementUrl}/metrics`)).text();
    expect(text).toContain('leash_admission_rejected_total{reason="event_loop_delay"} 1');
    // A few ticks later the loop is on time again: served.
    await new Promise((r) => setTimeout(r, 100));
    await waitFor(async () => (await tb.exchange(params)).status === 200);
    // The refused request was never worked on: only the served ones left a token.
    const issued = (await tb.broker.testing.auditEvents('exchange.issued')).filter((e) => e.event.task === task).length;
    expect(await tb.broker.testing.store.listIssuedForTask(task)).toHaveLength(issued);
    expect((await tb.broker.testing.auditEvents()).filter((e) => e.type.startsWith('exchange.') && e.event.task === task)).toHaveLength(issued);
  });
});

describe('a request read after its client gave up', () => {
  let tb: TestBroker;
  beforeAll(async () => {
    tb = await startTestBroker();
  });
  afterAll(async () => {
    await tb.close();
  });

  it('is issued no token when the client closed right after sending it (FIN behind the body, as from a client that timed out while it waited in the socket)', async () => {
    const task = await tb.openTask();
    const params = { grant_type: EXCHANGE, client_id: 'crm-reader', subject_token: await tb.cluster.saToken(), subject_token_type: JWT_TYPE, resource: CRM_API, task };
    const body = new URLSearchParams(params).toString();
    const url = new URL(tb.url);
    const socket = connect(Number(url.port), url.hostname);
    await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    let answer = '';
    socket.on('data', (chunk: Buffer) => (answer += chunk.toString('utf8')));
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    socket.on('error', () => undefined);
    socket.end(`POST /token HTTP/1.1\r\nHost: ${url.host}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
    await closed;
    await waitFor(async () => (await tb.broker.testing.auditEvents()).some((e) => e.type.startsWith('exchange.') && e.event.task === task) || answer.length > 0, 5000).catch(() => undefined);
    await new Promise((r) => setTimeout(r, 200));
    expect(answer).toBe('');
    expect(await tb.broker.testing.store.listIssuedForTask(task)).toEqual([]);
    const events = (await tb.broker.testing.auditEvents()).filter((e) => e.type.startsWith('exchange.') && e.event.task === task);
    // Dropped before any work (client_gone at admission) or stopped before signing (exchange.abandoned): never issued.
    expect(events.every((e) => e.type === 'exchange.abandoned')).toBe(true);
  });
});

describe('settings.admission: bad values are refused by validation', () => {
  const bad: ReadonlyArray<[string, Record<string, unknown>, string]> = [
    ['no slot at all', { max_in_flight: 0 }, '/settings/admission/max_in_flight'],
    ['a fractional bound', { max_in_flight: 2.5 }, '/settings/admission/max_in_flight'],
    ['a negative queue', { max_queue: -1 }, '/settings/admission/max_queue'],
    ['a deadline too short to mean anything', { queue_timeout_ms: 5 }, '/settings/admission/queue_timeout_ms'],
    ['a deadline past a minute', { queue_timeout_ms: 600000 }, '/settings/admission/queue_timeout_ms'],
    ['a string', { max_queue: '10' }, '/settings/admission/max_queue'],
    ['a negative loop delay', { max_event_loop_delay_ms: -1 }, '/settings/admission/max_event_loop_delay_ms'],
    ['an unknown key', { queue_timeout: 100 }, '/settings/admission/queue_timeout'],
  ];
  it.each(bad)('%s', (_name, admission, path) => {
    let error: unknown;
    try {
      parseConfig(patched((c) => (c.settings = { ...c.settings, admission })));
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).problems.map((p) => p.path)).toContain(path);
  });

  it('defaults when absent, and accepts max_queue 0 (no queue)', () => {
    expect(parseConfig(patched(() => undefined)).settings.admission).toEqual({ max_in_flight: 32, max_queue: 64, queue_timeout_ms: 200, max_event_loop_delay_ms: 1000 });
    expect(parseConfig(patched((c) => (c.settings = { ...c.settings, admission: { max_queue: 0 } }))).settings.admission.max_queue).toBe(0);
  });
});
