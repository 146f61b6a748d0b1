import { describe, it, expect, beforeAll, afterAll } from '@jest/globals';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GetCallerIdentityCommand } from '@aws-sdk/client-sts';
import { decodeJwt, decodeProtectedHeader } from 'jose';
import type { AwsGrantConfig, AwsSettingsConfig, GrantConfig } from '../../src/config/schema.js';
import { LeashError } from '../../src/errors/leash-error.js';
import { createAwsStsIssuer, type AwsCredentialsBody } from '../../src/issuance/aws-sts/aws-sts-issuer.js';
import { createStsClient, type AwsStsMode } from '../../src/issuance/aws-sts/sts-client.js';
import type { CredentialIssuer, IssueRequest } from '../../src/issuance/credential-issuer.js';
import { TOKEN_TYPE_AWS_CREDENTIALS } from '../../src/formats/token-types.js';
import type { KeyManager } from '../../src/keys/key-manager.js';
import { createLocalKeyManager } from '../../src/keys/local/local-key-manager.js';
import type { CompiledGrant, CompiledPlugin } from '../../src/policy/types.js';
import type { Task } from '../../src/store/records.js';
import { systemClock } from '../../src/time/clock.js';
import { StsContractServer, TEST_ACCESS_KEY_ID, TEST_SECRET_ACCESS_KEY } from '../support/sts-contract.js';

const ROLE = 'arn:aws:iam::123456789012:role/leash-reports-reader';
const AUDIENCE = 'aws:reports';
const TASK_ID = 'tsk_Q2xhdWRlVGFza0lkMDAwMQ';
const POLICY = '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:GetObject","s3:ListBucket"],"Resource":["arn:aws:s3:::reports","arn:aws:s3:::reports/*"]}]}';

let dir: string;
let keys: KeyManager;
let jwksServer: Server;
let issuerUrl: string;
let sts: StsContractServer;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'leash-aws-sts-'));
  keys = createLocalKeyManager({ dir: join(dir, 'keys'), algorithm: 'ES256', clock: systemClock });
  await keys.init();
  // Leash as an OIDC provider, as far as AWS looks at it: its JWKS.
  jwksServer = createServer((req, res) => {
    if (req.url === '/jwks') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(keys.jwks()));
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((resolve) => jwksServer.listen(0, '127.0.0.1', resolve));
  issuerUrl = `http://127.0.0.1:${(jwksServer.address() as AddressInfo).port}`;
  sts = await StsContractServer.start({ oidc: { issuer: issuerUrl, jwksUrl: `${issuerUrl}/jwks`, audiences: ['sts.amazonaws.com'] }, roleMaxSession: 3600 });
});

afterAll(async () => {
  await sts.close();
  jwksServer.closeAllConnections();
  await new Promise<void>((resolve) => jwksServer.close(() => resolve()));
  await rm(dir, { recursive: true, force: true });
});

function settings(over: Partial<AwsSettingsConfig> = {}): AwsSettingsConfig {
  return {
    region: 'us-east-1',
    sts_endpoint: sts.url,
    web_identity_audience: 'sts.amazonaws.com',
    web_identity_token_ttl: 300,
    max_attempts: 3,
    deny_revoked_sessions: true,
    deny_policy_max_chars: 8192,
    ...over,
  };
}

function awsGrant(over: Partial<AwsGrantConfig> = {}): AwsGrantConfig {
  return {
    role_arn: ROLE,
    mode: 'web-identity',
    actions: ['s3:GetObject', 's3:ListBucket'],
    resources: ['arn:aws:s3:::reports', 'arn:aws:s3:::reports/*'],
    transitive_tags: false,
    role_max_session: 3600,
    ...over,
  };
}

