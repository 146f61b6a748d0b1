import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from '../support/broker.js';
import { waitFor } from '../support/wait.js';

/**
 * A newcomer in a fresh checkout types `npm start`: they get a running broker on the demo
 * policy, with the loud notice, not "no config". `leash serve` itself (what containers
 * run) never falls back: without a config it exits naming the exact next step.
 */

const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));
let checkout: string;
const children: ChildProcess[] = [];

beforeAll(() => {
  // A checkout of its own (the code and node_modules linked, the demo policy copied), so the
  // demo's keys, database and cluster key land in a temp dir, not in this working tree.
  checkout = mkdtempSync(join(tmpdir(), 'leash-npm-start-'));
  for (const entry of ['node_modules', 'src']) symlinkSync(join(ROOT, entry), join(checkout, entry));
  for (const file of ['package.json', 'tsconfig.json']) copyFileSync(join(ROOT, file), join(checkout, file));
  mkdirSync(join(checkout, 'config'));
  copyFileSync(join(ROOT, 'config/demo.yaml'), join(checkout, 'config/demo.yaml'));
});

afterAll(() => {
  for (const c of children) {
    try {
      process.kill(-c.pid!, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  rmSync(checkout, { recursive: true, force: true });
});

const env = (): NodeJS.ProcessEnv => {
  const e: NodeJS.ProcessEnv = { ...process.env, PATH: `${join(ROOT, 'node_modules/.bin')}:${process.env.PATH ?? ''}` };
  delete e.LEASH_CONFIG;
  return e;
};

describe('npm start', () => {
  it('package.json: `npm start` serves, falling back to the demo policy only when no config is given', () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
    expect(pkg.scripts.start).toBe('tsx src/cli/main.ts serve --demo-if-no-config');
  });

  it('with no configuration, starts the broker on the demo policy and says loudly that it is the demo', async () => {
    const port = await freePort();
    const managementPort = await freePort();
    const child = spawn('npm', ['start', '--silent', '--', '--port', String(port), '--management-port', String(managementPort)], {
      cwd: checkout,
      env: env(),
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true, // its own process group: npm, sh, tsx and node are stopped together
    });
    children.push(child);
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdout!.resume();
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    await waitFor(async () => (await fetch(`http://127.0.0.1:${managementPort}/readyz`)).ok, 60000);

    expect(stderr).toContain('DEMO ONLY: serving the demo policy config/demo.yaml');
    expect(stderr).toContain('"msg":"not a production setup: issuer is plain http');
    expect(stderr).not.toContain('no config');
    // The demo policy is in force: its orchestrator key opens a task, its plugin is a client.
    const opened = await fetch(`http://127.0.0.1:${port}/tasks`, {
      method: 'POST',
      headers: { authorization: 'Bearer demo-orchestrator-key', 'content-type': 'application/json' },
      body: JSON.stringify({ plugins: ['crm-reader'] }),
    });
    expect(opened.status).toBe(201);
    expect(((await (await fetch(`http://127.0.0.1:${port}/jwks`)).json()) as { keys: unknown[] }).keys.length).toBeGreaterThan(0);
    // Its state is the checkout's, as `npm run demo` would have it.
    expect(existsSync(join(checkout, 'data/leash.db'))).toBe(true);
    expect(existsSync(join(checkout, 'config/demo-cluster.jwks.json'))).toBe(true);

    process.kill(-child.pid!, 'SIGTERM');
    await exited;
  }, 90000);

  it('`leash serve` without a config exits 1 with one line naming the next step', () => {
    const run = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'serve'], { cwd: ROOT, env: env(), encoding: 'utf8', timeout: 60000 });
    expect(run.status).toBe(1);
    expect(run.stderr).toBe('leash: no config: pass --config <file> or set LEASH_CONFIG (to try Leash on the demo policy: npm start, or leash serve --demo)\n');
  }, 60000);

  it('`--demo` and `--config` exclude each other', () => {
    const run = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'serve', '--demo', '--config', 'x.yaml'], { cwd: ROOT, env: env(), encoding: 'utf8', timeout: 60000 });
    expect(run.status).toBe(1);
    expect(run.stderr).toBe('leash: --demo and --config exclude each other\n');
  }, 60000);
});
