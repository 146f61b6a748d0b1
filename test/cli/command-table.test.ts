import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { allCommands, findCommand, type CommandSpec } from '../../src/cli/command-spec.js';
import { LEASH, runCli } from '../../src/cli/program.js';
import { SEVERITIES } from '../../src/review/rules.js';

/**
 * The exit code contract, for every command and verb of the tree, read from the tree:
 * `--help` exits 0 and prints its usage on stdout; an unknown option exits 2; a missing
 * required argument (or verb, or required option) exits 2; a runtime failure exits 1. A
 * command added to the tree is in the first three rows at once, and fails the last until
 * it is given a failure below (or a reason why it cannot fail).
 */

const ROOT = resolve('.');
const MAIN = join(ROOT, 'src/cli/main.ts');
const TSX = pathToFileURL(join(ROOT, 'node_modules/tsx/dist/loader.mjs')).href;

async function leash(argv: readonly string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number | undefined; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await runCli(argv, { out: (s) => void (out += s), err: (s) => void (err += s), env });
  return { code, out, err };
}

const commands: Array<{ path: string[]; spec: CommandSpec }> = [{ path: [], spec: LEASH }, ...allCommands(LEASH)];
const named = (path: readonly string[]) => ['leash', ...path].join(' ');
/** Needs something on the command line: an argument, a required option (its env variable unset), or a verb. */
const needsInput = (spec: CommandSpec, path: readonly string[]) => path.length > 0 && (!spec.run || (spec.args ?? []).some((a) => !a.optional) || (spec.options ?? []).some((o) => o.required));

let dir: string;
let closed: number;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'leash-cli-table-'));
  await writeFile(join(dir, 'token'), 'not-a-real-attestation\n');
  // A port nothing listens on: bound, then released.
  const probe = createServer();
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', () => r()));
  closed = (probe.address() as { port: number }).port;
  await new Promise((r) => probe.close(r));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** How each command fails at run time (exit 1), or why it cannot. */
type Failure = { argv: () => string[]; env?: () => NodeJS.ProcessEnv; spawnInEmptyDir?: true; verdict?: true } | { cannotFail: string };
const nowhere = '/nonexistent/leash.yaml';
const admin = () => ({ LEASH_ADMIN_KEY: 'some-key' });
const FAILURES: Record<string, Failure> = {
  serve: { argv: () => ['serve', '--config', nowhere] },
  validate: { argv: () => ['validate', 'test/cli/fixtures/bad-policy.yaml'] },
  // Its 1 is a verdict (a finding at or above --fail-on), printed as the report, not as an error.
  review: { argv: () => ['review', '--config', 'test/fixtures/review/everything.yaml', '--fail-on', 'low'], verdict: true },
  'audit verify': { argv: () => ['audit', 'verify', '--config', nowhere] },
  'store status': { argv: () => ['store', 'status', '--config', nowhere] },
  'store accept-reset': { argv: () => ['store', 'accept-reset', '--config', nowhere, '--yes'] },
  // The demo's files go under the current folder: one without config/ cannot hold them (and
  // the checkout's demo key, which other suites use at the same time, is left alone).
  demo: { argv: () => ['demo', '--no-serve'], spawnInEmptyDir: true },
  'demo token': { argv: () => ['demo', 'token'], spawnInEmptyDir: true },
  'aws credential-process': {
    argv: () => ['aws', 'credential-process', '--issuer', `http://127.0.0.1:${closed}`, '--client-id', 'p', '--audience', 'a', '--attestation-file', join(dir, 'token'), '--task', 't'],
  },
  'keys list': { argv: () => ['keys', 'list', '--url', `http://127.0.0.1:${closed}`], env: admin },
  'keys rotate': { argv: () => ['keys', 'rotate', '--url', `http://127.0.0.1:${closed}`], env: admin },
  'keys retire': { argv: () => ['keys', 'retire', 'kid-1', '--url', `http://127.0.0.1:${closed}`], env: admin },
  'keys revoke': { argv: () => ['keys', 'revoke', 'kid-1', '--reason', 'drill', '--url', `http://127.0.0.1:${closed}`], env: admin },
  'task show': { argv: () => ['task', 'show', 'tsk_x', '--url', `http://127.0.0.1:${closed}`], env: admin },
  explain: { argv: () => ['explain', '--url', `http://127.0.0.1:${closed}`, '--event', '1'], env: admin },
  'ingest cloudtrail': { argv: () => ['ingest', 'cloudtrail', dir, '--config', nowhere] },
  'ingest vault-audit': { argv: () => ['ingest', 'vault-audit', join(dir, 'token'), '--config', nowhere] },
  'hash-api-key': { cannotFail: 'a digest of its argument' },
  // A path through a file cannot be written.
  schema: { argv: () => ['schema', '--out', join(dir, 'token', 'schema.json')] },
  docs: { argv: () => ['docs', '--out', join(dir, 'token', 'configuration.md')] },
  completion: { cannotFail: 'prints a script generated from the tree; the shell is checked by the parser' },
  version: { cannotFail: 'prints the package version' },
};

