import { describe, expect, it } from '@jest/globals';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { openLoop, percentile, sumMetric } from '../../bench/open-loop.js';
import { completeResponse } from '../../bench/raw-client.js';

/** A loopback server whose answer to each POST is decided by `handle` (after the body is read). */
async function serve(handle: (req: IncomingMessage, res: ServerResponse) => void): Promise<{ url: string; server: Server; seen: () => number }> {
  let seen = 0;
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      seen++;
      handle(req, res);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server, seen: () => seen };
}

const close = (server: Server) =>
  new Promise<void>((r) => {
    server.closeAllConnections();
    server.close(() => r());
  });

describe('bench open-loop sender', () => {
  it('keeps sending on schedule while the server stalls, and counts the stall from each scheduled send time', async () => {
    // Every request that arrives in the first 300 ms is held until then: a closed-loop
    // generator would stop sending and see one slow answer per connection (coordinated omission).
    const t0 = performance.now();
    const held: ServerResponse[] = [];
    const { url, server, seen } = await serve((_req, res) => {
      if (performance.now() - t0 < 300) held.push(res);
      else res.end('ok');
    });
    setTimeout(() => held.forEach((res) => res.end('ok')), 300);
    try {
      const r = await openLoop({ url, path: '/token', bodies: ['a=1'], rate: 200, seconds: 1, timeoutMs: 2000 });
      expect(r.sent).toBe(200);
      expect(seen()).toBe(200);
      expect(r.ok).toBe(200);
      expect(r.clientTimeouts + r.errors + r.rejected503).toBe(0);
      // About 60 requests were scheduled during the stall: their latencies run from ~300 ms down to 0.
      const stalled = r.okLatencies.filter((ms) => ms >= 100).length;
      expect(stalled).toBeGreaterThanOrEqual(30);
      expect(r.okLatencies.at(-1)).toBeGreaterThanOrEqual(250);
      // The median request came after the stall and was answered quickly.
      expect(percentile(r.okLatencies, 50)).toBeLessThan(100);
    } finally {
      await close(server);
    }
  });

  it('sorts answers into 200, 503, other statuses and client time-outs', async () => {
    let n = 0;
    const { url, server } = await serve((_req, res) => {
      const i = n++;
      if (i % 4 === 0) res.end('ok');
      else if (i % 4 === 1) res.writeHead(503).end();
      else if (i % 4 === 2) res.writeHead(400).end();
      // else: never answered; the client gives up.
    });
    try {
      const r = await openLoop({ url, path: '/token', bodies: ['a=1', 'b=2'], rate: 100, seconds: 0.4, timeoutMs: 150 });
      expect(r.sent).toBe(40);
      expect(r.ok).toBe(10);
      expect(r.rejected503).toBe(10);
      expect(r.otherStatus).toEqual({ '400': 10 });
      expect(r.clientTimeouts).toBe(10);
    } finally {
      await close(server);
    }
  });

  it('reads answers by Content-Length, chunked or with Connection: close, from a real node:http server', async () => {
    let n = 0;
    const { url, server } = await serve((_req, res) => {
      const i = n++;
      if (i % 3 === 0) res.end('{"fixed":"length"}');
      else if (i % 3 === 1) {
        // No length known up front: node sends it chunked.
        res.write('part one, ');
        setImmediate(() => res.end('part two'));
      } else res.writeHead(201, { connection: 'close' }).end('bye');
    });
    try {
      const r = await openLoop({ url, path: '/token', bodies: ['a=1'], rate: 150, seconds: 0.4, timeoutMs: 1000 });
      expect(r.sent).toBe(60);
      expect(r.ok).toBe(40);
      expect(r.otherStatus).toEqual({ '201': 20 });
      expect(r.clientTimeouts + r.errors).toBe(0);
      // Each Connection: close answer ends its connection: the next request opens a new one.
      expect(r.connections).toBeGreaterThanOrEqual(20);
      expect(r.connections).toBeLessThan(60);
    } finally {
      await close(server);
    }
  });

  it('knows where a response ends, and when it has not yet', () => {
    const head = 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n';
    expect(completeResponse(Buffer.from(head + 'abc'))).toBeUndefined();
    expect(completeResponse(Buffer.from(head + 'abcde'))).toEqual({ length: head.length + 5, status: 200, close: false });
    const chunked = 'HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n';
    expect(completeResponse(Buffer.from(chunked + '3\r\nabc\r\n'))).toBeUndefined();
    expect(completeResponse(Buffer.from(chunked + '3\r\nabc\r\n0\r\n\r\n'))).toEqual({ length: chunked.length + 13, status: 503, close: true });
    expect(completeResponse(Buffer.from(chunked + '0\r\n\r\n'))).toEqual({ length: chunked.length + 5, status: 503, close: true });
    expect(completeResponse(Buffer.from('HTTP/1.1 204 No Content\r\n\r\n'))?.status).toBe(204);
    expect(completeResponse(Buffer.from('HTTP/1.1 200 OK\r\nContent-Le'))).toBeUndefined();
  });

  it('refuses anything but loopback', async () => {
    await expect(openLoop({ url: 'http://example.com:80', path: '/token', bodies: ['a'], rate: 1, seconds: 1, timeoutMs: 100 })).rejects.toThrow(/loopback only/);
  });

  it('sums Prometheus series by name and label filter', () => {
    const text = ['# HELP x', 'leash_x_total{reason="a"} 2', 'leash_x_total{reason="b"} 3', 'leash_x_total_other 7', 'leash_y 1'].join('\n');
    expect(sumMetric(text, 'leash_x_total')).toBe(5);
    expect(sumMetric(text, 'leash_x_total', 'reason="b"')).toBe(3);
  });
});
