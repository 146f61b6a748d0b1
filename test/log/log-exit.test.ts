import { describe, expect, it } from '@jest/globals';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const SCRIPT = fileURLToPath(new URL('./fixtures/log-then-exit.ts', import.meta.url));

describe('log lines held for the end of the turn are not lost when the process ends in that turn', () => {
  it.each(['throw', 'exit', 'return'])('%s', (how) => {
    const run = spawnSync(process.execPath, ['--import', 'tsx', SCRIPT, how], { encoding: 'utf8', timeout: 30_000 });
    const lines = run.stderr
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { msg: string });
    expect(lines.map((l) => l.msg)).toEqual(['first', 'second']);
    expect(run.status).toBe(how === 'throw' ? 1 : how === 'exit' ? 3 : 0);
  });
});
