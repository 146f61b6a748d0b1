import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Agent } from 'node:http';
import { CRM_API, EXCHANGE, JWT_TYPE, OPS_KEY, ORCHESTRATOR_KEY, startTestBroker, type TestBroker } from '../support/broker.js';
import { rawRequest } from '../support/http.js';
import { CRM_RS_SECRET, basic, withResourceServers, ticketsKey } from './introspect-support.js';

/** settings.max_body_bytes in this file (the schema default, said explicitly). */
const MAX = 16384;
const FORM = { 'content-type': 'application/x-www-form-urlencoded' };
const JSON_TYPE = { 'content-type': 'application/json' };

/** A form body of at least `bytes` bytes: the parameters plus a `pad` parameter nobody reads. */
const padForm = (params: Record<string, string>, bytes: number) => {
  const form = new URLSearchParams(params).toString();
  return `${form}&pad=${'x'.repeat(Math.max(0, bytes - form.length - 5))}`;
};
/** A JSON body of at least `bytes` bytes: valid JSON, padded with trailing whitespace. */
const padJson = (value: unknown, bytes: number) => {
  const text = JSON.stringify(value);
  return text + ' '.repeat(Math.max(0, bytes - text.length));
};

describe('settings.max_body_bytes counts the bytes read, chunked or not, on every endpoint', () => {
  let tb: TestBroker;
  let task: string;
  let kid: string;
  beforeAll(async () => {
    tb = await startTestBroker({
      patch: withResourceServers(await ticketsKey(), (cfg) => {
        cfg.settings.max_body_bytes = MAX;
      }),
    });
    task = await tb.openTask();
    kid = tb.broker.testing.keys.current().kid;
  });
  afterAll(async () => tb.close());

  const exchangeForm = async () => ({ grant_type: EXCHANGE, client_id: 'crm-reader', subject_token: await tb.cluster.saToken(), subject_token_type: JWT_TYPE, resource: CRM_API, task });
  const ops = { authorization: `Bearer ${OPS_KEY}` };
  const orchestrator = { authorization: `Bearer ${ORCHESTRATOR_KEY}` };
  const crmApi = { authorization: basic('crm-api', CRM_RS_SECRET) };

  /** Everything a request could have changed: none of it may move on a refused body. */
  async function state() {
    const store = tb.broker.testing.store;
    return {
      audit: (await store.read(1, 100000)).length,
      revocations: (await store.revocationsSince(0, 100000, Date.now())).length,
      activeTasks: await store.countActiveTasks(Date.now()),
      keys: JSON.stringify(tb.broker.testing.keys.list()),
      suspended: (await store.listSuspensions()).length,
    };
  }

  // Each body would be a valid request if it were small: only its size refuses it.
  const cases: Array<[string, string, () => Promise<Record<string, string>>, (bytes: number) => Promise<string>]> = [
    ['/token', 'token', async () => FORM, async (n) => padForm(await exchangeForm(), n)],
    ['/introspect', 'introspect', async () => ({ ...FORM, ...crmApi }), async (n) => padForm({ token: 'x' }, n)],
    ['/revoke', 'revoke', async () => FORM, async (n) => padForm({ client_id: 'crm-reader', token: 'x' }, n)],
    ['/revocations', 'revocation feed poll', async () => ({ ...FORM, ...crmApi }), async (n) => padForm({ since: '0' }, n)],
    ['/revocations/stream', 'revocation feed stream', async () => ({ ...FORM, ...crmApi }), async (n) => padForm({ since: '0' }, n)],
    ['/tasks', 'tasks', async () => ({ ...JSON_TYPE, ...orchestrator }), async (n) => padJson({ plugins: ['crm-reader'] }, n)],
    ['/admin/revocations', 'admin revocation', async () => ({ ...JSON_TYPE, ...ops }), async (n) => padJson({ scope: 'task', id: task, reason: 'incident 42' }, n)],
    ['/admin/plugins/crm-reader/suspend', 'admin suspend', async () => ({ ...JSON_TYPE, ...ops }), async (n) => padJson({ reason: 'incident 42' }, n)],
    ['/admin/plugins/crm-reader/resume', 'admin resume', async () => ({ ...JSON_TYPE, ...ops }), async (n) => padJson({ reason: 'incident 42' }, n)],
    ['/admin/keys/rotate', 'admin key rotate', async () => ({ ...JSON_TYPE, ...ops }), async (n) => padJson({ reason: 'scheduled', force: true }, n)],
    ['/admin/keys/{kid}/retire', 'admin key retire', async () => ({ ...JSON_TYPE, ...ops }), async (n) => padJson({ reason: 'scheduled' }, n)],
    ['/admin/keys/{kid}/revoke', 'admin key revoke', async () => ({ ...JSON_TYPE, ...ops }), async (n) => padJson({ reason: 'compromised' }, n)],
    ['/admin/approvals/apr_0123456789abcdef/approve', 'admin approve', async () => ({ ...JSON_TYPE, ...ops }), async (n) => padJson({ reason: 'ok' }, n)],
    ['/admin/approvals/apr_0123456789abcdef/deny', 'admin deny', async () => ({ ...JSON_TYPE, ...ops }), async (n) => padJson({ reason: 'no' }, n)],
    ['/admin/aws/deny-sessions', 'admin AWS brake', async () => ({ ...JSON_TYPE, ...ops }), async (n) => padJson({ role_arn: 'arn:aws:iam::123456789012:role/x', reason: 'incident 42' }, n)],
  ];

  describe.each([
    ['just over the limit', MAX + 1],
    ["between the limit and the form endpoints' own cap", 20 * 1024],
    ["over oidc-provider's own 56 KiB cap", 57 * 1024],
  ])('a chunked body %s', (_n, bytes) => {
    it.each(cases)('POST %s (%s): 413 invalid_request, and nothing happens', async (path, _name, headers, body) => {
      const before = await state();
      const res = await rawRequest(tb.url, { method: 'POST', path: path.replace('{kid}', kid), headers: await headers(), body: await body(bytes), chunkBytes: 4096 });
      expect(res.status).toBe(413);
      expect(res.headers['content-type']).toMatch(/^application\/json/);
      expect(res.json).toEqual({ error: 'invalid_request', error_description: `request body larger than ${MAX} bytes (ERR_REQUEST_TOO_LARGE)` });
      expect(res.json?.access_token).toBeUndefined();
      expect(await state()).toEqual(before);
    });
  });

  it('a declared Content-Length over the limit is refused the same way, before the body is read', async () => {
    const before = await state();
    const res = await rawRequest(tb.url, { method: 'POST', path: '/token', headers: FORM, body: padForm(await exchangeForm(), MAX + 1) });
    expect(res.status).toBe(413);
    expect(res.json).toEqual({ error: 'invalid_request', error_description: `request body larger than ${MAX} bytes (ERR_REQUEST_TOO_LARGE)` });
    expect(await state()).toEqual(before);
  });

  describe('bodies within the limit reach their parser unchanged', () => {
    it('a chunked token exchange, in small pieces and padded to just under the limit, gets its token', async () => {
      for (const [bytes, pieces] of [
        [0, 7],
        [MAX - 100, 4096],
        [MAX, 1000],
      ] as const) {
        const res = await rawRequest(tb.url, { method: 'POST', path: '/token', headers: FORM, body: padForm(await exchangeForm(), bytes), chunkBytes: pieces });
        expect(`${bytes}: ${res.status}`).toBe(`${bytes}: 200`);
        expect(typeof res.json?.access_token).toBe('string');
      }
    });

    it('a body of exactly the limit is accepted, with or without Content-Length', async () => {
      for (const chunkBytes of [undefined, 512]) {
        const body = padForm(await exchangeForm(), MAX);
        expect(Buffer.byteLength(body)).toBe(MAX);
        const res = await rawRequest(tb.url, { method: 'POST', path: '/token', headers: FORM, body, chunkBytes });
        expect(res.status).toBe(200);
      }
    });

    it('a chunked JSON body opens a task; a chunked form body is introspected', async () => {
      const opened = await rawRequest(tb.url, { method: 'POST', path: '/tasks', headers: { ...JSON_TYPE, ...orchestrator }, body: JSON.stringify({ plugins: ['crm-reader'] }), chunkBytes: 5 });
      expect(opened.status).toBe(201);
      const res = await rawRequest(tb.url, { method: 'POST', path: '/token', headers: FORM, body: new URLSearchParams(await exchangeForm()).toString(), chunkBytes: 64 });
      const introspected = await rawRequest(tb.url, { method: 'POST', path: '/introspect', headers: { ...FORM, ...crmApi }, body: `token=${res.json?.access_token as string}`, chunkBytes: 100 });
      expect(introspected.json?.active).toBe(true);
    });

    it('an empty chunked body is answered (a 4xx from the route), not left hanging', async () => {
      const token = await rawRequest(tb.url, { method: 'POST', path: '/token', headers: FORM, body: '', chunkBytes: 10 });
      expect(token.status).toBe(400);
      expect(token.json?.error).toBe('invalid_request');
      const tasks = await rawRequest(tb.url, { method: 'POST', path: '/tasks', headers: { ...JSON_TYPE, ...orchestrator }, body: '', chunkBytes: 10 });
      expect(tasks.status).toBe(400);
    });

    it('a keep-alive connection serves the next request after a chunked one', async () => {
      const agent = new Agent({ keepAlive: true, maxSockets: 1 });
      try {
        const sockets = new Set<unknown>();
        agent.on('free', (socket) => sockets.add(socket));
        for (let i = 0; i < 3; i++) {
          const res = await rawRequest(tb.url, { method: 'POST', path: '/token', headers: FORM, body: new URLSearchParams(await exchangeForm()).toString(), chunkBytes: 300, agent });
          expect(res.status).toBe(200);
        }
        const jwks = await rawRequest(tb.url, { method: 'GET', path: '/jwks', agent });
        expect(jwks.status).toBe(200);
        expect(sockets.size).toBe(1);
      } finally {
        agent.destroy();
      }
    });
  });
});
