import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import type { ConfigProblem } from './config-error.js';
import { LeashConfig } from './schema.js';
import { PATTERN_HINTS, describeAlternatives, fitsType, type SchemaNode } from './schema-text.js';
import { issuerKeyMessage, issuerRequiredMessage } from './kind-rules.js';
import { DURATION_KEYWORD } from './duration.js';

/**
 * Schema validation of a parsed config with ajv, translated into problems a person can act
 * on: one message per union instead of one per branch, unknown keys named, JSON-pointer
 * paths. Fills in the schema's defaults in place (the caller passes a private copy).
 */

/** `format: uri` without pulling in ajv-formats: an absolute URL with a scheme. */
function isUri(value: string): boolean {
  if (!/^[A-Za-z][A-Za-z0-9+.-]*:[^\s]*$/.test(value)) return false;
  try {
    new URL(value);
    return true;
  } catch {
    return false;
  }
}

/**
 * The ajv every config schema (the config, the guardrails file) is compiled with. verbose:
 * errors carry the schema and data, which the translation below needs; discriminator: a
 * trusted issuer's `kind` picks its sub-schema.
 */
export function configAjv(): Ajv {
  const ajv = new Ajv({ allErrors: true, useDefaults: true, verbose: true, strict: true, discriminator: true });
  ajv.addFormat('uri', { type: 'string', validate: isUri });
  // An annotation: written durations are converted before validation (config/conventions.ts).
  ajv.addKeyword({ keyword: DURATION_KEYWORD, schemaType: 'string' });
  return ajv;
}

let compiled: ValidateFunction | undefined;

function validator(): ValidateFunction {
  compiled ??= configAjv().compile(LeashConfig);
  return compiled;
}

/** Validate `data` against the schema, filling defaults in place; return every problem. */
export function schemaProblems(data: unknown): ConfigProblem[] {
  const validate = validator();
  if (validate(data)) return [];
  return translateErrors(validate.errors ?? []);
}

