import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, it, expect, beforeAll, afterAll } from '@jest/globals';
import { fromIni } from '@aws-sdk/credential-providers';
import { ORCHESTRATOR_KEY, startTestBroker, type TestBroker } from '../support/broker.js';
import { StsContractServer } from '../support/sts-contract.js';

/**
 * The whole chain with nothing faked but AWS itself: the real AWS SDK (`fromIni`) runs
 * `leash aws credential-process` as a child process, which exchanges a cluster attestation
 * at a real broker, which calls the STS contract server, which verifies Leash's web identity
 * token against the broker's /jwks. The credentials the SDK resolves must be exactly those
 * STS answered.
 */

const MAIN = join(resolve('.'), 'src/cli/main.ts');
const PLUGIN = 'reports-reader';
const ROLE = 'arn:aws:iam::123456789012:role/leash-reports-reader';
const AWS_AUDIENCE = 'aws:reports';
/** A high-risk plugin: its tier requires DPoP by default (settings.dpop.required_for_risk). */
const HIGH_RISK_PLUGIN = 'reports-admin';

interface StsAnswer {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  readonly sessionToken: string;
  readonly expiration: string;
}

/**
 * The contract server records the access key id and expiration it issued but not the secret
 * or session token; this pass-through sits between the broker and it and keeps every XML
 * answer, so the test compares all four fields with what "AWS" actually sent.
 */
