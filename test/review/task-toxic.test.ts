import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { EXCHANGE, JWT_TYPE, startTestBroker, testException, type TestBroker } from '../support/broker.js';

const HR_API = 'https://hr.example.com';
const MAIL_API = 'https://mail.example.com';

function patch(action: 'deny' | 'approval') {
  return (cfg: Record<string, any>) => {
    cfg.settings.tasks = { toxic_combinations: [{ effects: ['read-sensitive', 'exfiltrate'], action }] };
    const bind = (sa: string) => [{ issuer: 'test-cluster', subject: `system:serviceaccount:plugins:${sa}` }];
    cfg.plugins.push(
      {
        id: 'hr-reader',
        owner: 'team-hr@example.com',
        risk: 'low',
        bindings: bind('hr-reader'),
        grants: [{ audience: HR_API, scopes: ['hr:read'], kind: 'jwt', effect: 'read-sensitive', max_ttl: 300 }],
      },
      {
        id: 'mailer',
        owner: 'team-comms@example.com',
        risk: 'low',
        bindings: bind('mailer'),
        grants: [{ audience: MAIL_API, scopes: ['mail:send'], kind: 'jwt', effect: 'exfiltrate', approval: 'none', max_ttl: 120 }],
      },
    );
    cfg.exceptions = [testException('mailer', MAIL_API, 'approval-for-effect')];
  };
}

/** Two plugins in one task, no delegation between them: the chain rules never see the pair. */
describe('task-level toxic combinations at exchange time', () => {
  let tb: TestBroker;
  let strict: TestBroker;
  beforeAll(async () => {
    tb = await startTestBroker({ patch: patch('deny') });
    strict = await startTestBroker({ patch: patch('approval') });
  });
  afterAll(async () => {
    await tb?.close();
    await strict?.close();
  });

  const exchange = async (b: TestBroker, sa: string, audience: string, task: string) =>
    b.exchange({ grant_type: EXCHANGE, client_id: sa, subject_token: await b.cluster.saToken({ sa }), subject_token_type: JWT_TYPE, audience, task });

  it('a task holding a read-sensitive credential is refused an exfiltrate one (ERR_TASK_TOXIC, audited)', async () => {
    const task = await tb.openTask({ plugins: ['hr-reader', 'mailer'] });
    expect((await exchange(tb, 'hr-reader', HR_API, task)).status).toBe(200);
    const res = await exchange(tb, 'mailer', MAIL_API, task);
    expect(res.status).toBe(400);
    expect(res.body.error).toBe('invalid_request');
    const last = (await tb.broker.testing.store.read(1, 10_000)).filter((r) => r.type === 'exchange.denied').at(-1)!;
    expect(last.event).toMatchObject({ reason: 'ERR_TASK_TOXIC', plugin: 'mailer', task });
  });

  it('either order: holding the exfiltrate credential first refuses the sensitive read', async () => {
    const task = await tb.openTask({ plugins: ['hr-reader', 'mailer'] });
    expect((await exchange(tb, 'mailer', MAIL_API, task)).status).toBe(200);
    expect((await exchange(tb, 'hr-reader', HR_API, task)).body.error).toBe('invalid_request');
  });

  it('separate tasks are not a combination; the same effect again is not either', async () => {
    const a = await tb.openTask({ plugins: ['hr-reader'] });
    const b = await tb.openTask({ plugins: ['mailer'] });
    expect((await exchange(tb, 'hr-reader', HR_API, a)).status).toBe(200);
    expect((await exchange(tb, 'mailer', MAIL_API, b)).status).toBe(200);
    expect((await exchange(tb, 'mailer', MAIL_API, b)).status).toBe(200);
  });

  it('action approval: the second credential waits for a person instead', async () => {
    const task = await strict.openTask({ plugins: ['hr-reader', 'mailer'] });
    expect((await exchange(strict, 'hr-reader', HR_API, task)).status).toBe(200);
    const res = await exchange(strict, 'mailer', MAIL_API, task);
    expect(res.status).toBe(400);
    expect(res.body.error).toBe('authorization_pending');
    const pending = await strict.broker.testing.store.listApprovals({ state: 'pending', now: Date.now(), limit: 10 });
    expect(pending[0]).toMatchObject({ plugin: 'mailer', cause: 'task-toxic-combination' });
  });
});
