import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { readFileSync } from 'node:fs';
import { AUDIT_EVENT_TYPES } from '../../src/audit/events.js';
import { apiActivity, auditToOcsf, OCSF_VERSION } from '../../src/audit/sinks/ocsf.js';
import type { AuditRecord } from '../../src/store/records.js';
import { CRM_API, EXCHANGE, JWT_TYPE, startTestBroker, type TestBroker } from '../support/broker.js';
import { OCSF_SUBSET, validateOcsf } from '../support/ocsf.js';

/** A plausible event of each type: the members the mapping reads, as Leash writes them. */
function sample(type: string): Record<string, unknown> {
  const common = { plugin: 'crm-reader', task: 'tsk_0123456789abcdef', jti: 'jti-1', actor: 'apikey:security', reason: 'because' };
  switch (type) {
    case 'exchange.issued':
      return { ...common, decision: 'issued', reason: 'OK', client_id: 'crm-reader', audience: CRM_API, scopes: ['contacts:read'], kind: 'jwt', ttl: 300 };
    case 'exchange.denied':
      return { decision: 'denied', reason: 'ERR_SCOPE_NOT_GRANTED', client_id: 'crm-reader', audience: CRM_API, scopes: ['contacts:delete'] };
    case 'exchange.abandoned':
      return { decision: 'abandoned', reason: 'ERR_CLIENT_GONE', client_id: 'crm-reader', plugin: 'crm-reader', audience: CRM_API, scopes: ['contacts:read'] };
    case 'token.revoked':
      return { scope: 'task', id: 'tsk_0123456789abcdef', feed_seq: 3, actor: 'apikey:security', reason: 'incident' };
    case 'token.first_use':
      return { ...common, server: 'crm-api', method: 'GET', route: '/contacts/:id', outcome: 'ok', source: '198.51.100.7', at: 1 };
    case 'key.created':
    case 'key.promoted':
    case 'key.retired':
    case 'key.removed':
    case 'key.revoked':
      return { kid: 'k1', alg: 'ES256', actor: 'system:schedule' };
    default:
      return {
        ...common,
        approval: 'apr_1',
        digest: 'sha256:abc',
        kid: 'k1',
        role_arn: 'arn:aws:iam::111122223333:role/r',
        lease_id: 'database/creds/ro/1',
        route: 'tasks.get',
        approver: 'alice',
        server: 'crm-api',
        budget: 'total',
        kind: 'calls',
        limit: 3,
        used: 3,
      };
  }
}

const record = (type: string, seq = 7): AuditRecord => ({ seq, ts: 1_764_072_000_123, type, event: sample(type), prevHash: '0'.repeat(64), hash: 'a'.repeat(64) });

