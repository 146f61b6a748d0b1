import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import AjvDraft04Module from 'ajv-draft-04';
import { loadForReview, runReviewCli } from '../../src/cli/review.js';
import { renderHtml, renderMarkdown } from '../../src/review/formats/report-docs.js';
import { renderSarif } from '../../src/review/formats/sarif.js';
import { renderText } from '../../src/review/formats/text.js';
import { runReview, type ReviewResult } from '../../src/review/review.js';
import { RULES } from '../../src/review/rules.js';

const NOW = Date.UTC(2026, 11, 1, 12, 0, 0);
const EVERYTHING = resolve('test/fixtures/review/everything.yaml');
const CLEAN = resolve('test/fixtures/review/clean.yaml');
const CHROMIUM = '/usr/bin/chromium';

function sarifValidator() {
  const schema = JSON.parse(readFileSync('test/fixtures/sarif/sarif-2.1.0-rtm.5.json', 'utf8')) as Record<string, unknown>;
  // CommonJS default export seen through ESM interop.
  const AjvDraft04 = ((AjvDraft04Module as unknown as { default?: unknown }).default ?? AjvDraft04Module) as new (o: object) => import('ajv').Ajv;
  // unicodeRegExp off: the published schema's `language` pattern has a stray `]` a `u` regex refuses.
  const ajv = new AjvDraft04({ allErrors: true, strict: false, unicodeRegExp: false });
  ajv.addFormat('uri', (s: string) => /^[A-Za-z][A-Za-z0-9+.-]*:/.test(s) && URL.canParse(s));
  ajv.addFormat('uri-reference', (s: string) => URL.canParse(s, 'file:///base/'));
  ajv.addFormat('date-time', (s: string) => /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/.test(s) && !Number.isNaN(Date.parse(s)));
  return ajv.compile(schema);
}

