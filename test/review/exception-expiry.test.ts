import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { decodeJwt } from 'jose';
import { ManualClock } from '../../src/time/clock.js';
import { CRM_API, EXCHANGE, JWT_TYPE, startTestBroker, type TestBroker } from '../support/broker.js';

const DAY_S = 86_400;
const MAIL_API = 'https://mail.example.com';

/**
 * Exception expiry on a running broker with a frozen clock: the grant an exception covered
 * is refused from the expiry second, before any sweep or reload; the watcher then revokes
 * the live tokens it allowed and emits the events.
 */
describe('an expired exception stops applying at request time', () => {
  let tb: TestBroker;
  let clock: ManualClock;
  let t0: number;
  const nowS = () => Math.floor(clock.now() / 1000);
  const events = async (type: string) => (await tb.broker.testing.store.read(1, 10_000)).filter((r) => r.type === type);

  beforeAll(async () => {
    t0 = Date.UTC(2026, 11, 1, 9, 0, 0);
    clock = new ManualClock(t0);
    tb = await startTestBroker({
      broker: { clock },
      patch: (cfg) => {
        cfg.settings.review = { exception_warning_days: 14, exception_check_interval_ms: 600000 };
        cfg.settings.tasks = { max_ttl: 40 * DAY_S };
        cfg.plugins.push({
          id: 'sender',
          owner: 'team-comms@example.com',
          risk: 'low',
          bindings: [{ issuer: 'test-cluster', subject: 'system:serviceaccount:plugins:sender' }],
          grants: [{ audience: MAIL_API, scopes: ['mail:send'], kind: 'jwt', effect: 'exfiltrate', approval: 'none', max_ttl: 120 }],
        });
        cfg.exceptions = [
          {
            id: 'exc-mail-relay',
            plugin: 'sender',
            grant: MAIL_API,
            guardrail: 'approval-for-effect',
            reason: 'the relay holds mail for human review itself',
            ticket: 'SEC-7',
            owner: 'team-comms@example.com',
            approved_by: 'security@example.com',
            created_at: new Date(t0 - DAY_S * 1000).toISOString(),
            expires_at: new Date(t0 + 15 * DAY_S * 1000).toISOString(),
          },
        ];
      },
    });
  });
  afterAll(async () => tb?.close());

  const exchange = async (sa: string, audience: string, task: string) =>
    tb.exchange({
      grant_type: EXCHANGE,
      client_id: sa,
      subject_token: await tb.cluster.saToken({ sa, nowSeconds: nowS() }),
      subject_token_type: JWT_TYPE,
      audience,
      task,
    });

  it('while the exception runs, the grant it covers issues; the reason names it', async () => {
    const task = await tb.openTask({ plugins: ['sender', 'crm-reader'], ttl_seconds: 30 * DAY_S });
    const res = await exchange('sender', MAIL_API, task);
    expect(res.status).toBe(200);
    const issued = (await events('exchange.issued')).at(-1)!;
    expect(issued.event.reasons).toContain('allowed under exception exc-mail-relay');
    expect(await tb.broker.exceptions.pass()).toBe(0);
  });

  it('exception.expiring once it enters the warning window (once per expiry)', async () => {
    clock.advance(DAY_S + 60);
    expect(await tb.broker.exceptions.pass()).toBe(1);
    expect(await tb.broker.exceptions.pass()).toBe(0);
    const [ev] = await events('exception.expiring');
    expect(ev!.event).toMatchObject({ exception: 'exc-mail-relay', plugin: 'sender', guardrail: 'approval-for-effect', days_left: 14, ticket: 'SEC-7' });
  });

  it('refused from the expiry second on, with no sweep in between; tokens it allowed are revoked by the watcher', async () => {
    const task = await tb.openTask({ plugins: ['sender', 'crm-reader'], ttl_seconds: 30 * DAY_S });
    const expiresAt = t0 + 15 * DAY_S * 1000;
    clock.set(expiresAt - 60_000);
    const live = await exchange('sender', MAIL_API, task);
    expect(live.status).toBe(200);
    const other = await exchange('crm-reader', CRM_API, task);
    expect(other.status).toBe(200);
    clock.set(expiresAt - 1000);
    expect((await exchange('sender', MAIL_API, task)).status).toBe(200);

    clock.set(expiresAt);
    const refused = await exchange('sender', MAIL_API, task);
    expect(refused.status).toBe(400);
    expect(refused.body.error).toBe('invalid_target');
    expect(refused.body.error_description).toContain("exception 'exc-mail-relay'");
    const denied = (await events('exchange.denied')).at(-1)!;
    expect(denied.event).toMatchObject({ reason: 'ERR_EXCEPTION_EXPIRED', plugin: 'sender', audience: MAIL_API });

    // The watcher: both live sender tokens revoked, the crm-reader token untouched.
    expect(await tb.broker.exceptions.pass()).toBe(1);
    const [expired] = await events('exception.expired');
    expect(expired!.event).toMatchObject({ exception: 'exc-mail-relay', revoked: 2, grants_refused: [MAIL_API] });
    const facts = (token: string) => {
      const c = decodeJwt(token) as { jti: string; plugin: string; task: string; iat: number };
      return { jti: c.jti, plugin: c.plugin, task: c.task, iat: c.iat, kid: undefined };
    };
    expect(tb.broker.revocation.isRevoked(facts(live.body.access_token as string))).toBe(true);
    expect(tb.broker.revocation.isRevoked(facts(other.body.access_token as string))).toBe(false);
    // Once per expiry: a second pass does nothing.
    expect(await tb.broker.exceptions.pass()).toBe(0);
    // The other plugin is not affected.
    expect((await exchange('crm-reader', CRM_API, task)).status).toBe(200);
  });

  it('a reload that renews the exception (a new expires_at) lets the grant issue again', async () => {
    const { loadedFrom } = await import('../support/broker.js');
    const input = JSON.parse(JSON.stringify({ ...tb.broker.config })) as Record<string, any>;
    delete input.guardrails;
    const ex = input.exceptions[0];
    ex.renewals = [{ date: new Date(clock.now()).toISOString(), by: 'security@example.com', reason: 'migration slipped a sprint' }];
    ex.expires_at = new Date(clock.now() + 30 * DAY_S * 1000).toISOString();
    expect(await tb.broker.reload(loadedFrom(input, tb.dir))).toEqual({ ok: true });
    const task = await tb.openTask({ plugins: ['sender'], ttl_seconds: DAY_S });
    expect((await exchange('sender', MAIL_API, task)).status).toBe(200);
  });
});
