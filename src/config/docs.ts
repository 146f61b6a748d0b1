import { readFile, writeFile } from 'node:fs/promises';
import { JwksSource, LeashConfig, Match } from './schema.js';
import { PATTERN_HINTS, type SchemaNode } from './schema-text.js';
import { DURATION_KEYWORD } from './duration.js';

/**
 * Generates the reference half of docs/configuration.md from the schema's descriptions and
 * defaults: one table per object. A test compares the committed doc with this output, so
 * the doc cannot go stale; `leash docs --out docs/configuration.md` rewrites it.
 */

export const GENERATED_START = '<!-- generated:start (leash docs --out docs/configuration.md; do not edit by hand) -->';
export const GENERATED_END = '<!-- generated:end -->';

interface Section {
  readonly title: string;
  readonly anchor: string;
  readonly node: SchemaNode;
  readonly usedBy: string[];
}

const plain = (s: unknown): SchemaNode => JSON.parse(JSON.stringify(s)) as SchemaNode;
const identity = (s: SchemaNode) => JSON.stringify(s);

/** Objects used in several places get one section under their own name (and a prefix for their children). */
const SHARED: ReadonlyMap<string, { title: string; prefix: string }> = new Map([
  [identity(plain(JwksSource)), { title: 'JWKS source', prefix: 'jwks' }],
  [identity(plain(Match)), { title: 'Match', prefix: 'match' }],
]);

const anchorOf = (title: string) =>
  `config-${title
    .toLowerCase()
    .replace(/\[\]/g, '')
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-|-$/g, '')}`;
const cell = (s: string) => s.replace(/\r?\n/g, ' ').replace(/\|/g, '\\|');
const code = (s: string) => `\`${s}\``;
const hasDefault = (s: SchemaNode) => Object.prototype.hasOwnProperty.call(s, 'default');

/** Object schemas reachable from a property without crossing another object. */
function objectsIn(s: SchemaNode, label: string): Array<{ node: SchemaNode; label: string; title?: string }> {
  if (s.type === 'object' && s.properties) return [{ node: s, label }];
  if (s.type === 'array' && s.items) return objectsIn(s.items, `${label}[]`);
  if (s.anyOf) return s.anyOf.flatMap((b) => objectsIn(b, label));
  // A discriminated union: one section per branch, under the branch's own title.
  if (s.oneOf) return s.oneOf.flatMap((b) => objectsIn(b, label).map((o) => ({ ...o, title: b.title ?? o.label })));
  if (s.type === 'object' && s.patternProperties) return Object.values(s.patternProperties).flatMap((v) => objectsIn(v, `${label}.<name>`));
  return [];
}

function collectSections(root: SchemaNode): Map<string, Section> {
  const sections = new Map<string, Section>();
  const visit = (node: SchemaNode, title: string, usedAt: string) => {
    const key = identity(node);
    const known = sections.get(key);
    if (known) {
      known.usedBy.push(usedAt);
      return;
    }
    const shared = SHARED.get(key);
    const sectionTitle = shared?.title ?? title;
    sections.set(key, { title: sectionTitle, anchor: anchorOf(sectionTitle), node, usedBy: [usedAt] });
    const prefix = shared?.prefix ?? usedAt;
    for (const [name, prop] of Object.entries(node.properties ?? {})) {
      const childLabel = prefix ? `${prefix}.${name}` : name;
      for (const child of objectsIn(prop, childLabel)) visit(child.node, child.title ?? child.label, child.label);
    }
  };
  visit(root, 'Top level', '');
  return sections;
}

function range(s: SchemaNode): string {
  if (s.minimum !== undefined && s.maximum !== undefined) return ` ${s.minimum}–${s.maximum}`;
  if (s.minimum !== undefined) return ` ≥ ${s.minimum}`;
  if (s.maximum !== undefined) return ` ≤ ${s.maximum}`;
  return '';
}

const DURATION_UNITS: Readonly<Record<string, string>> = { s: 'seconds', ms: 'milliseconds', d: 'days' };

