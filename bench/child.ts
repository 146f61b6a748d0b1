import { spawn, type ChildProcess } from 'node:child_process';
import { compiledScript } from './compiled.js';
import { readFileSync, readdirSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { INPUT_ENV, READY_PREFIX, type ServerInput, type ServerReady } from './protocol.js';

/** Every child still running, so any exit path of the parent can stop them. */
const running = new Set<ChildProcess>();

export function killAllChildren(): void {
  for (const child of running) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
}

export interface ServerChild {
  readonly name: string;
  readonly pid: number;
  readonly ready: ServerReady;
  /** The child's last stderr lines (shown when something fails). */
  stderrTail(): string;
  /** Stops the child (SIGTERM, so a CPU profile gets written) and waits for it to exit. */
  stop(): Promise<void>;
  /** Leash worker processes behind `pid` (--leash-workers; 1: the server is one process). */
  readonly workers: number;
}

const TAIL_LINES = 40;

/**
 * Start `script` as its own node process, hand it the cluster keys, wait for its ready line.
 * With a compiled tree (bench/compiled.ts) the script's JavaScript runs on plain node, as
 * `leash serve` does in production; otherwise the TypeScript runs through tsx's loader,
 * spawned as `node --import tsx` rather than via the tsx binary so the pid is the server
 * itself (CPU accounting, --cpu-prof).
 */
export async function startServer(name: string, script: string, input: ServerInput, nodeArgs: readonly string[] = [], timeoutMs = 60_000): Promise<ServerChild> {
  const compiled = compiledScript(script);
  const child = spawn(process.execPath, compiled ? [...nodeArgs, compiled] : [...nodeArgs, '--import', 'tsx', script], {
    env: { ...process.env, [INPUT_ENV]: JSON.stringify(input), NODE_ENV: 'production' },
    // ipc: the child notices when this process dies and exits by itself.
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  });
  running.add(child);
  const tail: string[] = [];
  createInterface({ input: child.stderr! }).on('line', (line) => {
    tail.push(line);
    if (tail.length > TAIL_LINES) tail.shift();
  });
  const exited = new Promise<void>((resolve) =>
    child.once('exit', () => {
      running.delete(child);
      resolve();
    }),
  );

  const ready = await new Promise<ServerReady>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name}: not ready after ${timeoutMs} ms\n${tail.join('\n')}`)), timeoutMs);
    createInterface({ input: child.stdout! }).on('line', (line) => {
      if (!line.startsWith(READY_PREFIX)) return;
      clearTimeout(timer);
      resolve(JSON.parse(line.slice(READY_PREFIX.length)) as ServerReady);
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`${name}: exited before it was ready (code ${code}, signal ${signal})\n${tail.join('\n')}`));
    });
  });
  if (!ready.url.startsWith('http://127.0.0.1:')) {
    child.kill('SIGKILL');
    throw new Error(`${name}: announced ${ready.url}; the benchmark only sends traffic to 127.0.0.1`);
  }

  return {
    name,
    pid: child.pid!,
    workers: input.workers ?? 1,
    ready,
    stderrTail: () => tail.join('\n'),
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
        await exited;
        clearTimeout(timer);
      }
    },
  };
}

/**
 * CPU seconds used so far by a process: main thread and all other threads, and those of
 * its child processes (the workers of `--leash-workers N`) under `workers:` labels (Linux
 * /proc; empty elsewhere).
 */
export function threadCpu(pid: number): Map<string, number> {
  const out = new Map<string, number>();
  addThreads(out, pid, '');
  for (const child of descendants(pid)) addThreads(out, child, 'workers:');
  return out;
}

function addThreads(out: Map<string, number>, pid: number, prefix: string): void {
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return;
  }
  const ticks = 100; // USER_HZ on Linux
  for (const tid of tids) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      // Fields after the parenthesised comm: state is 3rd, utime 14th, stime 15th.
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const cpu = (Number(rest[11]) + Number(rest[12])) / ticks;
      // Node 20 does not name its threads: everything but the main thread is the libuv pool
      // (async crypto such as jose's WebCrypto, fs) and V8's platform workers (GC, JIT).
      const label = `${prefix}${tid === String(pid) ? 'main' : 'other'}`;
      out.set(label, (out.get(label) ?? 0) + cpu);
    } catch {
      // thread ended between readdir and read
    }
  }
}

/** Child processes, recursively (node:cluster forks from the main thread, which /proc lists them under). */
function descendants(pid: number): number[] {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8');
  } catch {
    return [];
  }
  return text
    .split(/\s+/)
    .filter((t) => t !== '')
    .flatMap((t) => [Number(t), ...descendants(Number(t))]);
}

export function diffCpu(after: Map<string, number>, before: Map<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of after) out[k] = Math.round((v - (before.get(k) ?? 0)) * 100) / 100;
  return out;
}
