import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { freePort, testConfigInput } from '../support/broker.js';
import { TestCluster } from '../support/cluster.js';
import { redisAvailable, startRedis, type RedisServer } from '../support/redis.js';

/**
 * `leash serve` as an operator runs it: a store that cannot be opened ends the process with
 * exit code 1 and one line naming the store (the SQLite path, or the Redis address without
 * its password) and the cause; never a stack trace, never the password.
 */

const RUN_REDIS = redisAvailable('leash serve store startup (Redis cases)');
const PASSWORD = 'redis-startup-never-print-this-0123';

interface Run {
  readonly code: number | null;
  readonly output: string;
}

let cluster: TestCluster;
let dir: string;
const servers: RedisServer[] = [];

beforeAll(async () => {
  cluster = await TestCluster.create();
  dir = await mkdtemp(join(tmpdir(), 'leash-serve-store-'));
});

afterAll(async () => {
  for (const s of servers) await s.cleanup();
  await rm(dir, { recursive: true, force: true });
});

async function writeConfig(name: string, store: Record<string, unknown>): Promise<string> {
  const input = testConfigInput({ issuer: 'http://127.0.0.1:1', dir: join(dir, name), cluster }) as Record<string, any>;
  input.settings.store = store;
  const path = join(dir, `${name}.json`);
  await writeFile(path, JSON.stringify(input));
  return path;
}

function runToExit(configPath: string, env: NodeJS.ProcessEnv = {}, deadlineMs = 20000): Promise<Run> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'serve', '--config', configPath, '--port', '0'], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), deadlineMs);
  return new Promise((resolve) => {
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

/** Exit 1 and exactly one fatal log line whose error is `cannot open ...`, no stack trace. */
function oneLine(run: Run): string {
  expect(run.code).toBe(1);
  const lines = run.output.split('\n').filter((l) => l.trim() !== '');
  expect(lines).toHaveLength(1);
  expect(run.output).not.toMatch(/^\s+at /m);
  const line = JSON.parse(lines[0]!) as { level: string; msg: string; error: string };
  expect(line).toMatchObject({ level: 'fatal', msg: 'leash could not start' });
  expect(line.error).toMatch(/^cannot open the (sqlite|redis) store at /);
  return line.error;
}

describe('leash serve: a store that cannot be opened', () => {
  it("SQLite: a path that is a folder names the resolved path and SQLite's error", async () => {
    const path = join(dir, 'a-folder.db');
    await mkdir(path, { recursive: true });
    const line = oneLine(await runToExit(await writeConfig('sqlite-folder', { kind: 'sqlite', path })));
    expect(line).toContain(`cannot open the sqlite store at ${path}: `);
    expect(line).toMatch(/SQLITE_CANTOPEN|unable to open database file/);
  }, 30000);

  it('SQLite: a path under a regular file names the path and the system error', async () => {
    const file = join(dir, 'plain-file');
    await writeFile(file, 'not a folder');
    const path = join(file, 'leash.db');
    const line = oneLine(await runToExit(await writeConfig('sqlite-notdir', { kind: 'sqlite', path })));
    expect(line).toMatch(new RegExp(`cannot open the sqlite store at ${path}: (ENOTDIR|EEXIST)`));
  }, 30000);

  (RUN_REDIS ? it : it.skip)(
    'Redis unreachable: names host:port and the connection error, never the password (URL or LEASH_REDIS_PASSWORD)',
    async () => {
      const port = await freePort();
      for (const [name, url, env] of [
        ['redis-url-password', `redis://leash:${PASSWORD}@127.0.0.1:${port}/2`, {}],
        ['redis-env-password', `redis://127.0.0.1:${port}`, { LEASH_REDIS_PASSWORD: PASSWORD }],
      ] as const) {
        const run = await runToExit(await writeConfig(name, { kind: 'redis', url, key_prefix: 'startup:' }), env);
        const line = oneLine(run);
        expect(line).toContain(`cannot open the redis store at 127.0.0.1:${port}${name === 'redis-url-password' ? '/2' : ''} (key prefix startup:): `);
        expect(line).toMatch(/ECONNREFUSED/);
        expect(run.output).not.toContain(PASSWORD);
      }
    },
    60000,
  );

  (RUN_REDIS ? it : it.skip)(
    'Redis without AOF: says so and names settings.store.allow_volatile',
    async () => {
      const redis = await startRedis({ aof: false });
      servers.push(redis);
      const line = oneLine(await runToExit(await writeConfig('redis-no-aof', { kind: 'redis', url: redis.url, key_prefix: 'startup:' })));
      expect(line).toContain(`cannot open the redis store at 127.0.0.1:${redis.port} (key prefix startup:): the Redis server at 127.0.0.1:${redis.port} runs without AOF (appendonly no)`);
      expect(line).toContain('settings.store.allow_volatile');
    },
    30000,
  );

  (RUN_REDIS ? it : it.skip)(
    'Redis with a reset waiting for an operator: says what was lost and how to accept it',
    async () => {
      const redis = await startRedis();
      servers.push(redis);
      const raw = new Redis(redis.url);
      const marker = { previousEpoch: 'epoch-before', foundEpoch: null, detectedAt: 1, auditHead: { seq: 41, hash: 'a'.repeat(64) }, revocationSeq: 7 };
      await raw.set('startup:store:reset', JSON.stringify(marker));
      raw.disconnect();
      const line = oneLine(await runToExit(await writeConfig('redis-reset', { kind: 'redis', url: redis.url, key_prefix: 'startup:' })));
      expect(line).toContain('the store was reset: it held epoch epoch-before (audit head seq 41, revocation seq 7) and now has no epoch at all');
      expect(line).toContain('leash store accept-reset --config <file>');
    },
    30000,
  );
});