const escapeKey = (key: string) => key.replace(/~/g, '~0').replace(/\//g, '~1');

function plural(n: number, one: string): string {
  return `${n} ${one}${n === 1 ? '' : 's'}`;
}

/**
 * For each failed union, keep the errors of the one branch whose JSON type matches the
 * value (a `{glob: 1}` subject is blamed on `/subject/glob`); when no single branch fits,
 * replace all branch errors by one "must be X or Y". Outer unions are handled first so an
 * inner union inside a discarded branch disappears with it.
 */
function collapseUnions(errors: readonly ErrorObject[]): ErrorObject[] {
  const dropped = new Set<ErrorObject>();
  const unions = errors.filter((e) => e.keyword === 'anyOf').sort((a, b) => a.schemaPath.length - b.schemaPath.length);
  for (const union of unions) {
    if (dropped.has(union)) continue;
    const branches = union.schema as readonly SchemaNode[];
    const fitting = branches.flatMap((b, i) => (fitsType(b, union.data) ? [i] : []));
    const keep = fitting.length === 1 && !branches.every((b) => b.const !== undefined) ? `${union.schemaPath}/${fitting[0]}/` : undefined;
    for (const e of errors) {
      // schemaPath alone is shared by every array item using this union: match the value too.
      const inside = e.instancePath === union.instancePath || e.instancePath.startsWith(`${union.instancePath}/`);
      if (inside && e.schemaPath.startsWith(`${union.schemaPath}/`) && !(keep && e.schemaPath.startsWith(keep))) dropped.add(e);
    }
    if (keep) dropped.add(union);
  }
  return errors.filter((e) => !dropped.has(e));
}

/** The value of the discriminating `kind` when `schema` is one branch of a trusted-issuer union (schema.ts). */
function issuerVariantKind(schema: SchemaNode | undefined): string | undefined {
  const kind = schema?.properties?.kind?.const;
  return typeof kind === 'string' && schema?.title === `Trusted issuer: ${kind}` ? kind : undefined;
}

/** The discriminator's values, from its branches' `const`s. */
function discriminatorValues(e: ErrorObject): string {
  const tag = String((e.params as { tag?: unknown }).tag);
  const branches = (e.parentSchema as SchemaNode | undefined)?.oneOf ?? [];
  return describeAlternatives(branches.map((b) => ({ const: b.properties?.[tag]?.const })));
}

function problemOf(e: ErrorObject): ConfigProblem {
  const at = e.instancePath;
  const p = e.params as Record<string, unknown>;
  const variantKind = issuerVariantKind(e.parentSchema as SchemaNode | undefined);
  switch (e.keyword) {
    case 'discriminator': {
      // `mapping`: a value no branch has; `tag`: absent or not a string.
      const tag = String(p.tag);
      const absent = p.error === 'tag' && (e.data === null || typeof e.data !== 'object' || !Object.hasOwn(e.data, tag));
      return { path: `${at}/${escapeKey(tag)}`, message: absent ? 'is required' : `must be ${discriminatorValues(e)}` };
    }
    case 'additionalProperties': {
      const key = String(p.additionalProperty);
      if (variantKind !== undefined) return { path: `${at}/${escapeKey(key)}`, message: issuerKeyMessage(variantKind, key) };
      const allowed = Object.keys((e.parentSchema as SchemaNode | undefined)?.properties ?? {});
      return { path: `${at}/${escapeKey(key)}`, message: `unknown key '${key}'${allowed.length ? ` (allowed: ${allowed.join(', ')})` : ''}` };
    }
    case 'required': {
      const key = String(p.missingProperty);
      return { path: `${at}/${escapeKey(key)}`, message: variantKind !== undefined ? issuerRequiredMessage(variantKind, key) : 'is required' };
    }
    case 'anyOf':
      return { path: at, message: `must be ${describeAlternatives(e.schema as readonly SchemaNode[])}` };
    case 'type':
      return { path: at, message: `must be ${describeAlternatives([{ type: String(p.type) }])}` };
    case 'const':
      return { path: at, message: `must be ${JSON.stringify(p.allowedValue)}` };
    case 'enum':
      return { path: at, message: `must be one of ${(p.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')}` };
    case 'pattern': {
      const hint = PATTERN_HINTS[String(p.pattern)];
      return { path: at, message: hint ? `must be ${hint}` : `must match the pattern ${String(p.pattern)}` };
    }
    case 'format':
      return { path: at, message: p.format === 'uri' ? 'must be an absolute URI (scheme:...)' : `must be a valid ${String(p.format)}` };
    case 'minimum':
    case 'maximum':
    case 'exclusiveMinimum':
    case 'exclusiveMaximum':
      return { path: at, message: `must be ${String(p.comparison)} ${String(p.limit)}` };
    case 'minLength':
      return { path: at, message: p.limit === 1 ? 'must not be empty' : `must be at least ${plural(Number(p.limit), 'character')}` };
    case 'maxLength':
      return { path: at, message: `must be at most ${plural(Number(p.limit), 'character')}` };
    case 'minItems':
      return { path: at, message: p.limit === 1 ? 'must have at least one item' : `must have at least ${plural(Number(p.limit), 'item')}` };
    case 'maxItems':
      return { path: at, message: `must have at most ${plural(Number(p.limit), 'item')}` };
    case 'uniqueItems':
      return { path: at, message: `must not repeat an item (items ${String(p.j)} and ${String(p.i)} are the same)` };
    default:
      return { path: at, message: e.message ?? `fails ${e.keyword}` };
  }
}

export function translateErrors(errors: readonly ErrorObject[]): ConfigProblem[] {
  const seen = new Set<string>();
  const problems: ConfigProblem[] = [];
  for (const e of collapseUnions(errors)) {
    const problem = problemOf(e);
    const key = `${problem.path}\u0000${problem.message}`;
    if (seen.has(key)) continue;
    seen.add(key);
    problems.push(problem);
  }
  return problems;
}