async function startRecordingProxy(target: string): Promise<{ url: string; answers: StsAnswer[]; close(): Promise<void> }> {
  const answers: StsAnswer[] = [];
  const field = (xml: string, name: string) => new RegExp(`<${name}>([^<]*)</${name}>`).exec(xml)?.[1];
  const server: Server = createServer((req, res) => {
    void (async () => {
      const chunks: Buffer[] = [];
      for await (const chunk of req) chunks.push(chunk as Buffer);
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(req.headers)) if (typeof v === 'string' && k !== 'host' && k !== 'content-length') headers[k] = v;
      const upstream = await fetch(`${target}${req.url ?? '/'}`, { method: req.method, headers, body: Buffer.concat(chunks) });
      const xml = await upstream.text();
      const [accessKeyId, secretAccessKey, sessionToken, expiration] = ['AccessKeyId', 'SecretAccessKey', 'SessionToken', 'Expiration'].map((n) => field(xml, n));
      if (accessKeyId && secretAccessKey && sessionToken && expiration) answers.push({ accessKeyId, secretAccessKey, sessionToken, expiration });
      res.writeHead(upstream.status, { 'content-type': upstream.headers.get('content-type') ?? 'text/xml' });
      res.end(xml);
    })().catch(() => {
      res.writeHead(502);
      res.end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    answers,
    close: () => {
      server.closeAllConnections();
      return new Promise<void>((r) => server.close(() => r()));
    },
  };
}

describe('leash aws credential-process end to end (real SDK, real broker, STS contract)', () => {
  let sts: StsContractServer;
  let proxy: Awaited<ReturnType<typeof startRecordingProxy>>;
  let tb: TestBroker;
  let dir: string;
  let attestationFile: string;
  let attestation: string;
  let credentialsFile: string;

  /** A config file whose profile runs the CLI the way an operator's ~/.aws/config would. */
  const profileFor = async (name: string, task: string, plugin = PLUGIN, attestationPath = attestationFile): Promise<string> => {
    const line = [
      process.execPath,
      '--import',
      'tsx',
      MAIN,
      'aws',
      'credential-process',
      '--issuer',
      tb.url,
      '--client-id',
      plugin,
      '--audience',
      AWS_AUDIENCE,
      '--task',
      task,
      '--attestation-file',
      attestationPath,
    ].join(' ');
    const file = join(dir, `aws-config-${name}`);
    await writeFile(file, `[profile leash]\ncredential_process = ${line}\nregion = us-east-1\n`);
    return file;
  };

  const endTask = async (task: string) => {
    const res = await fetch(`${tb.url}/tasks/${task}`, { method: 'DELETE', headers: { authorization: `Bearer ${ORCHESTRATOR_KEY}` } });
    expect(res.status).toBeLessThan(300);
  };

  beforeAll(async () => {
    sts = await StsContractServer.start({ roleMaxSession: 3600 });
    proxy = await startRecordingProxy(sts.url);
    tb = await startTestBroker({
      patch: (cfg) => {
        cfg.settings.aws = { sts_endpoint: proxy.url, max_attempts: 1 };
        cfg.plugins.push({
          id: PLUGIN,
          owner: 'team-data@example.com',
          risk: 'medium',
          bindings: [{ issuer: 'test-cluster', subject: `system:serviceaccount:plugins:${PLUGIN}` }],
          grants: [
            {
              audience: AWS_AUDIENCE,
              scopes: ['s3:read'],
              kind: 'aws-sts',
              effect: 'read',
              max_ttl: 300,
              aws: { role_arn: ROLE, actions: ['s3:GetObject'], resources: ['arn:aws:s3:::reports/*'] },
            },
          ],
        });
        cfg.plugins.push({
          id: HIGH_RISK_PLUGIN,
          owner: 'team-data@example.com',
          risk: 'high',
          bindings: [{ issuer: 'test-cluster', subject: `system:serviceaccount:plugins:${HIGH_RISK_PLUGIN}` }],
          grants: [
            {
              audience: AWS_AUDIENCE,
              scopes: ['s3:read'],
              kind: 'aws-sts',
              effect: 'read',
              max_ttl: 300,
              aws: { role_arn: ROLE, actions: ['s3:GetObject'], resources: ['arn:aws:s3:::reports/*'] },
            },
          ],
        });
      },
    });
    // AWS's IAM OIDC provider for Leash, registered once the broker's URL is known.
    sts.setOidc({ issuer: tb.url, jwksUrl: `${tb.url}/jwks`, audiences: ['sts.amazonaws.com'] });
    dir = await mkdtemp(join(tmpdir(), 'leash-aws-e2e-'));
    attestationFile = join(dir, 'sa-token');
    attestation = await tb.cluster.saToken({ sa: PLUGIN });
    await writeFile(attestationFile, `${attestation}\n`);
    credentialsFile = join(dir, 'aws-credentials');
    await writeFile(credentialsFile, '');
  });

  afterAll(async () => {
    await tb?.close();
    await proxy?.close();
    await sts?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('the SDK resolves exactly the credentials STS issued, for a session named after the plugin and task', async () => {
    const task = await tb.openTask({ plugins: [PLUGIN], ttl_seconds: 600 });
    const callsBefore = sts.calls.length;
    const answersBefore = proxy.answers.length;

    const creds = await fromIni({ profile: 'leash', configFilepath: await profileFor('ok', task), filepath: credentialsFile })();

    const calls = sts.calls.slice(callsBefore);
    expect(calls).toHaveLength(1);
    const call = calls[0]!;
    expect(call.action).toBe('AssumeRoleWithWebIdentity');
    expect(call.status).toBe(200);
    const answers = proxy.answers.slice(answersBefore);
    expect(answers).toHaveLength(1);
    const issued = answers[0]!;
    expect(issued.accessKeyId).toBe(call.issued!.accessKeyId);
    expect(issued.expiration).toBe(call.issued!.expiration);

    expect(creds.accessKeyId).toBe(issued.accessKeyId);
    expect(creds.secretAccessKey).toBe(issued.secretAccessKey);
    expect(creds.sessionToken).toBe(issued.sessionToken);
    expect(creds.expiration?.getTime()).toBe(Date.parse(issued.expiration));
    // AWS's minimum session, although the grant's max_ttl is 300 s.
    expect(Number(call.params.DurationSeconds)).toBe(900);

    // What CloudTrail would show: the plugin and the task, in the session name and the verified token.
    expect(call.params.RoleArn).toBe(ROLE);
    expect(call.params.RoleSessionName).toBe(`leash.${PLUGIN}.${task.slice(-12)}`);
    expect(call.sourceIdentity).toBe(PLUGIN);
    expect(call.claims).toMatchObject({ iss: tb.url, sub: PLUGIN, aud: 'sts.amazonaws.com', task });
    expect(call.tags).toMatchObject({ 'leash:plugin': PLUGIN, 'leash:task': task });
    // The cluster attestation never travels to AWS; only Leash's own token does.
    expect(call.params.WebIdentityToken).not.toBe(attestation);
    expect(JSON.stringify(call.params)).not.toContain(attestation);
  });

  it('a refused exchange (the task ended) fails the SDK resolution with the OAuth error, not the attestation', async () => {
    const task = await tb.openTask({ plugins: [PLUGIN], ttl_seconds: 600 });
    await endTask(task);
    const callsBefore = sts.calls.length;

    const provider = fromIni({ profile: 'leash', configFilepath: await profileFor('ended', task), filepath: credentialsFile });
    const err = await provider().then(
      () => undefined,
      (e: unknown) => e as Error,
    );

    expect(err).toBeInstanceOf(Error);
    const text = `${String(err)} ${err?.message ?? ''}`;
    expect(text).toContain('invalid_grant');
    expect(text).toContain('the task has ended');
    expect(text).not.toContain(attestation);
    // The signature part alone must not leak either (a truncated token would still be a secret).
    expect(text).not.toContain(attestation.split('.')[2]!);
    // Refused before AWS: STS was never called.
    expect(sts.calls.length).toBe(callsBefore);
  });

  it('a plugin outside the task is refused (invalid_grant) through the SDK too', async () => {
    const task = await tb.openTask({ plugins: ['crm-reader'], ttl_seconds: 600 });
    const callsBefore = sts.calls.length;
    const err = await fromIni({ profile: 'leash', configFilepath: await profileFor('foreign', task), filepath: credentialsFile })().then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(err).toBeInstanceOf(Error);
    expect(String(err)).toContain('invalid_grant');
    expect(String(err)).toContain('ERR_TASK_PLUGIN_NOT_ALLOWED');
    expect(String(err)).not.toContain(attestation);
    expect(sts.calls.length).toBe(callsBefore);
  });

  it('a plugin of a DPoP-required risk tier gets AWS credentials without a proof (they cannot be bound to one)', async () => {
    const task = await tb.openTask({ plugins: [HIGH_RISK_PLUGIN], ttl_seconds: 600 });
    const highRiskAttestation = await tb.cluster.saToken({ sa: HIGH_RISK_PLUGIN });
    const file = join(dir, 'sa-token-high');
    await writeFile(file, highRiskAttestation);
    const callsBefore = sts.calls.length;
    const creds = await fromIni({ profile: 'leash', configFilepath: await profileFor('dpop', task, HIGH_RISK_PLUGIN, file), filepath: credentialsFile })();
    expect(creds.accessKeyId).toMatch(/^ASIA/);
    expect(sts.calls.length).toBe(callsBefore + 1);
  });
});
