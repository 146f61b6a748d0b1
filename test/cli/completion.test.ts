import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli } from '../../src/cli/program.js';

/**
 * `leash completion bash|zsh`, loaded into the real shell: the words typed so far go in as
 * the shell hands them to a completion function, and what it offers comes back.
 */

async function script(shell: 'bash' | 'zsh'): Promise<string> {
  let out = '';
  let err = '';
  const code = await runCli(['completion', shell], { out: (s) => void (out += s), err: (s) => void (err += s), env: {} });
  expect([code, err]).toEqual([0, '']);
  return out;
}

const hasZsh = spawnSync('zsh', ['--version'], { stdio: 'ignore' }).status === 0;

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'leash-completion-'));
  await writeFile(join(dir, 'policy.yaml'), 'x: 1\n');
  await writeFile(join(dir, 'plain.txt'), '');
  await writeFile(join(dir, 'leash.bash'), await script('bash'));
  await writeFile(join(dir, '_leash'), await script('zsh'));
});
afterAll(async () => rm(dir, { recursive: true, force: true }));

/** What bash's completion function for `leash` offers for the words, the last one being completed. */
function bash(words: readonly string[]): string[] {
  const program = [
    `source ${JSON.stringify(join(dir, 'leash.bash'))}`,
    // The function bash itself would call, as registered by the script.
    'fn=$(complete -p leash | sed -n "s/.*-F \\([^ ]*\\) leash$/\\1/p")',
    '[ -n "$fn" ] || { echo "no completion registered for leash" >&2; exit 3; }',
    'COMP_WORDS=("$@"); COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 )); COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}; COMPREPLY=()',
    '"$fn" leash "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"',
    'printf "%s\\n" "${COMPREPLY[@]}"',
  ].join('\n');
  const r = spawnSync('bash', ['--norc', '--noprofile', '-c', program, 'bash', ...words], { encoding: 'utf8', cwd: dir, timeout: 10000 });
  expect([r.status, r.stderr]).toEqual([0, '']);
  return r.stdout.split('\n').filter((l) => l !== '');
}

describe('leash completion bash', () => {
  it('registers a function for leash', () => {
    const r = spawnSync('bash', ['--norc', '--noprofile', '-c', `source ${JSON.stringify(join(dir, 'leash.bash'))}; complete -p leash`], { encoding: 'utf8' });
    expect(r.stdout.trim()).toBe('complete -F _leash leash');
  });

  it('completes commands and verbs', () => {
    expect(bash(['leash', 'ke'])).toEqual(['keys']);
    expect(bash(['leash', 'keys', 're'])).toEqual(['retire', 'revoke']);
    expect(bash(['leash', 'demo', ''])).toEqual(['token']);
    expect(bash(['leash', ''])).toContain('completion');
  });

  it("completes a command's options, only its own", () => {
    expect(bash(['leash', 'keys', 'revoke', '--re'])).toEqual(['--reason']);
    expect(bash(['leash', 'keys', 'retire', '--f'])).toEqual([]);
    expect(bash(['leash', 'serve', '--p'])).toEqual(['--port']);
    // npm start's private switch is parsed but never offered
    expect(bash(['leash', 'serve', '--demo'])).toEqual(['--demo']);
  });

  it("completes an option's choices, file names where a file goes, and nothing for a free value", () => {
    expect(bash(['leash', 'review', '--format', 's'])).toEqual(['sarif']);
    expect(bash(['leash', 'completion', ''])).toEqual(['bash', 'zsh']);
    expect(bash(['leash', 'validate', 'po'])).toEqual(['policy.yaml']);
    expect(bash(['leash', 'review', '--config', 'p']).sort()).toEqual(['plain.txt', 'policy.yaml']);
    expect(bash(['leash', 'keys', 'list', '--url', 'p'])).toEqual([]);
  });
});

describe('leash completion zsh', () => {
  // The completion system's builtins, as stand-ins that print what they were given.
  const stubs = 'compadd() { [[ $1 == -- ]] && shift; print -l -- "$@"; }; _files() { print -l -- "(files)"; }; compdef() { print -- "compdef $*"; }';
  const zsh = (program: string) => spawnSync('zsh', ['-f', '-c', `${stubs}\n${program}`], { encoding: 'utf8', cwd: dir, timeout: 10000 });

  // CI installs zsh (.ci/run): there the test runs (and fails without zsh), elsewhere it skips without it.
  (hasZsh || process.env.CI ? it : it.skip)('registers with compdef when sourced, and offers verbs, options, choices and files', () => {
    const sourced = zsh(`source ${JSON.stringify(join(dir, '_leash'))}`);
    expect([sourced.status, sourced.stderr, sourced.stdout.trim()]).toEqual([0, '', 'compdef _leash leash']);
    const complete = (...words: string[]) => {
      const r = zsh(`source ${JSON.stringify(join(dir, '_leash'))} >/dev/null\nwords=(${words.map((w) => `'${w}'`).join(' ')}); CURRENT=${words.length}; _leash`);
      expect([r.status, r.stderr]).toEqual([0, '']);
      return r.stdout.split('\n').filter((l) => l !== '');
    };
    expect(complete('leash', 'keys', '')).toEqual(['list', 'rotate', 'retire', 'revoke']);
    expect(complete('leash', 'keys', 'revoke', '-')).toEqual(['--url', '--key-file', '--reason', '--json', '--help']);
    expect(complete('leash', 'review', '--format', '')).toEqual(['text', 'json', 'sarif', 'markdown', 'html']);
    expect(complete('leash', 'validate', '')).toEqual(['(files)']);
  });
});
