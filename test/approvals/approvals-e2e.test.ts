import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createRemoteJWKSet, decodeJwt, jwtVerify } from 'jose';
import * as oidc from 'openid-client';
import { ManualClock } from '../../src/time/clock.js';
import { EXCHANGE, JWT_TYPE, ORCHESTRATOR_KEY, OPS_KEY, startTestBroker, testException, type TestBroker } from '../support/broker.js';

const AUDIT_API = 'https://audit.example.com';
const STEP_API = 'https://step.example.com';
const APPROVER_KEY = 'test-approver-key-0123456789';
const OWNER_KEY = 'test-owner-key-0123456789';
const sha = (s: string) => createHash('sha256').update(s).digest('hex');

/**
 * Human approval end to end over HTTP: a real broker (SQLite, ManualClock), the admin API,
 * a local webhook receiver, and an unmodified openid-client.
 */
describe('approvals end to end', () => {
  let tb: TestBroker;
  let clock: ManualClock;
  let task: string;
  let hook: Server;
  const notices: Array<Record<string, unknown>> = [];
  const nowS = () => Math.floor(clock.now() / 1000);

  beforeAll(async () => {
    hook = createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString('utf8')));
      req.on('end', () => {
        notices.push(JSON.parse(body) as Record<string, unknown>);
        res.end();
      });
    });
    await new Promise<void>((r) => hook.listen(0, '127.0.0.1', () => r()));
    clock = new ManualClock(Date.now());
    tb = await startTestBroker({
      broker: { clock },
      patch: (cfg) => {
        cfg.settings.approvals = {
          poll_interval: 5,
          pending_ttl: 600,
          redeem_ttl: 120,
          approver_groups: ['approvers'],
          webhook: { url: `http://127.0.0.1:${(hook.address() as AddressInfo).port}/notify`, max_attempts: 1 },
        };
        cfg.admin.api_keys.push({ id: 'approver', sha256: sha(APPROVER_KEY), roles: ['ops'], groups: ['approvers'] });
        // A security admin who belongs to the team owning prod-only.
        cfg.admin.api_keys.push({ id: 'ops-lead', sha256: sha(OWNER_KEY), roles: ['security'], groups: ['team-ops@example.com'] });
        cfg.plugins.push({
          id: 'stepper',
          owner: 'team-step@example.com',
          risk: 'low',
          bindings: [{ issuer: 'test-cluster', subject: 'system:serviceaccount:plugins:stepper' }],
          grants: [{ audience: STEP_API, scopes: ['step:do'], kind: 'jwt', effect: 'write', approval: 'step-up', task_required: false, max_ttl: 60 }],
        });
        // A write without a task breaks a default guardrail: this test wants it.
        cfg.exceptions = [testException('stepper', STEP_API, 'task-required')];
      },
    });
    task = await tb.openTask({ plugins: ['prod-only'] });
  }, 30000);

  afterAll(async () => {
    await tb?.close();
    hook.closeAllConnections();
    await new Promise<void>((r) => hook.close(() => r()));
  });

  const auditRequest = async (extra: Record<string, string> = {}) => ({
    grant_type: EXCHANGE,
    client_id: 'prod-only',
    subject_token: await tb.cluster.saToken({ sa: 'prod-only', nowSeconds: nowS() }),
    subject_token_type: JWT_TYPE,
    resource: AUDIT_API,
    task,
    justification: 'quarterly audit export, ticket SEC-42',
    ...extra,
  });

  async function admin(method: string, path: string, key = APPROVER_KEY, body?: unknown) {
    const res = await fetch(`${tb.url}${path}`, {
      method,
      headers: { authorization: `Bearer ${key}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: res.status, body: (await res.json()) as Record<string, any> };
  }

  async function pending(extra: Record<string, string> = {}): Promise<string> {
    // A clean slate: an identical request still pending from an earlier test would be
    // handed back instead of a new approval (deduplication by request hash).
    for (const open of (await admin('GET', '/admin/approvals?state=pending')).body.approvals as { id: string }[]) {
      await admin('POST', `/admin/approvals/${open.id}/deny`, APPROVER_KEY, { reason: 'test clean-up' });
    }
    const res = await tb.exchange(await auditRequest(extra));
    expect(res.status).toBe(400);
    expect(res.body).toMatchObject({ error: 'authorization_pending', interval: 5, expires_in: 600 });
    expect(res.body.access_token).toBeUndefined();
    return String(res.body.approval_id);
  }

  it('pending → webhook notice → approve via the admin API → token with a verifiable approval receipt', async () => {
    const id = await pending();
    await tb.broker.approvalNotifier.idle();
    expect(notices.at(-1)).toMatchObject({
      approval_id: id,
      plugin: 'prod-only',
      audience: AUDIT_API,
      scopes: ['audit:write'],
      risk: 'medium',
      justification: 'quarterly audit export, ticket SEC-42',
    });

    const listed = await admin('GET', '/admin/approvals?state=pending');
    expect(listed.status).toBe(200);
    expect(listed.body.approvals.map((a: { id: string }) => a.id)).toContain(id);

    clock.advance(6);
    const approved = await admin('POST', `/admin/approvals/${id}/approve`, APPROVER_KEY, { reason: 'matches SEC-42' });
    expect(approved).toMatchObject({ status: 200, body: { id, state: 'approved', decided_by: 'apikey:approver' } });
    const decidedAt = nowS();

    clock.advance(1);
    const res = await tb.exchange(await auditRequest({ approval_id: id }));
    expect(res.status).toBe(200);
    const token = String(res.body.access_token);
    const { payload } = await jwtVerify(token, createRemoteJWKSet(new URL(`${tb.url}/jwks`)), { audience: AUDIT_API, issuer: tb.url, currentDate: new Date(clock.now()) });
    expect(payload.approval).toEqual({ id, approver: 'apikey:approver', at: decidedAt });
    expect(payload.scope).toBe('audit:write');

    // single use
    clock.advance(6);
    const again = await tb.exchange(await auditRequest({ approval_id: id }));
    expect(again.body).toMatchObject({ error: 'invalid_grant' });
    expect(again.body.access_token).toBeUndefined();

    // the audit chain tells the story, with the receipt and the justification on the issuance
    const records = await tb.broker.testing.store.read(1, 10000);
    const mine = records.filter((r) => r.event.approval === id || (r.event.approval as { id?: string } | undefined)?.id === id);
    expect(mine.map((r) => r.type)).toEqual(expect.arrayContaining(['approval.requested', 'approval.approved', 'exchange.issued']));
    const issued = mine.find((r) => r.type === 'exchange.issued')!;
    expect(issued.event).toMatchObject({ approval: { id, approver: 'apikey:approver', at: decidedAt }, justification: 'quarterly audit export, ticket SEC-42', jti: payload.jti });
    expect(JSON.stringify(records)).not.toContain(token);
  });

  it('deny → access_denied', async () => {
    const id = await pending();
    expect((await admin('POST', `/admin/approvals/${id}/deny`, APPROVER_KEY, { reason: 'not now' })).body).toMatchObject({ state: 'denied', decision_reason: 'not now' });
    clock.advance(6);
    const res = await tb.exchange(await auditRequest({ approval_id: id }));
    expect({ status: res.status, error: res.body.error }).toEqual({ status: 400, error: 'access_denied' });
    // a decided approval cannot be decided again
    expect((await admin('POST', `/admin/approvals/${id}/approve`)).status).toBe(409);
  });

  it('expire → expired_token', async () => {
    const id = await pending();
    clock.advance(601);
    const res = await tb.exchange(await auditRequest({ approval_id: id }));
    expect({ status: res.status, error: res.body.error }).toEqual({ status: 400, error: 'expired_token' });
    expect((await admin('POST', `/admin/approvals/${id}/approve`)).status).toBe(409);
  });

  it('an approval id replayed for a different request is invalid_grant, and the original still redeems', async () => {
    const id = await pending();
    await admin('POST', `/admin/approvals/${id}/approve`);
    clock.advance(6);
    for (const extra of [{ expires_in: '30' }, { justification: 'x', expires_in: '59' }] as Array<Record<string, string>>) {
      const res = await tb.exchange(await auditRequest({ approval_id: id, ...extra }));
      expect({ status: res.status, error: res.body.error }).toEqual({ status: 400, error: 'invalid_grant' });
      expect(String(res.body.error_description)).toContain('different request');
    }
    // another task: a different binding too
    const otherTask = await tb.openTask({ plugins: ['prod-only'] });
    expect((await tb.exchange(await auditRequest({ approval_id: id, task: otherTask }))).body.error).toBe('invalid_grant');
    expect((await tb.exchange(await auditRequest({ approval_id: id }))).status).toBe(200);
  });

  it('polling too fast → slow_down with a longer interval', async () => {
    const id = await pending();
    clock.advance(2);
    const res = await tb.exchange(await auditRequest({ approval_id: id }));
    expect(res.body).toMatchObject({ error: 'slow_down', interval: 10, approval_id: id });
    clock.advance(5);
    expect((await tb.exchange(await auditRequest({ approval_id: id }))).body).toMatchObject({ error: 'authorization_pending', approval_id: id });
  });

  it("the plugin's owner cannot approve its own plugin's request (separation of duties)", async () => {
    const id = await pending();
    const res = await admin('POST', `/admin/approvals/${id}/approve`, OWNER_KEY);
    expect(res.status).toBe(403);
    expect(res.body.error_description).toContain('separation of duties');
    expect((await admin('GET', `/admin/approvals/${id}`)).body.state).toBe('pending');
  });

  it('admin API: authentication, roles, bad input, unknown ids', async () => {
    expect((await admin('GET', '/admin/approvals', ORCHESTRATOR_KEY)).status).toBe(403);
    expect((await fetch(`${tb.url}/admin/approvals`)).status).toBe(401);
    expect((await admin('GET', '/admin/approvals?state=bogus')).status).toBe(400);
    expect((await admin('GET', '/admin/approvals?limit=0')).status).toBe(400);
    expect((await admin('GET', '/admin/approvals/AAAAAAAAAAAAAAAAAAAAAA')).status).toBe(404);
    expect((await admin('POST', '/admin/approvals/AAAAAAAAAAAAAAAAAAAAAA/approve')).status).toBe(404);
    const id = await pending();
    expect((await admin('POST', `/admin/approvals/${id}/deny`, APPROVER_KEY, { reason: 'x', extra: 1 })).status).toBe(400);
    expect((await admin('POST', `/admin/approvals/${id}/deny`, APPROVER_KEY, { reason: 'bad\u0007bell' })).status).toBe(400);
    // security role (the ops key holds it) decides too
    expect((await admin('POST', `/admin/approvals/${id}/deny`, OPS_KEY)).body.state).toBe('denied');
  });

  it('an unmodified openid-client drives pending → approved', async () => {
    const config = await oidc.discovery(new URL(tb.url), 'prod-only', undefined, oidc.None(), { execute: [oidc.allowInsecureRequests] });
    const params = async () => ({ subject_token: await tb.cluster.saToken({ sa: 'prod-only', nowSeconds: nowS() }), subject_token_type: JWT_TYPE, resource: AUDIT_API, task });
    let approvalId: string | undefined;
    let interval: number | undefined;
    try {
      await oidc.genericGrantRequest(config, EXCHANGE, await params());
      throw new Error('expected authorization_pending');
    } catch (err) {
      expect(err).toBeInstanceOf(oidc.ResponseBodyError);
      const e = err as oidc.ResponseBodyError;
      expect(e.error).toBe('authorization_pending');
      approvalId = String(e.cause.approval_id);
      interval = Number(e.cause.interval);
    }
    expect((await admin('POST', `/admin/approvals/${approvalId}/approve`)).status).toBe(200);
    clock.advance(interval!);
    const response = await oidc.genericGrantRequest(config, EXCHANGE, { ...(await params()), approval_id: approvalId! });
    expect(decodeJwt(response.access_token).approval).toMatchObject({ id: approvalId, approver: 'apikey:approver' });
  });

  it('step-up grant: a justification is required, then issued without a human', async () => {
    const req = async (extra: Record<string, string> = {}) => ({
      grant_type: EXCHANGE,
      client_id: 'stepper',
      subject_token: await tb.cluster.saToken({ sa: 'stepper', nowSeconds: nowS() }),
      subject_token_type: JWT_TYPE,
      resource: STEP_API,
      ...extra,
    });
    const missing = await tb.exchange(await req());
    expect(missing.body).toMatchObject({ error: 'invalid_request' });
    expect(String(missing.body.error_description)).toContain('justification');
    const stale = await tb.exchange({ ...(await req({ justification: 'fix prod' })), subject_token: await tb.cluster.saToken({ sa: 'stepper', nowSeconds: nowS() - 400 }) });
    expect(stale.body).toMatchObject({ error: 'invalid_request' });
    expect(String(stale.body.error_description)).toContain('attestation issued at most 300 seconds ago');
    const ok = await tb.exchange(await req({ justification: 'fix prod' }));
    expect(ok.status).toBe(200);
    expect(decodeJwt(String(ok.body.access_token)).approval).toBeUndefined();
  });

  it('metrics count approvals', async () => {
    const text = await (await fetch(`${tb.managementUrl}/metrics`)).text();
    expect(text).toMatch(/leash_approvals_total\{outcome="requested"\} [1-9]/);
    expect(text).toMatch(/leash_approvals_total\{outcome="redeemed"\} [1-9]/);
    expect(text).toMatch(/leash_approvals_pending \d+/);
  });
});