describe('OCSF: every event Leash produces conforms to the vendored OCSF 1.8.0 classes', () => {
  it('the vendored subset is OCSF 1.8.0 with the four classes and their category uids', () => {
    expect(OCSF_SUBSET.source).toMatchObject({ repository: 'https://github.com/ocsf/ocsf-schema', tag: OCSF_VERSION });
    expect(Object.fromEntries(Object.entries(OCSF_SUBSET.classes).map(([uid, c]) => [uid, [c.name, c.category_uid]]))).toEqual({
      '2004': ['detection_finding', 2],
      '3003': ['authorize_session', 3],
      '3004': ['entity_management', 3],
      '6003': ['api_activity', 6],
    });
  });

  it.each([...AUDIT_EVENT_TYPES])('%s', (type) => {
    const event = auditToOcsf(record(type));
    expect(validateOcsf(event)).toEqual([]);
    // Nothing is lost: the whole Leash event travels in unmapped.leash.
    expect((event.unmapped as { leash: Record<string, unknown> }).leash).toMatchObject({ type, seq: 7, hash: 'a'.repeat(64), ...sample(type) });
    expect(event.time).toBe(1_764_072_000_123);
  });

  it('classes: exchanges and approval decisions are Authorize Session, use is API Activity, anomalies are Detection Findings', () => {
    const classOf = (t: string) => auditToOcsf(record(t)).class_uid;
    expect(['exchange.issued', 'exchange.denied', 'approval.approved', 'approval.denied'].map(classOf)).toEqual([3003, 3003, 3003, 3003]);
    expect(classOf('token.first_use')).toBe(6003);
    expect(['token.shared', 'token.used_after_revocation', 'token.used_outside_task', 'token.audience_mismatch', 'usage.route_drift', 'task.budget_exceeded'].map(classOf)).toEqual(
      Array(6).fill(2004),
    );
    expect(['task.opened', 'token.revoked', 'plugin.suspended', 'key.promoted'].map(classOf)).toEqual(Array(4).fill(3004));
    const denied = auditToOcsf(record('exchange.denied'));
    expect(denied).toMatchObject({ status_id: 2, status: 'Failure', status_detail: 'ERR_SCOPE_NOT_GRANTED', type_uid: 300301 });
    // Nothing was issued: a failed authorization, with its code.
    expect(auditToOcsf(record('exchange.abandoned'))).toMatchObject({ class_uid: 3003, status_id: 2, status: 'Failure', status_detail: 'ERR_CLIENT_GONE' });
    const shared = auditToOcsf(record('token.shared'));
    expect(shared).toMatchObject({ severity_id: 4, is_alert: true, finding_info: { types: ['token.shared'], analytic: { type_id: 1 } } });
  });

  it('a usage record is API Activity: operation = method + route, the caller as actor and source', () => {
    for (const [method, activity] of [
      ['GET', 2],
      ['POST', 1],
      ['PATCH', 3],
      ['DELETE', 4],
      ['TOOL', 99],
    ] as const) {
      const e = apiActivity(1_764_072_000_000, {
        method,
        route: '/contacts/:id',
        plugin: 'crm-reader',
        jti: 'j',
        task: 't',
        server: 'crm-api',
        audience: CRM_API,
        source: '198.51.100.7',
        outcome: 'ok',
        status: 200,
        calls: 1,
        bytes: 123,
        durationMs: 4,
      });
      expect(validateOcsf(e)).toEqual([]);
      expect(e).toMatchObject({ class_uid: 6003, activity_id: activity, api: { operation: `${method} /contacts/:id` }, src_endpoint: { ip: '198.51.100.7' }, http_response: { code: 200 } });
    }
    const refused = apiActivity(1, {
      method: 'GET',
      route: 'search_contacts',
      plugin: undefined,
      jti: undefined,
      task: undefined,
      server: undefined,
      audience: undefined,
      source: undefined,
      outcome: 'expired',
      status: 401,
      calls: 1,
      bytes: 0,
      durationMs: 0,
    });
    expect(validateOcsf(refused)).toEqual([]);
    expect(refused).toMatchObject({ status_id: 2, status_detail: 'expired' });
  });

  it('the validator refuses what the schema refuses (it is not a rubber stamp)', () => {
    const good = auditToOcsf(record('exchange.issued'));
    expect(validateOcsf({ ...good, user: undefined })).toContain('authorize_session.user: required');
    expect(validateOcsf({ ...good, type_uid: 1 })).toContain('type_uid must be class_uid * 100 + activity_id');
    expect(validateOcsf({ ...good, severity_id: 42 }).join()).toMatch(/severity_id: 42 is not one of/);
    expect(validateOcsf({ ...good, made_up: 1 }).join()).toMatch(/made_up: not an attribute/);
    expect(validateOcsf({ ...good, privileges: 'a' }).join()).toMatch(/privileges: expected an array/);
    expect(validateOcsf({ ...good, class_uid: 4001 })).toEqual(['class_uid 4001 is not a vendored class']);
  });
});

describe('OCSF from a running broker (file sink, format ocsf)', () => {
  let tb: TestBroker;
  beforeAll(async () => {
    process.env.LEASH_TEST_SINK_SECRET = 'test-only-sink-secret';
    tb = await startTestBroker({
      patch: (cfg) => {
        cfg.settings.audit = {
          stdout: false,
          sinks: [
            { name: 'siem-file', kind: 'file', format: 'ocsf', path: `${cfg.settings.store.path}.ocsf.log`, backlog_dir: `${cfg.settings.store.path}.backlog` },
            // A webhook nobody listens on: it fails, and issuance does not care.
            { name: 'dead-webhook', kind: 'webhook', url: 'http://127.0.0.1:9/leash', secret_env: 'LEASH_TEST_SINK_SECRET', backlog_dir: `${cfg.settings.store.path}.backlog`, timeout_ms: 200 },
          ],
        };
      },
      broker: {},
    });
  }, 30_000);
  afterAll(async () => {
    await tb?.close();
    delete process.env.LEASH_TEST_SINK_SECRET;
  });

  it('every event of a small run validates, and a failing sink never blocks issuance', async () => {
    const task = await tb.openTask();
    for (const scope of ['contacts:read', 'contacts:delete']) {
      const res = await tb.exchange({ grant_type: EXCHANGE, client_id: 'crm-reader', subject_token: await tb.cluster.saToken(), subject_token_type: JWT_TYPE, resource: CRM_API, scope, task });
      expect(res.status).toBe(scope === 'contacts:read' ? 200 : 400);
    }
    await tb.broker.sinks.flush();
    const lines = readFileSync(`${tb.config.settings.store.path}.ocsf.log`, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines.map((l) => (l.unmapped as { leash: { type: string } }).leash.type)).toEqual(expect.arrayContaining(['policy.loaded', 'task.opened', 'exchange.issued', 'exchange.denied']));
    for (const l of lines) expect(validateOcsf(l)).toEqual([]);
    const backlog = Object.fromEntries(tb.broker.sinks.backlogs());
    expect(backlog['dead-webhook']).toBeGreaterThan(0);
    const metrics = await (await fetch(`${tb.managementUrl}/metrics`)).text();
    expect(metrics).toMatch(/leash_audit_sink_deliveries_total\{sink="dead-webhook",outcome="failed"\} [1-9]/);
    expect(metrics).toMatch(/leash_audit_sink_deliveries_total\{sink="siem-file",outcome="delivered"\} [1-9]/);
  });
});
