import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { parseConfig } from '../../src/config/load.js';
import { startTestBroker, type TestBroker } from '../support/broker.js';

/** Health, readiness and metrics live on the management port only; the public port does not serve them. */
describe('the management listener', () => {
  let tb: TestBroker;
  beforeAll(async () => {
    tb = await startTestBroker();
  });
  afterAll(async () => tb.close());

  it('is on its own port, loopback by default (127.0.0.1:9090)', () => {
    expect(new URL(tb.managementUrl).port).not.toBe(new URL(tb.url).port);
    const defaults = parseConfig({ version: 1, trusted_issuers: [{ name: 'c', kind: 'kubernetes', issuer: 'https://k', audience: 'leash', jwks: { uri: 'https://k/jwks' } }] });
    expect(defaults.settings.management.listen).toEqual({ host: '127.0.0.1', port: 9090 });
    expect(defaults.settings.shutdown_grace).toBe(10);
  });

  it('serves /healthz, /readyz and /metrics', async () => {
    const health = await fetch(`${tb.managementUrl}/healthz`);
    expect(health.status).toBe(200);
    expect(await health.json()).toEqual({ status: 'ok' });
    const ready = await fetch(`${tb.managementUrl}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toEqual({ status: 'ready' });
    const metrics = await fetch(`${tb.managementUrl}/metrics`);
    expect(metrics.status).toBe(200);
    expect(metrics.headers.get('content-type')).toMatch(/^text\/plain/);
    const text = await metrics.text();
    expect(text).toMatch(/^# TYPE leash_exchanges_total counter$/m);
    // On SQLite: who checkpoints the WAL (SQLite itself until the thread starts after 1,000 store calls).
    expect(text).toMatch(/^leash_store_wal_checkpoint_thread [01]$/m);
    expect(text).toMatch(/^leash_store_wal_pages \d+$/m);
  });

  it('serves nothing else: no OAuth, JWKS or admin route', async () => {
    for (const path of ['/jwks', '/token', '/tasks', '/.well-known/openid-configuration']) {
      const res = await fetch(`${tb.managementUrl}${path}`);
      expect([path, res.status]).toEqual([path, 404]);
    }
  });

  it('the public port serves none of /healthz, /readyz, /metrics', async () => {
    for (const path of ['/healthz', '/readyz', '/metrics']) {
      const res = await fetch(`${tb.url}${path}`);
      expect([path, res.status]).toEqual([path, 404]);
      expect(await res.text()).not.toContain('leash_');
    }
  });

  it('two servers cannot share a port: the config says so', () => {
    const input = (listen: unknown, management: unknown) => ({
      version: 1,
      settings: { listen, management: { listen: management } },
      trusted_issuers: [{ name: 'c', kind: 'kubernetes', issuer: 'https://k', audience: 'leash', jwks: { uri: 'https://k/jwks' } }],
    });
    expect(() => parseConfig(input({ port: 8080 }, { port: 8080 }))).toThrow(/settings\/management\/listen\/port: must differ from settings.listen.port \(8080\)/);
    expect(() => parseConfig(input({ host: '0.0.0.0', port: 8080 }, { host: '127.0.0.1', port: 8080 }))).toThrow(/management\/listen\/port/);
    expect(() => parseConfig(input({ port: 0 }, { port: 0 }))).not.toThrow();
    expect(() => parseConfig(input({ host: '10.0.0.1', port: 8080 }, { host: '127.0.0.1', port: 8080 }))).not.toThrow();
  });
});

describe('readiness while shutting down', () => {
  it('/readyz turns 503 (reason: shutting down) as soon as close() begins, while a request is still in flight', async () => {
    const tb = await startTestBroker();
    // Hold one request in flight: headers sent, body still coming.
    const { request } = await import('node:http');
    const port = Number(new URL(tb.url).port);
    const req = request({ host: '127.0.0.1', port, method: 'POST', path: '/token', headers: { 'content-type': 'application/x-www-form-urlencoded', 'content-length': '100' } });
    req.on('error', () => undefined);
    const answered = new Promise<number>((resolve) =>
      req.once('response', (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      }),
    );
    req.write('grant_type=');
    // A full round trip after those bytes: the server has read the request's headers by then.
    expect((await fetch(`${tb.url}/jwks`)).status).toBe(200);
    const closing = tb.broker.close({ graceMs: 10_000 });
    const ready = await fetch(`${tb.managementUrl}/readyz`);
    expect(ready.status).toBe(503);
    expect(await ready.json()).toEqual({ status: 'unavailable', reason: 'shutting down' });
    expect((await fetch(`${tb.managementUrl}/healthz`)).status).toBe(200);
    req.end('x'.repeat(89));
    expect(await answered).toBe(400); // answered (a bad grant), not cut
    await closing;
    await tb.close();
  });
});
