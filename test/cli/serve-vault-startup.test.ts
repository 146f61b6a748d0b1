import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, testConfigInput } from '../support/broker.js';
import { closedPort } from '../support/net.js';
import { TestCluster } from '../support/cluster.js';
import { startVaultContract, type VaultContract } from '../support/vault-contract.js';

/**
 * `leash serve` with `keys.backend: vault-transit` as an operator runs it: a Vault problem at
 * startup ends the process with exit code 1 and one line that says which Vault and what is
 * wrong, never a stack trace and never the token.
 */

const TOKEN_ENV = 'LEASH_SERVE_VAULT_STARTUP_TOKEN';
const TRANSIT_KEY = 'leash-cli';

interface Run {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly ms: number;
}

let vault: VaultContract;
let cluster: TestCluster;
let dir: string;

beforeAll(async () => {
  vault = await startVaultContract();
  cluster = await TestCluster.create();
  dir = await mkdtemp(join(tmpdir(), 'leash-serve-vault-'));
});

afterAll(async () => {
  await vault?.close();
  await rm(dir, { recursive: true, force: true });
});

async function writeConfig(name: string, address: string, port = 0, managementPort = 0): Promise<string> {
  const input = testConfigInput({ issuer: `http://127.0.0.1:${port || 1}`, dir: join(dir, name), cluster }) as Record<string, any>;
  input.settings.listen.port = port;
  input.settings.management.listen.port = managementPort;
  // The contract server runs in this jest worker: on a loaded CI machine one of its answers
  // took past 1 s (ECONNABORTED at startup, 2026-12-07). No case here tests a slow Vault.
  input.settings.vault = { address, timeout_ms: 10_000, auth: { method: 'token', token_env: TOKEN_ENV } };
  input.settings.keys = { ...input.settings.keys, backend: 'vault-transit', vault_kv: { mount: 'secret', path: `leash/${name}` }, vault_transit: { mount: 'transit', key: TRANSIT_KEY } };
  const path = join(dir, `${name}.json`);
  await writeFile(path, JSON.stringify(input));
  return path;
}

/** Spawns `leash serve`; `token` undefined leaves the variable unset. */
function serve(configPath: string, token: string | undefined) {
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env[TOKEN_ENV];
  if (token !== undefined) env[TOKEN_ENV] = token;
  const started = performance.now();
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'serve', '--config', configPath], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<Run>((resolve) => {
    child.once('close', (code) => resolve({ code, stdout, stderr, ms: Math.round(performance.now() - started) }));
  });
  return { child, exited, output: () => stdout + stderr };
}

/** Runs until exit; a process still up after `deadlineMs` is killed and reported as hanging. */
async function runToExit(configPath: string, token: string | undefined, deadlineMs = 20000): Promise<Run> {
  const run = serve(configPath, token);
  const timer = setTimeout(() => run.child.kill('SIGKILL'), deadlineMs);
  try {
    return await run.exited;
  } finally {
    clearTimeout(timer);
  }
}

/** The operator-facing lines: nothing else may be printed (no runtime warning on Node 24). */
function messages(run: Run): string[] {
  return (run.stdout + run.stderr).split('\n').filter((l) => l.trim() !== '');
}

function expectCleanFailure(run: Run, token: string | undefined): string {
  expect(run.code).toBe(1);
  const lines = messages(run);
  // one clear line on the log stream (stderr, JSON), no stack trace
  expect(lines).toHaveLength(1);
  expect(run.stdout).toBe('');
  expect(run.stdout + run.stderr).not.toMatch(/^\s+at /m);
  const line = JSON.parse(lines[0]!) as { level: string; msg: string; error: string };
  expect(line).toMatchObject({ level: 'fatal', msg: 'leash could not start' });
  if (token) expect(run.stdout + run.stderr).not.toContain(token);
  return line.error;
}

