import { describe, expect, it } from '@jest/globals';
import { readFileSync } from 'node:fs';
import { allCommands } from '../../src/cli/command-spec.js';
import { LEASH } from '../../src/cli/program.js';
import { cliReference } from '../../src/cli/reference.js';

describe('docs/cli.md', () => {
  it('is the command tree as it is now (regenerate: npm run leash -- docs --cli)', () => {
    expect(readFileSync('docs/cli.md', 'utf8')).toBe(cliReference());
  });

  it('has a section for every command and verb', () => {
    const doc = cliReference();
    for (const { path } of allCommands(LEASH)) expect(doc).toContain(`\n## ${['leash', ...path].join(' ')}\n`);
  });
});
