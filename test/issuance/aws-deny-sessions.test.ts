import { createHash } from 'node:crypto';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, expect, beforeAll, afterAll } from '@jest/globals';
import express from 'express';
import { IAMClient } from '@aws-sdk/client-iam';
import { createIamClient, denySessionsIssuedBefore, denySessionsPolicy, DENY_SESSIONS_POLICY_NAME, roleNameFromArn } from '../../src/issuance/aws-sts/deny-sessions.js';
import { LeashError } from '../../src/errors/leash-error.js';
import { awsAdminRouter, awsRolesOf } from '../../src/http/admin/aws-routes.js';
import { createAdminAuthenticator } from '../../src/http/admin/authenticate.js';
import { createMetrics } from '../../src/metrics/metrics.js';
import { compilePolicy } from '../../src/policy/compile.js';
import { ManualClock } from '../../src/time/clock.js';
import type { AuditEventType } from '../../src/audit/events.js';
import { IAM_SECRET_MESSAGE_MARKER, startIamContractServer, type IamContractServer } from '../support/iam-contract.js';
import { loadedFrom, testConfigInput } from '../support/broker.js';
import { TestCluster } from '../support/cluster.js';

const LEASH_KEY = { accessKeyId: 'AKIALEASHTEST0000001', secretAccessKey: 'leash-secret-access-key-for-tests-only' };
const DENIED_KEY = { accessKeyId: 'AKIADENIEDTEST000001', secretAccessKey: 'denied-secret-access-key-for-tests', denied: true };
const ROLE_ARN = 'arn:aws:iam::123456789012:role/plugins/leash/s3-reader';
const OTHER_ROLE_ARN = 'arn:aws:iam::123456789012:role/plugins/not-in-policy';
const BEFORE = new Date(Date.UTC(2026, 10, 25, 12, 0, 0, 250));

function iamFor(server: IamContractServer, creds: { accessKeyId: string; secretAccessKey: string } = LEASH_KEY, maxAttempts = 1): IAMClient {
  return new IAMClient({
    region: server.region,
    endpoint: server.url,
    credentials: creds,
    maxAttempts,
  });
}

async function expectLeashError(p: Promise<unknown>, code: string): Promise<LeashError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(LeashError);
    expect((err as LeashError).code).toBe(code);
    // Never AWS's text, which names ARNs and accounts the caller did not send.
    expect((err as LeashError).description).not.toContain('999999999999');
    expect((err as LeashError).description).not.toContain(IAM_SECRET_MESSAGE_MARKER);
    return err as LeashError;
  }
  throw new Error(`expected ${code}, but it resolved`);
}

