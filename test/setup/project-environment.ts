/**
 * jest's node environment plus a watch on what a test file really does: child processes,
 * listening sockets, TCP connections and temp folders are noted as they happen (the hooks
 * sit on the host's own `child_process`, `fs` and `net`, which jest hands to test code
 * unchanged). A file that does what its project does not allow fails as it does it, and
 * again at the end of its run (a helper may catch the first error); a file that needed less
 * than its project fails too, so each file sits in the cheapest project it can. The rules
 * are the first half of this file. `LEASH_TEST_PROJECTS_RECORD=<file>` only records (one JSON line per
 * test file), to classify files anew.
 *
 * One file, rules and environment: jest loads an environment outside its module map, so a
 * sibling import would not resolve. test/architecture/test-projects.test.ts checks the
 * rules and the manifest (test/projects.json).
 */
import childProcess from 'node:child_process';
import { appendFileSync } from 'node:fs';
import fs from 'node:fs';
import net from 'node:net';
import { relative } from 'node:path';
import { promisify } from 'node:util';
import { TestEnvironment as NodeEnvironment } from 'jest-environment-node';
import type { EnvironmentContext, JestEnvironmentConfig } from '@jest/environment';
import type { Circus } from '@jest/types';

export const PROJECTS = ['unit', 'integration', 'e2e'] as const;
export type Project = (typeof PROJECTS)[number];

/**
 * What a test did that costs more than running code in this process:
 * - `spawn:<name>`: started a child process (the basename of the command),
 * - `listen`: opened a listening socket (an HTTP server on loopback, a probe for a free port),
 * - `connect`: opened a TCP connection (to such a server, to redis-server),
 * - `tempdir`: created a temp folder (SQLite files, key folders, configs on disk).
 */
export type Capability = `spawn:${string}` | 'listen' | 'connect' | 'tempdir';

/**
 * The child processes an integration test may start: servers it talks to over loopback, as
 * it would talk to a real deployment's. Any other child process (the `leash` command, node,
 * npm, go, chromium, promtool) is end to end.
 */
export const INTEGRATION_PROCESSES: readonly string[] = ['redis-server'];

/** The cheapest project a file that did these things belongs to. */
export function projectFor(used: Iterable<Capability>): Project {
  let project: Project = 'unit';
  for (const c of used) {
    if (c.startsWith('spawn:') && !INTEGRATION_PROCESSES.includes(c.slice('spawn:'.length))) return 'e2e';
    project = 'integration';
  }
  return project;
}

const RANK: Record<Project, number> = { unit: 0, integration: 1, e2e: 2 };

/** Whether a file of `project` may do `capability` at all (checked as it happens). */
export function allowed(project: Project, capability: Capability): boolean {
  return RANK[projectFor([capability])] <= RANK[project];
}

/**
 * The verdict on one test file after its run: undefined when it sits in the right project,
 * else why not. `complete` is false when some of its tests were skipped (a tool missing,
 * `it.skip`, a test name filter): what it did then says nothing about what it needs, so
 * only "too low" is judged, never "too high".
 */
export function verdict(file: string, project: Project, used: ReadonlySet<Capability>, complete: boolean): string | undefined {
  const needed = projectFor(used);
  const did = [...used].sort().join(', ') || 'nothing outside this process';
  if (RANK[needed] > RANK[project]) return `${file} is in the ${project} project but ${did}: it belongs in ${needed} (test/projects.json; rules in test/setup/project-environment.ts)`;
  if (complete && RANK[needed] < RANK[project])
    return `${file} is in the ${project} project but did only ${did}: move it to ${needed} (test/projects.json; rules in test/setup/project-environment.ts)`;
  return undefined;
}

/** The basename of a command, for `spawn:<name>` (a path, `process.execPath`, a bare name). */
export function commandName(command: unknown): string {
  const s = typeof command === 'string' ? command : String(command);
  const base = s.split('/').pop() ?? s;
  return base.split(' ')[0] || s;
}

/** What one test file did, as it ran. */
export interface Watch {
  readonly file: string;
  readonly project: Project;
  readonly enforce: boolean;
  readonly used: Set<Capability>;
  readonly violations: string[];
  skipped: number;
}

export function newWatch(file: string, project: Project, enforce = true): Watch {
  return { file, project, enforce, used: new Set(), violations: [], skipped: 0 };
}