function typeText(s: SchemaNode, sections: Map<string, Section>): string {
  if (s.const !== undefined) return code(JSON.stringify(s.const));
  const unit = (s as { [DURATION_KEYWORD]?: string })[DURATION_KEYWORD];
  if (unit !== undefined) return `${s.type}${range(s)} (${DURATION_UNITS[unit] ?? unit}), or a duration such as ${code(unit === 'd' ? '30d' : unit === 'ms' ? '500ms' : '15m')}`;
  if (s.anyOf) {
    if (s.anyOf.every((b) => b.const !== undefined)) return s.anyOf.map((b) => code(JSON.stringify(b.const))).join(' or ');
    return s.anyOf.map((b) => typeText(b, sections)).join(' or ');
  }
  if (s.oneOf) {
    const tag = s.discriminator?.propertyName;
    return `one of ${s.oneOf.map((b) => (tag ? `${typeText(b, sections).replace(/^\[[^\]]*\]/, `[${tag}: ${String(b.properties?.[tag]?.const)}]`)}` : typeText(b, sections))).join(', ')}`;
  }
  switch (s.type) {
    case 'string': {
      const base = s.format === 'uri' ? 'URI' : s.minLength === 1 ? 'non-empty string' : 'string';
      const hint = s.pattern !== undefined ? (PATTERN_HINTS[s.pattern] ?? `matching ${code(s.pattern)}`) : undefined;
      return hint ? `${base}: ${hint}` : base;
    }
    case 'integer':
    case 'number':
      return `${s.type}${range(s)}`;
    case 'boolean':
      return 'boolean';
    case 'array': {
      const qualifiers = [s.minItems && s.minItems > 0 ? 'non-empty' : '', s.uniqueItems ? 'unique' : ''].filter(Boolean).join(', ');
      return `${qualifiers ? `${qualifiers} ` : ''}list of ${s.items ? typeText(s.items, sections) : 'values'}`;
    }
    case 'object': {
      const section = sections.get(identity(s));
      if (section) return `[${section.title === 'Top level' ? 'object' : section.title}](#${section.anchor})`;
      if (s.patternProperties)
        return `map of name → ${Object.values(s.patternProperties)
          .map((v) => typeText(v, sections))
          .join(' or ')}`;
      return 'object';
    }
    default:
      return 'any JSON value';
  }
}

function defaultText(s: SchemaNode, required: boolean): string {
  if (hasDefault(s)) return code(JSON.stringify(s.default));
  return required ? '**required**' : '—';
}

function renderSection(section: Section, sections: Map<string, Section>): string {
  const lines: string[] = [];
  lines.push(`<a id="${section.anchor}"></a>`, '', `### ${section.title}`, '');
  if (section.node.description) lines.push(section.node.description, '');
  const usedBy = section.usedBy.filter((u) => u !== '');
  if (usedBy.length > 1 || (usedBy.length === 1 && usedBy[0] !== section.title)) lines.push(`Used at: ${usedBy.map(code).join(', ')}.`, '');
  lines.push('| key | type | default | description |', '|---|---|---|---|');
  const required = new Set(section.node.required ?? []);
  for (const [name, prop] of Object.entries(section.node.properties ?? {})) {
    lines.push(`| ${code(name)} | ${cell(typeText(prop, sections))} | ${cell(defaultText(prop, required.has(name)))} | ${cell(prop.description ?? '')} |`);
  }
  lines.push('');
  return lines.join('\n');
}

/** The generated reference: Markdown, one table per object, in document order. */
export function renderConfigurationDoc(): string {
  const root = plain(LeashConfig);
  const sections = collectSections(root);
  const parts = [
    '## Reference',
    '',
    'Generated from `src/config/schema.ts`. **required** marks keys without a default; `—` marks optional keys without a default.',
    '',
    ...[...sections.values()].map((s) => renderSection(s, sections)),
  ];
  return `${parts.join('\n').trimEnd()}\n`;
}

/** Replace the generated section of `doc` (between the markers) with the current rendering. */
export function replaceGeneratedSection(doc: string): string {
  const generated = `${GENERATED_START}\n\n${renderConfigurationDoc()}\n${GENERATED_END}`;
  const start = doc.indexOf(GENERATED_START);
  const end = doc.indexOf(GENERATED_END);
  if (start === -1 || end === -1 || end < start) return `${doc.trimEnd()}${doc.trim() ? '\n\n' : ''}${generated}\n`;
  return `${doc.slice(0, start)}${generated}${doc.slice(end + GENERATED_END.length)}`;
}

/** The generated section as it stands in a committed doc, or undefined when the markers are missing. */
export function extractGeneratedSection(doc: string): string | undefined {
  const start = doc.indexOf(GENERATED_START);
  const end = doc.indexOf(GENERATED_END);
  if (start === -1 || end === -1 || end < start) return undefined;
  return doc.slice(start + GENERATED_START.length, end).trim();
}

/** `leash docs --out <path>`: rewrite only the generated section, keeping the hand-written intro. */
export async function writeConfigurationDoc(path: string): Promise<void> {
  let doc: string;
  try {
    doc = await readFile(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    doc = '# Configuration\n';
  }
  await writeFile(path, replaceGeneratedSection(doc));
}
