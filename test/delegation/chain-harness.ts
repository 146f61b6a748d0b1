import { expect } from '@jest/globals';
import { ManualClock } from '../../src/time/clock.js';
import { CRM_API, EXCHANGE, JWT_TYPE, startTestBroker, testException, type TestBroker } from '../support/broker.js';

/**
 * The delegation test policy and helpers, shared by chains-e2e and cascade: crm-reader →
 * summarizer → notifier over CRM, hr-reader → mailer for toxic combinations; a real broker
 * on loopback with a ManualClock and one open task for every plugin.
 */

export const ACCESS_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
export const HR_API = 'https://hr.example.com';
export const MAIL_API = 'https://mail.example.com';
export const NOTES_API = 'https://notes.example.com';
export const ALL = ['crm-reader', 'summarizer', 'notifier', 'hr-reader', 'mailer', 'ticket-writer'];

export function patchChains(cfg: Record<string, any>): void {
  const crm = cfg.plugins.find((p: { id: string }) => p.id === 'crm-reader');
  crm.delegate_to = ['summarizer'];
  const bind = (sa: string) => [{ issuer: 'test-cluster', subject: `system:serviceaccount:plugins:${sa}` }];
  cfg.plugins.push(
    {
      id: 'summarizer',
      owner: 'team-ai@example.com',
      risk: 'low',
      bindings: bind('summarizer'),
      delegate_to: ['notifier', 'crm-reader'],
      grants: [
        { audience: CRM_API, scopes: ['contacts:read', 'contacts:search', 'contacts:delete'], default_scopes: ['contacts:read'], kind: 'jwt', effect: 'read', max_ttl: 300 },
        { audience: NOTES_API, scopes: ['notes:write'], kind: 'jwt', effect: 'write', approval: 'none', max_ttl: 300 },
      ],
    },
    {
      id: 'notifier',
      owner: 'team-ai@example.com',
      risk: 'low',
      bindings: bind('notifier'),
      grants: [{ audience: CRM_API, scopes: ['contacts:read', 'contacts:search'], kind: 'jwt', effect: 'read', max_ttl: 300 }],
    },
    {
      id: 'hr-reader',
      owner: 'team-hr@example.com',
      risk: 'low',
      bindings: bind('hr-reader'),
      delegate_to: ['mailer'],
      grants: [{ audience: HR_API, scopes: ['hr:read'], kind: 'jwt', effect: 'read-sensitive', max_ttl: 300 }],
    },
    {
      id: 'mailer',
      owner: 'team-comms@example.com',
      risk: 'low',
      bindings: bind('mailer'),
      grants: [
        { audience: HR_API, scopes: ['hr:read'], kind: 'jwt', effect: 'read', max_ttl: 300 },
        { audience: MAIL_API, scopes: ['mail:send'], kind: 'jwt', effect: 'exfiltrate', approval: 'none', max_ttl: 300 },
      ],
    },
  );
  // An exfiltrating grant without approval breaks a default guardrail: these tests want it.
  cfg.exceptions = [...(cfg.exceptions ?? []), testException('mailer', MAIL_API, 'approval-for-effect')];
}

export interface Harness {
  tb: TestBroker;
  clock: ManualClock;
  task: string;
}

export async function harness(extra?: (cfg: Record<string, any>) => void): Promise<Harness> {
  const clock = new ManualClock(Date.now());
  const tb = await startTestBroker({
    broker: { clock },
    patch: (cfg) => {
      patchChains(cfg);
      extra?.(cfg);
    },
  });
  const task = await tb.openTask({ plugins: ALL, ttl_seconds: 1800 });
  return { tb, clock, task };
}

export const sa = (h: Harness, name: string) => h.tb.cluster.saToken({ sa: name, nowSeconds: Math.floor(h.clock.now() / 1000) });

export async function rootToken(h: Harness, plugin: string, resource: string, extra: Record<string, string> = {}): Promise<string> {
  const res = await h.tb.exchange({ grant_type: EXCHANGE, client_id: plugin, subject_token: await sa(h, plugin), subject_token_type: JWT_TYPE, resource, task: h.task, ...extra });
  if (res.status !== 200) throw new Error(`root token for ${plugin}: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body.access_token as string;
}

export async function delegate(h: Harness, plugin: string, upstream: string, resource: string, extra: Record<string, string> = {}, actorSa = plugin) {
  return h.tb.exchange({
    grant_type: EXCHANGE,
    client_id: plugin,
    subject_token: upstream,
    subject_token_type: ACCESS_TYPE,
    actor_token: await sa(h, actorSa),
    actor_token_type: JWT_TYPE,
    resource,
    ...extra,
  });
}

/** What usage ingestion records in the background (introspections count as use): not a decision of the request. */
const USAGE_EVENTS = new Set(['token.first_use', 'token.used_after_revocation', 'token.used_outside_task', 'token.audience_mismatch', 'token.shared', 'usage.route_drift', 'task.budget_exceeded']);

/** The last event of a decision: background usage events (which may land before or after it) are left out. */
export async function lastEvent(h: Harness): Promise<{ type: string; event: Record<string, any> }> {
  await h.tb.broker.usage.idle();
  const all = await h.tb.broker.testing.store.read(1, 1_000_000);
  const last = all.filter((r) => !USAGE_EVENTS.has(r.type)).at(-1)!;
  return { type: last.type, event: last.event as Record<string, any> };
}

/** Denied with this OAuth error, this domain reason in the audit event, and no token. */
export async function expectDenied(h: Harness, res: { status: number; body: Record<string, unknown> }, error: string, reason: string): Promise<Record<string, any>> {
  expect(res.body.access_token).toBeUndefined();
  expect({ status: res.status, error: res.body.error }).toEqual({ status: 400, error });
  const { type, event } = await lastEvent(h);
  expect(type).toBe('exchange.denied');
  expect(event.reason).toBe(reason);
  return event;
}
