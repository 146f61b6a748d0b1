import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import express, { type NextFunction, type Request, type Response } from 'express';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { admissionControl, type AdmissionLimits } from '../../src/http/admission.js';

/**
 * The queue deadline counts the wait the event loop's lag hid: a request read while the loop
 * ran N ms late has N ms less of its queue deadline left. Time is a clock the test moves (the
 * loop-lag probe reads the same clock), so the lag and the waits are exact; HTTP is real.
 */
describe('admission: the queue deadline counts the loop lag a request was read with', () => {
  let server: Server;
  let base: string;
  let clock = 1_000;
  const waits: Array<{ ms: number; outcome: string }> = [];
  const held: Array<() => void> = [];
  let queued = 0;
  const limits: AdmissionLimits = { max_in_flight: 1, max_queue: 10, queue_timeout_ms: 10_000, max_event_loop_delay_ms: 0 };

  beforeAll(async () => {
    const admission = admissionControl({
      limits: () => limits,
      applies: (req) => req.method === 'POST',
      refuse: (res, reason) => {
        res.writeHead(503, { 'content-type': 'text/plain' }).end(reason);
      },
      onRejected: () => undefined,
      onLoad: (_inFlight, q) => (queued = q),
      onWaited: (ms, outcome) => waits.push({ ms, outcome }),
      now: () => clock,
    });
    const app = express();
    app.use(admission.middleware);
    app.post('/work', (req: Request, res: Response, _next: NextFunction) => {
      if (req.headers['x-hold'] === '1') held.push(() => res.end('held-done'));
      else res.end('done');
    });
    server = createServer((req: IncomingMessage, res: ServerResponse) => {
      // The clock jumps as the request is read, as if the loop had been stuck that long before reading it.
      clock += Number(req.headers['x-advance'] ?? 0);
      if (!admission.shed(req, res)) app(req, res);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });

  const post = (headers: Record<string, string>) => fetch(`${base}/work`, { method: 'POST', headers }).then(async (r) => ({ status: r.status, body: await r.text() }));

  it('refuses a request read late once lag plus queue time pass the deadline, while one read on time is still admitted', async () => {
    // A takes the only slot and holds it.
    const a = post({ 'x-hold': '1' });
    await waitUntil(() => held.length === 1);
    // B is read after the loop stood still 6,000 ms: it has waited 5,990 of its 10,000 already (the probe ticks every 10 ms).
    const b = post({ 'x-advance': '6000' });
    await waitUntil(() => queued === 1);
    await new Promise((r) => setTimeout(r, 50)); // the probe's next ticks see the loop on time again
    // C is read with no lag.
    const c = post({});
    await waitUntil(() => queued === 2);
    expect(waits).toEqual([{ ms: 0, outcome: 'admitted' }]);
    // 4,500 ms later A finishes: B has waited 5,990 + 4,500 in all, past the deadline; C only 4,500.
    clock += 4_500;
    held[0]!();
    expect(await a).toEqual({ status: 200, body: 'held-done' });
    expect(await b).toEqual({ status: 503, body: 'queue_timeout' });
    expect(await c).toEqual({ status: 200, body: 'done' });
    expect(waits).toEqual([
      { ms: 0, outcome: 'admitted' },
      { ms: 10_490, outcome: 'refused' },
      { ms: 4_500, outcome: 'admitted' },
    ]);
  });
});

async function waitUntil(cond: () => boolean, ms = 5_000): Promise<void> {
  const until = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > until) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 5));
  }
}
