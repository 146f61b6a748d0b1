import { readFile, writeFile } from 'node:fs/promises';
import { ASI, ASI_SOURCE, MAESTRO, MAESTRO_SOURCE, NHI, NHI_SOURCE, mappingLabels } from './frameworks.js';
import { CATEGORIES, RULES } from './rules.js';

/**
 * The rule catalogue of docs/review.md, generated from the rule table: a test compares the
 * committed doc with this output, so code and docs cannot drift. `leash docs --review`
 * rewrites it.
 */

export const CATALOGUE_START = '<!-- generated:start (leash docs --review --out docs/review.md; do not edit by hand) -->';
export const CATALOGUE_END = '<!-- generated:end -->';

const CATEGORY_TITLES: Readonly<Record<(typeof CATEGORIES)[number], string>> = {
  identity: 'Shared or broad identity',
  privilege: 'Broad privilege',
  exceptions: 'Exceptions',
  chaining: 'Chaining',
  use: 'Use (needs the store)',
  operations: 'Operations',
};

const cell = (s: string) => s.replace(/\|/g, '\\|');

export function renderCatalogue(): string {
  const out: string[] = [CATALOGUE_START, '', '## Rules', ''];
  out.push('| rule | category | severity | needs | title | OWASP NHI 2025 | OWASP Agentic 2026 | CSA MAESTRO |', '|---|---|---|---|---|---|---|---|');
  for (const r of RULES) {
    out.push(
      `| \`${r.id}\` | ${r.category} | ${r.severity} | ${r.needs} | ${cell(r.title)} | ${r.mappings.nhi.join(', ') || '–'} | ${r.mappings.asi.join(', ') || '–'} | ${r.mappings.maestro.join(', ') || '–'} |`,
    );
  }
  out.push('');
  for (const category of CATEGORIES) {
    out.push(`### ${CATEGORY_TITLES[category]}`, '');
    for (const r of RULES.filter((x) => x.category === category)) {
      out.push(`#### \`${r.id}\`: ${r.title}`, '');
      out.push(
        `Severity **${r.severity}**; needs ${r.needs === 'policy' ? 'the policy only' : r.needs === 'history' ? 'the store (`--store`, or the running broker)' : "the broker's state (`--store` for suspensions, the broker or the local keyring for keys)"}.`,
        '',
      );
      out.push(`*Why:* ${r.rationale}`, '');
      out.push(`*Fix:* ${r.fix}`, '');
      out.push(`*Maps to:* ${mappingLabels(r.mappings).join('; ')}.`, '');
    }
  }
  out.push('## The frameworks', '');
  out.push(`[OWASP Top 10 Non-Human Identities Risks – 2025](${NHI_SOURCE}):`, '', '| id | risk |', '|---|---|');
  for (const [id, name] of Object.entries(NHI)) out.push(`| ${id}:2025 | ${name} |`);
  out.push('', `[OWASP Top 10 for Agentic Applications 2026](${ASI_SOURCE}) (OWASP GenAI Security Project, Agentic Security Initiative):`, '', '| id | risk |', '|---|---|');
  for (const [id, name] of Object.entries(ASI)) out.push(`| ${id} | ${name} |`);
  out.push('', `[CSA MAESTRO](${MAESTRO_SOURCE}) (Multi-Agent Environment, Security, Threat, Risk, and Outcome), its seven layers:`, '', '| layer | name |', '|---|---|');
  for (const [id, name] of Object.entries(MAESTRO)) out.push(`| ${id} | ${name} |`);
  out.push('', CATALOGUE_END);
  return out.join('\n');
}

/** Replace the generated section of a review doc with the current catalogue. */
export function withCatalogue(doc: string): string {
  const start = doc.indexOf(CATALOGUE_START);
  const end = doc.indexOf(CATALOGUE_END);
  if (start === -1 || end === -1 || end < start) throw new Error('the doc has no generated section (CATALOGUE_START ... CATALOGUE_END)');
  return doc.slice(0, start) + renderCatalogue() + doc.slice(end + CATALOGUE_END.length);
}

export async function writeReviewDoc(path: string): Promise<void> {
  await writeFile(path, withCatalogue(await readFile(path, 'utf8')));
}
