import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { freePort, redisPing as ping } from './net.js';

/**
 * A real redis-server for tests: its own process on a free loopback port, its own data
 * folder, AOF with fsync on every write (what "nothing lost" needs), stopped by pid.
 * Nothing here touches a system-wide Redis service.
 */
export interface RedisServer {
  readonly url: string;
  readonly port: number;
  readonly dir: string;
  readonly pid: number | undefined;
  /** SIGTERM (Redis flushes and exits cleanly); the data folder is kept until `cleanup`. */
  stop(): Promise<void>;
  /** SIGKILL: no shutdown work at all, as a crash or OOM kill. */
  kill9(): Promise<void>;
  /**
   * Starts it again on the same port and folder (stopping it first if it runs). `aof:
   * false` restarts it without AOF: it comes back empty, as a Redis that never persisted.
   */
  restart(opts?: RedisStartOptions): Promise<void>;
  /** Stops it and removes the data folder if this helper created it. */
  cleanup(): Promise<void>;
}

const INSTALL_HINT = 'redis-server was not found on PATH or at /usr/bin/redis-server; install it (Debian/Ubuntu: apt-get install -y redis-server) to run the Redis suites';

/** The redis-server binary, or undefined when it is not installed. */
export function findRedisServer(): string | undefined {
  const candidates = [
    ...(process.env.PATH ?? '')
      .split(delimiter)
      .filter(Boolean)
      .map((d) => join(d, 'redis-server')),
    '/usr/bin/redis-server',
    '/usr/sbin/redis-server',
  ];
  for (const c of candidates) {
    try {
      accessSync(c, constants.X_OK);
      return c;
    } catch {
      // next
    }
  }
  return undefined;
}

/**
 * Whether Redis suites should run. Without redis-server they are skipped with a message,
 * except under CI (process.env.CI set), where a missing server must fail, never skip.
 */
export function redisAvailable(suite: string): boolean {
  if (findRedisServer()) return true;
  if (process.env.CI) throw new Error(`${suite}: ${INSTALL_HINT} (CI is set, so the suite fails instead of skipping)`);
  process.stderr.write(`[skip] ${suite}: ${INSTALL_HINT}\n`);
  return false;
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

export interface RedisStartOptions {
  /** AOF with fsync always (default true); false runs with no persistence at all. */
  readonly aof?: boolean;
  /** More redis-server arguments (e.g. ['--rename-command', 'CONFIG', '']). */
  readonly args?: readonly string[];
}

export async function startRedis(opts: { dir?: string } & RedisStartOptions = {}): Promise<RedisServer> {
  const bin = findRedisServer();
  if (!bin) throw new Error(INSTALL_HINT);
  const ownDir = opts.dir === undefined;
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'leash-redis-'));
  const port = await freePort();
  let child: ChildProcess | undefined;
  let stderr = '';

  const launch = async (run: RedisStartOptions): Promise<void> => {
    stderr = '';
    const aof = run.aof ?? true;
    const c = spawn(
      bin,
      [
        '--port',
        String(port),
        '--bind',
        '127.0.0.1',
        '--save',
        '',
        '--appendonly',
        aof ? 'yes' : 'no',
        '--appendfsync',
        'always',
        '--dir',
        dir,
        '--daemonize',
        'no',
        '--protected-mode',
        'yes',
        '--loglevel',
        'warning',
        ...(run.args ?? []),
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    c.stderr?.on('data', (d: Buffer) => {
      if (stderr.length < 4096) stderr += d.toString();
    });
    child = c;
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      if (c.exitCode !== null || c.signalCode !== null) throw new Error(`redis-server exited at start (${c.exitCode ?? c.signalCode}): ${stderr.trim()}`);
      if (await ping(port)) return;
      await new Promise((r) => setTimeout(r, 25));
    }
    c.kill('SIGKILL');
    throw new Error(`redis-server did not answer PING on 127.0.0.1:${port} within 10 s: ${stderr.trim()}`);
  };

  const signal = async (sig: NodeJS.Signals): Promise<void> => {
    const c = child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    // By pid, this process's own child: never by name.
    c.kill(sig);
    await exited(c);
  };

  await launch(opts);
  const server: RedisServer = {
    url: `redis://127.0.0.1:${port}`,
    port,
    dir,
    get pid() {
      return child?.pid;
    },
    stop: () => signal('SIGTERM'),
    kill9: () => signal('SIGKILL'),
    restart: async (again: RedisStartOptions = {}) => {
      await signal('SIGTERM');
      await launch({ args: opts.args, ...again });
    },
    cleanup: async () => {
      await signal('SIGTERM');
      if (ownDir) rmSync(dir, { recursive: true, force: true });
    },
  };
  return server;
}
