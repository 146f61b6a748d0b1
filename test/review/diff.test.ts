import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { runReviewCli } from '../../src/cli/review.js';
import type { ReviewDiff } from '../../src/review/diff.js';

const BASE = resolve('test/fixtures/review/pr-base.yaml');
const HEAD = resolve('test/fixtures/review/pr-head.yaml');

/**
 * A realistic pull request: it lowers crm-reader's TTL (fixing a finding), reorders the
 * plugins (every line moves), and adds a report mailer with a wildcard scope that hr-sync
 * delegates to. Diff mode lists only what the change introduces and removes.
 */
describe('leash review --base: the findings a policy change introduces or removes', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'leash-diff-'));
  });
  afterAll(async () => rm(dir, { recursive: true, force: true }));

  const diff = async (args: string[] = []): Promise<{ code: number; diff: ReviewDiff }> => {
    const out = join(dir, `d${Math.random()}.json`);
    const code = await runReviewCli(['--base', BASE, '--config', HEAD, '--format', 'json', '--out', out, ...args]);
    return { code, diff: JSON.parse(await readFile(out, 'utf8')) as ReviewDiff };
  };

  it('introduced and resolved, by fingerprint: moved lines are neither', async () => {
    const { diff: d } = await diff(['--fail-on', 'none']);
    expect(d.introduced.map((f) => [f.rule, f.plugin, f.severity]).sort()).toEqual([
      ['broad-scope', 'report-mailer', 'high'],
      ['guardrail-violation', 'report-mailer', 'high'],
      ['toxic-delegation-path', 'hr-sync', 'low'],
      ['toxic-task-pair', 'hr-sync', 'low'],
    ]);
    expect(d.resolved.map((f) => [f.rule, f.plugin])).toEqual([['long-ttl', 'crm-reader']]);
    expect(d.summary.introduced).toEqual({ critical: 0, high: 2, medium: 0, low: 2 });
    // Introduced findings point into the new file, resolved ones into the old.
    expect(d.introduced.every((f) => f.file === HEAD)).toBe(true);
    expect(d.resolved[0]!.file).toBe(BASE);
  });

  it('exit code by the severity of what the change introduces', async () => {
    expect((await diff()).code).toBe(1); // default --fail-on high: the wildcard scope
    expect((await diff(['--fail-on', 'critical'])).code).toBe(0);
    expect((await diff(['--fail-on', 'low'])).code).toBe(1);
    // The same policy on both sides introduces nothing, whatever the threshold.
    const same = join(dir, 'same.json');
    expect(await runReviewCli(['--base', HEAD, '--config', HEAD, '--format', 'json', '--out', same, '--fail-on', 'low'])).toBe(0);
    expect(JSON.parse(await readFile(same, 'utf8'))).toMatchObject({ introduced: [], resolved: [] });
  });

  it('text, Markdown and SARIF show the change too', async () => {
    const text = join(dir, 'd.txt');
    await runReviewCli(['--base', BASE, '--config', HEAD, '--out', text, '--fail-on', 'none']);
    expect(await readFile(text, 'utf8')).toMatch(/4 introduced, 1 resolved[\s\S]*\+ high\s+broad-scope[\s\S]*- low\s+long-ttl/);
    const md = join(dir, 'd.md');
    await runReviewCli(['--base', BASE, '--config', HEAD, '--format', 'markdown', '--out', md, '--fail-on', 'none']);
    expect(await readFile(md, 'utf8')).toMatch(/## Introduced \(4\)[\s\S]*## Resolved \(1\)/);
    const sarif = join(dir, 'd.sarif');
    await runReviewCli(['--base', BASE, '--config', HEAD, '--format', 'sarif', '--out', sarif, '--fail-on', 'none']);
    expect((JSON.parse(await readFile(sarif, 'utf8')) as { runs: { results: unknown[] }[] }).runs[0]!.results).toHaveLength(4);
  });
});
