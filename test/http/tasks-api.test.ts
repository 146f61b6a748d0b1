import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { ORCHESTRATOR_KEY, OPS_KEY, startTestBroker, type TestBroker } from '../support/broker.js';

describe('task API and admin authentication', () => {
  let tb: TestBroker;
  beforeAll(async () => {
    tb = await startTestBroker();
  });
  afterAll(async () => tb.close());

  const post = (body: unknown, auth: string | null = ORCHESTRATOR_KEY, type = 'application/json') =>
    fetch(`${tb.url}/tasks`, {
      method: 'POST',
      headers: { ...(auth ? { authorization: `Bearer ${auth}` } : {}), 'content-type': type },
      body: typeof body === 'string' ? body : JSON.stringify(body),
    });

  it('opens, reads and ends a task', async () => {
    const res = await post({ plugins: ['crm-reader'], ttl_seconds: 120, attributes: { ticket: 'SUP-1' } });
    expect(res.status).toBe(201);
    const task = (await res.json()) as Record<string, unknown>;
    expect(task).toMatchObject({ state: 'active', plugins: ['crm-reader'], attributes: { ticket: 'SUP-1' }, created_by: 'apikey:orchestrator' });
    expect(res.headers.get('location')).toBe(`/tasks/${task.id}`);
    const got = await fetch(`${tb.url}/tasks/${task.id}`, { headers: { authorization: `Bearer ${ORCHESTRATOR_KEY}` } });
    expect(got.status).toBe(200);
    const del = await fetch(`${tb.url}/tasks/${task.id}`, { method: 'DELETE', headers: { authorization: `Bearer ${ORCHESTRATOR_KEY}` } });
    expect(((await del.json()) as Record<string, unknown>).state).toBe('ended');
    // idempotent
    const again = await fetch(`${tb.url}/tasks/${task.id}`, { method: 'DELETE', headers: { authorization: `Bearer ${ORCHESTRATOR_KEY}` } });
    expect(again.status).toBe(200);
  });

  it.each([
    ['no credentials', null, 401, 'invalid_token'],
    ['unknown API key', 'not-a-real-key-123456', 401, 'invalid_token'],
    ['a key without the orchestrator role', OPS_KEY, 403, 'insufficient_scope'],
  ])('refuses %s', async (_n, auth, status, error) => {
    const res = await post({ plugins: ['crm-reader'] }, auth);
    expect(res.status).toBe(status);
    expect(((await res.json()) as Record<string, unknown>).error).toBe(error);
    expect(res.headers.get('www-authenticate')).toContain(`error="${error}"`);
  });

  it.each([
    ['no plugins', {}],
    ['empty plugins', { plugins: [] }],
    ['unknown plugin', { plugins: ['nope'] }],
    ['plugins not strings', { plugins: [1] }],
    ['ttl too long', { plugins: ['crm-reader'], ttl_seconds: 10 ** 7 }],
    ['ttl not integer', { plugins: ['crm-reader'], ttl_seconds: 1.5 }],
    ['attributes not object', { plugins: ['crm-reader'], attributes: 'x' }],
    ['attribute value not string', { plugins: ['crm-reader'], attributes: { a: 1 } }],
    ['unknown field', { plugins: ['crm-reader'], owner: 'me' }],
    ['array body', [1, 2]],
  ])('rejects %s with invalid_request', async (_n, body) => {
    const res = await post(body);
    expect(res.status).toBe(400);
    expect(((await res.json()) as Record<string, unknown>).error).toBe('invalid_request');
  });

  it('rejects malformed JSON and wrong content types with a 4xx', async () => {
    expect((await post('{"plugins":', ORCHESTRATOR_KEY)).status).toBe(400);
    expect((await post('plugins=crm-reader', ORCHESTRATOR_KEY, 'application/x-www-form-urlencoded')).status).toBe(400);
  });

  it('unknown and malformed task ids are 404', async () => {
    for (const id of ['tsk_doesnotexist0000', '..%2F..%2Fetc']) {
      const res = await fetch(`${tb.url}/tasks/${id}`, { headers: { authorization: `Bearer ${ORCHESTRATOR_KEY}` } });
      expect(res.status).toBe(404);
    }
  });

  it('audits refused admin calls', async () => {
    await post({ plugins: ['crm-reader'] }, 'not-a-real-key-123456');
    const events = await tb.broker.testing.store.read(1, 100000);
    expect(events.some((e) => e.type === 'admin.denied' && e.event.reason === 'ERR_ADMIN_UNAUTHENTICATED')).toBe(true);
    expect(JSON.stringify(events)).not.toContain('not-a-real-key-123456');
  });
});
