import { describe, expect, it } from '@jest/globals';
import { readFileSync } from 'node:fs';
import { CATALOGUE_END, CATALOGUE_START, renderCatalogue } from '../../src/review/catalogue.js';
import { RULES } from '../../src/review/rules.js';

describe('docs/review.md: the rule catalogue is the rule table', () => {
  const doc = readFileSync('docs/review.md', 'utf8');

  it('its generated section is exactly what the renderer produces (run `npm run leash -- docs --review` after changing rules.ts)', () => {
    const section = doc.slice(doc.indexOf(CATALOGUE_START), doc.indexOf(CATALOGUE_END) + CATALOGUE_END.length);
    expect(section).toBe(renderCatalogue());
  });

  it('lists every rule, with rationale, fix and mappings, and nothing else', () => {
    const rows = [...doc.matchAll(/^\| `([a-z-]+)` \| /gm)].map((m) => m[1]);
    expect(rows).toEqual(RULES.map((r) => r.id));
    for (const r of RULES) {
      expect(doc).toContain(`#### \`${r.id}\`: ${r.title}`);
      expect(doc).toContain(`*Fix:* ${r.fix}`);
    }
  });

  it("cites the three frameworks' sources", () => {
    expect(doc).toContain('https://owasp.org/www-project-non-human-identities-top-10/2025/top-10-2025');
    expect(doc).toContain('https://genai.owasp.org/resource/owasp-top-10-for-agentic-applications-for-2026/');
    expect(doc).toContain('https://cloudsecurityalliance.org/blog/2025/02/06/agentic-ai-threat-modeling-framework-maestro');
  });
});
