import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createHash } from 'node:crypto';
import { ORCHESTRATOR_KEY, startTestBroker, type TestBroker } from '../support/broker.js';

const OTHER_ORCHESTRATOR_KEY = 'test-other-orchestrator-key-0123';
const SECURITY_KEY = 'test-security-only-key-0123456789';
const sha = (s: string) => createHash('sha256').update(s).digest('hex');

/** A task belongs to the orchestrator that opened it; security may read and end any. */
describe('task ownership', () => {
  let tb: TestBroker;
  beforeAll(async () => {
    tb = await startTestBroker({
      patch: (cfg) => {
        cfg.admin.api_keys.push({ id: 'orchestrator-b', sha256: sha(OTHER_ORCHESTRATOR_KEY), roles: ['orchestrator'] }, { id: 'security', sha256: sha(SECURITY_KEY), roles: ['security'] });
      },
    });
  });
  afterAll(async () => tb.close());

  const call = (method: string, id: string, key: string) => fetch(`${tb.url}/tasks/${id}`, { method, headers: { authorization: `Bearer ${key}` } });
  const events = async () => (await tb.broker.testing.store.read(1, 100_000)).filter((e) => e.type === 'admin.denied' || e.type === 'task.ended');

  it('another orchestrator can neither read nor end a task: 404, exactly as for an unknown id, and audited', async () => {
    const id = await tb.openTask();
    const unknown = await call('GET', 'tsk_doesnotexist0000', OTHER_ORCHESTRATOR_KEY);
    const unknownBody = await unknown.json();

    for (const method of ['GET', 'DELETE']) {
      const res = await call(method, id, OTHER_ORCHESTRATOR_KEY);
      expect(res.status).toBe(404);
      // Same answer as an id that does not exist: nothing tells the caller the task is real.
      expect(await res.json()).toEqual(unknownBody);
    }
    const denied = (await events()).filter((e) => e.type === 'admin.denied' && e.event.task === id);
    expect(denied.map((e) => [e.event.route, e.event.method, e.event.reason, e.event.actor])).toEqual([
      ['tasks.get', 'GET', 'ERR_TASK_NOT_OWNER', 'apikey:orchestrator-b'],
      ['tasks.end', 'DELETE', 'ERR_TASK_NOT_OWNER', 'apikey:orchestrator-b'],
    ]);
    // The task is untouched: its owner still reads it as active.
    const own = await call('GET', id, ORCHESTRATOR_KEY);
    expect(own.status).toBe(200);
    expect(((await own.json()) as { state: string }).state).toBe('active');
    expect((await events()).some((e) => e.type === 'task.ended' && e.event.task === id)).toBe(false);
  });

  it('the owner reads and ends its own task', async () => {
    const id = await tb.openTask();
    expect((await call('GET', id, ORCHESTRATOR_KEY)).status).toBe(200);
    const ended = await call('DELETE', id, ORCHESTRATOR_KEY);
    expect(ended.status).toBe(200);
    expect((await ended.json()) as { state: string; ended_by: string }).toMatchObject({ state: 'ended', ended_by: 'apikey:orchestrator' });
  });

  it('security (without the orchestrator role) reads and ends any task, and cannot open one', async () => {
    const id = await tb.openTask();
    const read = await call('GET', id, SECURITY_KEY);
    expect(read.status).toBe(200);
    expect(((await read.json()) as { created_by: string }).created_by).toBe('apikey:orchestrator');
    const ended = await call('DELETE', id, SECURITY_KEY);
    expect(ended.status).toBe(200);
    expect((await ended.json()) as { state: string; ended_by: string }).toMatchObject({ state: 'ended', ended_by: 'apikey:security' });
    expect((await events()).some((e) => e.type === 'task.ended' && e.event.task === id && e.event.actor === 'apikey:security')).toBe(true);

    const open = await fetch(`${tb.url}/tasks`, {
      method: 'POST',
      headers: { authorization: `Bearer ${SECURITY_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ plugins: ['crm-reader'] }),
    });
    expect(open.status).toBe(403);
  });

  it('an orchestrator of another task still opens its own and ends only that', async () => {
    const mine = await tb.openTask();
    const res = await fetch(`${tb.url}/tasks`, {
      method: 'POST',
      headers: { authorization: `Bearer ${OTHER_ORCHESTRATOR_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ plugins: ['crm-reader'] }),
    });
    expect(res.status).toBe(201);
    const theirs = ((await res.json()) as { id: string }).id;
    expect((await call('DELETE', theirs, OTHER_ORCHESTRATOR_KEY)).status).toBe(200);
    expect((await call('GET', theirs, ORCHESTRATOR_KEY)).status).toBe(404);
    expect((await call('GET', mine, ORCHESTRATOR_KEY)).status).toBe(200);
  });
});
