import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { describe, it, expect, beforeAll, afterAll } from '@jest/globals';
import express from 'express';
import { fromIni } from '@aws-sdk/credential-providers';
import { parseCredentialProcessArgs, runAwsCli, toCredentialProcess, UsageError } from '../../src/cli/aws.js';
import { TOKEN_TYPE_AWS_CREDENTIALS } from '../../src/formats/token-types.js';

const run = promisify(execFile);
const REPO = resolve('.');
const MAIN = join(REPO, 'src/cli/main.ts');
const ATTESTATION = 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6cGx1Z2luczpzMy1yZWFkZXIifQ.c2lnbmF0dXJlLXNlY3JldA';
const AWS_AUDIENCE = 'aws:s3-reports';

/**
 * A stand-in for Leash's token endpoint answering the documented aws-sts body. The
 * broker-backed end-to-end run lives with the aws-sts issuer; this pins the client side.
 */
interface FakeLeash {
  readonly url: string;
  readonly forms: URLSearchParams[];
  issued: { accessKeyId: string; secretAccessKey: string; sessionToken: string; expiration: string } | undefined;
  close(): Promise<void>;
}

async function startFakeLeash(): Promise<FakeLeash> {
  const app = express();
  const forms: URLSearchParams[] = [];
  let n = 0;
  const state: FakeLeash = { url: '', forms, issued: undefined, close: async () => undefined };
  app.get('/.well-known/openid-configuration', (_req, res) => {
    res.json({ issuer: state.url, token_endpoint: `${state.url}/token`, jwks_uri: `${state.url}/jwks` });
  });
  app.post('/token', express.text({ type: 'application/x-www-form-urlencoded' }), (req, res) => {
    const form = new URLSearchParams(req.body as string);
    forms.push(form);
    res.set('Cache-Control', 'no-store');
    const audience = form.get('audience') ?? form.get('resource');
    if (form.get('requested_token_type') !== TOKEN_TYPE_AWS_CREDENTIALS) {
      res.json({ access_token: 'eyJ.jwt.token', issued_token_type: 'urn:ietf:params:oauth:token-type:access_token', token_type: 'Bearer', expires_in: 300 });
      return;
    }
    if (audience === 'aws:refused') {
      res.status(400).json({ error: 'access_denied', error_description: 'the AWS role refused the session for this plugin' });
      return;
    }
    if (audience === 'aws:down') {
      res.status(503).json({ error: 'temporarily_unavailable', error_description: 'AWS STS is unavailable; retry later' });
      return;
    }
    n += 1;
    const expiration = new Date(Date.now() + 900_000);
    // Offsets like AWS's own XML timestamps: the CLI must normalise to ISO 8601 UTC.
    state.issued = {
      accessKeyId: `ASIALEASHTEST${String(n).padStart(7, '0')}`,
      secretAccessKey: `secret-${n}-${Math.random().toString(36).slice(2)}`,
      sessionToken: `FwoGZXIvYXdzE${n}session-token`,
      expiration: expiration.toISOString(),
    };
    res.json({
      access_token: state.issued.accessKeyId,
      issued_token_type: TOKEN_TYPE_AWS_CREDENTIALS,
      token_type: 'N_A',
      expires_in: 900,
      aws_credentials: {
        access_key_id: state.issued.accessKeyId,
        secret_access_key: state.issued.secretAccessKey,
        session_token: state.issued.sessionToken,
        expiration: state.issued.expiration,
      },
    });
  });
  const server: Server = app.listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  (state as { url: string }).url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  state.close = () => new Promise<void>((r) => server.close(() => r()));
  return state;
}

function capture(): { out: string[]; err: string[]; io: { out: (s: string) => void; err: (s: string) => void } } {
  const out: string[] = [];
  const err: string[] = [];
  return { out, err, io: { out: (s) => out.push(s), err: (s) => err.push(s) } };
}

