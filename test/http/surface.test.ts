import { afterAll, beforeAll, describe, expect, it, jest } from '@jest/globals';
import { createServer, Agent, type Server } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { SignJWT, generateKeyPair } from 'jose';
import { CRM_API, EXCHANGE, JWT_TYPE, OPS_KEY, ORCHESTRATOR_KEY, startTestBroker, type TestBroker } from '../support/broker.js';
import { rawRequest, type RawResponse } from '../support/http.js';
import { waitFor } from '../support/wait.js';
import { CRM_RS_SECRET, basic, ticketsKey, withResourceServers } from './introspect-support.js';
import { buildProvider, pinIssuerOrigin } from '../../src/http/oauth/provider.js';
import { compilePolicy } from '../../src/policy/compile.js';

/**
 * Every (method, path) Leash answers with something other than 404 or 405. HEAD goes with
 * GET. Keep this table in step with src/http/surface.ts: a route that appears on the app
 * without being listed here fails the build, and so does a listed one that disappears.
 * Health, readiness and metrics are on the management port: MANAGEMENT_SERVED below.
 */
const SERVED: Record<string, readonly string[]> = {
  // OAuth / OIDC
  '/token': ['POST'],
  '/introspect': ['POST'],
  '/revoke': ['POST'],
  '/jwks': ['GET', 'HEAD'],
  '/.well-known/openid-configuration': ['GET', 'HEAD'],
  '/.well-known/oauth-authorization-server': ['GET', 'HEAD'],
  // revocation feed
  '/revocations': ['GET', 'HEAD', 'POST'],
  '/revocations/stream': ['GET', 'HEAD', 'POST'],
  // tasks and admin API
  '/tasks': ['POST'],
  '/tasks/tsk_0123456789abcdef': ['GET', 'HEAD', 'DELETE'],
  '/admin/approvals': ['GET', 'HEAD'],
  '/admin/approvals/apr_0123456789': ['GET', 'HEAD'],
  '/admin/approvals/apr_0123456789/approve': ['POST'],
  '/admin/approvals/apr_0123456789/deny': ['POST'],
  '/admin/aws/deny-sessions': ['POST'],
  '/admin/keys': ['GET', 'HEAD'],
  '/admin/keys/rotate': ['POST'],
  '/admin/keys/some-kid/retire': ['POST'],
  '/admin/keys/some-kid/revoke': ['POST'],
  '/admin/review': ['GET', 'HEAD'],
  '/admin/plugins/suspended': ['GET', 'HEAD'],
  '/admin/plugins/crm-reader/suspend': ['POST'],
  '/admin/plugins/crm-reader/resume': ['POST'],
  '/admin/revocations': ['POST'],
};

/** The management port answers these, and nothing else (src/http/surface.ts MANAGEMENT_ROUTES). */
const MANAGEMENT_SERVED: Record<string, readonly string[]> = {
  '/healthz': ['GET', 'HEAD'],
  '/readyz': ['GET', 'HEAD'],
  '/metrics': ['GET', 'HEAD'],
};

/** Paths that must answer nothing: everything oidc-provider or express could serve that Leash does not offer. */
const NOT_SERVED = [
  '/',
  '/auth',
  '/auth/some-uid',
  '/me',
  '/reg',
  '/reg/crm-reader',
  '/token/introspection',
  '/token/revocation',
  '/session/end',
  '/session/end/confirm',
  '/session/end/success',
  '/device',
  '/device/auth',
  '/device/some-uid',
  '/request',
  '/backchannel',
  '/challenge',
  '/credential',
  '/interaction/some-uid',
  '/interaction/some-uid/abort',
  '/.well-known/openid-credential-issuer',
  '/.well-known/webfinger',
  '/.well-known/jwks.json',
  '/jwks.json',
  '/tasks/tsk_0123456789abcdef/extra',
  '/admin',
  '/admin/tasks',
  '/admin/aws',
  '/admin/plugins',
  '/admin/plugins/crm-reader',
  '/admin/keys/some-kid',
  '/admin/approvals/apr_0123456789/other',
  '/revocations/stream/x',
  '/introspect/x',
  '/index.html',
  // the security console: off unless settings.console.enabled (test/console/ tests it on)
  '/console',
  '/console/approvals',
  '/console/login',
  '/console/assets/console.js',
  // on the management port only
  '/metrics',
  '/healthz',
  '/readyz',
];

