import { mkdir, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { LeashConfig } from './schema.js';
import { DURATION_KEYWORD, DURATION_PATTERN } from './duration.js';

/**
 * The JSON Schema of the config file for editors (VS Code YAML, JetBrains), generated from
 * the TypeBox schema so it cannot drift. Dialect: JSON Schema draft-07, the one editors
 * support best; TypeBox emits nothing newer than draft-07 keywords for this schema.
 *
 * Keys with a default are dropped from `required`: the loader fills them in, so an editor
 * must not flag their absence. A trusted issuer is a `oneOf` with one branch per `kind`. A
 * duration setting is `anyOf` its integer or a duration string (`15m`, `1h`). "Exactly one of" and cross-reference rules are checked by
 * the loader only (`leash validate`), as the schema cannot express them.
 */

/** A URN rather than a URL: the project has no domain of its own to publish the schema under yet. */
export const CONFIG_SCHEMA_ID = 'urn:leash:schema:config:v1';
export const CONFIG_SCHEMA_DIALECT = 'http://json-schema.org/draft-07/schema#';

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

function withOptionalDefaults(node: Json): Json {
  if (Array.isArray(node)) return node.map(withOptionalDefaults);
  if (node === null || typeof node !== 'object') return node;
  const out: { [key: string]: Json } = {};
  // `discriminator` is ajv's (OpenAPI's) keyword, not draft-07's: the loader uses it to pick
  // the branch; in the editor schema the `const` of each branch's tag does the same.
  for (const [k, v] of Object.entries(node)) if (k !== 'discriminator') out[k] = withOptionalDefaults(v);
  // A duration setting: its integer, or the written form the loader converts (`15m`).
  if (DURATION_KEYWORD in out) {
    const { [DURATION_KEYWORD]: _unit, description, default: dflt, ...integer } = out;
    return {
      ...(description !== undefined ? { description } : {}),
      ...(dflt !== undefined ? { default: dflt } : {}),
      anyOf: [integer, { type: 'string', pattern: DURATION_PATTERN }],
    };
  }
  const props = out.properties;
  if (Array.isArray(out.required) && props !== null && typeof props === 'object' && !Array.isArray(props)) {
    const required = out.required.filter((name) => {
      const prop = typeof name === 'string' ? props[name] : undefined;
      return !(prop !== null && typeof prop === 'object' && !Array.isArray(prop) && 'default' in prop);
    });
    if (required.length > 0) out.required = required;
    else delete out.required;
  }
  return out;
}

/** The config JSON Schema (draft-07), plain JSON: TypeBox's symbol keys are gone. */
export function configJsonSchema(): Record<string, unknown> {
  // JSON round trip drops TypeBox's symbol-keyed metadata (Kind, Optional).
  const plain = JSON.parse(JSON.stringify(LeashConfig)) as { [key: string]: Json };
  const body = withOptionalDefaults(plain) as { [key: string]: Json };
  return { $schema: CONFIG_SCHEMA_DIALECT, $id: CONFIG_SCHEMA_ID, ...body };
}

/** The exact bytes of schemas/leash-config.schema.json. */
export function renderJsonSchema(): string {
  return `${JSON.stringify(configJsonSchema(), null, 2)}\n`;
}

/** `leash schema --out <path>`. */
export async function writeJsonSchema(path: string): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, renderJsonSchema());
}