describe('denySessionsIssuedBefore through the real @aws-sdk/client-iam', () => {
  let iam: IamContractServer;
  beforeAll(async () => {
    iam = await startIamContractServer({ credentials: [LEASH_KEY, DENIED_KEY], roles: ['s3-reader'] });
  });
  afterAll(async () => {
    await iam.close();
  });

  it('puts the documented deny policy on the role, by name, SigV4-signed', async () => {
    const before = iam.requests.length;
    const result = await denySessionsIssuedBefore({ roleArn: ROLE_ARN, before: BEFORE, reason: 'plugin compromised', iam: iamFor(iam) });
    const sent = iam.requests.slice(before);
    expect(sent).toHaveLength(1);
    const req = sent[0]!;
    expect(req.signatureValid).toBe(true);
    expect(req.accessKeyId).toBe(LEASH_KEY.accessKeyId);
    expect(req.service).toBe('iam');
    expect(req.region).toBe('us-east-1');
    expect(req.params.Action).toBe('PutRolePolicy');
    expect(req.params.Version).toBe('2010-05-08');
    // The role name is the last segment of the ARN, without its path.
    expect(req.params.RoleName).toBe('s3-reader');
    expect(req.params.PolicyName).toBe(DENY_SESSIONS_POLICY_NAME);
    expect(JSON.parse(req.params.PolicyDocument as string)).toEqual({
      Version: '2012-10-17',
      Statement: [
        {
          Sid: 'LeashRevokeOlderSessions',
          Effect: 'Deny',
          Action: '*',
          Resource: '*',
          Condition: { DateLessThan: { 'aws:TokenIssueTime': '2026-11-25T12:00:00.250Z' } },
        },
      ],
    });
    expect(iam.policies.get(`s3-reader/${DENY_SESSIONS_POLICY_NAME}`)).toBe(req.params.PolicyDocument);
    expect(result).toMatchObject({ roleArn: ROLE_ARN, roleName: 's3-reader', policyName: DENY_SESSIONS_POLICY_NAME, before: '2026-11-25T12:00:00.250Z' });
    expect(result.requestId).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('a second call replaces the cut-off (same policy name, newest time)', async () => {
    const later = new Date(BEFORE.getTime() + 60_000);
    await denySessionsIssuedBefore({ roleArn: ROLE_ARN, before: later, reason: 'again', iam: iamFor(iam) });
    expect(iam.policies.get(`s3-reader/${DENY_SESSIONS_POLICY_NAME}`)).toBe(denySessionsPolicy(later));
    expect([...iam.policies.keys()].filter((k) => k.startsWith('s3-reader/'))).toHaveLength(1);
  });

  it('the contract server does verify signatures: a wrong secret is refused, mapped without AWS text', async () => {
    const before = iam.requests.length;
    const err = await expectLeashError(
      denySessionsIssuedBefore({ roleArn: ROLE_ARN, before: BEFORE, reason: 'x-test', iam: iamFor(iam, { accessKeyId: LEASH_KEY.accessKeyId, secretAccessKey: 'wrong-secret' }) }),
      'ERR_UPSTREAM_REFUSED',
    );
    expect(iam.requests[before]?.signatureValid).toBe(false);
    expect(err.detail).toMatchObject({ iam_error: 'SignatureDoesNotMatch', http_status: 403 });
  });

  it('an unknown access key is refused as InvalidClientTokenId', async () => {
    const err = await expectLeashError(
      denySessionsIssuedBefore({ roleArn: ROLE_ARN, before: BEFORE, reason: 'x-test', iam: iamFor(iam, { accessKeyId: 'AKIANOBODY0000000000', secretAccessKey: 'x' }) }),
      'ERR_UPSTREAM_REFUSED',
    );
    expect(err.detail).toMatchObject({ iam_error: 'InvalidClientTokenId' });
  });

  const cases: ReadonlyArray<{ name: string; arn?: string; creds?: typeof LEASH_KEY; inject?: { code: string; status: number }; code: string; iamError: string }> = [
    { name: 'NoSuchEntity (404): role gone', arn: 'arn:aws:iam::123456789012:role/deleted-role', code: 'ERR_UPSTREAM_TARGET_INVALID', iamError: 'NoSuchEntityException' },
    { name: 'AccessDenied (403): Leash lacks iam:PutRolePolicy', creds: DENIED_KEY, code: 'ERR_UPSTREAM_REFUSED', iamError: 'AccessDenied' },
    { name: 'MalformedPolicyDocument (400)', inject: { code: 'MalformedPolicyDocument', status: 400 }, code: 'ERR_UPSTREAM_REFUSED', iamError: 'MalformedPolicyDocumentException' },
    { name: 'LimitExceeded (409)', inject: { code: 'LimitExceeded', status: 409 }, code: 'ERR_UPSTREAM_REFUSED', iamError: 'LimitExceededException' },
    { name: 'ServiceFailure (500)', inject: { code: 'ServiceFailure', status: 500 }, code: 'ERR_UPSTREAM_UNAVAILABLE', iamError: 'ServiceFailureException' },
    { name: 'Throttling (400)', inject: { code: 'Throttling', status: 400 }, code: 'ERR_UPSTREAM_UNAVAILABLE', iamError: 'Throttling' },
  ];
  it.each(cases)('maps $name to $code without leaking AWS text', async ({ arn, creds, inject, code, iamError }) => {
    if (inject) iam.failNext(inject);
    const err = await expectLeashError(denySessionsIssuedBefore({ roleArn: arn ?? ROLE_ARN, before: BEFORE, reason: 'x-test', iam: iamFor(iam, creds) }), code);
    expect(err.detail).toMatchObject({ iam_error: iamError });
  });

  it('throttling is retried by the SDK within max_attempts, then succeeds', async () => {
    const before = iam.requests.length;
    iam.failNext({ code: 'Throttling', status: 400 });
    const client = createIamClient({ region: 'us-east-1', iam_endpoint: iam.url, max_attempts: 3 }, { credentials: LEASH_KEY });
    await denySessionsIssuedBefore({ roleArn: ROLE_ARN, before: BEFORE, reason: 'x-test', iam: client });
    const sent = iam.requests.slice(before);
    expect(sent.map((r) => r.status)).toEqual([400, 200]);
  });

  it('IAM unreachable is temporarily_unavailable', async () => {
    const down = new IAMClient({ region: 'us-east-1', endpoint: 'http://127.0.0.1:9', credentials: LEASH_KEY, maxAttempts: 1 });
    await expectLeashError(denySessionsIssuedBefore({ roleArn: ROLE_ARN, before: BEFORE, reason: 'x-test', iam: down }), 'ERR_UPSTREAM_UNAVAILABLE');
  });

  it('rejects a non-role ARN before calling IAM, and misuse with a TypeError', async () => {
    const before = iam.requests.length;
    await expectLeashError(denySessionsIssuedBefore({ roleArn: 'arn:aws:iam::123456789012:user/alice', before: BEFORE, reason: 'x-test', iam: iamFor(iam) }), 'ERR_ADMIN_INVALID');
    await expect(denySessionsIssuedBefore({ roleArn: ROLE_ARN, before: new Date(Number.NaN), reason: 'x', iam: iamFor(iam) })).rejects.toBeInstanceOf(TypeError);
    await expect(denySessionsIssuedBefore({ roleArn: ROLE_ARN, before: BEFORE, reason: ' ', iam: iamFor(iam) })).rejects.toBeInstanceOf(TypeError);
    expect(iam.requests.length).toBe(before);
  });

  it('roleNameFromArn keeps only the name', () => {
    expect(roleNameFromArn('arn:aws:iam::123456789012:role/r')).toBe('r');
    expect(roleNameFromArn('arn:aws-us-gov:iam::123456789012:role/a/b/c/name.with@chars')).toBe('name.with@chars');
    expect(() => roleNameFromArn('arn:aws:iam::123456789012:role/')).toThrow(LeashError);
    expect(() => roleNameFromArn('arn:aws:sts::123456789012:assumed-role/r/s')).toThrow(LeashError);
  });
});

const SECURITY_KEY = 'test-security-key-0123456789';
const ORCH_KEY = 'test-orchestrator-key-0123456789';
const sha = (s: string) => createHash('sha256').update(s).digest('hex');

describe('POST /admin/aws/deny-sessions', () => {
  let iam: IamContractServer;
  let server: Server;
  let url: string;
  let dir: string;
  const clock = new ManualClock(BEFORE.getTime());
  const events: { type: AuditEventType; event: Record<string, unknown> }[] = [];
  let failAudit = false;

  beforeAll(async () => {
    iam = await startIamContractServer({ credentials: [LEASH_KEY], roles: ['s3-reader'] });
    dir = await mkdtemp(join(tmpdir(), 'leash-aws-admin-'));
    const cluster = await TestCluster.create();
    const input = testConfigInput({ issuer: 'http://127.0.0.1:1', dir, cluster }) as Record<string, any>;
    input.admin = {
      api_keys: [
        { id: 'sec', sha256: sha(SECURITY_KEY), roles: ['security'] },
        { id: 'orch', sha256: sha(ORCH_KEY), roles: ['orchestrator'] },
      ],
    };
    input.plugins[0].grants.push({
      audience: 'aws:s3-reports',
      scopes: ['s3:read'],
      kind: 'aws-sts',
      effect: 'read',
      max_ttl: 900,
      aws: { role_arn: ROLE_ARN, actions: ['s3:GetObject'], resources: ['arn:aws:s3:::reports/*'] },
    });
    const config = loadedFrom(input, dir).config;
    const policy = compilePolicy(config);
    const authenticator = createAdminAuthenticator(config.admin, {
      clock,
      keyLookup: () => {
        throw new Error('no admin issuers in this test');
      },
    });
    const client = iamFor(iam);
    const app = express();
    app.use(
      '/admin/aws',
      awsAdminRouter({
        authenticator: () => authenticator,
        audit: {
          record: async (type, event) => {
            if (failAudit) throw new Error('store down');
            events.push({ type, event });
          },
        },
        metrics: createMetrics({ activeTasks: async () => 0, signingKeys: () => [] }, { defaultMetrics: false }),
        clock,
        policy: () => policy,
        iam: () => client,
        maxBodyBytes: () => 16384,
      }),
    );
    server = app.listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/admin/aws/deny-sessions`;
  });
  afterAll(async () => {
    await new Promise((r) => server.close(r));
    await iam.close();
    await rm(dir, { recursive: true, force: true });
  });

  const post = (body: unknown, key = SECURITY_KEY, contentType = 'application/json') =>
    fetch(url, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': contentType }, body: typeof body === 'string' ? body : JSON.stringify(body) });

  it('applies the deny policy as of now and audits who and why', async () => {
    const n = iam.requests.length;
    const res = await post({ role_arn: ROLE_ARN, reason: 'plugin s3-reader compromised, INC-42' });
    expect(res.status).toBe(200);
    const body = (await res.json()) as Record<string, unknown>;
    expect(body).toMatchObject({ role_arn: ROLE_ARN, policy_name: DENY_SESSIONS_POLICY_NAME, denied_before: BEFORE.toISOString() });
    expect(String(body.note)).toContain('remove the inline policy');
    expect(iam.requests.length).toBe(n + 1);
    expect(JSON.parse(iam.policies.get(`s3-reader/${DENY_SESSIONS_POLICY_NAME}`) as string).Statement[0].Condition.DateLessThan['aws:TokenIssueTime']).toBe(BEFORE.toISOString());
    const ev = events.at(-1);
    expect(ev?.type).toBe('aws.sessions_denied');
    expect(ev?.event).toMatchObject({ role_arn: ROLE_ARN, actor: 'apikey:sec', reason: 'plugin s3-reader compromised, INC-42', before: BEFORE.toISOString(), outcome: 'applied' });
  });

  it('an IAM refusal is answered cleanly and still audited as a failed attempt', async () => {
    iam.roles.delete('s3-reader');
    try {
      const res = await post({ role_arn: ROLE_ARN, reason: 'second try' });
      expect(res.status).toBe(400);
      const text = await res.text();
      expect(JSON.parse(text)).toMatchObject({ error: 'invalid_target' });
      expect(text).not.toContain('999999999999');
      expect(text).not.toContain('s3-reader');
      expect(events.at(-1)?.event).toMatchObject({ role_arn: ROLE_ARN, actor: 'apikey:sec', outcome: 'failed', reason_code: 'ERR_UPSTREAM_TARGET_INVALID' });
    } finally {
      iam.roles.add('s3-reader');
    }
  });

  const refusals: ReadonlyArray<{ name: string; body: unknown; key?: string; contentType?: string; status: number; error: string }> = [
    { name: 'a role no grant names', body: { role_arn: OTHER_ROLE_ARN, reason: 'incident' }, status: 404, error: 'not_found' },
    { name: 'no reason', body: { role_arn: ROLE_ARN }, status: 400, error: 'invalid_request' },
    { name: 'a too-short reason', body: { role_arn: ROLE_ARN, reason: 'x' }, status: 400, error: 'invalid_request' },
    { name: 'no role_arn', body: { reason: 'incident' }, status: 400, error: 'invalid_request' },
    { name: 'unknown fields', body: { role_arn: ROLE_ARN, reason: 'incident', before: '2020-01-01T00:00:00Z' }, status: 400, error: 'invalid_request' },
    { name: 'a JSON array', body: [ROLE_ARN], status: 400, error: 'invalid_request' },
    { name: 'a form body', body: 'role_arn=x&reason=incident', contentType: 'application/x-www-form-urlencoded', status: 400, error: 'invalid_request' },
    { name: 'the orchestrator role', body: { role_arn: ROLE_ARN, reason: 'incident' }, key: ORCH_KEY, status: 403, error: 'insufficient_scope' },
    { name: 'an unknown key', body: { role_arn: ROLE_ARN, reason: 'incident' }, key: 'not-a-valid-key-000000', status: 401, error: 'invalid_token' },
  ];
  it.each(refusals)('refuses $name without calling IAM', async ({ body, key, contentType, status, error }) => {
    const n = iam.requests.length;
    const e = events.length;
    const res = await post(body, key, contentType);
    expect(res.status).toBe(status);
    expect(((await res.json()) as { error: string }).error).toBe(error);
    expect(iam.requests.length).toBe(n);
    // Only auth refusals leave an event (admin.denied); no aws.sessions_denied without an attempt.
    expect(events.slice(e).some((x) => x.type === 'aws.sessions_denied')).toBe(false);
    if (status === 401 || status === 403) expect(events.slice(e).map((x) => x.type)).toEqual(['admin.denied']);
  });

  it('fails closed when the audit trail cannot record the action', async () => {
    failAudit = true;
    try {
      const res = await post({ role_arn: ROLE_ARN, reason: 'audit down' });
      expect(res.status).toBe(503);
      expect(((await res.json()) as { error: string }).error).toBe('temporarily_unavailable');
    } finally {
      failAudit = false;
    }
  });
});

describe('awsRolesOf', () => {
  it('collects the role ARNs of aws-sts grants only', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'leash-aws-roles-'));
    try {
      const input = testConfigInput({ issuer: 'http://127.0.0.1:1', dir, cluster: await TestCluster.create() }) as Record<string, any>;
      input.plugins[0].grants.push({ audience: 'aws:a', scopes: ['s3:read'], kind: 'aws-sts', effect: 'read', max_ttl: 900, aws: { role_arn: ROLE_ARN, actions: ['s3:GetObject'], resources: ['*'] } });
      input.plugins[1].grants.push({
        audience: 'aws:b',
        scopes: ['s3:read'],
        kind: 'aws-sts',
        effect: 'read',
        max_ttl: 900,
        aws: { role_arn: OTHER_ROLE_ARN, mode: 'assume-role', actions: ['s3:GetObject'], resources: ['*'] },
      });
      const roles = awsRolesOf(compilePolicy(loadedFrom(input, dir).config));
      expect([...roles].sort()).toEqual([OTHER_ROLE_ARN, ROLE_ARN].sort());
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