describe('parseCredentialProcessArgs', () => {
  const base = ['--issuer', 'https://leash.example.com/', '--client-id', 's3-reader', '--audience', AWS_AUDIENCE, '--attestation-file', '/var/run/secrets/leash/token'];

  it('reads every flag, trims the issuer, splits and dedupes scopes', () => {
    const o = parseCredentialProcessArgs([...base, '--task', 'tsk_0123456789', '--scope', 's3:read s3:list', '--scope=s3:read']);
    expect(o).toEqual({
      issuer: 'https://leash.example.com',
      clientId: 's3-reader',
      audience: AWS_AUDIENCE,
      task: { id: 'tsk_0123456789' },
      attestationFile: '/var/run/secrets/leash/token',
      scopes: ['s3:read', 's3:list'],
    });
    expect(parseCredentialProcessArgs([...base, '--task-file', '/run/task']).task).toEqual({ file: '/run/task' });
  });

  const bad: ReadonlyArray<[string, string[], RegExp]> = [
    ['no task at all', base, /exactly one of --task and --task-file/],
    ['both task forms', [...base, '--task', 't', '--task-file', 'f'], /exactly one of/],
    ['a missing client id', base.filter((_, i) => i !== 2 && i !== 3).concat(['--task', 't']), /missing --client-id/],
    ['an unknown flag', [...base, '--task', 't', '--profile', 'x'], /unknown option --profile/],
    ['a flag without value', [...base, '--task'], /--task needs a value/],
    ['a repeated single flag', [...base, '--task', 'a', '--audience', 'b'], /--audience given more than once/],
    ['a non-URL issuer', ['--issuer', 'leash.example.com', ...base.slice(2), '--task', 't'], /--issuer must be/],
    ['a positional argument', [...base, '--task', 't', 'extra'], /unexpected argument 'extra'/],
  ];
  it.each(bad)('rejects %s', (_name, argv, message) => {
    expect(() => parseCredentialProcessArgs(argv)).toThrow(UsageError);
    expect(() => parseCredentialProcessArgs(argv)).toThrow(message);
  });
});

describe('toCredentialProcess', () => {
  it('reshapes the documented aws-sts body into Version 1 and normalises Expiration', () => {
    expect(
      toCredentialProcess({
        issued_token_type: TOKEN_TYPE_AWS_CREDENTIALS,
        token_type: 'N_A',
        expires_in: 900,
        aws_credentials: { access_key_id: 'ASIA1', secret_access_key: 's', session_token: 't', expiration: '2026-11-25T12:15:00+01:00' },
      }),
    ).toEqual({ Version: 1, AccessKeyId: 'ASIA1', SecretAccessKey: 's', SessionToken: 't', Expiration: '2026-11-25T11:15:00.000Z' });
  });

  it.each([
    ['a JWT answer', { issued_token_type: 'urn:ietf:params:oauth:token-type:access_token', access_token: 'x' }, /not AWS credentials/],
    ['no credentials', { issued_token_type: TOKEN_TYPE_AWS_CREDENTIALS }, /lacks aws_credentials/],
    ['no session token', { issued_token_type: TOKEN_TYPE_AWS_CREDENTIALS, aws_credentials: { access_key_id: 'a', secret_access_key: 's', expiration: '2026-01-01T00:00:00Z' } }, /lacks/],
    ['a bad expiration', { issued_token_type: TOKEN_TYPE_AWS_CREDENTIALS, aws_credentials: { access_key_id: 'a', secret_access_key: 's', session_token: 't', expiration: 'soon' } }, /ISO 8601/],
  ])('rejects %s', (_name, body, message) => {
    expect(() => toCredentialProcess(body)).toThrow(message);
  });
});

