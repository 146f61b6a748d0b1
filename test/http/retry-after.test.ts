import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LeashError } from '../../src/errors/leash-error.js';
import { openSqliteStore } from '../../src/store/sqlite/sqlite-store.js';
import type { Store } from '../../src/store/store.js';
import { CRM_API, EXCHANGE, JWT_TYPE, OPS_KEY, ORCHESTRATOR_KEY, startTestBroker, type TestBroker } from '../support/broker.js';
import { rawRequest, type RawResponse } from '../support/http.js';
import { CRM_RS_SECRET, basic, withResourceServers, ticketsKey } from './introspect-support.js';

/**
 * A store that can be taken down, as when Redis or the SQLite disk goes away: every call
 * fails as a backend outage, and the pub/sub subscription reports itself lost, so the
 * revocation view can no longer prove it is fresh.
 */
function downableStore(inner: Store): Store & { down: boolean } {
  const state = { down: false };
  return new Proxy(inner, {
    get(target, prop) {
      if (prop === 'down') return state.down;
      if (prop === 'subscribed') return () => !state.down && target.subscribed();
      const value = Reflect.get(target, prop, target) as unknown;
      if (typeof value !== 'function') return value;
      // Not calls to the backend: closing, subscribing and what the handle already knows (its epoch, a pending reset).
      if (prop === 'close' || prop === 'subscribe' || prop === 'epoch' || prop === 'resetPending' || prop === 'onIdentityChange') return value.bind(target);
      return (...args: unknown[]) => {
        if (state.down) return Promise.reject(new LeashError('ERR_BACKEND_UNAVAILABLE', 'store down (test)'));
        return (value as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
    set(target, prop, value) {
      if (prop === 'down') {
        state.down = Boolean(value);
        return true;
      }
      return Reflect.set(target, prop, value);
    },
  }) as Store & { down: boolean };
}

describe('every 503 (temporarily_unavailable) says when to come back: Retry-After', () => {
  let dir: string;
  let tb: TestBroker;
  let store: ReturnType<typeof downableStore>;
  let task: string;
  let token: string;
  let approval: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'leash-retry-after-'));
    store = downableStore(openSqliteStore({ path: join(dir, 'leash.db') }));
    tb = await startTestBroker({ dir, broker: { store }, patch: withResourceServers(await ticketsKey()) });
    task = await tb.openTask({ plugins: ['crm-reader', 'prod-only'] });
    const issued = await tb.exchange({ grant_type: EXCHANGE, client_id: 'crm-reader', subject_token: await tb.cluster.saToken(), subject_token_type: JWT_TYPE, resource: CRM_API, task });
    token = issued.body.access_token as string;
    const pending = await tb.exchange({
      grant_type: EXCHANGE,
      client_id: 'prod-only',
      subject_token: await tb.cluster.saToken({ sa: 'prod-only' }),
      subject_token_type: JWT_TYPE,
      resource: 'https://audit.example.com',
      task,
    });
    approval = pending.body.approval_id as string;
    expect(typeof token).toBe('string');
    expect(typeof approval).toBe('string');
    store.down = true;
  });
  afterAll(async () => {
    store.down = false;
    await tb.close();
    await rm(dir, { recursive: true, force: true });
  });

  const form = { 'content-type': 'application/x-www-form-urlencoded' };
  const json = { 'content-type': 'application/json' };
  const ops = { authorization: `Bearer ${OPS_KEY}` };
  const orch = { authorization: `Bearer ${ORCHESTRATOR_KEY}` };
  const crmApi = { authorization: basic('crm-api', CRM_RS_SECRET) };

  const cases: Array<[string, () => Promise<RawResponse>]> = [
    [
      'POST /token (the store cannot record the exchange)',
      async () =>
        rawRequest(tb.url, {
          method: 'POST',
          path: '/token',
          headers: form,
          body: new URLSearchParams({ grant_type: EXCHANGE, client_id: 'crm-reader', subject_token: await tb.cluster.saToken(), subject_token_type: JWT_TYPE, resource: CRM_API, task }).toString(),
        }),
    ],
    ['POST /introspect (the revocation view is stale)', async () => rawRequest(tb.url, { method: 'POST', path: '/introspect', headers: { ...form, ...crmApi }, body: `token=${token}` })],
    ['POST /revoke as the holder (stale view)', async () => rawRequest(tb.url, { method: 'POST', path: '/revoke', headers: form, body: `client_id=crm-reader&token=${token}` })],
    ['POST /revoke as a security admin (stale view)', async () => rawRequest(tb.url, { method: 'POST', path: '/revoke', headers: { ...form, ...ops }, body: `token=${token}` })],
    ['GET /revocations (feed)', async () => rawRequest(tb.url, { method: 'GET', path: '/revocations', headers: crmApi })],
    ['GET /revocations/stream (feed)', async () => rawRequest(tb.url, { method: 'GET', path: '/revocations/stream', headers: crmApi })],
    ['POST /tasks', async () => rawRequest(tb.url, { method: 'POST', path: '/tasks', headers: { ...json, ...orch }, body: JSON.stringify({ plugins: ['crm-reader'] }) })],
    ['GET /tasks/{id}', async () => rawRequest(tb.url, { method: 'GET', path: `/tasks/${task}`, headers: orch })],
    ['DELETE /tasks/{id}', async () => rawRequest(tb.url, { method: 'DELETE', path: `/tasks/${task}`, headers: orch })],
    ['GET /admin/approvals', async () => rawRequest(tb.url, { method: 'GET', path: '/admin/approvals', headers: ops })],
    ['GET /admin/approvals/{id}', async () => rawRequest(tb.url, { method: 'GET', path: `/admin/approvals/${approval}`, headers: ops })],
    [
      'POST /admin/approvals/{id}/deny',
      async () => rawRequest(tb.url, { method: 'POST', path: `/admin/approvals/${approval}/deny`, headers: { ...json, ...ops }, body: JSON.stringify({ reason: 'store test' }) }),
    ],
    [
      'POST /admin/revocations',
      async () => rawRequest(tb.url, { method: 'POST', path: '/admin/revocations', headers: { ...json, ...ops }, body: JSON.stringify({ scope: 'task', id: task, reason: 'store test' }) }),
    ],
    [
      'POST /admin/plugins/{id}/suspend',
      async () => rawRequest(tb.url, { method: 'POST', path: '/admin/plugins/crm-reader/suspend', headers: { ...json, ...ops }, body: JSON.stringify({ reason: 'store test' }) }),
    ],
    ['GET /admin/plugins/suspended', async () => rawRequest(tb.url, { method: 'GET', path: '/admin/plugins/suspended', headers: ops })],
    [
      'an admin call whose refusal cannot be audited (unknown key)',
      async () => rawRequest(tb.url, { method: 'GET', path: '/admin/approvals', headers: { authorization: 'Bearer not-a-real-key-0123456789' } }),
    ],
  ];

  it.each(cases)('%s', async (_name, call) => {
    const res = await call();
    expect(res.status).toBe(503);
    expect(res.headers['retry-after']).toBe('2');
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    expect(res.json).toEqual({ error: 'temporarily_unavailable', error_description: expect.any(String) });
    expect(res.json?.access_token).toBeUndefined();
  });

  it('answers that are not 503 carry no Retry-After', async () => {
    const res = await rawRequest(tb.url, { method: 'GET', path: '/nope' });
    expect(res.status).toBe(404);
    expect(res.headers['retry-after']).toBeUndefined();
  });
});
