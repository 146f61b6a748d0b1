import { describe, expect, it } from '@jest/globals';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { commandName, findings, newWatch, note, projectFor, verdict, watchCalls, type Capability, type Watch } from '../setup/project-environment.js';

/**
 * The jest projects (jest.config.js, CONTRIBUTING.md "Test it"): the manifest names real
 * files, every test file runs in exactly one project, and the rules the test environment
 * applies to each file as it runs say what they mean. The environment itself is exercised
 * by every run: a file in the wrong project fails it.
 */

const ROOT = resolve(import.meta.dirname, '../..');
const manifest = JSON.parse(readFileSync(join(ROOT, 'test/projects.json'), 'utf8')) as Record<'integration' | 'e2e', Record<string, string>>;

function testFiles(dir = join(ROOT, 'test')): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? testFiles(join(dir, e.name)) : e.name.endsWith('.test.ts') ? [relative(ROOT, join(dir, e.name))] : []));
}

interface ProjectConfig {
  displayName: string;
  testMatch: string[];
  testPathIgnorePatterns?: string[];
  testEnvironmentOptions: { project: string };
}

describe('jest projects: unit, integration, e2e', () => {
  it('the manifest names existing test files, each once, each with the reason it is not unit', () => {
    const integration = Object.keys(manifest.integration);
    const e2e = Object.keys(manifest.e2e);
    for (const f of [...integration, ...e2e]) expect([f, existsSync(join(ROOT, f)) && f.endsWith('.test.ts')]).toEqual([f, true]);
    expect(integration.filter((f) => e2e.includes(f))).toEqual([]);
    for (const [f, why] of [...Object.entries(manifest.integration), ...Object.entries(manifest.e2e)]) expect([f, why.trim().length > 0]).toEqual([f, true]);
  });

  it('jest.config.js runs every test file in exactly one project', async () => {
    const config = (await import(pathToFileURL(join(ROOT, 'jest.config.js')).href)) as { default: { projects: ProjectConfig[] } };
    const projects = config.default.projects;
    expect(projects.map((p) => p.displayName)).toEqual(['unit', 'integration', 'e2e']);
    for (const p of projects) expect(p.testEnvironmentOptions.project).toBe(p.displayName);
    const selects = (p: ProjectConfig, file: string) => {
      const abs = join(ROOT, file);
      const ignored = (p.testPathIgnorePatterns ?? []).some((re) => new RegExp(re.replace('<rootDir>', ROOT)).test(abs));
      const matched = p.testMatch.some((m) => (m.includes('*') ? m === '<rootDir>/test/**/*.test.ts' : m.replace('<rootDir>', ROOT) === abs));
      return matched && !ignored;
    };
    const files = testFiles();
    expect(files.length).toBeGreaterThan(100);
    for (const f of files) {
      const owners = projects.filter((p) => selects(p, f)).map((p) => p.displayName);
      const expected = f in manifest.integration ? 'integration' : f in manifest.e2e ? 'e2e' : 'unit';
      expect([f, owners]).toEqual([f, [expected]]);
    }
  });

  it('a file belongs in the cheapest project that allows everything it did', () => {
    expect(projectFor([])).toBe('unit');
    expect(projectFor(['listen'])).toBe('integration');
    expect(projectFor(['connect', 'tempdir'])).toBe('integration');
    expect(projectFor(['spawn:redis-server', 'listen'])).toBe('integration');
    expect(projectFor(['tempdir', 'spawn:node'])).toBe('e2e');
    for (const tool of ['node', 'npm', 'go', 'chromium', 'promtool', 'tsx', 'setpriv']) expect(projectFor([`spawn:${tool}`])).toBe('e2e');
  });

  it('the command of a child process is named by its basename', () => {
    expect(commandName('/usr/bin/redis-server')).toBe('redis-server');
    expect(commandName(process.execPath)).toBe('node');
    expect(commandName('npm pack --dry-run')).toBe('npm');
    expect(commandName('go')).toBe('go');
  });

  it('the verdict: too low fails always, too high only after a run that skipped nothing', () => {
    const did = (...c: Capability[]) => new Set<Capability>(c);
    expect(verdict('a.test.ts', 'unit', did(), true)).toBeUndefined();
    expect(verdict('a.test.ts', 'unit', did('listen'), false)).toMatch(/is in the unit project but listen: it belongs in integration/);
    expect(verdict('a.test.ts', 'integration', did('spawn:node'), false)).toMatch(/belongs in e2e/);
    expect(verdict('a.test.ts', 'e2e', did('listen', 'spawn:node'), true)).toBeUndefined();
    expect(verdict('a.test.ts', 'e2e', did('listen'), true)).toMatch(/did only listen: move it to integration/);
    expect(verdict('a.test.ts', 'integration', did(), true)).toMatch(/did only nothing outside this process: move it to unit/);
    // Skipped tests (redis-server missing, a name filter) say nothing about what the file needs.
    expect(verdict('a.test.ts', 'integration', did(), false)).toBeUndefined();
  });

  it('a watched call in a unit file is refused before it runs, and fails the file even when the error is caught', () => {
    let current: Watch | undefined = newWatch('test/x.test.ts', 'unit');
    let ran = 0;
    const fakeChildProcess = {
      spawn(cmd: string) {
        ran++;
        return cmd;
      },
    };
    watchCalls(
      fakeChildProcess,
      'spawn',
      (args) => `spawn:${commandName(args[0])}`,
      () => current,
    );
    expect(() => fakeChildProcess.spawn('/usr/bin/redis-server')).toThrow('test/x.test.ts: a test in the unit project may not do spawn:redis-server');
    expect(ran).toBe(0);
    const w = current;
    expect(findings(w)).toEqual(['test/x.test.ts: a test in the unit project may not do spawn:redis-server (rules in test/setup/project-environment.ts; move the file in test/projects.json)']);

    // In integration the same call runs and is noted; outside any file's run nothing is noted.
    current = newWatch('test/y.test.ts', 'integration');
    expect(fakeChildProcess.spawn('redis-server')).toBe('redis-server');
    expect([...current.used]).toEqual(['spawn:redis-server']);
    expect(findings(current)).toEqual([]);
    current = undefined;
    expect(fakeChildProcess.spawn('node')).toBe('node');
    expect(ran).toBe(2);
  });

  it('promisify(execFile) keeps its shape ({ stdout, stderr }) through the watch, and is watched too', async () => {
    const calls: string[] = [];
    const fake = Object.assign((cmd: string, cb: (e: null, out: string) => void) => cb(null, `ran ${cmd}`), {
      [promisify.custom]: async (cmd: string) => {
        calls.push(cmd);
        return { stdout: `ran ${cmd}`, stderr: '' };
      },
    });
    const target = { execFile: fake };
    const w = newWatch('test/p.test.ts', 'integration');
    watchCalls(
      target,
      'execFile',
      (args) => `spawn:${commandName(args[0])}`,
      () => w,
    );
    expect(await promisify(target.execFile)('redis-server')).toEqual({ stdout: 'ran redis-server', stderr: '' });
    expect(calls).toEqual(['redis-server']);
    expect([...w.used]).toEqual(['spawn:redis-server']);
    await expect((promisify(target.execFile) as (cmd: string) => Promise<unknown>)('node')).rejects.toThrow('may not do spawn:node');
    expect(calls).toEqual(['redis-server']);
  });

  it('recording mode notes without refusing and reports nothing', () => {
    const w = newWatch('test/z.test.ts', 'unit', false);
    note(w, 'spawn:node');
    note(w, 'tempdir');
    expect([...w.used]).toEqual(['spawn:node', 'tempdir']);
    expect(findings(w)).toEqual([]);
  });
});
