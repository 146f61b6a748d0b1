import { writeFile } from 'node:fs/promises';
import { allCommands, formatHelp, type CommandSpec } from './command-spec.js';
import { LEASH } from './program.js';

/**
 * docs/cli.md: every command's `--help`, generated from the command tree (`leash docs --cli`);
 * test/cli/reference.test.ts fails when the file and the tree disagree.
 */
export function cliReference(root: CommandSpec = LEASH): string {
  const commands = allCommands(root);
  const anchor = (path: readonly string[]) => ['leash', ...path].join('-');
  const lines = [
    '# The `leash` command',
    '',
    '<!-- Generated from the command tree (src/cli/program.ts) by `npm run leash -- docs --cli`; a test keeps it current. Do not edit by hand. -->',
    '',
    'Every command and verb takes `--help`. Exit status, unless a command says otherwise: **0** done, **1** failed,',
    '**2** usage error (an unknown command, verb or option, a missing argument or required option, a value not among the',
    'choices). Output goes to stdout; every problem goes to stderr.',
    '',
    'Shell completion: `source <(leash completion bash)` or `source <(leash completion zsh)` (see [leash completion](#leash-completion)).',
    '',
    '| command | what it does |',
    '|---|---|',
    ...commands.map(({ path, spec }) => `| [\`leash ${path.join(' ')}\`](#${anchor(path)}) | ${spec.summary.replace(/\|/g, '\\|')} |`),
    '',
    '## leash',
    '',
    '```text',
    formatHelp(root, []).trimEnd(),
    '```',
    '',
  ];
  for (const { path } of commands) lines.push(`## ${['leash', ...path].join(' ')}`, '', '```text', formatHelp(root, path).trimEnd(), '```', '');
  return lines.join('\n');
}

export async function writeCliReference(path: string): Promise<void> {
  await writeFile(path, cliReference());
}
