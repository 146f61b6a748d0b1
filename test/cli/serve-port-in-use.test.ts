import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, testConfigInput } from '../support/broker.js';
import { TestCluster } from '../support/cluster.js';

/**
 * A broker that cannot bind its ports never served: it must not create keys, open its
 * store or record `key.created` / `policy.loaded`. It exits 1 with one line naming the
 * address.
 */

let dir: string;
let cluster: TestCluster;
let squatter: Server;
let taken: number;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'leash-port-in-use-'));
  cluster = await TestCluster.create();
  squatter = createServer();
  await new Promise<void>((r) => squatter.listen(0, '127.0.0.1', () => r()));
  taken = (squatter.address() as { port: number }).port;
});

afterAll(async () => {
  await new Promise((r) => squatter.close(r));
  await rm(dir, { recursive: true, force: true });
});

/** stderr holds exactly one log line, at level fatal: its message, address and code. */
function fatalLine(stderr: string): { msg: string; address: string; code: string } {
  const lines = stderr.split('\n').filter((l) => l !== '');
  expect(lines).toHaveLength(1);
  const line = JSON.parse(lines[0]!) as { level: string; msg: string; address: string; code: string };
  expect(line.level).toBe('fatal');
  return { msg: line.msg, address: line.address, code: line.code };
}

async function run(name: string, ports: { listen: number; management: number }): Promise<{ code: number | null; stdout: string; stderr: string; state: string }> {
  const state = join(dir, name);
  const input = testConfigInput({ issuer: `http://127.0.0.1:${ports.listen}`, dir: state, cluster }) as Record<string, any>;
  input.settings.listen.port = ports.listen;
  input.settings.management.listen.port = ports.management;
  input.settings.audit.stdout = true; // any event would show on stdout
  const path = join(dir, `${name}.json`);
  await writeFile(path, JSON.stringify(input));
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'serve', '--config', path], { stdio: ['ignore', 'pipe', 'pipe'] });
  const timer = setTimeout(() => child.kill('SIGKILL'), 30000);
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const code = await new Promise<number | null>((r) => child.once('close', (c) => r(c)));
  clearTimeout(timer);
  return { code, stdout, stderr, state };
}

describe('leash serve with a port in use', () => {
  it('the public port: exit 1, one line naming the address, no keys, no store, no events', async () => {
    const r = await run('public', { listen: taken, management: await freePort() });
    expect(r.code).toBe(1);
    expect(fatalLine(r.stderr)).toEqual({
      msg: `cannot listen on 127.0.0.1:${taken} (public API, settings.listen): address already in use (EADDRINUSE)`,
      address: `127.0.0.1:${taken}`,
      code: 'EADDRINUSE',
    });
    expect(r.stdout).toBe('');
    expect(existsSync(join(r.state, 'keys'))).toBe(false);
    expect(existsSync(join(r.state, 'leash.db'))).toBe(false);
  }, 40000);

  it('the management port: the same, naming the management address', async () => {
    const publicPort = await freePort();
    const r = await run('management', { listen: publicPort, management: taken });
    expect(r.code).toBe(1);
    expect(fatalLine(r.stderr)).toEqual({
      msg: `cannot listen on 127.0.0.1:${taken} (management, settings.management.listen): address already in use (EADDRINUSE)`,
      address: `127.0.0.1:${taken}`,
      code: 'EADDRINUSE',
    });
    expect(r.stdout).toBe('');
    expect(existsSync(join(r.state, 'keys'))).toBe(false);
    expect(existsSync(join(r.state, 'leash.db'))).toBe(false);
  }, 40000);
});