/** Spellings express (and oidc-provider) treat as the same route: case and a trailing slash. */
const ALIASES: Array<[string, string | undefined]> = [
  ['/TOKEN', '/token'],
  ['/token/', '/token'],
  ['/Tasks/tsk_0123456789abcdef/', '/tasks/tsk_0123456789abcdef'],
  ['/AUTH', undefined],
  ['/Session/End/', undefined],
  ['/request/', undefined],
];

const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'TRACE', 'PROPFIND'];

/** What a browser (or anything looking for cross-origin access or a page) would send. */
const PROBE_HEADERS = { origin: 'https://evil.example', accept: 'text/html,application/xhtml+xml,*/*' };

type Answer = 'served' | 'method_not_allowed' | 'absent' | 'options';

describe('the HTTP surface says only what is true', () => {
  let tb: TestBroker;
  let agent: Agent;
  const logs: string[] = [];
  beforeAll(async () => {
    tb = await startTestBroker({ patch: withResourceServers(await ticketsKey()), broker: { write: (line) => void logs.push(line) } });
    agent = new Agent({ keepAlive: true, maxSockets: 8 });
  });
  afterAll(async () => {
    agent.destroy();
    await tb.close();
  });

  const probe = (method: string, path: string, headers: Record<string, string> = {}, base = tb.url) => rawRequest(base, { method, path, headers: { ...PROBE_HEADERS, ...headers }, agent });

  /** Headers no answer of Leash may carry, whatever was asked. */
  function expectClean(res: RawResponse, what: string): void {
    const found = {
      cors: Object.keys(res.headers).filter((h) => h.startsWith('access-control-')),
      cookie: res.headers['set-cookie'] ?? [],
      html: /html/i.test(String(res.headers['content-type'] ?? '')),
      varyOrigin: /origin/i.test(String(res.headers.vary ?? '')),
    };
    expect({ what, ...found }).toEqual({ what, cors: [], cookie: [], html: false, varyOrigin: false });
  }

  function classify(method: string, path: string, res: RawResponse): Answer {
    if (method === 'OPTIONS') return 'options';
    if (res.status === 404) {
      if (method !== 'HEAD')
        expect(`${method} ${path}: ${JSON.stringify(res.json)}`).toBe(`${method} ${path}: ${JSON.stringify({ error: 'not_found', error_description: 'no such endpoint (ERR_ROUTE_NOT_FOUND)' })}`);
      return 'absent';
    }
    if (res.status === 405) return 'method_not_allowed';
    return 'served';
  }

  it('route inventory: every (method, path) that answers is in the allowlist, and every listed one answers', async () => {
    const served: string[] = [];
    const expected: string[] = [];
    for (const [path, methods] of Object.entries(SERVED)) for (const m of methods) expected.push(`${m} ${path}`);

    for (const path of [...Object.keys(SERVED), ...NOT_SERVED]) {
      const allow = SERVED[path];
      for (const method of METHODS) {
        const res = await probe(method, path);
        expectClean(res, `${method} ${path}`);
        const answer = classify(method, path, res);
        if (answer === 'served') served.push(`${method} ${path}`);
        if (answer === 'method_not_allowed' || answer === 'options') {
          // Only a route Leash serves names its methods, and it names exactly those.
          const expectedStatus = method === 'OPTIONS' ? (allow ? 204 : 404) : 405;
          expect(`${method} ${path} -> ${res.status} Allow: ${String(res.headers.allow)}`).toBe(`${method} ${path} -> ${expectedStatus} Allow: ${allow ? allow.join(', ') : 'undefined'}`);
        }
        if (answer === 'method_not_allowed' && method !== 'HEAD')
          expect(res.json).toEqual({ error: 'invalid_request', error_description: `this endpoint takes ${allow!.join(', ')} (ERR_METHOD_NOT_ALLOWED)` });
      }
    }
    expect(served.sort()).toEqual(expected.sort());
  });

  it('route inventory of the management port: health, readiness and metrics, nothing of the public API', async () => {
    const served: string[] = [];
    const expected: string[] = [];
    for (const [path, methods] of Object.entries(MANAGEMENT_SERVED)) for (const m of methods) expected.push(`${m} ${path}`);
    for (const path of [...Object.keys(MANAGEMENT_SERVED), ...Object.keys(SERVED), '/', '/Metrics/', '/metrics/x']) {
      const allow = MANAGEMENT_SERVED[path.toLowerCase().replace(/\/$/, '')];
      for (const method of METHODS) {
        const res = await probe(method, path, {}, tb.managementUrl);
        expectClean(res, `management ${method} ${path}`);
        const answer = classify(method, path, res);
        if (answer === 'served') served.push(`${method} ${path}`);
        if (answer === 'method_not_allowed' || answer === 'options') {
          const expectedStatus = method === 'OPTIONS' ? (allow ? 204 : 404) : 405;
          expect(`${method} ${path} -> ${res.status} Allow: ${String(res.headers.allow)}`).toBe(`${method} ${path} -> ${expectedStatus} Allow: ${allow ? allow.join(', ') : 'undefined'}`);
        }
      }
    }
    expect(served.sort()).toEqual([...expected, 'GET /Metrics/', 'HEAD /Metrics/'].sort());
  });

  it('aliases (case, trailing slash) answer exactly as the route they spell, and nothing else appears through them', async () => {
    for (const [alias, canonical] of ALIASES) {
      for (const method of METHODS) {
        const a = await probe(method, alias);
        expectClean(a, `${method} ${alias}`);
        const expectedStatus = canonical === undefined ? 404 : (await probe(method, canonical)).status;
        expect(`${method} ${alias} -> ${a.status}`).toBe(`${method} ${alias} -> ${expectedStatus}`);
      }
    }
  });

  it('no CORS anywhere: a preflight from any origin gets no Access-Control-* header, on any route', async () => {
    for (const path of [...Object.keys(SERVED), ...NOT_SERVED]) {
      const res = await probe('OPTIONS', path, { 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type, dpop' });
      expectClean(res, `preflight ${path}`);
      expect(res.status).toBe(SERVED[path] ? 204 : 404);
    }
  });

  it('no CORS on answers either: token exchanges with and without an Origin, and their early errors', async () => {
    const task = await tb.openTask();
    const form = async () => ({ grant_type: EXCHANGE, client_id: 'crm-reader', subject_token: await tb.cluster.saToken(), subject_token_type: JWT_TYPE, resource: CRM_API, task });
    const post = (body: Record<string, string>, headers: Record<string, string>) =>
      rawRequest(tb.url, { method: 'POST', path: '/token', headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers }, body: new URLSearchParams(body).toString() });

    // A plugin (a server: no Origin) gets its token, without the `*` oidc-provider would add.
    const issued = await post(await form(), {});
    expectClean(issued, 'issued');
    expect(issued.status).toBe(200);
    // Anything from a browser origin is refused (no client may be called cross-origin), and says nothing about CORS.
    const cases: Array<[string, Record<string, string>]> = [
      ['a valid exchange', await form()],
      ['no client_id (refused before the client is known)', { ...(await form()), client_id: '' }],
      ['unknown client', { ...(await form()), client_id: 'nobody' }],
      ['unsupported grant type', { ...(await form()), grant_type: 'client_credentials' }],
    ];
    for (const [name, body] of cases) {
      const res = await post(body, PROBE_HEADERS);
      expectClean(res, name);
      expect(res.headers['content-type']).toMatch(/^application\/json/);
      expect({ name, status: res.status >= 400 && res.status < 500, token: res.json?.access_token }).toEqual({ name, status: true, token: undefined });
    }
    // A wrong content type is refused in JSON too, not as a page.
    const wrongType = await rawRequest(tb.url, { method: 'POST', path: '/token', headers: { ...PROBE_HEADERS, 'content-type': 'text/plain' }, body: 'x' });
    expectClean(wrongType, 'text/plain body');
    expect(wrongType.json?.error).toBe('invalid_request');
  });

  it('unknown routes and methods answer OAuth-shaped JSON (404 not_found, 405 with Allow)', async () => {
    const missing = await rawRequest(tb.url, { method: 'GET', path: '/nope' });
    expect(missing.status).toBe(404);
    expect(missing.headers['content-type']).toMatch(/^application\/json/);
    expect(missing.headers['cache-control']).toBe('no-store');
    expect(missing.json).toEqual({ error: 'not_found', error_description: 'no such endpoint (ERR_ROUTE_NOT_FOUND)' });

    const wrong = await rawRequest(tb.url, { method: 'PUT', path: '/tasks/tsk_0123456789abcdef' });
    expect(wrong.status).toBe(405);
    expect(wrong.headers.allow).toBe('GET, HEAD, DELETE');
    expect(wrong.headers['content-type']).toMatch(/^application\/json/);
    expect(wrong.json).toEqual({ error: 'invalid_request', error_description: 'this endpoint takes GET, HEAD, DELETE (ERR_METHOD_NOT_ALLOWED)' });

    const token = await rawRequest(tb.url, { method: 'GET', path: '/token' });
    expect(token.status).toBe(405);
    expect(token.headers.allow).toBe('POST');
  });

  describe('Cache-Control: no-store on every answer that carries task or token data', () => {
    it('tasks, token, introspection, revocation, the feed and the admin reads', async () => {
      const seen: Array<[string, number, string | undefined]> = [];
      const call = async (method: string, path: string, headers: Record<string, string>, body?: string) => {
        const res = await rawRequest(tb.url, { method, path, headers, body });
        seen.push([`${method} ${path.replace(/tsk_[\w-]+|apr_[\w-]+/, '{id}')}`, res.status, res.headers['cache-control']]);
        return res;
      };
      const orch = { authorization: `Bearer ${ORCHESTRATOR_KEY}` };
      const ops = { authorization: `Bearer ${OPS_KEY}` };
      const json = { 'content-type': 'application/json' };
      const formType = { 'content-type': 'application/x-www-form-urlencoded' };
      const crmApi = { authorization: basic('crm-api', CRM_RS_SECRET) };

      const opened = await call('POST', '/tasks', { ...orch, ...json }, JSON.stringify({ plugins: ['crm-reader', 'prod-only'] }));
      const task = opened.json?.id as string;
      await call('GET', `/tasks/${task}`, orch);
      const issued = await call(
        'POST',
        '/token',
        formType,
        new URLSearchParams({ grant_type: EXCHANGE, client_id: 'crm-reader', subject_token: await tb.cluster.saToken(), subject_token_type: JWT_TYPE, resource: CRM_API, task }).toString(),
      );
      const token = issued.json?.access_token as string;
      await call('POST', '/introspect', { ...formType, ...crmApi }, `token=${token}`);
      // A request that needs a human approval: its pending approval is task data too.
      const pending = await call(
        'POST',
        '/token',
        formType,
        new URLSearchParams({
          grant_type: EXCHANGE,
          client_id: 'prod-only',
          subject_token: await tb.cluster.saToken({ sa: 'prod-only' }),
          subject_token_type: JWT_TYPE,
          resource: 'https://audit.example.com',
          task,
        }).toString(),
      );
      expect(pending.json?.error).toBe('authorization_pending');
      await call('GET', '/admin/approvals', ops);
      await call('GET', `/admin/approvals/${pending.json?.approval_id as string}`, ops);
      await call('POST', '/revoke', formType, `client_id=crm-reader&token=${token}`);
      await call('POST', '/admin/revocations', { ...ops, ...json }, JSON.stringify({ scope: 'token', id: 'jti-surface-test', reason: 'cache test' }));
      await call('GET', '/revocations', crmApi);
      await call('POST', '/admin/plugins/ticket-writer/suspend', { ...ops, ...json }, JSON.stringify({ reason: 'cache test' }));
      await call('GET', '/admin/plugins/suspended', ops);
      await call('POST', '/admin/plugins/ticket-writer/resume', { ...ops, ...json }, JSON.stringify({ reason: 'cache test' }));
      await call('GET', '/admin/keys', ops);
      await call('DELETE', `/tasks/${task}`, orch);
      // Refusals carry no data but say the same (RFC 6749 §5.2).
      await call('GET', `/tasks/${task}`, {});

      for (const [route, status, cache] of seen) expect(`${route} (${status}): ${cache}`).toBe(`${route} (${status}): no-store`);
      expect(seen.filter(([, status]) => status >= 200 && status < 300)).toHaveLength(seen.length - 2);
    });

    it('the public documents may be cached briefly; nothing else says so', async () => {
      for (const path of ['/jwks', '/.well-known/openid-configuration', '/.well-known/oauth-authorization-server']) {
        const res = await rawRequest(tb.url, { method: 'GET', path });
        expect(`${path}: ${String(res.headers['cache-control'])}`).toBe(`${path}: public, max-age=60`);
      }
    });
  });
});

describe("the protocol layer's own errors go to the JSON log, not stderr", () => {
  let tb: TestBroker;
  let jwks: Server;
  let held: Array<() => void> = [];
  let arrived = 0;
  const logs: string[] = [];
  const SLOW_ISSUER = 'https://slow-idp.example';

  beforeAll(async () => {
    // An issuer whose JWKS answers only when told to: the exchange is mid-flight meanwhile.
    jwks = createServer((_req, res) => {
      arrived++;
      held.push(() => res.writeHead(200, { 'content-type': 'application/json' }).end('{"keys":[]}'));
    });
    await new Promise<void>((r) => jwks.listen(0, '127.0.0.1', () => r()));
    const port = (jwks.address() as AddressInfo).port;
    tb = await startTestBroker({
      broker: { write: (line) => void logs.push(line) },
      patch: (cfg) => {
        cfg.trusted_issuers.push({ name: 'slow-idp', kind: 'oidc', issuer: SLOW_ISSUER, audience: 'leash', jwks: { uri: `http://127.0.0.1:${port}/jwks` } });
      },
    });
  });
  afterAll(async () => {
    for (const release of held) release();
    await tb.close();
    jwks.closeAllConnections();
    await new Promise<void>((r) => jwks.close(() => r()));
  });

  it('a client that resets the connection mid-exchange leaves one JSON log line and nothing on stderr', async () => {
    const printed = jest.spyOn(console, 'error').mockImplementation(() => undefined);
    try {
      const { privateKey } = await generateKeyPair('ES256');
      const now = Math.floor(Date.now() / 1000);
      const subject = await new SignJWT({})
        .setProtectedHeader({ alg: 'ES256', kid: 'k1' })
        .setIssuer(SLOW_ISSUER)
        .setSubject('svc')
        .setAudience('leash')
        .setIssuedAt(now)
        .setExpirationTime(now + 300)
        .sign(privateKey);
      const body = new URLSearchParams({ grant_type: EXCHANGE, client_id: 'crm-reader', subject_token: subject, subject_token_type: JWT_TYPE, resource: CRM_API }).toString();
      const url = new URL(tb.url);
      const socket = connect(Number(url.port), url.hostname);
      await new Promise<void>((r) => socket.once('connect', () => r()));
      socket.on('error', () => undefined);
      socket.write(`POST /token HTTP/1.1\r\nHost: ${url.host}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
      await waitFor(async () => arrived === 1, 5000);
      socket.resetAndDestroy();
      await waitFor(async () => logs.some((l) => l.includes('oauth protocol layer error')), 5000);
      for (const release of held) release();
      held = [];

      const lines = logs.filter((l) => l.includes('oauth protocol layer error'));
      expect(lines).toHaveLength(1);
      expect(lines[0]!.endsWith('\n')).toBe(true);
      expect(lines[0]!.trimEnd().includes('\n')).toBe(false);
      expect(JSON.parse(lines[0]!)).toMatchObject({ level: 'warn', msg: 'oauth protocol layer error', code: 'ECONNRESET' });
      expect(printed).not.toHaveBeenCalled();
    } finally {
      printed.mockRestore();
    }
  });
});

describe('an internal fault in the protocol layer is a 503 with Retry-After, never a 500', () => {
  let tb: TestBroker;
  let server: Server;
  let url: string;
  const logged: string[] = [];
  beforeAll(async () => {
    tb = await startTestBroker();
    // The real provider as the broker builds it, with a grant that fails the way a bug would.
    const provider = buildProvider({
      settings: tb.config.settings,
      policy: compilePolicy(tb.config),
      keys: tb.broker.testing.keys,
      grant: async () => {
        throw new TypeError('a bug in the grant');
      },
      log: (level, msg) => void logged.push(`${level} ${msg}`),
    });
    const koa = provider.callback();
    server = createServer(pinIssuerOrigin((req, res) => void koa(req, res), tb.url));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
    await tb.close();
  });

  it("oidc-provider's server_error becomes temporarily_unavailable, in JSON, with no CORS header", async () => {
    const res = await rawRequest(url, {
      method: 'POST',
      path: '/token',
      headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'text/html' },
      body: new URLSearchParams({ grant_type: EXCHANGE, client_id: 'crm-reader', subject_token: 'x', subject_token_type: JWT_TYPE, resource: CRM_API }).toString(),
    });
    expect(res.status).toBe(503);
    expect(res.headers['retry-after']).toBe('2');
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    expect(res.json).toEqual({ error: 'temporarily_unavailable', error_description: expect.any(String) });
    expect(res.text).not.toContain('a bug in the grant');
    expect(Object.keys(res.headers).filter((h) => h.startsWith('access-control-'))).toEqual([]);
  });
});
