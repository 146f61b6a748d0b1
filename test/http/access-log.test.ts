import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createLogger, REDACTED } from '../../src/log/logger.js';
import { CRM_API, EXCHANGE, JWT_TYPE, OPS_KEY, ORCHESTRATOR_KEY, loadedFrom, startTestBroker, type TestBroker } from '../support/broker.js';
import { waitFor } from '../support/wait.js';
import { CRM_RS_SECRET, basic, ticketsKey, withResourceServers } from './introspect-support.js';

type Line = Record<string, unknown> & { level: string; time: string; msg: string };

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

describe('the log stream: request ids, access lines, audit correlation', () => {
  let tb: TestBroker;
  const raw: string[] = [];
  const lines = () => raw.map((l) => JSON.parse(l) as Line);
  const accessLine = async (requestId: string) => {
    await waitFor(async () => lines().some((l) => l.request_id === requestId), 5000);
    return lines().filter((l) => l.request_id === requestId);
  };
  const eventsSince = async (before: number) => (await tb.broker.testing.store.read(before + 1, 100000)).map((r) => ({ type: r.type, ...r.event }) as Record<string, unknown>);
  const lastSeq = async () => (await tb.broker.testing.store.read(1, 100000)).at(-1)?.seq ?? 0;
  const exchangeParams = async (task: string, extra: Record<string, string> = {}) => ({
    grant_type: EXCHANGE,
    client_id: 'crm-reader',
    subject_token: await tb.cluster.saToken(),
    subject_token_type: JWT_TYPE,
    resource: CRM_API,
    task,
    ...extra,
  });

  beforeAll(async () => {
    tb = await startTestBroker({ patch: withResourceServers(await ticketsKey()), broker: { write: (line) => void raw.push(line) } });
  });
  afterAll(async () => tb.close());

  it('every line is one JSON object with a level name, an ISO time and msg', async () => {
    await fetch(`${tb.url}/jwks`);
    await waitFor(async () => raw.length > 0, 5000);
    for (const l of raw) {
      expect(l.endsWith('\n')).toBe(true);
      const line = JSON.parse(l) as Line;
      expect(['fatal', 'error', 'warn', 'info', 'debug', 'trace']).toContain(line.level);
      expect(new Date(line.time).toISOString()).toBe(line.time);
      expect(typeof line.msg).toBe('string');
    }
  });

  it('a sane X-Request-Id is kept and returned; anything else is replaced by a new id', async () => {
    for (const sent of ['abc-123', 'Root=1-67891233-abcdef012345678912345678', '0af7651916cd43dd8448eb211c80319c', 'a'.repeat(128)]) {
      const res = await fetch(`${tb.url}/jwks`, { headers: { 'x-request-id': sent } });
      expect(res.headers.get('x-request-id')).toBe(sent);
    }
    for (const sent of ['a'.repeat(129), 'two words', '"quoted"', 'semi;colon', '<tag>', 'tab\there']) {
      const res = await fetch(`${tb.url}/jwks`, { headers: { 'x-request-id': sent } });
      expect([sent, UUID.test(res.headers.get('x-request-id') ?? '')]).toEqual([sent, true]);
    }
    const a = (await fetch(`${tb.url}/jwks`)).headers.get('x-request-id');
    const b = (await fetch(`${tb.url}/jwks`)).headers.get('x-request-id');
    expect(a).toMatch(UUID);
    expect(a).not.toBe(b);
  });

  it('every kind of answer carries the id: 200, 4xx from express and from the token endpoint, 404, 405, OPTIONS, the management port', async () => {
    const task = await tb.openTask();
    const answers = [
      await fetch(`${tb.url}/token`, { method: 'POST', body: new URLSearchParams(await exchangeParams(task)) }),
      await fetch(`${tb.url}/token`, { method: 'POST', body: new URLSearchParams({ grant_type: EXCHANGE }) }),
      await fetch(`${tb.url}/token`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' }),
      await fetch(`${tb.url}/tasks`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' }),
      await fetch(`${tb.url}/nowhere`),
      await fetch(`${tb.url}/jwks`, { method: 'DELETE' }),
      await fetch(`${tb.url}/token`, { method: 'OPTIONS' }),
      await fetch(`${tb.managementUrl}/healthz`),
      await fetch(`${tb.managementUrl}/metrics`),
    ];
    expect(answers.map((r) => r.status)).toEqual([200, 400, 400, 401, 404, 405, 204, 200, 200]);
    for (const r of answers) expect(r.headers.get('x-request-id')).toMatch(UUID);
  });

  it('one access line per request: method, route template, status, duration, and the plugin of an exchange; never a token, a header or a query', async () => {
    const task = await tb.openTask();
    const params = await exchangeParams(task);
    const res = await fetch(`${tb.url}/token`, { method: 'POST', headers: { 'x-request-id': 'exchange-1' }, body: new URLSearchParams(params) });
    expect(res.status).toBe(200);
    const token = ((await res.json()) as { access_token: string }).access_token;
    const [line, ...more] = await accessLine('exchange-1');
    expect(more).toEqual([]);
    expect(line).toMatchObject({ level: 'info', msg: 'request', method: 'POST', route: '/token', status: 200, plugin: 'crm-reader' });
    expect(typeof line!.duration_ms).toBe('number');
    expect(line!.duration_ms).toBeGreaterThan(0);

    // A task id in the path is the route's template in the line; the query is not logged.
    await fetch(`${tb.url}/tasks/${task}?token=${token}`, { headers: { authorization: `Bearer ${ORCHESTRATOR_KEY}`, 'x-request-id': 'read-task' } });
    expect((await accessLine('read-task'))[0]).toMatchObject({ method: 'GET', route: '/tasks/:id', status: 200 });
    await fetch(`${tb.url}/no/such/${token}`, { headers: { 'x-request-id': 'unknown-path' } });
    expect((await accessLine('unknown-path'))[0]).toMatchObject({ method: 'GET', route: '-', status: 404 });

    // A refused exchange names no plugin unless one was resolved from the attestation.
    await fetch(`${tb.url}/token`, { method: 'POST', headers: { 'x-request-id': 'bad-attestation' }, body: new URLSearchParams({ ...params, subject_token: 'not.a.jwt' }) });
    const refused = (await accessLine('bad-attestation'))[0]!;
    expect(refused).toMatchObject({ route: '/token', status: 400 });
    expect(refused.plugin).toBeUndefined();

    const all = raw.join('');
    for (const secret of [token, params.subject_token, ORCHESTRATOR_KEY, task]) expect(all).not.toContain(secret);
  });

  it('the audit events of a request carry its id (token endpoint, JSON admin routes, RFC 7009 form), events outside a request none', async () => {
    const before = await lastSeq();
    const task = await (async () => {
      const res = await fetch(`${tb.url}/tasks`, {
        method: 'POST',
        headers: { authorization: `Bearer ${ORCHESTRATOR_KEY}`, 'content-type': 'application/json', 'x-request-id': 'open-task' },
        body: JSON.stringify({ plugins: ['crm-reader'] }),
      });
      return ((await res.json()) as { id: string }).id;
    })();
    const issued = await fetch(`${tb.url}/token`, { method: 'POST', headers: { 'x-request-id': 'issue' }, body: new URLSearchParams(await exchangeParams(task)) });
    const token = ((await issued.json()) as { access_token: string }).access_token;
    await fetch(`${tb.url}/token`, { method: 'POST', headers: { 'x-request-id': 'deny' }, body: new URLSearchParams(await exchangeParams(task, { scope: 'contacts:delete' })) });
    await fetch(`${tb.url}/revoke`, { method: 'POST', headers: { authorization: basic('crm-api', CRM_RS_SECRET), 'x-request-id': 'rfc7009' }, body: new URLSearchParams({ token }) });
    await fetch(`${tb.url}/admin/revocations`, {
      method: 'POST',
      headers: { authorization: `Bearer ${OPS_KEY}`, 'content-type': 'application/json', 'x-request-id': 'admin-revoke' },
      body: JSON.stringify({ scope: 'task', id: task, reason: 'test of request ids' }),
    });
    await fetch(`${tb.url}/admin/keys`, { headers: { authorization: 'Bearer wrong-key', 'x-request-id': 'refused-admin' } });
    const events = await eventsSince(before);
    const byId = (id: string) => events.filter((e) => e.http_request_id === id).map((e) => e.type);
    expect(byId('open-task')).toEqual(['task.opened']);
    expect(byId('issue')).toEqual(['exchange.issued']);
    expect(byId('deny')).toEqual(['exchange.denied']);
    expect(byId('rfc7009')).toEqual(['token.revoked']);
    expect(byId('admin-revoke')).toEqual(['token.revoked']);
    expect(byId('refused-admin')).toEqual(['admin.denied']);
    expect(events.every((e) => typeof e.http_request_id === 'string')).toBe(true);

    // The sweeper works outside any request: its events carry no id.
    const sweeperBefore = await lastSeq();
    const shortTask = await tb.openTask({ plugins: ['crm-reader'], ttl_seconds: 1 });
    await waitFor(async () => (await eventsSince(sweeperBefore)).some((e) => e.type === 'task.ended' && e.task === shortTask), 10000);
    const ended = (await eventsSince(sweeperBefore)).find((e) => e.type === 'task.ended' && e.task === shortTask)!;
    expect(ended.cause).toBe('expired');
    expect(ended.http_request_id).toBeUndefined();
  });

  it('the management port logs its probes and scrapes at debug only', async () => {
    await fetch(`${tb.managementUrl}/readyz`, { headers: { 'x-request-id': 'probe-1' } });
    await fetch(`${tb.url}/jwks`, { headers: { 'x-request-id': 'after-probe' } });
    await accessLine('after-probe');
    expect(lines().filter((l) => l.request_id === 'probe-1')).toEqual([]);
  });
});

describe('log settings', () => {
  it('log.access: false writes no access lines; log.level: warn drops info lines (until a reload says info); debug shows the management port', async () => {
    const raw: string[] = [];
    const seen = (id: string) => raw.some((l) => l.includes(`"${id}"`));
    const quiet = await startTestBroker({ patch: (cfg) => void (cfg.settings.log = { access: false }), broker: { write: (line) => void raw.push(line) } });
    const warn = await startTestBroker({ patch: (cfg) => void (cfg.settings.log = { level: 'warn' }), broker: { write: (line) => void raw.push(line) } });
    const debug = await startTestBroker({ patch: (cfg) => void (cfg.settings.log = { level: 'debug' }), broker: { write: (line) => void raw.push(line) } });
    try {
      await fetch(`${quiet.url}/jwks`, { headers: { 'x-request-id': 'no-access-log' } });
      await fetch(`${warn.url}/jwks`, { headers: { 'x-request-id': 'below-warn' } });
      await fetch(`${debug.managementUrl}/healthz`, { headers: { 'x-request-id': 'probe-debug' } });
      await waitFor(async () => seen('probe-debug'), 5000);
      expect(JSON.parse(raw.find((l) => l.includes('"probe-debug"'))!)).toMatchObject({ level: 'debug', route: '/healthz', status: 200 });
      expect(seen('no-access-log')).toBe(false);
      expect(seen('below-warn')).toBe(false);

      // The level is not restart-only: a reload to info brings the lines back.
      const input = JSON.parse(JSON.stringify(warn.config)) as Record<string, any>;
      input.settings.log = { level: 'info', access: true };
      expect(await warn.broker.reload(loadedFrom(input, warn.dir))).toEqual({ ok: true });
      await fetch(`${warn.url}/jwks`, { headers: { 'x-request-id': 'after-reload' } });
      await waitFor(async () => seen('after-reload'), 5000);
    } finally {
      await Promise.all([quiet.close(), warn.close(), debug.close()]);
    }
  });
});

describe('redaction', () => {
  it('credentials are replaced by path: by name at the top level and in headers, body, params, query, form, detail', () => {
    const out: string[] = [];
    const log = createLogger({ write: (l) => void out.push(l) });
    log.warn('something happened', {
      token: 't0',
      subject_token: 't1',
      headers: { authorization: 'Bearer t2', cookie: 't3', 'x-vault-token': 't4' },
      body: { client_assertion: 't5', actor_token: 't6', password: 't7', client_secret: 't8' },
      secret: 't9',
      req: { headers: { authorization: 't10' } },
      detail: { api_key: 't11' },
      jti: 'kept',
    });
    const line = JSON.parse(out[0]!) as Record<string, any>;
    expect(line.token).toBe(REDACTED);
    expect(line.subject_token).toBe(REDACTED);
    expect(line.headers).toEqual({ authorization: REDACTED, cookie: REDACTED, 'x-vault-token': REDACTED });
    expect(line.body).toEqual({ client_assertion: REDACTED, actor_token: REDACTED, password: REDACTED, client_secret: REDACTED });
    expect(line.req.headers.authorization).toBe(REDACTED);
    expect(line.detail.api_key).toBe(REDACTED);
    expect(line.secret).toBe(REDACTED);
    expect(line.jti).toBe('kept');
    for (let i = 0; i <= 11; i++) expect(out[0]).not.toContain(`"t${i}"`);
  });
});
