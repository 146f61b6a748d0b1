import { describe, it, expect, beforeAll, afterAll } from '@jest/globals';
import { REVOKED_SESSIONS_POLICY_NAME } from '../../src/issuance/aws-sts/deny-policy.js';
import { TOKEN_TYPE_AWS_CREDENTIALS } from '../../src/formats/token-types.js';
import { ManualClock } from '../../src/time/clock.js';
import { EXCHANGE, JWT_TYPE, OPS_KEY, ORCHESTRATOR_KEY, loadedFrom, startTestBroker, testConfigInput, type TestBroker } from '../support/broker.js';
import { startIamContractServer, type IamContractServer } from '../support/iam-contract.js';
import { deniesSession, type SessionContext } from '../support/iam-policy-eval.js';
import { StsContractServer, type StsCall } from '../support/sts-contract.js';
import { TestCluster } from '../support/cluster.js';

/**
 * End to end: ending a task, revoking a session and suspending a plugin put a deny on the
 * role through IAM (the contract server, via the real SDK and Leash's own credentials from
 * the default provider chain), and the deny reaches exactly the revoked sessions as IAM
 * would evaluate it. Then the entries expire and the policy is deleted; a failed update
 * survives a restart.
 */

const ROLE = 'arn:aws:iam::123456789012:role/leash/leash-reports-reader';
const ROLE_NAME = 'leash-reports-reader';
const AWS_AUDIENCE = 'aws:reports';
const LEASH_AWS_KEY = { accessKeyId: 'AKIALEASHBROKER00001', secretAccessKey: 'leash-broker-iam-secret-for-tests' };
const POLICY_KEY = `${ROLE_NAME}/${REVOKED_SESSIONS_POLICY_NAME}`;

const savedEnv = { id: process.env.AWS_ACCESS_KEY_ID, secret: process.env.AWS_SECRET_ACCESS_KEY };

function patch(sts: StsContractServer, iam: IamContractServer) {
  return (cfg: Record<string, any>) => {
    cfg.settings.aws = { sts_endpoint: sts.url, iam_endpoint: iam.url, max_attempts: 1 };
    cfg.plugins.push({
      id: 'reports-reader',
      owner: 'team-data@example.com',
      risk: 'medium',
      bindings: [{ issuer: 'test-cluster', subject: 'system:serviceaccount:plugins:reports-reader' }],
      grants: [
        { audience: AWS_AUDIENCE, scopes: ['s3:read'], kind: 'aws-sts', effect: 'read', max_ttl: 300, aws: { role_arn: ROLE, actions: ['s3:GetObject'], resources: ['arn:aws:s3:::reports/*'] } },
      ],
    });
  };
}

const sessionOf = (call: StsCall): SessionContext => ({ tags: call.tags ?? {}, sourceIdentity: call.sourceIdentity, tokenIssueTime: call.issued!.tokenIssueTime });