function request(opts: { aws?: Partial<AwsGrantConfig>; ttl?: number; task?: string | null; plugin?: string } = {}): IssueRequest {
  const config: GrantConfig = {
    audience: AUDIENCE,
    scopes: ['s3:read'],
    kind: 'aws-sts',
    effect: 'read',
    max_ttl: 300,
    task_required: true,
    outlive_attestation: false,
    dpop: 'optional',
    approval: 'none',
    conditions: [],
    aws: awsGrant(opts.aws),
  };
  const grant: CompiledGrant = {
    index: 0,
    audience: AUDIENCE,
    scopes: new Set(['s3:read']),
    defaultScopes: ['s3:read'],
    kind: 'aws-sts',
    effect: 'read',
    maxTtl: 300,
    taskRequired: true,
    dpopRequired: false,
    approval: 'none',
    failedConditions: () => [],
    exceptions: [],
    config,
  };
  const id = opts.plugin ?? 'reports-reader';
  const plugin: CompiledPlugin = {
    id,
    owner: 'team-data@example.com',
    risk: 'medium',
    disabled: false,
    grants: [grant],
    config: { id, owner: 'team-data@example.com', risk: 'medium', disabled: false, bindings: [{ issuer: 'c', subject: 's' }], grants: [config] } as CompiledPlugin['config'],
  };
  const now = Date.now();
  const task: Task | undefined =
    opts.task === null
      ? undefined
      : {
          id: opts.task ?? TASK_ID,
          plugins: [id],
          attributes: {},
          createdAt: now,
          expiresAt: now + 3_600_000,
          createdBy: 'apikey:orchestrator',
          state: 'active',
          endedAt: undefined,
          endedBy: undefined,
        };
  return {
    plugin,
    grant,
    identity: { issuer: 'c', subject: 's', claims: {} } as unknown as IssueRequest['identity'],
    task,
    audience: AUDIENCE,
    scopes: ['s3:read'],
    ttl: opts.ttl ?? 300,
    jkt: undefined,
    now,
  };
}

const assumeRoleClient =
  (secret = TEST_SECRET_ACCESS_KEY, accessKeyId = TEST_ACCESS_KEY_ID) =>
  (region: string, endpoint: string | undefined, mode: AwsStsMode) =>
    createStsClient({ region, endpoint, mode, ...(mode === 'assume-role' ? { credentials: { accessKeyId, secretAccessKey: secret } } : {}) });

function issuerWith(opts: { settings?: Partial<AwsSettingsConfig>; secret?: string; accessKeyId?: string; delays?: number[] } = {}): CredentialIssuer {
  const delays = opts.delays ?? [];
  return createAwsStsIssuer({
    issuer: issuerUrl,
    keys,
    settings: () => settings(opts.settings),
    clock: systemClock,
    stsClient: assumeRoleClient(opts.secret, opts.accessKeyId),
    sleep: async (ms) => void delays.push(ms),
  });
}

