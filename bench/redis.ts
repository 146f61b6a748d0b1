/**
 * A redis-server for `--store redis`: Debian's binary, its own process on a free loopback
 * port, its own temp data folder, AOF on. Stopped by pid (this process's own child), never
 * by name; nothing here touches a system-wide Redis. Finding the binary, the free port and
 * the readiness PING are test/support's; the options (appendfsync choice) and the
 * kill-everything-on-exit bookkeeping are the bench's own.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, redisPing as ping } from '../test/support/net.js';
import { findRedisServer } from '../test/support/redis.js';

export type AppendFsync = 'always' | 'everysec' | 'no';

export interface BenchRedis {
  readonly url: string;
  readonly pid: number;
  readonly appendfsync: AppendFsync;
  /** SIGTERM by pid, wait for the exit, remove the data folder. */
  stop(): Promise<void>;
}

/** Every redis-server still running, so any exit path of the bench can stop it. */
const running = new Set<ChildProcess>();

export function killAllRedis(): void {
  for (const c of running) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
}

export async function startRedis(appendfsync: AppendFsync): Promise<BenchRedis> {
  const bin = findRedisServer();
  if (!bin) throw new Error('--store redis needs redis-server (/usr/bin/redis-server; Debian/Ubuntu: apt-get install -y redis-server)');
  const dir = await mkdtemp(join(tmpdir(), 'leash-bench-redis-'));
  const port = await freePort();
  let stderr = '';
  // RDB snapshots off, AOF on: the durability a Leash deployment on Redis would run with.
  const child = spawn(
    bin,
    [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--protected-mode',
      'yes',
      '--save',
      '',
      '--appendonly',
      'yes',
      '--appendfsync',
      appendfsync,
      '--dir',
      dir,
      '--daemonize',
      'no',
      '--loglevel',
      'warning',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  running.add(child);
  child.stderr?.on('data', (d: Buffer) => {
    if (stderr.length < 4096) stderr += d.toString();
  });
  const exited = new Promise<void>((resolve) =>
    child.once('exit', () => {
      running.delete(child);
      resolve();
    }),
  );
  const cleanup = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    }
    await rm(dir, { recursive: true, force: true });
  };
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      await cleanup();
      throw new Error(`redis-server exited at start (${child.exitCode ?? child.signalCode}): ${stderr.trim()}`);
    }
    if (await ping(port)) break;
    if (Date.now() > deadline) {
      await cleanup();
      throw new Error(`redis-server did not answer PING on 127.0.0.1:${port} within 10 s: ${stderr.trim()}`);
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  return { url: `redis://127.0.0.1:${port}`, pid: child.pid as number, appendfsync, stop: cleanup };
}