describe('leash aws credential-process', () => {
  let leash: FakeLeash;
  let dir: string;
  let attestationFile: string;
  let taskFile: string;

  beforeAll(async () => {
    leash = await startFakeLeash();
    dir = await mkdtemp(join(tmpdir(), 'leash-aws-cp-'));
    attestationFile = join(dir, 'token');
    taskFile = join(dir, 'task');
    await writeFile(attestationFile, `${ATTESTATION}\n`);
    await writeFile(taskFile, 'tsk_fromfile0123456\n');
  });
  afterAll(async () => {
    await leash.close();
    await rm(dir, { recursive: true, force: true });
  });

  const args = (extra: string[] = []) => ['credential-process', '--issuer', leash.url, '--client-id', 's3-reader', '--audience', AWS_AUDIENCE, '--attestation-file', attestationFile, ...extra];

  it('prints exactly the credential_process JSON and sends the RFC 8693 request', async () => {
    const c = capture();
    const code = await runAwsCli(args(['--task', 'tsk_0123456789abc', '--scope', 's3:read']), c.io);
    expect(c.err).toEqual([]);
    expect(code).toBe(0);
    expect(c.out).toHaveLength(1);
    const printed = c.out[0] as string;
    expect(printed.endsWith('\n')).toBe(true);
    expect(Object.keys(JSON.parse(printed))).toEqual(['Version', 'AccessKeyId', 'SecretAccessKey', 'SessionToken', 'Expiration']);
    expect(JSON.parse(printed)).toEqual({
      Version: 1,
      AccessKeyId: leash.issued?.accessKeyId,
      SecretAccessKey: leash.issued?.secretAccessKey,
      SessionToken: leash.issued?.sessionToken,
      Expiration: leash.issued?.expiration,
    });
    const form = leash.forms.at(-1) as URLSearchParams;
    expect(Object.fromEntries(form)).toEqual({
      grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange',
      client_id: 's3-reader',
      subject_token: ATTESTATION,
      subject_token_type: 'urn:ietf:params:oauth:token-type:jwt',
      requested_token_type: TOKEN_TYPE_AWS_CREDENTIALS,
      audience: AWS_AUDIENCE,
      scope: 's3:read',
      task: 'tsk_0123456789abc',
    });
  });

  it('takes the task id from --task-file and sends an http audience as resource', async () => {
    const c = capture();
    const code = await runAwsCli(
      ['credential-process', '--issuer', leash.url, '--client-id', 's3-reader', '--audience', 'https://s3.example.com', '--attestation-file', attestationFile, '--task-file', taskFile],
      c.io,
    );
    expect(code).toBe(0);
    const form = leash.forms.at(-1) as URLSearchParams;
    expect(form.get('task')).toBe('tsk_fromfile0123456');
    expect(form.get('resource')).toBe('https://s3.example.com');
    expect(form.has('audience')).toBe(false);
  });

  it.each([
    ['aws:refused', 'access_denied: the AWS role refused the session for this plugin'],
    ['aws:down', 'temporarily_unavailable: AWS STS is unavailable; retry later'],
  ])('a refusal (%s) goes to stderr with the OAuth error, exit 1, nothing on stdout, never the attestation', async (audience, message) => {
    const c = capture();
    const code = await runAwsCli(
      ['credential-process', '--issuer', leash.url, '--client-id', 's3-reader', '--audience', audience, '--attestation-file', attestationFile, '--task', 'tsk_0123456789abc'],
      c.io,
    );
    expect(code).toBe(1);
    expect(c.out).toEqual([]);
    expect(c.err.join('')).toContain(message);
    expect(c.err.join('')).not.toContain(ATTESTATION);
  });

  it('a JWT grant answer is not mistaken for AWS credentials', async () => {
    const c = capture();
    // A fetch that drops requested_token_type makes the fake answer a JWT, as a jwt grant would.
    const fetchJwt: typeof fetch = (input, init) => {
      const body = new URLSearchParams(String(init?.body ?? ''));
      body.delete('requested_token_type');
      return fetch(input, init?.method === 'POST' ? { ...init, body: body.toString() } : init);
    };
    const code = await runAwsCli(args(['--task', 'tsk_0123456789abc']), { ...c.io, fetch: fetchJwt });
    expect(code).toBe(1);
    expect(c.out).toEqual([]);
    expect(c.err.join('')).toMatch(/invalid_response: .*not AWS credentials/);
  });

  it('usage mistakes and unreadable files exit 2 and say what to fix', async () => {
    const missing = capture();
    expect(await runAwsCli(['credential-process', '--issuer', leash.url], missing.io)).toBe(2);
    expect(missing.err.join('')).toContain('missing --client-id, --audience, --attestation-file');
    const noFile = capture();
    expect(await runAwsCli(['credential-process', '--issuer', leash.url, '--client-id', 'p', '--audience', 'a', '--attestation-file', join(dir, 'nope'), '--task', 't'], noFile.io)).toBe(2);
    expect(noFile.err.join('')).toMatch(/cannot read the attestation file .*nope.* \(ENOENT\)/);
    const empty = capture();
    await writeFile(join(dir, 'empty'), '\n');
    expect(
      await runAwsCli(['credential-process', '--issuer', leash.url, '--client-id', 'p', '--audience', 'a', '--attestation-file', attestationFile, '--task-file', join(dir, 'empty')], empty.io),
    ).toBe(2);
    expect(empty.err.join('')).toContain('task id file');
    expect(missing.out).toEqual([]);
    const unknown = capture();
    expect(await runAwsCli(['nope'], unknown.io)).toBe(2);
  });

  it('an unreachable Leash or a discovery document for another issuer is an error, not credentials', async () => {
    const down = capture();
    expect(await runAwsCli(['credential-process', '--issuer', 'http://127.0.0.1:9', '--client-id', 'p', '--audience', 'a', '--attestation-file', attestationFile, '--task', 't'], down.io)).toBe(1);
    expect(down.err.join('')).toContain('network_error');
    const other = capture();
    expect(await runAwsCli(['credential-process', '--issuer', `${leash.url}/other`, '--client-id', 'p', '--audience', 'a', '--attestation-file', attestationFile, '--task', 't'], other.io)).toBe(1);
    expect(other.err.join('')).toContain('invalid_response');
    expect(other.out).toEqual([]);
  });

  describe('through the real AWS SDK credential chain', () => {
    let configFile: string;
    let credentialsFile: string;

    beforeAll(async () => {
      configFile = join(dir, 'aws-config');
      credentialsFile = join(dir, 'aws-credentials');
      const line = [
        process.execPath,
        '--import',
        'tsx',
        MAIN,
        'aws',
        'credential-process',
        '--issuer',
        leash.url,
        '--client-id',
        's3-reader',
        '--audience',
        AWS_AUDIENCE,
        '--task-file',
        taskFile,
        '--attestation-file',
        attestationFile,
        '--scope',
        's3:read',
      ].join(' ');
      await writeFile(configFile, `[profile leash]\ncredential_process = ${line}\nregion = us-east-1\n`);
      await writeFile(credentialsFile, '');
    });

    it('fromIni runs credential_process and resolves the credentials Leash issued', async () => {
      const provider = fromIni({ profile: 'leash', configFilepath: configFile, filepath: credentialsFile });
      const creds = await provider();
      expect(creds.accessKeyId).toBe(leash.issued?.accessKeyId);
      expect(creds.secretAccessKey).toBe(leash.issued?.secretAccessKey);
      expect(creds.sessionToken).toBe(leash.issued?.sessionToken);
      expect(creds.expiration?.toISOString()).toBe(leash.issued?.expiration);
      expect(leash.forms.at(-1)?.get('task')).toBe('tsk_fromfile0123456');
    });

    it('the default provider chain of a separate process picks it up from AWS_CONFIG_FILE / AWS_PROFILE', async () => {
      const script = [
        "import { fromNodeProviderChain } from '@aws-sdk/credential-providers';",
        'const c = await fromNodeProviderChain()();',
        'process.stdout.write(JSON.stringify({ id: c.accessKeyId, secret: c.secretAccessKey, token: c.sessionToken, exp: c.expiration.toISOString() }));',
      ].join('\n');
      const env: Record<string, string> = {
        PATH: process.env.PATH ?? '',
        HOME: dir,
        AWS_CONFIG_FILE: configFile,
        AWS_SHARED_CREDENTIALS_FILE: credentialsFile,
        AWS_PROFILE: 'leash',
        AWS_EC2_METADATA_DISABLED: 'true',
      };
      const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script], { cwd: REPO, env, timeout: 20_000 });
      const got = JSON.parse(stdout) as Record<string, string>;
      expect(got).toEqual({ id: leash.issued?.accessKeyId, secret: leash.issued?.secretAccessKey, token: leash.issued?.sessionToken, exp: leash.issued?.expiration });
    });

    it("a refusal surfaces as an SDK credentials error carrying Leash's reason, with no credentials", async () => {
      const refusedConfig = join(dir, 'aws-config-refused');
      const line = [
        process.execPath,
        '--import',
        'tsx',
        MAIN,
        'aws',
        'credential-process',
        '--issuer',
        leash.url,
        '--client-id',
        's3-reader',
        '--audience',
        'aws:refused',
        '--task',
        'tsk_0123456789abc',
        '--attestation-file',
        attestationFile,
      ].join(' ');
      await writeFile(refusedConfig, `[profile leash]\ncredential_process = ${line}\n`);
      const provider = fromIni({ profile: 'leash', configFilepath: refusedConfig, filepath: credentialsFile });
      await expect(provider()).rejects.toThrow(/Command failed/);
      // The SDK includes the command's stderr in its message: Leash's reason, not the attestation.
      const err = await provider().catch((e: Error) => e);
      expect(String(err)).toContain('access_denied');
      expect(String(err)).not.toContain(ATTESTATION);
    });
  });
});
