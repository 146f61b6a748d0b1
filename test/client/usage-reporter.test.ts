import { afterEach, describe, expect, it } from '@jest/globals';
import express from 'express';
import { createServer, Agent, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { keepAliveAgent } from '../support/mtls.js';
import { testTls } from '../support/x509.js';
import { createUsageReporter, type UsageRecordInput } from '../../src/client/index.js';
import { listen } from './fixtures.js';

/** A stand-in for Leash's POST /usage that records what it got and can be told to fail. */
async function receiver() {
  const state = { failWith: 0, requests: 0, batches: [] as Array<Array<Record<string, unknown>>>, auth: [] as string[], bodies: [] as Array<Record<string, unknown>> };
  const app = express();
  app.post('/usage', express.json({ limit: '1mb' }), (req, res) => {
    state.requests += 1;
    state.auth.push(req.get('authorization') ?? '');
    state.bodies.push(req.body as Record<string, unknown>);
    if (state.failWith) {
      res.status(state.failWith).json({ error: 'temporarily_unavailable' });
      return;
    }
    const records = (req.body as { records: Array<Record<string, unknown>> }).records;
    state.batches.push(records);
    res.json({ accepted: records.length, rejected: 0, problems: [] });
  });
  const srv = await listen(app);
  return { url: srv.url, state, close: srv.close };
}

const rec = (i: number): UsageRecordInput => ({ at: 1_000 + i, audience: 'https://api.example.com', method: 'GET', route: '/items/:id', status: 200, durationMs: 1.6, bytes: i, jti: `j${i}` });

describe('createUsageReporter', () => {
  const closers: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const c of closers.splice(0).reverse()) await c();
  });

  it('batches, sends the wire form, authenticates with Basic as the resource server', async () => {
    const r = await receiver();
    closers.push(r.close);
    const reporter = createUsageReporter({ issuer: r.url, clientId: 'items api', clientSecret: 's3cr:t', batchSize: 3, flushIntervalMs: 60_000 });
    closers.push(() => reporter.close());
    for (let i = 0; i < 7; i++) reporter.report(rec(i));
    await reporter.flush();
    expect(r.state.batches.map((b) => b.length)).toEqual([3, 3, 1]);
    expect(r.state.batches[0]![0]).toEqual({ at: 1000, audience: 'https://api.example.com', method: 'GET', route: '/items/:id', status: 200, duration_ms: 2, bytes: 0, jti: 'j0' });
    expect(Buffer.from(r.state.auth[0]!.replace(/^Basic /, ''), 'base64').toString()).toBe('items+api:s3cr%3At');
    expect(reporter.stats()).toEqual({ queued: 0, sent: 7, dropped: 0, rejected: 0, retries: 0 });
  });

  it('private_key_jwt: a fresh assertion for <issuer>/usage in every request body', async () => {
    const r = await receiver();
    closers.push(r.close);
    let n = 0;
    const auds: string[] = [];
    const reporter = createUsageReporter({ issuer: r.url, clientId: 'items-api', clientAssertion: async (aud) => (auds.push(aud), `assertion-${++n}`), batchSize: 1 });
    closers.push(() => reporter.close());
    reporter.report(rec(1));
    reporter.report(rec(2));
    await reporter.flush();
    expect(r.state.bodies.map((b) => [b.client_id, b.client_assertion, b.client_assertion_type])).toEqual([
      ['items-api', 'assertion-1', 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer'],
      ['items-api', 'assertion-2', 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer'],
    ]);
    expect(auds).toEqual([`${r.url}/usage`, `${r.url}/usage`]);
    expect(r.state.auth.every((a) => a === '')).toBe(true);
  });

  it('is bounded: a full queue drops the oldest and counts it; report() never throws or waits', async () => {
    const r = await receiver();
    closers.push(r.close);
    r.state.failWith = 503;
    const reporter = createUsageReporter({ issuer: r.url, clientId: 'a', clientSecret: 'b', batchSize: 2, maxQueue: 5, flushIntervalMs: 60_000, retryBaseMs: 10, maxAttempts: 1000 });
    closers.push(async () => {
      r.state.failWith = 0;
      await reporter.close();
    });
    const t0 = performance.now();
    for (let i = 0; i < 12; i++) reporter.report(rec(i));
    expect(performance.now() - t0).toBeLessThan(50);
    // One batch of two is in flight (failing); the queue holds the newest three.
    for (let i = 0; i < 200 && reporter.stats().retries === 0; i++) await new Promise((res) => setTimeout(res, 10));
    const s = reporter.stats();
    expect(s.dropped).toBe(7);
    expect(s.queued + 2).toBe(5);
    expect(s.retries).toBeGreaterThan(0);
    r.state.failWith = 0;
    await reporter.flush();
    const sentJtis = r.state.batches.flat().map((x) => x.jti);
    // The first batch (retried until it got through) and the newest records; the oldest dropped ones never.
    expect(sentJtis).toEqual(['j0', 'j1', 'j9', 'j10', 'j11']);
    expect(reporter.stats()).toMatchObject({ sent: 5, dropped: 7, queued: 0 });
  });

  it('retries with backoff until Leash returns', async () => {
    const r = await receiver();
    closers.push(r.close);
    r.state.failWith = 503;
    const reporter = createUsageReporter({ issuer: r.url, clientId: 'a', clientSecret: 'b', batchSize: 1, retryBaseMs: 20, maxAttempts: 10 });
    closers.push(() => reporter.close());
    reporter.report(rec(1));
    const sent = reporter.flush();
    await new Promise((res) => setTimeout(res, 120));
    const failures = r.state.requests;
    // 20, 40, ~80 ms with equal jitter: a few attempts, not a busy loop.
    expect(failures).toBeGreaterThanOrEqual(2);
    expect(failures).toBeLessThanOrEqual(5);
    r.state.failWith = 0;
    await sent;
    expect(r.state.batches).toHaveLength(1);
    expect(reporter.stats()).toMatchObject({ sent: 1, dropped: 0 });
  });

  it('a batch Leash refuses for good (4xx) is dropped as rejected, not retried forever', async () => {
    const r = await receiver();
    closers.push(r.close);
    r.state.failWith = 401;
    const errors: string[] = [];
    const reporter = createUsageReporter({ issuer: r.url, clientId: 'a', clientSecret: 'never-in-a-message', batchSize: 2, onError: (e) => errors.push(e.message) });
    closers.push(() => reporter.close());
    reporter.report(rec(1));
    reporter.report(rec(2));
    await reporter.flush();
    expect(r.state.requests).toBe(1);
    expect(reporter.stats()).toMatchObject({ rejected: 2, sent: 0, retries: 0 });
    expect(errors[0]).toMatch(/HTTP 401/);
    expect(errors.join(' ')).not.toContain('never-in-a-message');
  });

  it('misuse is a TypeError', () => {
    expect(() => createUsageReporter({ issuer: '', clientId: 'a', clientSecret: 'b' })).toThrow(TypeError);
    expect(() => createUsageReporter({ issuer: 'http://x', clientId: 'a' })).toThrow(TypeError);
    expect(() => createUsageReporter({ issuer: 'http://x', clientId: 'a', clientSecret: 'b', clientAssertion: async () => 'x' })).toThrow(TypeError);
  });
});

