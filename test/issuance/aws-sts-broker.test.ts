import { describe, it, expect, beforeAll, afterAll } from '@jest/globals';
import { decodeProtectedHeader } from 'jose';
import { TOKEN_TYPE_AWS_CREDENTIALS } from '../../src/formats/token-types.js';
import { EXCHANGE, JWT_TYPE, ORCHESTRATOR_KEY, startTestBroker, type TestBroker } from '../support/broker.js';
import { StsContractServer } from '../support/sts-contract.js';

/** End to end: a plugin exchanges its attestation for AWS credentials; "AWS" trusts only Leash's real /jwks. */

const ROLE = 'arn:aws:iam::123456789012:role/leash-reports-reader';
const AWS_AUDIENCE = 'aws:reports';

describe('aws-sts credentials through the broker', () => {
  let sts: StsContractServer;
  let tb: TestBroker;
  let task: string;
  const logs: string[] = [];

  beforeAll(async () => {
    sts = await StsContractServer.start({ roleMaxSession: 3600 });
    tb = await startTestBroker({
      broker: { write: (line) => void logs.push(line) },
      patch: (cfg) => {
        // The automatic IAM deny is off here (aws-revoked-sessions-broker.test.ts covers it).
        cfg.settings.aws = { sts_endpoint: sts.url, max_attempts: 2, deny_revoked_sessions: false };
        cfg.plugins.push({
          id: 'reports-reader',
          owner: 'team-data@example.com',
          risk: 'medium',
          bindings: [{ issuer: 'test-cluster', subject: 'system:serviceaccount:plugins:reports-reader' }],
          grants: [
            {
              audience: AWS_AUDIENCE,
              scopes: ['s3:read'],
              kind: 'aws-sts',
              effect: 'read',
              max_ttl: 300,
              aws: { role_arn: ROLE, actions: ['s3:GetObject'], resources: ['arn:aws:s3:::reports/*'], transitive_tags: true },
            },
          ],
        });
      },
    });
    // AWS's IAM OIDC provider for Leash: its issuer URL and the JWKS it publishes.
    sts.setOidc({ issuer: tb.url, jwksUrl: `${tb.url}/jwks`, audiences: ['sts.amazonaws.com'] });
    task = await tb.openTask({ plugins: ['reports-reader'], ttl_seconds: 600 });
  });

  afterAll(async () => {
    await tb?.close();
    await sts?.close();
  });

  const exchange = async (extra: Record<string, string> = {}) =>
    tb.exchange({
      grant_type: EXCHANGE,
      client_id: 'reports-reader',
      subject_token: await tb.cluster.saToken({ sa: 'reports-reader' }),
      subject_token_type: JWT_TYPE,
      audience: AWS_AUDIENCE,
      task,
      ...extra,
    });

  it('issues AWS credentials via AssumeRoleWithWebIdentity, verified against the broker /jwks', async () => {
    const before = sts.calls.length;
    const res = await exchange({ requested_token_type: TOKEN_TYPE_AWS_CREDENTIALS });
    expect(res.status).toBe(200);
    const calls = sts.calls.slice(before);
    expect(calls).toHaveLength(1);
    const call = calls[0]!;
    expect(call.action).toBe('AssumeRoleWithWebIdentity');
    expect(call.status).toBe(200);
    expect(call.headers.authorization).toBeUndefined();
    expect(call.claims).toMatchObject({ iss: tb.url, sub: 'reports-reader', aud: 'sts.amazonaws.com', task });
    expect(decodeProtectedHeader(call.params.WebIdentityToken!).kid).toBe(tb.broker.testing.keys.current().kid);
    expect(call.tags).toEqual({ 'leash:plugin': 'reports-reader', 'leash:task': task, 'leash:risk': 'medium' });
    expect(call.transitiveTagKeys).toEqual(['leash:plugin', 'leash:task', 'leash:risk']);
    expect(call.params.Policy).toBe('{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:GetObject"],"Resource":["arn:aws:s3:::reports/*"]}]}');
    expect(call.params.DurationSeconds).toBe('900');

    const body = res.body as Record<string, any>;
    expect(body).toMatchObject({ issued_token_type: TOKEN_TYPE_AWS_CREDENTIALS, token_type: 'N_A' });
    expect(body.aws_credentials.access_key_id).toBe(call.issued!.accessKeyId);
    expect(body.access_token).toBe(body.aws_credentials.session_token);
    expect(body.expires_in).toBeGreaterThan(890);
    expect(body.expires_in).toBeLessThanOrEqual(900);

    const issued = await tb.broker.testing.store.listIssuedForTask(task);
    const record = issued.find((t) => t.jti === `aws:${call.issued!.accessKeyId}`);
    expect(record).toMatchObject({ kind: 'aws-sts', plugin: 'reports-reader', audience: AWS_AUDIENCE });
    expect(JSON.stringify(issued)).not.toContain(body.aws_credentials.secret_access_key);
    expect(logs.join('\n')).not.toContain(body.aws_credentials.secret_access_key);
    expect(logs.join('\n')).not.toContain(body.aws_credentials.session_token);
  });

  it('an AWS refusal is invalid_target (RFC 8693 §2.2.2: unwilling to issue for the target) with Leash words only', async () => {
    sts.failNext(1, 'AccessDenied', 403);
    const res = await exchange();
    expect(res.status).toBe(400);
    expect(res.body.error).toBe('invalid_target');
    expect(String(res.body.error_description)).not.toMatch(/arn:aws|not authorized/);
    expect(JSON.stringify(res.body)).not.toContain(ROLE);
  });

  it('throttling beyond max_attempts is 503 temporarily_unavailable', async () => {
    sts.failNext(2, 'Throttling', 400);
    const before = sts.calls.length;
    const res = await exchange();
    expect(sts.calls.length - before).toBe(2);
    expect(res.status).toBe(503);
    expect(res.body.error).toBe('temporarily_unavailable');
    expect(String(res.body.error_description)).not.toContain('Rate exceeded');
  });

  it('with the automatic deny off, ending the task says the AWS sessions stay valid until they expire', async () => {
    const res = await fetch(`${tb.url}/tasks/${task}`, { method: 'DELETE', headers: { authorization: `Bearer ${ORCHESTRATOR_KEY}` } });
    expect(res.status).toBeLessThan(300);
    const line = logs.find((l) => l.includes('deny_revoked_sessions is off'));
    expect(line).toBeDefined();
    expect(line).toContain('aws:ASIA');
  });
});
