import { describe, expect, it } from '@jest/globals';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GENERATED_END, GENERATED_START, extractGeneratedSection, renderConfigurationDoc, replaceGeneratedSection, writeConfigurationDoc } from '../../src/config/docs.js';
import { parseConfig, parseConfigText } from '../../src/config/load.js';
import { LeashConfig } from '../../src/config/schema.js';

const DOC = 'docs/configuration.md';

/** Every object schema reachable from the root, deduplicated by content (as the doc does). */
function objectSchemas(): Map<string, Record<string, any>> {
  const found = new Map<string, Record<string, any>>();
  const visit = (n: unknown): void => {
    if (Array.isArray(n)) return n.forEach(visit);
    if (n === null || typeof n !== 'object') return;
    const node = n as Record<string, any>;
    if (node.type === 'object' && node.properties) found.set(JSON.stringify(node), node);
    Object.values(node).forEach(visit);
  };
  visit(JSON.parse(JSON.stringify(LeashConfig)));
  return found;
}

describe('docs/configuration.md', () => {
  it('its generated section is exactly what the renderer produces (run `npm run leash -- docs` after changing schema.ts)', async () => {
    const doc = await readFile(DOC, 'utf8');
    expect(extractGeneratedSection(doc)).toBe(renderConfigurationDoc().trim());
  });

  it('keeps a hand-written intro above the generated section', async () => {
    const doc = await readFile(DOC, 'utf8');
    const intro = doc.slice(0, doc.indexOf(GENERATED_START));
    for (const topic of ['leash validate', 'SIGHUP', 'YAML', 'JSON', '```yaml']) expect(intro).toContain(topic);
  });

  it('its annotated example is a valid config', async () => {
    const doc = await readFile(DOC, 'utf8');
    const example = /```yaml\n([\s\S]*?)```/.exec(doc)?.[1];
    expect(example).toBeDefined();
    const config = parseConfig(parseConfigText(example!, 'example.yaml'));
    expect(config.settings.production).toBe(true);
    expect(config.plugins[0]!.id).toBe('crm-reader');
  });
});

describe('renderConfigurationDoc', () => {
  it('has one table per object, with one row per key and its description', () => {
    const text = renderConfigurationDoc();
    const objects = objectSchemas();
    const tables = text.split('\n').filter((l) => l === '| key | type | default | description |');
    expect(tables).toHaveLength(objects.size);
    for (const node of objects.values()) {
      for (const [key, prop] of Object.entries(node.properties as Record<string, Record<string, any>>)) {
        const row = text.split('\n').find((l) => l.startsWith(`| \`${key}\` |`) && (prop.description === undefined || l.includes(String(prop.description).replace(/\|/g, '\\|'))));
        expect([key, row !== undefined]).toEqual([key, true]);
      }
    }
  });

  it('shows defaults and marks keys without one as required', () => {
    const text = renderConfigurationDoc();
    expect(text).toContain('| `max_ttl` | integer ≥ 1 (seconds), or a duration such as `15m` | `3600` | Hard ceiling on any issued token, whatever a grant says. |');
    expect(text).toContain('| `sync_interval_ms` | integer 50–60000 (milliseconds), or a duration such as `500ms` | `500` |');
    expect(text).toContain('| `retention_days` | integer 1–400 (days), or a duration such as `30d` | `30` |');
    expect(text).toMatch(/\| `effect` \| .* \| \*\*required\*\* \|/);
    // One section per trusted-issuer kind; `trust_domain` is required where it applies.
    expect(text).toMatch(/### Trusted issuer: spiffe\n(?:(?!### )[\s\S])*\| `trust_domain` \| string \| \*\*required\*\* \|/);
    expect(text).toMatch(/### Trusted issuer: oidc\n(?:(?!### )[\s\S])*\| `subject_claim` \| string \| `"sub"` \|/);
    expect(text).not.toMatch(/### Trusted issuer: kubernetes\n(?:(?!### )[\s\S])*subject_claim/);
    expect(text).toContain('[JWKS source](#config-jwks-source)');
  });

  it('every in-doc link points at an anchor that exists', () => {
    const text = renderConfigurationDoc();
    const anchors = new Set([...text.matchAll(/<a id="([^"]+)"><\/a>/g)].map((m) => m[1]));
    const links = [...text.matchAll(/\]\(#([^)]+)\)/g)].map((m) => m[1]);
    expect(links.length).toBeGreaterThan(10);
    expect(links.filter((l) => !anchors.has(l))).toEqual([]);
  });
});

describe('writeConfigurationDoc', () => {
  it('rewrites only the generated section, keeping the intro and what follows', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'leash-docs-'));
    try {
      const file = join(dir, 'configuration.md');
      await writeFile(file, `# Intro\n\nhand-written\n\n${GENERATED_START}\nSTALE-PLACEHOLDER-0xdead\n${GENERATED_END}\n\n## After\n`);
      await writeConfigurationDoc(file);
      const doc = await readFile(file, 'utf8');
      expect(doc.startsWith('# Intro\n\nhand-written\n\n')).toBe(true);
      expect(doc).not.toContain('STALE-PLACEHOLDER-0xdead');
      expect(doc.endsWith(`${GENERATED_END}\n\n## After\n`)).toBe(true);
      expect(extractGeneratedSection(doc)).toBe(renderConfigurationDoc().trim());
      // Idempotent: a second run changes nothing.
      await writeConfigurationDoc(file);
      expect(await readFile(file, 'utf8')).toBe(doc);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('appends the section to a doc without markers', () => {
    const doc = replaceGeneratedSection('# Configuration\n');
    expect(doc.startsWith('# Configuration\n\n')).toBe(true);
    expect(extractGeneratedSection(doc)).toBe(renderConfigurationDoc().trim());
  });
});