/** A bare node:http server answering POST /usage as `answer` says; it notes each request's client port. */
async function rawServer(answer: (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse, body: string) => void) {
  const ports: number[] = [];
  const server: Server = createServer((req, res) => {
    ports.push(req.socket.remotePort ?? 0);
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString('utf8')));
    req.on('end', () => answer(req, res, body));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    ports,
    close: () => new Promise<void>((resolve) => (server.closeAllConnections(), server.close(() => resolve()))),
  };
}

const accept = (_req: unknown, res: import('node:http').ServerResponse, body: string) => {
  const n = (JSON.parse(body) as { records: unknown[] }).records.length;
  res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ accepted: n, rejected: 0, problems: [] }));
};

describe('createUsageReporter over node:http (the default transport)', () => {
  const closers: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const c of closers.splice(0).reverse()) await c();
  });

  it('sends batch after batch over one kept-alive connection', async () => {
    const srv = await rawServer(accept);
    closers.push(srv.close);
    const reporter = createUsageReporter({ issuer: srv.url, clientId: 'a', clientSecret: 'b', batchSize: 1, flushIntervalMs: 60_000 });
    closers.push(() => reporter.close());
    for (let i = 0; i < 5; i++) {
      reporter.report(rec(i));
      await reporter.flush();
    }
    expect(srv.ports).toHaveLength(5);
    expect(new Set(srv.ports).size).toBe(1);
    expect(reporter.stats()).toMatchObject({ sent: 5, dropped: 0, retries: 0 });
  });

  it('uses the agent it is given, and leaves it open on close', async () => {
    const srv = await rawServer(accept);
    closers.push(srv.close);
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    closers.push(async () => agent.destroy());
    const reporter = createUsageReporter({ issuer: srv.url, clientId: 'a', clientSecret: 'b', batchSize: 2, agent });
    reporter.report(rec(1));
    reporter.report(rec(2));
    await reporter.flush();
    expect(Object.values(agent.freeSockets).flat()).toHaveLength(1);
    await reporter.close();
    expect(Object.values(agent.freeSockets).flat()).toHaveLength(1);
    expect(reporter.stats()).toMatchObject({ sent: 2 });
    expect(() => createUsageReporter({ issuer: srv.url, clientId: 'a', clientSecret: 'b', agent, fetch: globalThis.fetch })).toThrow(TypeError);
  });

  it('over https: a private CA is refused by default and trusted through the given agent', async () => {
    const tls = testTls();
    const seen: string[] = [];
    const server = createHttpsServer({ cert: tls.cert, key: tls.key }, (req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString('utf8')));
      req.on('end', () => {
        seen.push(req.url ?? '');
        accept(req, res, body);
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    closers.push(() => new Promise<void>((resolve) => (server.closeAllConnections(), server.close(() => resolve()))));
    const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;

    const untrusting = createUsageReporter({ issuer: url, clientId: 'a', clientSecret: 'b', batchSize: 1, maxAttempts: 1 });
    closers.push(() => untrusting.close());
    untrusting.report(rec(1));
    await untrusting.flush();
    expect(untrusting.stats()).toMatchObject({ sent: 0, dropped: 1 });

    const agent = keepAliveAgent({ ca: tls.ca });
    closers.push(async () => agent.destroy());
    const trusting = createUsageReporter({ issuer: url, clientId: 'a', clientSecret: 'b', batchSize: 1, agent });
    closers.push(() => trusting.close());
    trusting.report(rec(2));
    await trusting.flush();
    expect(trusting.stats()).toMatchObject({ sent: 1, dropped: 0 });
    expect(seen).toEqual(['/usage']);
  });

  it('a server that never answers times out and the batch is retried, then dropped', async () => {
    const srv = await rawServer(() => undefined);
    closers.push(srv.close);
    const reporter = createUsageReporter({ issuer: srv.url, clientId: 'a', clientSecret: 'b', batchSize: 1, timeoutMs: 100, retryBaseMs: 10, maxAttempts: 2 });
    closers.push(() => reporter.close());
    reporter.report(rec(1));
    const t0 = Date.now();
    await reporter.flush();
    expect(Date.now() - t0).toBeGreaterThanOrEqual(190);
    expect(srv.ports).toHaveLength(2);
    expect(reporter.stats()).toMatchObject({ sent: 0, dropped: 1, retries: 1 });
  });

  it('an answer cut off mid-body is a failure, retried', async () => {
    let n = 0;
    const srv = await rawServer((_req, res, body) => {
      if (++n === 1) {
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': '100' });
        res.write('{"accepted":');
        res.socket?.destroy();
        return;
      }
      accept(_req, res, body);
    });
    closers.push(srv.close);
    const errors: string[] = [];
    const reporter = createUsageReporter({ issuer: srv.url, clientId: 'a', clientSecret: 'b', batchSize: 1, retryBaseMs: 10, onError: (e) => errors.push(e.message) });
    closers.push(() => reporter.close());
    reporter.report(rec(1));
    await reporter.flush();
    expect(srv.ports).toHaveLength(2);
    expect(reporter.stats()).toMatchObject({ sent: 1, retries: 1, dropped: 0 });
    expect(errors[0]).toMatch(/retrying/);
  });

  it('Retry-After sets the wait before the next attempt', async () => {
    const times: number[] = [];
    const srv = await rawServer((req, res, body) => {
      times.push(Date.now());
      if (times.length === 1) {
        res.writeHead(503, { 'retry-after': '1', 'content-type': 'application/json' }).end('{"error":"temporarily_unavailable"}');
        return;
      }
      accept(req, res, body);
    });
    closers.push(srv.close);
    const reporter = createUsageReporter({ issuer: srv.url, clientId: 'a', clientSecret: 'b', batchSize: 1, retryBaseMs: 10 });
    closers.push(() => reporter.close());
    reporter.report(rec(1));
    await reporter.flush();
    expect(times).toHaveLength(2);
    expect(times[1]! - times[0]!).toBeGreaterThanOrEqual(950);
    expect(reporter.stats()).toMatchObject({ sent: 1, retries: 1 });
  });
});