/** Notes a capability in the current file's watch; throws (and keeps the message) when its project does not allow it. */
export function note(w: Watch | undefined, capability: Capability): void {
  if (!w) return;
  w.used.add(capability);
  if (!w.enforce || allowed(w.project, capability)) return;
  const message = `${w.file}: a test in the ${w.project} project may not do ${capability} (rules in test/setup/project-environment.ts; move the file in test/projects.json)`;
  w.violations.push(message);
  throw new Error(message);
}

/** The errors that fail a file at the end of its run: what it did beyond its project (even if caught), or that it needed less. */
export function findings(w: Watch): string[] {
  if (!w.enforce) return [];
  if (w.violations.length > 0) return [...new Set(w.violations)];
  const wrong = verdict(w.file, w.project, w.used, w.skipped === 0);
  return wrong ? [wrong] : [];
}

type Fn = (this: unknown, ...args: unknown[]) => unknown;

/** Replaces `target[name]` by a function that first notes `capability(args)` in `current()`'s watch. */
export function watchCalls<T extends object>(target: T, name: keyof T & string, capability: (args: unknown[]) => Capability, current: () => Watch | undefined): void {
  const original = target[name] as unknown as Fn;
  const wrapped: Fn = function (this: unknown, ...args: unknown[]) {
    note(current(), capability(args));
    return original.apply(this, args);
  };
  // exec and execFile carry a util.promisify.custom (resolving to { stdout, stderr }): it is
  // kept, and watched too, or promisify(execFile) would change shape or go unseen.
  const custom = (original as unknown as Record<symbol, unknown>)[promisify.custom];
  if (typeof custom === 'function') {
    const promised = custom as Fn;
    Object.defineProperty(wrapped, promisify.custom, {
      value: function (this: unknown, ...args: unknown[]) {
        try {
          note(current(), capability(args));
        } catch (err) {
          return Promise.reject(err as Error);
        }
        return promised.apply(this, args);
      },
    });
  }
  (target as Record<string, unknown>)[name] = wrapped;
}

interface Hooks {
  current: Watch | undefined;
}

const HOOKS = Symbol.for('leash.test-projects.hooks');

/** The hooks, installed once per worker process (each test file's environment points them at its own watch). */
function hooks(): Hooks {
  const host = globalThis as { [HOOKS]?: Hooks };
  return (host[HOOKS] ??= install());
}

function install(): Hooks {
  const h: Hooks = { current: undefined };
  const current = () => h.current;
  const cp = childProcess as unknown as Record<string, Fn>;
  for (const name of ['spawn', 'spawnSync', 'exec', 'execSync', 'execFile', 'execFileSync']) watchCalls(cp, name, (args) => `spawn:${commandName(args[0])}`, current);
  watchCalls(cp, 'fork', () => 'spawn:node', current);
  watchCalls(fs, 'mkdtemp', () => 'tempdir', current);
  watchCalls(fs, 'mkdtempSync', () => 'tempdir', current);
  watchCalls(fs.promises, 'mkdtemp', () => 'tempdir', current);
  watchCalls(net.Server.prototype, 'listen', () => 'listen', current);
  watchCalls(net.Socket.prototype, 'connect', () => 'connect', current);
  return h;
}

function projectOf(config: JestEnvironmentConfig): Project {
  const p = config.projectConfig.testEnvironmentOptions['project'];
  if (typeof p === 'string' && (PROJECTS as readonly string[]).includes(p)) return p as Project;
  throw new Error(`testEnvironmentOptions.project must be one of ${PROJECTS.join(', ')} (jest.config.js)`);
}

export default class ProjectEnvironment extends NodeEnvironment {
  readonly #watch: Watch;
  readonly #record: string | undefined;

  constructor(config: JestEnvironmentConfig, context: EnvironmentContext) {
    super(config, context);
    this.#record = process.env['LEASH_TEST_PROJECTS_RECORD'] || undefined;
    this.#watch = newWatch(relative(config.globalConfig.rootDir, context.testPath), projectOf(config), this.#record === undefined);
  }

  override async setup(): Promise<void> {
    await super.setup();
    hooks().current = this.#watch;
  }

  override async teardown(): Promise<void> {
    const h = hooks();
    if (h.current === this.#watch) h.current = undefined;
    await super.teardown();
  }

  handleTestEvent(event: Circus.Event, state: Circus.State): void {
    const w = this.#watch;
    if (event.name === 'test_skip' || event.name === 'test_todo') w.skipped++;
    if (event.name !== 'run_finish') return;
    if (this.#record) {
      appendFileSync(this.#record, JSON.stringify({ file: w.file, project: w.project, used: [...w.used].sort(), skipped: w.skipped }) + '\n');
      return;
    }
    for (const message of findings(w)) state.unhandledErrors.push(new Error(message));
  }
}