/** Calls the issuer expecting a LeashError, and returns it with the STS calls it made. */
async function refusal(issuer: CredentialIssuer, req: IssueRequest): Promise<{ error: LeashError; calls: number }> {
  const before = sts.calls.length;
  const error = await issuer.issue(req).then(
    () => {
      throw new Error('expected a refusal');
    },
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(LeashError);
  return { error: error as LeashError, calls: sts.calls.length - before };
}

function lastCall() {
  return sts.calls[sts.calls.length - 1]!;
}

describe('aws-sts issuer, web-identity mode (Leash holds no AWS key)', () => {
  // The default client factory: exactly what production builds.
  const issuer = () => createAwsStsIssuer({ issuer: issuerUrl, keys, settings: () => settings(), clock: systemClock });

  it('sends the exact session policy, session name and shortest duration, unsigned', async () => {
    const out = await issuer().issue(request({ ttl: 300 }));
    const call = lastCall();
    expect(call.action).toBe('AssumeRoleWithWebIdentity');
    expect(call.status).toBe(200);
    expect(call.headers.authorization).toBeUndefined();
    expect(call.params.RoleArn).toBe(ROLE);
    expect(call.params.Policy).toBe(POLICY);
    expect(call.params.RoleSessionName).toBe(`leash.reports-reader.${TASK_ID.slice(-12)}`);
    expect(call.params.DurationSeconds).toBe('900');
    // Tags and source identity come from the token, never from parameters.
    expect(Object.keys(call.params).filter((k) => k.startsWith('Tags') || k.startsWith('Transitive') || k === 'SourceIdentity')).toEqual([]);
    expect(out.body.expires_in).toBeGreaterThan(890);
  });

  it('signs a short token AWS verifies against the JWKS, carrying tags and source identity', async () => {
    await issuer().issue(request());
    const call = lastCall();
    const token = call.params.WebIdentityToken!;
    expect(decodeProtectedHeader(token)).toMatchObject({ typ: 'JWT', alg: 'ES256', kid: keys.current().kid });
    const claims = decodeJwt(token);
    expect(call.claims).toEqual(claims); // the contract server verified this very token
    expect(claims).toMatchObject({ iss: issuerUrl, sub: 'reports-reader', aud: 'sts.amazonaws.com', plugin: 'reports-reader', task: TASK_ID });
    expect(claims.exp! - claims.iat!).toBe(300);
    expect(claims.nbf).toBe(claims.iat);
    expect(typeof claims.jti).toBe('string');
    expect(claims['https://aws.amazon.com/source_identity']).toBe('reports-reader');
    expect(claims['https://aws.amazon.com/tags']).toEqual({
      principal_tags: { 'leash:plugin': ['reports-reader'], 'leash:task': [TASK_ID], 'leash:risk': ['medium'] },
    });
    expect(call.tags).toEqual({ 'leash:plugin': 'reports-reader', 'leash:task': TASK_ID, 'leash:risk': 'medium' });
    expect(call.sourceIdentity).toBe('reports-reader');
  });

  it('marks the tags transitive when the grant says so, and tags a task-less call "none"', async () => {
    await issuer().issue(request({ aws: { transitive_tags: true }, task: null }));
    const claims = lastCall().claims!;
    expect(claims['https://aws.amazon.com/tags']).toEqual({
      principal_tags: { 'leash:plugin': ['reports-reader'], 'leash:task': ['none'], 'leash:risk': ['medium'] },
      transitive_tag_keys: ['leash:plugin', 'leash:task', 'leash:risk'],
    });
    expect(lastCall().transitiveTagKeys).toEqual(['leash:plugin', 'leash:task', 'leash:risk']);
    expect(lastCall().params.RoleSessionName).toBe('leash.reports-reader.none');
  });

  it('caps the duration at the role maximum (ttl 5000, role max 3600 -> 3600)', async () => {
    const out = await issuer().issue(request({ ttl: 5000, aws: { role_max_session: 3600 } }));
    expect(lastCall().params.DurationSeconds).toBe('3600');
    expect(out.record.expiresAt - out.record.issuedAt).toBeGreaterThan(3590_000);
  });

  it('answers an RFC 8693 body with the credentials, and records the access key id, never the secret', async () => {
    const out = await issuer().issue(request());
    const issued = lastCall().issued!;
    const creds = out.body.aws_credentials as AwsCredentialsBody;
    expect(out.body).toMatchObject({ issued_token_type: TOKEN_TYPE_AWS_CREDENTIALS, token_type: 'N_A', access_token: creds.session_token });
    expect(out.body.scope).toBeUndefined();
    expect(creds.access_key_id).toBe(issued.accessKeyId);
    expect(creds.access_key_id).toMatch(/^ASIA[A-Z2-7]{16}$/);
    expect(new Date(creds.expiration).toISOString()).toBe(new Date(issued.expiration).toISOString());
    expect(creds.secret_access_key.length).toBeGreaterThan(20);
    expect(out.record).toMatchObject({ jti: `aws:${issued.accessKeyId}`, kind: 'aws-sts', audience: AUDIENCE, plugin: 'reports-reader', task: TASK_ID, kid: undefined, jkt: undefined });
    expect(out.record.expiresAt).toBe(Date.parse(issued.expiration));
    const recorded = JSON.stringify(out.record);
    expect(recorded).not.toContain(creds.secret_access_key);
    expect(recorded).not.toContain(creds.session_token);
  });

  it('a token AWS cannot verify (wrong audience) is ERR_UPSTREAM_REFUSED without AWS text', async () => {
    const wrong = createAwsStsIssuer({ issuer: issuerUrl, keys, settings: () => settings({ web_identity_audience: 'not-sts' }), clock: systemClock });
    const { error, calls } = await refusal(wrong, request());
    expect(calls).toBe(1);
    expect(lastCall().errorCode).toBe('InvalidIdentityToken');
    expect(error.code).toBe('ERR_UPSTREAM_REFUSED');
    expect(error.description).toBe("AWS refused to issue credentials for this role; check the role's trust policy");
    expect(error.detail).toMatchObject({ aws_error: 'InvalidIdentityToken', aws_status: 400 });
  });

  it('a token from another issuer is refused too', async () => {
    const other = createAwsStsIssuer({ issuer: 'https://impostor.example.com', keys, settings: () => settings(), clock: systemClock });
    const { error } = await refusal(other, request());
    expect(lastCall().errorCode).toBe('InvalidIdentityToken');
    expect(error.code).toBe('ERR_UPSTREAM_REFUSED');
  });

  it('a grant claiming a longer role maximum than the role has is ERR_UPSTREAM_TARGET_INVALID', async () => {
    const { error, calls } = await refusal(issuer(), request({ ttl: 7200, aws: { role_max_session: 43200 } }));
    expect(calls).toBe(1);
    expect(lastCall().errorCode).toBe('ValidationError');
    expect(error.code).toBe('ERR_UPSTREAM_TARGET_INVALID');
    expect(error.description).not.toMatch(/MaxSessionDuration|arn:/);
  });
});

describe('aws-sts issuer, assume-role mode (SigV4)', () => {
  it('sends policy, session name, source identity, tags and duration, signed with the right key', async () => {
    await issuerWith().issue(request({ aws: { mode: 'assume-role' }, ttl: 1200 }));
    const call = lastCall();
    expect(call.action).toBe('AssumeRole');
    expect(call.status).toBe(200);
    expect(call.signedBy).toBe(TEST_ACCESS_KEY_ID);
    expect(call.params).toMatchObject({
      RoleArn: ROLE,
      RoleSessionName: `leash.reports-reader.${TASK_ID.slice(-12)}`,
      Policy: POLICY,
      DurationSeconds: '1200',
      SourceIdentity: 'reports-reader',
      'Tags.member.1.Key': 'leash:plugin',
      'Tags.member.1.Value': 'reports-reader',
      'Tags.member.2.Key': 'leash:task',
      'Tags.member.2.Value': TASK_ID,
      'Tags.member.3.Key': 'leash:risk',
      'Tags.member.3.Value': 'medium',
    });
    expect(call.params.WebIdentityToken).toBeUndefined();
    expect(Object.keys(call.params).filter((k) => k.startsWith('TransitiveTagKeys'))).toEqual([]);
  });

  it('sends TransitiveTagKeys when the grant makes tags transitive', async () => {
    await issuerWith().issue(request({ aws: { mode: 'assume-role', transitive_tags: true } }));
    expect(lastCall().transitiveTagKeys).toEqual(['leash:plugin', 'leash:task', 'leash:risk']);
    expect(lastCall().params.DurationSeconds).toBe('900');
  });

  it('a wrong secret fails SigV4 at STS and is ERR_UPSTREAM_UNAVAILABLE, not retried', async () => {
    const { error, calls } = await refusal(issuerWith({ secret: 'not-the-secret' }), request({ aws: { mode: 'assume-role' } }));
    expect(calls).toBe(1);
    expect(lastCall().errorCode).toBe('SignatureDoesNotMatch');
    expect(lastCall().signedBy).toBeUndefined();
    expect(error.code).toBe('ERR_UPSTREAM_UNAVAILABLE');
    expect(error.detail).toMatchObject({ aws_error: 'SignatureDoesNotMatch', aws_status: 403, attempts: 1 });
    expect(error.description).not.toContain('signature');
  });

  it('an unknown access key is InvalidClientTokenId -> ERR_UPSTREAM_UNAVAILABLE', async () => {
    const { error } = await refusal(issuerWith({ accessKeyId: 'AKIAUNKNOWNKEY000000' }), request({ aws: { mode: 'assume-role' } }));
    expect(lastCall().errorCode).toBe('InvalidClientTokenId');
    expect(error.code).toBe('ERR_UPSTREAM_UNAVAILABLE');
  });

  it('the contract verifies the real SDK signature on GetCallerIdentity too', async () => {
    const client = createStsClient({ region: 'us-east-1', endpoint: sts.url, mode: 'assume-role', credentials: { accessKeyId: TEST_ACCESS_KEY_ID, secretAccessKey: TEST_SECRET_ACCESS_KEY } });
    const who = await client.send(new GetCallerIdentityCommand({}));
    expect(who.Account).toBe('123456789012');
    expect(lastCall().signedBy).toBe(TEST_ACCESS_KEY_ID);
  });

  it('the contract refuses a signed request whose body was changed after signing', async () => {
    const client = createStsClient({ region: 'us-east-1', endpoint: sts.url, mode: 'assume-role', credentials: { accessKeyId: TEST_ACCESS_KEY_ID, secretAccessKey: TEST_SECRET_ACCESS_KEY } });
    await client.send(new GetCallerIdentityCommand({}));
    const signed = lastCall();
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(signed.headers)) if (typeof v === 'string' && k !== 'content-length' && k !== 'host') headers[k] = v;
    const res = await fetch(sts.url, { method: 'POST', headers, body: 'Action=AssumeRole&Version=2011-06-15&RoleArn=' + encodeURIComponent(ROLE) + '&RoleSessionName=evil' });
    expect(res.status).toBe(403);
    expect(await res.text()).toContain('<Code>SignatureDoesNotMatch</Code>');
  });
});