describe('leash serve: Vault problems at startup (vault-transit)', () => {
  it('Vault unreachable (a closed port): exits 1 naming the address and saying it is unreachable, no token printed', async () => {
    const port = await closedPort();
    const address = `http://127.0.0.1:${port}`;
    const token = 'hvs.cli-startup-never-print-this-0123456789';
    const run = await runToExit(await writeConfig('unreachable', address), token);
    const line = expectCleanFailure(run, token);
    expect(line).toContain(`Vault at ${address}`);
    expect(line).toMatch(/unreachable/);
  }, 30000);

  it('a token lacking a capability: exits 1 naming the missing capability and its path', async () => {
    const token = vault.createToken({
      ttl: 3600,
      capabilities: {
        'secret/data/leash/thin/*': ['create', 'read', 'update'],
        [`transit/keys/${TRANSIT_KEY}`]: ['read', 'create', 'update'],
        [`transit/keys/${TRANSIT_KEY}/rotate`]: ['update'],
        // no transit/sign/leash-cli/sha2-256
      },
    });
    const before = vault.callsTo(/^transit\//).length;
    const run = await runToExit(await writeConfig('thin', vault.url), token);
    const line = expectCleanFailure(run, token);
    expect(line).toContain(`Vault at ${vault.url}`);
    expect(line).toContain(`'update' on transit/sign/${TRANSIT_KEY}/sha2-256`);
    // only that one is missing
    expect(line).not.toMatch(/transit\/keys|secret\/data/);
    // it stopped at the check: no key was created in Transit
    expect(vault.callsTo(/^transit\//).length).toBe(before);
  }, 30000);

  it.each([
    ['empty', ''],
    ['unset', undefined],
  ])(
    'the token variable %s: exits 1 with a clear message naming the variable',
    async (_label, token) => {
      const run = await runToExit(await writeConfig('no-token', vault.url), token);
      const line = expectCleanFailure(run, undefined);
      expect(line).toContain(`Vault at ${vault.url}`);
      expect(line).toContain(`environment variable ${TOKEN_ENV} is empty or unset`);
    },
    30000,
  );

  it('control: the same config with a sufficient token starts with two Transit keys in its JWKS and stops cleanly on SIGTERM', async () => {
    const token = vault.createToken({
      ttl: 3600,
      capabilities: {
        'secret/data/leash/ok/*': ['create', 'read', 'update'],
        [`transit/keys/${TRANSIT_KEY}`]: ['read', 'create', 'update'],
        [`transit/keys/${TRANSIT_KEY}/rotate`]: ['update'],
        [`transit/sign/${TRANSIT_KEY}/sha2-256`]: ['update'],
      },
    });
    const port = await freePort();
    const managementPort = await freePort();
    const run = serve(await writeConfig('ok', vault.url, port, managementPort), token);
    let exited = false;
    void run.exited.then(() => (exited = true));
    try {
      // Up to 40 s: a cold tsx start on a loaded CI machine took past 20 s twice. A process
      // that ends first, or never answers, fails at once with what it printed.
      const deadline = performance.now() + 40_000;
      while (
        !(await fetch(`http://127.0.0.1:${managementPort}/healthz`).then(
          (r) => r.ok,
          () => false,
        ))
      ) {
        if (exited || performance.now() > deadline) throw new Error(`leash serve ${exited ? 'exited' : 'was not healthy after 40 s'} before it answered /healthz:\n${run.output()}`);
        await new Promise((r) => setTimeout(r, 20));
      }
      const jwks = (await (await fetch(`http://127.0.0.1:${port}/jwks`)).json()) as { keys: { kid: string }[] };
      expect(jwks.keys).toHaveLength(2);
      run.child.kill('SIGTERM');
      const result = await run.exited;
      expect(result.code).toBe(0);
      expect(result.stdout + result.stderr).not.toContain(token);
    } finally {
      run.child.kill('SIGKILL');
    }
  }, 60_000);
});
