import { existsSync, readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { ConfigError } from '../config/config-error.js';
import { configDigest, parseConfigText, parseWithEnv, readGuardrailsFile } from '../config/load.js';
import type { LeashConfig, Settings } from '../config/schema.js';
import { parseKeyring, KEYRING_FILE } from '../keys/local/keyring.js';
import { compilePolicy } from '../policy/compile.js';
import { diffReports, type ReviewDiff } from '../review/diff.js';
import { issuanceEvidence } from '../review/evidence.js';
import { renderHtml, renderMarkdown } from '../review/formats/report-docs.js';
import { renderSarif } from '../review/formats/sarif.js';
import { renderText, summaryLine } from '../review/formats/text.js';
import { atOrAbove, runReview, type ReviewInput, type ReviewResult } from '../review/review.js';
import type { Severity } from '../review/rules.js';
import { sourceMap } from '../review/source-map.js';
import { openStore } from '../store/open-store.js';
import { systemClock } from '../time/clock.js';
import { processIo, UsageError, type CliIo, type Invocation } from './command-spec.js';

type Format = 'text' | 'json' | 'sarif' | 'markdown' | 'html';

/** `leash review ...` as one call (tests, CI scripts): the same parser and exit codes as the command line. */
export async function runReviewCli(argv: readonly string[], io: CliIo = processIo): Promise<number> {
  const { runCli } = await import('./program.js');
  return (await runCli(['review', ...argv], io)) ?? 0;
}

/** Exit codes: 0 nothing at or above --fail-on, 1 something is, 2 the policy or the arguments are unusable. */
export async function reviewCommand(inv: Invocation, io: CliIo): Promise<number> {
  const path = inv.string('config') as string;
  const format = (inv.string('format') ?? 'text') as Format;
  const failOn = (inv.string('fail-on') ?? 'high') as Severity | 'none';
  const sinceDays = parseSince(inv.string('since'));
  if (sinceDays === undefined) {
    throw new UsageError(`--since must be a number of days like 30d (got '${inv.string('since') as string}')`);
  }
  const now = systemClock.now();
  let output: string;
  let failing: boolean;
  try {
    const guardrails = inv.string('guardrails');
    const head = loadForReview(path, guardrails);
    const evidence = await gatherEvidence(inv.string('store'), head.config, now, sinceDays);
    const result = runReview({ ...head.input, now, ...evidence });
    const basePath = inv.string('base');
    if (basePath !== undefined) {
      const base = loadForReview(basePath, guardrails);
      const diff = diffReports(runReview({ ...base.input, now, ...evidence }).report, result.report);
      output = renderDiff(diff, result, format);
      failing = diff.introduced.some((f) => atOrAbove(f.severity, failOn));
    } else {
      output = render(result, format);
      failing = result.report.findings.some((f) => atOrAbove(f.severity, failOn));
    }
  } catch (e) {
    if (e instanceof ConfigError) {
      io.err(`${e.message}\n`);
      return 2;
    }
    throw e;
  }
  const out = inv.string('out');
  if (out !== undefined) await writeFile(out, output);
  else io.out(output);
  return failing ? 1 : 0;
}

/** Days of history; -1 when not given (settings.review.window_days then). */
function parseSince(value: string | undefined): number | undefined {
  if (value === undefined) return -1;
  const m = /^(\d{1,4})d?$/.exec(value);
  return m ? Number(m[1]) : undefined;
}

/** Read and parse a policy for review: guardrail violations become findings, every other problem still fails. */
export function loadForReview(path: string, guardrailsFile?: string): { config: LeashConfig; input: Omit<ReviewInput, 'now'> } {
  const absolute = resolve(path);
  let bytes: Buffer;
  try {
    bytes = readFileSync(absolute);
  } catch (e) {
    throw new ConfigError([{ path: '', message: `cannot read config file '${path}': ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}` }]);
  }
  const text = new TextDecoder('utf-8', { fatal: false }).decode(bytes);
  // As `leash serve` would load it: ${VAR} and LEASH_* from this environment.
  const { config } = parseWithEnv(parseConfigText(text, absolute), process.env, {
    baseDir: resolve(absolute, '..'),
    guardrails: guardrailsFile === undefined ? undefined : readGuardrailsFile(guardrailsFile).guardrails,
    guardrailMode: 'report',
  });
  compilePolicy(config);
  return { config, input: { config, source: sourceMap(absolute, text), policy: { path: absolute, digest: configDigest(bytes) } } };
}

/** `--store`: `config` (the policy's settings.store), a redis:// URL, or a SQLite file. */
async function gatherEvidence(store: string | undefined, config: LeashConfig, now: number, sinceDays: number): Promise<Pick<ReviewInput, 'use' | 'suspensions' | 'keys'>> {
  if (store === undefined) return {};
  const settings: Settings['store'] =
    store === 'config'
      ? config.settings.store
      : /^rediss?:\/\//.test(store)
        ? { ...config.settings.store, kind: 'redis', url: store }
        : { ...config.settings.store, kind: 'sqlite', path: resolve(store) };
  if (settings.kind === 'sqlite' && settings.path !== ':memory:' && !existsSync(settings.path)) {
    throw new ConfigError([{ path: '', message: `no store at '${settings.path}'` }]);
  }
  const opened = await openStore(settings, systemClock);
  try {
    const days = sinceDays < 0 ? config.settings.review.window_days : sinceDays;
    const use = await issuanceEvidence(opened).collect({ since: now - days * 86_400_000, until: now + 1 });
    const suspensions = await opened.listSuspensions();
    return { use, suspensions, keys: localKeys(config) };
  } finally {
    await opened.close();
  }
}

/** The local backend's keyring, when it is on this machine (other backends: the broker's `GET /admin/review`). */
function localKeys(config: LeashConfig): ReviewInput['keys'] {
  if (config.settings.keys.backend !== 'local') return undefined;
  const file = join(config.settings.keys.dir, KEYRING_FILE);
  if (!existsSync(file)) return undefined;
  const { ring } = parseKeyring(file, readFileSync(file, 'utf8'));
  return ring.keys.map((k) => ({ kid: k.kid, state: k.state, createdAt: k.createdAt }));
}

export function render(result: ReviewResult, format: Format): string {
  switch (format) {
    case 'text':
      return renderText(result.report);
    case 'json':
      return `${JSON.stringify(result.report, null, 2)}\n`;
    case 'sarif':
      return `${JSON.stringify(renderSarif(result.report), null, 2)}\n`;
    case 'markdown':
      return renderMarkdown(result.report, result.graph);
    case 'html':
      return renderHtml(result.report, result.graph);
  }
}

function renderDiff(diff: ReviewDiff, head: ReviewResult, format: Format): string {
  // Formats made for whole reports show the head's picture with only the introduced findings.
  const introducedOnly = { ...head, report: { ...head.report, findings: diff.introduced, summary: { ...diff.summary.introduced, total: diff.introduced.length } } };
  switch (format) {
    case 'json':
      return `${JSON.stringify(diff, null, 2)}\n`;
    case 'sarif':
      return `${JSON.stringify(renderSarif(introducedOnly.report), null, 2)}\n`;
    case 'html':
      return renderHtml(introducedOnly.report, head.graph);
    case 'markdown': {
      const lines = ['# Leash review: what this policy change does', ''];
      for (const [title, list] of [
        ['Introduced', diff.introduced],
        ['Resolved', diff.resolved],
      ] as const) {
        lines.push(`## ${title} (${list.length})`, '');
        if (list.length === 0) lines.push('None.', '');
        else
          lines.push(
            '| severity | rule | plugin | where | finding |',
            '|---|---|---|---|---|',
            ...list.map((f) => `| ${f.severity} | \`${f.rule}\` | ${f.plugin ?? ''} | \`${f.line !== undefined ? `line ${f.line}` : f.pointer}\` | ${f.message.replace(/\|/g, '\\|')} |`),
            '',
          );
      }
      return lines.join('\n');
    }
    case 'text': {
      const lines = [`leash review --base: ${diff.introduced.length} introduced, ${diff.resolved.length} resolved`, `introduced: ${summaryLine({ ...introducedOnly.report })}`];
      for (const [title, list] of [
        ['introduced', diff.introduced],
        ['resolved', diff.resolved],
      ] as const) {
        lines.push('', `${title}:`);
        if (list.length === 0) lines.push('  none');
        for (const f of list) lines.push(`  ${title === 'introduced' ? '+' : '-'} ${f.severity.padEnd(8)} ${f.rule.padEnd(24)} ${f.line !== undefined ? `line ${f.line}` : f.pointer}  ${f.message}`);
      }
      return `${lines.join('\n')}\n`;
    }
  }
}
