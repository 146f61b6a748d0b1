import type { ConfigProblem } from './config-error.js';
import { DURATION_KEYWORD, parseDuration, type DurationUnit } from './duration.js';
import { fitsType, type SchemaNode } from './schema-text.js';

/**
 * The written forms the schema does not spell out, turned into the values it checks: a
 * duration (`15m`) becomes the integer of its setting's unit, and a string that came from
 * the environment (`${VAR}` or a LEASH_* override: the environment only has strings)
 * becomes the integer or boolean the schema expects at its path. Walks the value beside
 * its schema, in place; what it cannot convert stays as written and is reported here (the
 * caller drops the schema's own complaint at that path).
 */

type Node = SchemaNode & {
  readonly [DURATION_KEYWORD]?: DurationUnit;
};

const escapeKey = (key: string) => key.replace(/~/g, '~0').replace(/\//g, '~1');
const isRecord = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

/** The branch of a union the value belongs to: by the discriminator, else the one branch of its JSON type. */
function branchOf(node: Node, value: unknown): Node | undefined {
  if (node.oneOf && node.discriminator) {
    const tag = node.discriminator.propertyName;
    return isRecord(value) ? node.oneOf.find((b) => b.properties?.[tag]?.const === value[tag]) : undefined;
  }
  const branches = node.anyOf ?? node.oneOf;
  if (!branches) return undefined;
  const fitting = branches.filter((b) => fitsType(b, value));
  return fitting.length === 1 ? fitting[0] : undefined;
}

export function normalizeValues(root: unknown, schema: SchemaNode, fromEnv: ReadonlySet<string> = new Set()): { value: unknown; problems: ConfigProblem[] } {
  const problems: ConfigProblem[] = [];

  const walk = (value: unknown, node: Node, path: string): unknown => {
    const unit = node[DURATION_KEYWORD];
    if (typeof value === 'string') {
      const env = fromEnv.has(path);
      if (unit !== undefined) {
        if (env && /^[0-9]+$/.test(value)) return Number(value);
        const parsed = parseDuration(value, unit);
        if ('value' in parsed) return parsed.value;
        // A value from the environment may be a secret: never echo it (the loader names the variable).
        problems.push({ path, message: env ? parsed.error.replace(/ \((not )?'[^']*'( is not)?\)$/, '') : parsed.error });
        return value;
      }
      if (env && (node.type === 'integer' || node.type === 'number') && /^-?[0-9]+(\.[0-9]+)?$/.test(value)) return Number(value);
      if (env && node.type === 'boolean' && (value === 'true' || value === 'false')) return value === 'true';
      return value;
    }
    const branch = node.anyOf || node.oneOf ? branchOf(node, value) : undefined;
    if (branch) return walk(value, branch, path);
    if (Array.isArray(value) && node.items) {
      value.forEach((item, i) => (value[i] = walk(item, node.items as Node, `${path}/${i}`)));
      return value;
    }
    if (isRecord(value) && node.type === 'object') {
      for (const [key, item] of Object.entries(value)) {
        const child = node.properties?.[key] ?? Object.entries(node.patternProperties ?? {}).find(([pattern]) => new RegExp(pattern, 'u').test(key))?.[1];
        if (child) value[key] = walk(item, child, `${path}/${escapeKey(key)}`);
      }
    }
    return value;
  };

  const value = walk(root, schema, '');
  return { value, problems };
}