describe('review formats', () => {
  let result: ReviewResult;
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'leash-formats-'));
    result = runReview({ ...loadForReview(EVERYTHING).input, now: NOW });
  });
  afterAll(async () => rm(dir, { recursive: true, force: true }));

  it("SARIF 2.1.0: valid against the official schema; results point at the policy file's lines", () => {
    const validate = sarifValidator();
    const sarif = renderSarif(result.report, { base: process.cwd() });
    const valid = validate(JSON.parse(JSON.stringify(sarif)));
    expect(validate.errors ?? []).toEqual([]);
    expect(valid).toBe(true);
    const run = sarif.runs[0]!;
    expect(run.tool.driver.rules!.map((r) => r.id)).toEqual(RULES.map((r) => r.id));
    expect(run.results).toHaveLength(result.report.findings.length);
    result.report.findings.forEach((f, i) => {
      const r = run.results![i]!;
      expect(r.ruleId).toBe(f.rule);
      expect(run.tool.driver.rules![r.ruleIndex!]!.id).toBe(f.rule);
      expect(r.locations![0]!.physicalLocation).toEqual({ artifactLocation: { uri: 'test/fixtures/review/everything.yaml', uriBaseId: '%SRCROOT%' }, region: { startLine: f.line } });
      expect(r.partialFingerprints).toEqual({ 'leashFinding/v1': f.fingerprint });
    });
    expect(run.results!.find((r) => r.ruleId === 'exception-expired')!.level).toBe('error');
    expect(run.tool.driver.rules!.find((r) => r.id === 'broad-scope')!.properties!.tags).toContain('NHI5:2025 Overprivileged NHI');
    // An empty report is valid too.
    expect(validate(JSON.parse(JSON.stringify(renderSarif(runReview({ ...loadForReview(CLEAN).input, now: NOW }).report))))).toBe(true);
  });

  it('the schema check has teeth: a result without a message fails it', () => {
    const validate = sarifValidator();
    const sarif = JSON.parse(JSON.stringify(renderSarif(result.report))) as { runs: { results: Record<string, unknown>[] }[] };
    delete sarif.runs[0]!.results[0]!.message;
    expect(validate(sarif)).toBe(false);
  });

  it('HTML: the picture holds every plugin and audience node and the toxic edges; every finding is a row', async () => {
    const html = renderHtml(result.report, result.graph);
    expect(html).toContain('<svg xmlns="http://www.w3.org/2000/svg" class="leash-graph"');
    for (const p of result.graph.plugins) expect(html).toContain(`<g class="plugin" data-plugin="${p.id}"`);
    for (const a of result.graph.audiences) expect(html).toContain(`<g class="audience" data-audience="${a}"`);
    expect(html).toMatch(/class="delegation toxic" data-from="hr-reader" data-to="summarizer"/);
    expect(html).toMatch(/class="delegation toxic" data-from="summarizer" data-to="mailer"/);
    expect(html).toMatch(/class="grant-edge effect-exfiltrate toxic" data-plugin="mailer" data-audience="https:\/\/mail.example.com"/);
    expect(html).toMatch(/class="grant-edge effect-read-sensitive toxic" data-plugin="hr-reader"/);
    // A delegation that is not on a toxic path is drawn plainly.
    expect(html).toMatch(/class="delegation" data-from="crm-digest" data-to="notes-writer"/);
    for (const f of result.report.findings) expect(html).toContain(`data-fingerprint="${f.fingerprint}"`);
    expect(html).not.toMatch(/<script|https?:\/\/[^"]*\.(js|css)"/);
  });

  it('HTML renders in a real browser: the DOM has the picture and every finding', async () => {
    if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is needed to render the HTML report (apt-get install chromium)`);
    const file = join(dir, 'report.html');
    await writeFile(file, renderHtml(result.report, result.graph));
    const { stdout } = await promisify(execFile)(
      CHROMIUM,
      [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        `--user-data-dir=${join(dir, 'profile')}`,
        '--dump-dom',
        `file://${file}`,
      ],
      { timeout: 60_000, maxBuffer: 32 * 1024 * 1024 },
    );
    // What the browser built, serialised back: the SVG survived parsing as SVG, with every node and row.
    expect(stdout).toContain('<svg xmlns="http://www.w3.org/2000/svg" class="leash-graph"');
    expect(stdout.match(/<g class="plugin" /g)).toHaveLength(result.graph.plugins.length);
    expect(stdout.match(/<tr class="finding /g)).toHaveLength(result.report.findings.length);
    expect(stdout.match(/class="delegation toxic"/g)).toHaveLength(2);
  }, 90_000);

  it('Markdown: summary, a Mermaid picture, every finding with its framework mappings', () => {
    const md = renderMarkdown(result.report, result.graph);
    expect(md).toContain('```mermaid\nflowchart LR');
    for (const p of result.graph.plugins) expect(md).toContain(`["${p.id} (${p.risk})"]`);
    for (const f of result.report.findings) expect(md).toContain(`| \`${f.rule}\` |`);
    expect(md).toContain('NHI1:2025 Improper Offboarding');
    expect(md).toMatch(/\| \*\*total\*\* \| \*\*\d+\*\* \|/);
  });

  it("text: a table grouped by plugin, with each finding's fix", () => {
    const text = renderText(result.report);
    expect(text).toContain('plugin hr-reader\n  SEVERITY');
    expect(text).toContain('policy-wide');
    for (const f of result.report.findings) expect(text).toContain(f.rule);
    expect(text.match(/fix: /g)).toHaveLength(result.report.findings.length);
  });

  describe('the CLI', () => {
    it('--fail-on sets the exit code; --out writes the chosen format', async () => {
      const out = join(dir, 'r.json');
      expect(await runReviewCli(['--config', EVERYTHING, '--format', 'json', '--out', out, '--fail-on', 'none'])).toBe(0);
      const json = JSON.parse(await readFile(out, 'utf8')) as { findings: { rule: string }[]; summary: { total: number } };
      expect(json.summary.total).toBe(json.findings.length);
      expect(await runReviewCli(['--config', EVERYTHING, '--format', 'sarif', '--out', join(dir, 'r.sarif')])).toBe(1);
      expect(await runReviewCli(['--config', CLEAN, '--out', join(dir, 'clean.txt'), '--fail-on', 'low'])).toBe(0);
      expect(await readFile(join(dir, 'clean.txt'), 'utf8')).toContain('no findings');
    });

    it('exit 2 for a policy that does not load or a bad option', async () => {
      const broken = join(dir, 'broken.yaml');
      await writeFile(broken, 'version: 1\nplugins: nope\n');
      expect(await runReviewCli(['--config', broken, '--out', join(dir, 'x')])).toBe(2);
      expect(await runReviewCli(['--config', CLEAN, '--format', 'pdf'])).toBe(2);
      expect(await runReviewCli(['--config', CLEAN, '--since', 'a week'])).toBe(2);
    });
  });
});
