import { describe, expect, it } from '@jest/globals';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Ajv } from 'ajv';
import { parse } from 'yaml';
import { CONFIG_SCHEMA_DIALECT, CONFIG_SCHEMA_ID, configJsonSchema, renderJsonSchema, writeJsonSchema } from '../../src/config/json-schema.js';
import { LeashConfig } from '../../src/config/schema.js';
import { PATTERN_HINTS } from '../../src/config/schema-text.js';
import { minimalConfig } from './fixtures.js';

function editorValidator() {
  // What an editor does: a plain draft-07 validator, no defaults filled in.
  const ajv = new Ajv({ allErrors: true, strict: true });
  ajv.addFormat('uri', { type: 'string', validate: (s: string) => URL.canParse(s) });
  return ajv.compile(configJsonSchema());
}

function walk(node: unknown, visit: (n: Record<string, unknown>) => void): void {
  if (Array.isArray(node)) node.forEach((n) => walk(n, visit));
  else if (node !== null && typeof node === 'object') {
    visit(node as Record<string, unknown>);
    Object.values(node).forEach((n) => walk(n, visit));
  }
}

describe('config JSON Schema', () => {
  it('the committed schemas/leash-config.schema.json is exactly what the generator writes (run `npm run schema` after changing schema.ts)', async () => {
    expect(await readFile('schemas/leash-config.schema.json', 'utf8')).toBe(renderJsonSchema());
  });

  it('is draft-07 with an $id, and carries no TypeBox symbols', () => {
    const schema = configJsonSchema();
    expect(schema.$schema).toBe(CONFIG_SCHEMA_DIALECT);
    expect(schema.$schema).toBe('http://json-schema.org/draft-07/schema#');
    expect(schema.$id).toBe(CONFIG_SCHEMA_ID);
    let symbols = 0;
    walk(schema, (n) => (symbols += Object.getOwnPropertySymbols(n).length));
    expect(symbols).toBe(0);
    expect(Object.getOwnPropertySymbols(LeashConfig).length).toBeGreaterThan(0);
  });

  it('never marks a key with a default as required, so editors accept configs that rely on defaults', () => {
    let checked = 0;
    walk(configJsonSchema(), (n) => {
      const props = n.properties as Record<string, Record<string, unknown>> | undefined;
      for (const key of (n.required as string[] | undefined) ?? []) {
        checked++;
        expect([key, props?.[key] && 'default' in props[key]]).toEqual([key, false]);
      }
    });
    expect(checked).toBeGreaterThan(10);
  });

  it('accepts the demo config and a minimal config as written, and rejects an unknown key, in a plain draft-07 validator', async () => {
    const validate = editorValidator();
    expect(validate(parse(await readFile('config/demo.yaml', 'utf8')))).toBe(true);
    expect(validate(minimalConfig())).toBe(true);
    expect(validate({ ...minimalConfig(), setings: {} })).toBe(false);
  });

  it('has a human hint for every pattern it uses', () => {
    const patterns = new Set<string>();
    walk(configJsonSchema(), (n) => {
      if (typeof n.pattern === 'string') patterns.add(n.pattern);
    });
    expect(patterns.size).toBeGreaterThan(3);
    expect([...patterns].filter((p) => !(p in PATTERN_HINTS))).toEqual([]);
  });

  it('writeJsonSchema writes the rendered schema (creating the folder)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'leash-schema-'));
    try {
      const out = join(dir, 'nested', 'leash.schema.json');
      await writeJsonSchema(out);
      expect(JSON.parse(await readFile(out, 'utf8'))).toEqual(configJsonSchema());
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