describe('aws-sts issuer, STS failures', () => {
  it('retries throttling with backoff, then succeeds', async () => {
    const delays: number[] = [];
    sts.failNext(2, 'Throttling', 400);
    const before = sts.calls.length;
    const out = await issuerWith({ delays }).issue(request({ aws: { mode: 'assume-role' } }));
    expect(sts.calls.slice(before).map((c) => c.errorCode ?? c.status)).toEqual(['Throttling', 'Throttling', 200]);
    expect(out.record.jti).toBe(`aws:${lastCall().issued!.accessKeyId}`);
    expect(delays).toHaveLength(2);
    expect(delays[0]).toBeGreaterThanOrEqual(50);
    expect(delays[0]).toBeLessThanOrEqual(100);
    expect(delays[1]).toBeGreaterThanOrEqual(100);
    expect(delays[1]).toBeLessThanOrEqual(200);
  });

  it('retries a 503 on the web-identity path too', async () => {
    sts.failNext(1, 'ServiceUnavailable', 503);
    const before = sts.calls.length;
    await issuerWith().issue(request());
    expect(sts.calls.slice(before).map((c) => c.status)).toEqual([503, 200]);
  });

  it('gives up after max_attempts with ERR_UPSTREAM_UNAVAILABLE', async () => {
    const delays: number[] = [];
    sts.failNext(3, 'Throttling', 400);
    const { error, calls } = await refusal(issuerWith({ delays, settings: { max_attempts: 3 } }), request({ aws: { mode: 'assume-role' } }));
    expect(calls).toBe(3);
    expect(delays).toHaveLength(2);
    expect(error.code).toBe('ERR_UPSTREAM_UNAVAILABLE');
    expect(error.detail).toEqual({ aws_error: 'Throttling', aws_status: 400, attempts: 3 });
    expect(error.description).not.toContain('Rate exceeded');
  });

  it('max_attempts 1 means no retry', async () => {
    sts.failNext(1, 'Throttling', 400);
    const { calls } = await refusal(issuerWith({ settings: { max_attempts: 1 } }), request({ aws: { mode: 'assume-role' } }));
    expect(calls).toBe(1);
  });

  it('AccessDenied is ERR_UPSTREAM_REFUSED, not retried, and neither the AWS message nor the ARN leaks', async () => {
    sts.failNext(1, 'AccessDenied', 403);
    const { error, calls } = await refusal(issuerWith(), request({ aws: { mode: 'assume-role' } }));
    expect(calls).toBe(1);
    expect(error.code).toBe('ERR_UPSTREAM_REFUSED');
    expect(error.detail).toMatchObject({ aws_error: 'AccessDenied' });
    for (const text of [error.description, error.message, JSON.stringify(error.detail)]) {
      expect(text).not.toContain('not authorized');
      expect(text).not.toContain('arn:aws');
    }
  });

  it('PackedPolicyTooLarge is ERR_UPSTREAM_TARGET_INVALID', async () => {
    sts.failNext(1, 'PackedPolicyTooLarge', 400);
    const { error } = await refusal(issuerWith(), request());
    expect(error.code).toBe('ERR_UPSTREAM_TARGET_INVALID');
    expect(error.detail).toMatchObject({ aws_error: 'PackedPolicyTooLarge' });
    expect(error.description).not.toContain('127%');
  });

  it('an unreachable STS endpoint is retried, then ERR_UPSTREAM_UNAVAILABLE', async () => {
    const closed = await StsContractServer.start();
    const url = closed.url;
    await closed.close();
    const delays: number[] = [];
    const { error } = await refusal(issuerWith({ delays, settings: { sts_endpoint: url } }), request({ aws: { mode: 'assume-role' } }));
    expect(error.code).toBe('ERR_UPSTREAM_UNAVAILABLE');
    expect(error.detail).toMatchObject({ aws_error: 'ECONNREFUSED', attempts: 3 });
    expect(delays).toHaveLength(2);
  });

  it('an oversize session policy is refused before any call', async () => {
    const big = Array.from({ length: 40 }, (_, i) => `arn:aws:s3:::bucket-with-a-long-name-${i}/some/prefix/*`);
    const { error, calls } = await refusal(issuerWith(), request({ aws: { resources: big } }));
    expect(calls).toBe(0);
    expect(error.code).toBe('ERR_UPSTREAM_TARGET_INVALID');
  });
});
