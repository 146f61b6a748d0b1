import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { connect } from 'node:net';
import type { CryptoKey, JWK } from 'jose';
import { createUsageReporter } from '../../src/client/index.js';
import { CRM_RS_SECRET, basic, clientAssertion, ticketsKey, withResourceServers } from './introspect-support.js';
import { CRM_API, EXCHANGE, JWT_TYPE, OPS_KEY, startTestBroker, type TestBroker } from '../support/broker.js';

/**
 * settings.usage.listen: `POST /usage` and `/usage/budget` on a port of their own (here in
 * one process, as `Broker.listen` binds it; test/cluster/workers.test.ts runs it as a worker
 * of its own). The public port then serves neither, the usage port nothing else.
 */
describe('usage reports on a port of their own (settings.usage.listen)', () => {
  let tb: TestBroker;
  let usageUrl: string;
  let tickets: { privateKey: CryptoKey; jwk: JWK };

  beforeAll(async () => {
    tickets = await ticketsKey();
    tb = await startTestBroker({
      patch: withResourceServers(tickets, (cfg) => {
        cfg.settings.usage = { listen: { host: '127.0.0.1', port: 0, workers: 1 } };
      }),
    });
    usageUrl = tb.broker.usageUrl!;
  });
  afterAll(async () => {
    await tb?.close();
  });

  const nowS = () => Math.floor(Date.now() / 1000);
  async function token(): Promise<{ token: string; task: string; jti: string }> {
    const task = await tb.openTask();
    const res = await tb.exchange({
      grant_type: EXCHANGE,
      client_id: 'crm-reader',
      subject_token: await tb.cluster.saToken({ sa: 'crm-reader' }),
      subject_token_type: JWT_TYPE,
      resource: CRM_API,
      scope: 'contacts:read',
      task,
    });
    if (res.status !== 200) throw new Error(`exchange failed: ${JSON.stringify(res.body)}`);
    const t = res.body.access_token as string;
    return { token: t, task, jti: JSON.parse(Buffer.from(t.split('.')[1]!, 'base64url').toString()).jti as string };
  }
  const record = (jti: string, task: string) => ({ at: Date.now(), jti, plugin: 'crm-reader', task, audience: CRM_API, method: 'GET', route: '/contacts/:id', status: 200, source: '10.0.0.7' });
  const post = (base: string, path: string, body: unknown, headers: Record<string, string> = {}) =>
    fetch(`${base}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: basic('crm-api', CRM_RS_SECRET), ...headers }, body: JSON.stringify(body) });

  it('binds a port other than the public and management ones', () => {
    expect(usageUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(new Set([usageUrl, tb.url, tb.managementUrl]).size).toBe(3);
  });

  it('the public port no longer serves /usage or /usage/budget: 404, OPTIONS too', async () => {
    const { jti, task } = await token();
    for (const path of ['/usage', '/usage/budget']) {
      const res = await post(tb.url, path, path === '/usage' ? { records: [record(jti, task)] } : { jti, audience: CRM_API });
      expect(res.status).toBe(404);
      expect(((await res.json()) as { error: string }).error).toBe('not_found');
      expect((await fetch(`${tb.url}${path}`, { method: 'OPTIONS' })).status).toBe(404);
    }
    // Everything else on the public port is as before.
    expect((await fetch(`${tb.url}/jwks`)).status).toBe(200);
  });

  it('the usage port ingests a batch and answers the budget check, with request ids and no-store', async () => {
    const { jti, task } = await token();
    const res = await post(usageUrl, '/usage', { records: [record(jti, task)] }, { 'x-request-id': 'usage-port-1' });
    expect(res.status).toBe(200);
    expect(res.headers.get('x-request-id')).toBe('usage-port-1');
    expect(res.headers.get('cache-control')).toBe('no-store');
    expect(await res.json()).toEqual({ accepted: 1, rejected: 0, problems: [] });
    const budget = await post(usageUrl, '/usage/budget', { jti, audience: CRM_API });
    expect(budget.status).toBe(200);
    expect(((await budget.json()) as { allowed: boolean }).allowed).toBe(true);
    // The use is on the task's timeline, read through the public port.
    const timeline = await fetch(`${tb.url}/admin/tasks/${task}/timeline?format=json`, { headers: { authorization: `Bearer ${OPS_KEY}` } });
    expect(timeline.status).toBe(200);
    const entries = ((await timeline.json()) as { entries: Array<{ kind: string }> }).entries;
    expect(entries.map((e) => e.kind)).toContain('use');
  });

  it('the usage port serves nothing else: 404 for the token endpoint and JWKS, 405 and OPTIONS name POST', async () => {
    expect((await fetch(`${usageUrl}/token`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'grant_type=x' })).status).toBe(404);
    expect((await fetch(`${usageUrl}/jwks`)).status).toBe(404);
    expect((await fetch(`${usageUrl}/.well-known/openid-configuration`)).status).toBe(404);
    const get = await fetch(`${usageUrl}/usage`);
    expect(get.status).toBe(405);
    expect(get.headers.get('allow')).toBe('POST');
    const options = await fetch(`${usageUrl}/usage/budget`, { method: 'OPTIONS' });
    expect(options.status).toBe(204);
    expect(options.headers.get('allow')).toBe('POST');
  });

  it('refuses bad input there as on the public port: unauthenticated 401, malformed JSON 400, never a 500', async () => {
    const { jti, task } = await token();
    expect((await post(usageUrl, '/usage', { records: [record(jti, task)] }, { authorization: basic('crm-api', 'wrong') })).status).toBe(401);
    const bad = await fetch(`${usageUrl}/usage`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: basic('crm-api', CRM_RS_SECRET) }, body: '{"records": [' });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: string }).error).toBe('invalid_request');
  });

  it("the SDK's reporter sends to usageUrl; a client assertion still names <issuer>/usage as its audience", async () => {
    const { jti, task } = await token();
    const bySecret = createUsageReporter({ issuer: tb.url, usageUrl, clientId: 'crm-api', clientSecret: CRM_RS_SECRET, flushIntervalMs: 10 });
    bySecret.report({ jti, plugin: 'crm-reader', task, audience: CRM_API, method: 'GET', route: '/contacts/:id', status: 200 });
    await bySecret.flush();
    expect(bySecret.stats()).toMatchObject({ sent: 1, rejected: 0, dropped: 0 });
    await bySecret.close();

    const audiences: string[] = [];
    const errors: string[] = [];
    const byAssertion = createUsageReporter({
      issuer: tb.url,
      usageUrl: `${usageUrl}/`,
      clientId: 'tickets-api',
      clientAssertion: (aud) => {
        audiences.push(aud);
        return clientAssertion(tickets.privateKey, aud, nowS());
      },
      flushIntervalMs: 10,
      onError: (e) => errors.push(e.message),
    });
    // A record for an audience tickets-api does not answer for: refused one by one (a 200 naming
    // the record), not the batch refused whole (a 401): the request was authenticated.
    byAssertion.report({ jti, plugin: 'crm-reader', task, audience: CRM_API, method: 'GET', route: '/contacts/:id', status: 200 });
    await byAssertion.flush();
    expect(byAssertion.stats()).toMatchObject({ sent: 0, rejected: 1 });
    expect(errors).toEqual([expect.stringMatching(/^Leash refused 1 of 1 usage records: .*audience/)]);
    expect(audiences).toEqual([`${tb.url}/usage`]);
    await byAssertion.close();
  });

  it('the reporter refuses a usageUrl that is not an http(s) origin', () => {
    for (const usageUrl of ['ftp://leash:8081', 'https://leash:8081/usage', 'leash:8081', 'https://leash:8081?x=1'])
      expect(() => createUsageReporter({ issuer: tb.url, usageUrl, clientId: 'crm-api', clientSecret: CRM_RS_SECRET })).toThrow(/usageUrl/);
  });
});

describe('the usage port closes with the broker', () => {
  it('no connection is accepted there after close', async () => {
    const tb = await startTestBroker({ patch: (cfg) => (cfg.settings.usage = { listen: { host: '127.0.0.1', port: 0 } }) });
    const port = Number(new URL(tb.broker.usageUrl!).port);
    await tb.close();
    const refused = await new Promise<string>((resolve) => {
      const s = connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        resolve('connected');
      });
      s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
    });
    expect(refused).toBe('ECONNREFUSED');
  });
});