describe.each(commands.map(({ path, spec }) => [named(path), path, spec] as const))('%s', (_name, path, spec) => {
  it('--help exits 0 and prints its usage on stdout', async () => {
    const r = await leash([...path, '--help']);
    expect([r.code, r.err]).toEqual([0, '']);
    expect(r.out.startsWith(`usage: ${named(path)}`)).toBe(true);
    expect(r.out).toContain('-h, --help');
  });

  it('an unknown option exits 2 with the problem on stderr', async () => {
    const r = await leash([...path, '--no-such-option']);
    expect([r.code, r.out]).toEqual([2, '']);
    expect(r.err).toContain('unknown option --no-such-option');
    expect(r.err).toContain(`usage: ${named(path)}`);
  });

  if (needsInput(spec, path)) {
    it('a missing argument, verb or required option exits 2', async () => {
      const r = await leash(path);
      expect([r.code, r.out]).toEqual([2, '']);
      expect(r.err).toMatch(new RegExp(`^${named(path)}: (missing|needs) `));
    });
  }

  if (spec.run) {
    it('a runtime failure exits 1 with the problem on stderr', async () => {
      const failure = FAILURES[path.join(' ')];
      expect(failure).toBeDefined(); // a new command: add how it fails at run time to FAILURES
      if (!failure || 'cannotFail' in failure) return;
      if (failure.spawnInEmptyDir) {
        const run = spawnSync(process.execPath, ['--import', TSX, MAIN, ...failure.argv()], { cwd: dir, encoding: 'utf8', timeout: 60000 });
        expect([run.status, run.stdout]).toEqual([1, '']);
        expect(run.stderr).toMatch(/^leash: .*ENOENT/);
        return;
      }
      const r = await leash(failure.argv(), failure.env?.() ?? {});
      expect(r.code).toBe(1);
      if (failure.verdict) expect(r.out).toMatch(/\bhigh\b/);
      else expect(r.err).not.toBe('');
    }, 60000);
  }
});

describe('the tree', () => {
  it('has a failure row for every command that runs, and none for a command that is gone', () => {
    const runnable = commands.filter(({ spec, path }) => spec.run && path.length > 0).map(({ path }) => path.join(' '));
    expect(Object.keys(FAILURES).sort()).toEqual(runnable.sort());
  });

  it("review's --fail-on offers the severities the review has, and none", () => {
    const failOn = findCommand(LEASH, ['review'])!.options!.find((o) => o.name === 'fail-on')!;
    expect(failOn.choices).toEqual([...SEVERITIES, 'none']);
  });

  it('help by its other names: leash help <command>, leash <group> help, and leash alone', async () => {
    expect((await leash(['help', 'keys', 'revoke'])).out).toBe((await leash(['keys', 'revoke', '--help'])).out);
    expect((await leash(['keys', 'help'])).out).toBe((await leash(['keys', '--help'])).out);
    const bare = await leash([]);
    expect([bare.code, bare.out]).toEqual([0, (await leash(['--help'])).out]);
    expect((await leash(['help', 'nope'])).code).toBe(2);
  });

  it('a near miss is named, and a value never echoed for an unknown option', async () => {
    const r = await leash(['valdate', 'x.yaml']);
    expect([r.code, r.err.split('\n')[0]]).toEqual([2, "leash: unknown command 'valdate' (did you mean validate?)"]);
    const secret = await leash(['keys', 'list', '--key=s3cret-admin-key', '--url', 'http://127.0.0.1:1']);
    expect(secret.code).toBe(2);
    expect(secret.err).toContain('unknown option --key (did you mean --key-file?)');
    expect(secret.err).not.toContain('s3cret');
  });

  it('an argument with one leading dash is an argument (key ids are base64url)', async () => {
    const r = await leash(['keys', 'retire', '-Xa9', '--url', `http://127.0.0.1:${closed}`], admin());
    expect(r.code).toBe(1);
    expect(r.err).toContain('cannot reach');
  });

  it('as a process: --version, and an unknown command exits 2 with only stderr', () => {
    const version = spawnSync(process.execPath, ['--import', 'tsx', MAIN, '--version'], { encoding: 'utf8', timeout: 60000 });
    const { version: expected } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
    expect([version.status, version.stdout, version.stderr]).toEqual([0, `${expected}\n`, '']);
    const unknown = spawnSync(process.execPath, ['--import', 'tsx', MAIN, 'frobnicate'], { encoding: 'utf8', timeout: 60000 });
    expect([unknown.status, unknown.stdout]).toEqual([2, '']);
    expect(unknown.stderr).toContain("leash: unknown command 'frobnicate'");
  }, 60000);
});