async function admin(tb: TestBroker, method: string, path: string, body?: unknown, key = OPS_KEY): Promise<Response> {
  return fetch(`${tb.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${key}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
}

async function events(tb: TestBroker, type: string): Promise<Record<string, unknown>[]> {
  return (await tb.broker.testing.store.read(1, 10_000)).filter((r) => r.type === type).map((r) => r.event as Record<string, unknown>);
}

describe('revoked AWS sessions are denied through IAM (running broker)', () => {
  let sts: StsContractServer;
  let iam: IamContractServer;
  let tb: TestBroker;
  let cluster: TestCluster;
  const clock = new ManualClock(Date.now());

  beforeAll(async () => {
    process.env.AWS_ACCESS_KEY_ID = LEASH_AWS_KEY.accessKeyId;
    process.env.AWS_SECRET_ACCESS_KEY = LEASH_AWS_KEY.secretAccessKey;
    iam = await startIamContractServer({ credentials: [LEASH_AWS_KEY], roles: [ROLE_NAME] });
    sts = await StsContractServer.start({ roleMaxSession: 3600, now: () => clock.now() });
    cluster = await TestCluster.create();
    tb = await startTestBroker({ cluster, broker: { clock }, patch: patch(sts, iam) });
    sts.setOidc({ issuer: tb.url, jwksUrl: `${tb.url}/jwks`, audiences: ['sts.amazonaws.com'] });
  });

  afterAll(async () => {
    await tb?.close();
    await sts?.close();
    await iam?.close();
    process.env.AWS_ACCESS_KEY_ID = savedEnv.id;
    process.env.AWS_SECRET_ACCESS_KEY = savedEnv.secret;
    if (savedEnv.id === undefined) delete process.env.AWS_ACCESS_KEY_ID;
    if (savedEnv.secret === undefined) delete process.env.AWS_SECRET_ACCESS_KEY;
  });

  async function awsSession(task: string): Promise<{ call: StsCall; jti: string }> {
    const before = sts.calls.length;
    const res = await tb.exchange({
      grant_type: EXCHANGE,
      client_id: 'reports-reader',
      subject_token: await tb.cluster.saToken({ sa: 'reports-reader', nowSeconds: Math.floor(clock.now() / 1000) }),
      subject_token_type: JWT_TYPE,
      audience: AWS_AUDIENCE,
      requested_token_type: TOKEN_TYPE_AWS_CREDENTIALS,
      task,
    });
    if (res.status !== 200) throw new Error(`exchange: ${res.status} ${JSON.stringify(res.body)}`);
    const call = sts.calls.slice(before).find((c) => c.issued)!;
    return { call, jti: `aws:${call.issued!.accessKeyId}` };
  }

  const policy = () => iam.policies.get(POLICY_KEY);

  it('ending a task denies its sessions (and only them) by the leash:task session tag', async () => {
    const taskA = await tb.openTask({ plugins: ['reports-reader'], ttl_seconds: 600 });
    const taskB = await tb.openTask({ plugins: ['reports-reader'], ttl_seconds: 600 });
    const a = await awsSession(taskA);
    const b = await awsSession(taskB);
    const n = iam.requests.length;
    const res = await fetch(`${tb.url}/tasks/${taskA}`, { method: 'DELETE', headers: { authorization: `Bearer ${ORCHESTRATOR_KEY}` } });
    expect(res.status).toBeLessThan(300);
    const writes = iam.requests.slice(n);
    expect(writes).toHaveLength(1);
    expect(writes[0]).toMatchObject({ action: 'PutRolePolicy', signatureValid: true, accessKeyId: LEASH_AWS_KEY.accessKeyId, status: 200 });
    expect(writes[0]!.params.RoleName).toBe(ROLE_NAME);
    expect(policy()).toBe(
      `{"Version":"2012-10-17","Statement":[{"Sid":"LeashDenyEndedTasks","Effect":"Deny","Action":"*","Resource":"*","Condition":{"StringEquals":{"aws:PrincipalTag/leash:task":"${taskA}"}}}]}`,
    );
    expect(deniesSession(policy(), sessionOf(a.call))).toBe(true);
    expect(deniesSession(policy(), sessionOf(b.call))).toBe(false);
    const updated = await events(tb, 'aws.deny_policy_updated');
    expect(updated.at(-1)).toMatchObject({ role_arn: ROLE, action: 'put', entries: 1 });
  });

  it('revoking one AWS session denies it (its plugin, in its task, issued up to now)', async () => {
    const task = await tb.openTask({ plugins: ['reports-reader'], ttl_seconds: 600 });
    const s = await awsSession(task);
    const res = await admin(tb, 'POST', '/admin/revocations', { scope: 'token', id: s.jti, reason: 'leaked in a log' });
    expect(res.status).toBe(201);
    const doc = JSON.parse(policy()!);
    const stmt = doc.Statement.find((x: any) => x.Condition.StringEquals['aws:PrincipalTag/leash:task'] === task && x.Condition.StringEquals['aws:SourceIdentity']);
    expect(stmt).toEqual({
      Effect: 'Deny',
      Action: '*',
      Resource: '*',
      Condition: {
        StringEquals: { 'aws:SourceIdentity': 'reports-reader', 'aws:PrincipalTag/leash:task': task },
        DateLessThan: { 'aws:TokenIssueTime': expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/) },
      },
    });
    expect(deniesSession(policy(), sessionOf(s.call))).toBe(true);
    // A new session of that plugin in that task, after the cut-off, is not denied.
    clock.advance(5);
    const later = await awsSession(task);
    expect(deniesSession(policy(), sessionOf(later.call))).toBe(false);
  });

  it('suspending the plugin denies its sessions issued before, in every task; after resume, new ones work', async () => {
    const task = await tb.openTask({ plugins: ['reports-reader'], ttl_seconds: 600 });
    const s = await awsSession(task);
    expect(deniesSession(policy(), sessionOf(s.call))).toBe(false);
    expect((await admin(tb, 'POST', '/admin/plugins/reports-reader/suspend', { reason: 'INC-7 compromised' })).status).toBe(200);
    expect(deniesSession(policy(), sessionOf(s.call))).toBe(true);
    const doc = JSON.parse(policy()!);
    expect(
      doc.Statement.some((x: any) => x.Condition.StringEquals['aws:SourceIdentity'] === 'reports-reader' && !x.Condition.StringEquals['aws:PrincipalTag/leash:task'] && x.Condition.DateLessThan),
    ).toBe(true);
    expect((await admin(tb, 'POST', '/admin/plugins/reports-reader/resume', { reason: 'INC-7 fixed' })).status).toBe(200);
    clock.advance(5);
    const fresh = await awsSession(task);
    expect(deniesSession(policy(), sessionOf(fresh.call))).toBe(false);
  });

  it('a reload that removes the aws-sts grant denies its live sessions (the role found in the policy they were issued under)', async () => {
    const task = await tb.openTask({ plugins: ['reports-reader'], ttl_seconds: 600 });
    const s = await awsSession(task);
    expect(deniesSession(policy(), sessionOf(s.call))).toBe(false);
    const input = testConfigInput({ issuer: tb.url, dir: tb.dir, cluster }) as Record<string, any>;
    patch(sts, iam)(input);
    const plugin = input.plugins.find((p: any) => p.id === 'reports-reader');
    plugin.grants = [{ audience: 'https://reports.example.com', scopes: ['r:read'], kind: 'jwt', effect: 'read', max_ttl: 300 }];
    expect(await tb.broker.reload(loadedFrom(input, tb.dir))).toEqual({ ok: true });
    expect(deniesSession(policy(), sessionOf(s.call))).toBe(true);
    const ev = (await events(tb, 'policy.revoked_on_reload')).at(-1)!;
    expect(ev).toMatchObject({ grants_removed: [{ plugin: 'reports-reader', audience: AWS_AUDIENCE, kind: 'aws-sts' }] });
    expect(ev.jtis).toContain(s.jti);
    // Back to the policy with the grant.
    const original = testConfigInput({ issuer: tb.url, dir: tb.dir, cluster }) as Record<string, any>;
    patch(sts, iam)(original);
    original.settings.aws.deny_policy_max_chars = 8000;
    expect(await tb.broker.reload(loadedFrom(original, tb.dir))).toEqual({ ok: true });
  });

  it('the gauge and counter say what happened', async () => {
    const text = await (await fetch(`${tb.managementUrl}/metrics`)).text();
    expect(text).toMatch(/leash_aws_deny_updates_total\{outcome="put"\} [1-9]/);
    expect(text).toMatch(/leash_aws_deny_pending_roles 0/);
  });

  it('once every covered session has expired, the entries leave and the policy is deleted', async () => {
    expect(policy()).toBeDefined();
    // Sessions are 900 s; entries are kept 30 s (clock_skew) past the last one.
    clock.advance(900 + 60);
    const n = iam.requests.length;
    await tb.broker.awsDenier.sweep();
    expect(iam.requests.slice(n).map((r) => r.action)).toEqual(['DeleteRolePolicy']);
    expect(policy()).toBeUndefined();
    expect(await tb.broker.testing.store.listAwsDenyRoles()).toEqual([]);
  });

  it('a deny IAM cannot take is retried, reported, and survives a restart', async () => {
    const task = await tb.openTask({ plugins: ['reports-reader'], ttl_seconds: 600 });
    const s = await awsSession(task);
    iam.failNext({ code: 'ServiceFailure', status: 500 });
    const res = await fetch(`${tb.url}/tasks/${task}`, { method: 'DELETE', headers: { authorization: `Bearer ${ORCHESTRATOR_KEY}` } });
    // The task end itself succeeds: the revocation is recorded; the IAM write is pending.
    expect(res.status).toBeLessThan(300);
    expect(policy()).toBeUndefined();
    expect((await events(tb, 'aws.deny_policy_failed')).at(-1)).toMatchObject({ role_arn: ROLE, reason_code: 'ERR_UPSTREAM_UNAVAILABLE', failures: 1 });
    expect(await (await fetch(`${tb.managementUrl}/metrics`)).text()).toMatch(/leash_aws_deny_pending_roles 1/);

    // Restart on the same database and keys.
    const dir = tb.dir;
    await tb.close({ keepDir: true });
    clock.advance(10);
    tb = await startTestBroker({ cluster, dir, broker: { clock }, patch: patch(sts, iam) });
    await tb.broker.awsDenier.sweep();
    expect(deniesSession(policy(), sessionOf(s.call))).toBe(true);
    expect(JSON.parse(policy()!).Statement[0].Condition.StringEquals['aws:PrincipalTag/leash:task']).toBe(task);
  });
});
