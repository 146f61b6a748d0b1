import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runExplainCli } from '../../src/cli/explain.js';
import { CRM_API, EXCHANGE, JWT_TYPE, OPS_KEY, ORCHESTRATOR_KEY, freePort, startTestBroker, testConfigInput, type TestBroker } from '../support/broker.js';
import { TestCluster } from '../support/cluster.js';
import { spawnServe } from '../support/serve.js';
import { waitFor } from '../support/wait.js';

/** `leash explain ...` in-process (real HTTP to a broker), with stdout, stderr, env and stdin captured. */
async function explain(argv: string[], env: NodeJS.ProcessEnv = { LEASH_ADMIN_KEY: OPS_KEY }, stdin = ''): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await runExplainCli(argv, { out: (s) => void (out += s), err: (s) => void (err += s), env, stdin: async () => stdin });
  return { code, out, err };
}

describe('leash explain (CLI against a live broker)', () => {
  let tb: TestBroker;
  let task: string;
  beforeAll(async () => {
    tb = await startTestBroker();
    task = await tb.openTask({ plugins: ['crm-reader'] });
  });
  afterAll(async () => tb.close());

  it('explains a real token read from stdin, as text: the decision, every step, what would pass; the token is never printed', async () => {
    const token = await tb.cluster.saToken();
    const r = await explain(['--url', tb.url, '--audience', CRM_API, '--token', '-', '--scope', 'contacts:delete', '--task', task], undefined, `${token}\n`);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^decision: deny \(ERR_SCOPE_NOT_GRANTED\) -> 400 invalid_scope$/m);
    expect(r.out).toContain('attestation: token (verified)');
    expect(r.out).toMatch(/^ {2}\+ attest +verified kubernetes attestation/m);
    expect(r.out).toMatch(/^ {2}x policy +ERR_SCOPE_NOT_GRANTED: /m);
    expect(r.out).toContain('  - ask only for scopes of grant 0: contacts:read contacts:search contacts:export');
    expect(r.out).toContain('nothing was issued');
    expect(r.out + r.err).not.toContain(token);
    expect(r.out + r.err).not.toContain(OPS_KEY);
  });

  it('claims and stated task attributes, as JSON', async () => {
    const r = await explain([
      '--url',
      tb.url,
      '--format',
      'json',
      '--audience',
      'https://deploy.example.com',
      '--claims',
      '{"issuer":"test-cluster","subject":"system:serviceaccount:plugins:prod-only"}',
      '--task-attributes',
      '{"env":"prod"}',
    ]);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.out)).toMatchObject({ decision: 'issue', attestation: 'claims', plugin: 'prod-only', conditions: [{ holds: true }] });
  });

  it('--event replays a recorded denial and says whether the reason is the same', async () => {
    await tb.exchange({ grant_type: EXCHANGE, subject_token: await tb.cluster.saToken(), subject_token_type: JWT_TYPE, resource: 'https://evil.example.com', task });
    const denied = (await tb.broker.testing.auditEvents('exchange.denied')).at(-1)!;
    const r = await explain(['--url', tb.url, '--event', String(denied.seq)]);
    expect(r.code).toBe(0);
    expect(r.out).toContain(`event ${denied.seq} (exchange.denied) recorded ERR_AUDIENCE_NOT_GRANTED`);
    expect(r.out).toContain('replayed: the same reason');
    expect(r.out).toMatch(/^decision: deny \(ERR_AUDIENCE_NOT_GRANTED\)/m);
  });

  it('exit codes: 2 for usage, 1 when the broker refuses (the role), 0 for --help', async () => {
    expect((await explain(['--url', tb.url])).code).toBe(2);
    expect((await explain(['--url', tb.url, '--audience', CRM_API])).code).toBe(2); // neither token nor claims
    expect((await explain(['--url', tb.url, '--event', '3', '--audience', CRM_API])).code).toBe(2);
    expect((await explain(['--url', tb.url, '--event', 'x'])).code).toBe(2);
    expect((await explain(['--url', tb.url, '--event', '1'], {})).code).toBe(2); // no admin key
    const forbidden = await explain(['--url', tb.url, '--event', '1'], { LEASH_ADMIN_KEY: ORCHESTRATOR_KEY });
    expect(forbidden.code).toBe(1);
    expect(forbidden.err).toMatch(/403/);
    const help = await explain(['--help']);
    expect(help.code).toBe(0);
    expect(help.out).toContain('usage: leash explain');
  });
});

describe('leash serve --candidate (a process)', () => {
  const dirs: string[] = [];
  afterAll(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  it('enforces the live policy and records policy.candidate_diff on its audit stream; a bad candidate stops the start', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'leash-candidate-'));
    dirs.push(dir);
    const cluster = await TestCluster.create();
    const port = await freePort();
    const managementPort = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const input = testConfigInput({ issuer: url, dir, cluster }) as Record<string, any>;
    input.settings.listen.port = port;
    input.settings.management.listen.port = managementPort;
    input.settings.audit.stdout = true;
    input.plugins[0].grants[0].task_required = false;
    const live = join(dir, 'leash.json');
    await writeFile(live, JSON.stringify(input));
    const candidateInput = JSON.parse(JSON.stringify(input)) as Record<string, any>;
    candidateInput.plugins[0].grants[0].scopes = ['contacts:read'];
    const candidate = join(dir, 'candidate.json');
    await writeFile(candidate, JSON.stringify(candidateInput));

    const bad = join(dir, 'bad.json');
    await writeFile(bad, JSON.stringify({ ...candidateInput, plugins: [{ id: 'broken' }] }));
    const refused = spawnServe(live, undefined, undefined, { args: ['--candidate', bad] });
    let refusedErr = '';
    refused.stderr!.on('data', (d: Buffer) => (refusedErr += d.toString()));
    const code = await new Promise<number | null>((resolve) => refused.on('exit', resolve));
    expect(code).toBe(1);
    expect(refusedErr).toContain(`candidate ${bad}`);

    const child = spawnServe(live, undefined, undefined, { stdout: true, args: ['--candidate', candidate] });
    let stdout = '';
    child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    try {
      await waitFor(async () => (await fetch(`http://127.0.0.1:${managementPort}/healthz`).catch(() => undefined))?.ok === true);
      const res = await fetch(`${url}/token`, {
        method: 'POST',
        body: new URLSearchParams({ grant_type: EXCHANGE, subject_token: await cluster.saToken(), subject_token_type: JWT_TYPE, resource: CRM_API, scope: 'contacts:export' }),
      });
      expect(res.status).toBe(200);
      await waitFor(async () => stdout.includes('"policy.candidate_diff"'));
      const line = stdout.split('\n').find((l) => l.includes('"policy.candidate_diff"'))!;
      expect(JSON.parse(line)).toMatchObject({ live: { decision: 'issue' }, candidate: { decision: 'deny', reason: 'ERR_SCOPE_NOT_GRANTED' } });
      const metrics = await (await fetch(`http://127.0.0.1:${managementPort}/metrics`)).text();
      expect(metrics).toMatch(/^leash_policy_candidate_diff_total\{live="issue",candidate="deny"\} 1$/m);
    } finally {
      child.kill('SIGTERM');
      await new Promise((resolve) => child.on('exit', resolve));
    }
  }, 90_000);
});
