import { readFileSync } from 'node:fs';

/**
 * Validates events against the vendored OCSF 1.8.0 subset (test/fixtures/ocsf): the four
 * classes Leash produces and the objects they use, extracted from the schema's own
 * class, object and dictionary files (see that folder's README).
 */

interface AttrSpec {
  readonly requirement: 'required' | 'recommended' | 'optional';
  readonly type: string;
  readonly is_array: boolean;
  readonly enum?: ReadonlyArray<number | string>;
}
interface Shape {
  readonly attributes: Readonly<Record<string, AttrSpec>>;
  readonly constraints: { readonly at_least_one?: readonly string[]; readonly just_one?: readonly string[] };
}
interface Subset {
  readonly source: { readonly repository: string; readonly tag: string; readonly commit: string };
  readonly classes: Readonly<Record<string, Shape & { readonly name: string; readonly category_uid: number }>>;
  readonly objects: Readonly<Record<string, Shape>>;
}

export const OCSF_SUBSET = JSON.parse(readFileSync('test/fixtures/ocsf/ocsf-1.8.0-subset.json', 'utf8')) as Subset;

const STRINGS = new Set([
  'string_t',
  'username_t',
  'hostname_t',
  'url_t',
  'uuid_t',
  'email_t',
  'file_name_t',
  'file_path_t',
  'resource_uid_t',
  'ip_t',
  'mac_t',
  'subnet_t',
  'datetime_t',
  'process_name_t',
  'file_hash_t',
  'bytestring_t',
]);
const INTEGERS = new Set(['integer_t', 'long_t', 'port_t', 'timestamp_t']);

function checkValue(path: string, spec: AttrSpec, value: unknown, problems: string[]): void {
  const one = (v: unknown, p: string) => {
    if (STRINGS.has(spec.type)) {
      if (typeof v !== 'string') problems.push(`${p}: expected a string (${spec.type})`);
    } else if (INTEGERS.has(spec.type)) {
      if (!Number.isSafeInteger(v)) problems.push(`${p}: expected an integer (${spec.type})`);
    } else if (spec.type === 'float_t') {
      if (typeof v !== 'number') problems.push(`${p}: expected a number`);
    } else if (spec.type === 'boolean_t') {
      if (typeof v !== 'boolean') problems.push(`${p}: expected a boolean`);
    } else if (spec.type === 'json_t' || spec.type === 'object') {
      // any JSON
    } else if (OCSF_SUBSET.objects[spec.type]) {
      checkObject(p, OCSF_SUBSET.objects[spec.type]!, v, problems);
    } else problems.push(`${p}: object type '${spec.type}' is not in the vendored subset`);
    if (spec.enum && typeof v === 'number' && !spec.enum.includes(v)) problems.push(`${p}: ${v} is not one of ${spec.enum.join(', ')}`);
  };
  if (spec.is_array) {
    if (!Array.isArray(value)) problems.push(`${path}: expected an array`);
    else value.forEach((v, i) => one(v, `${path}[${i}]`));
  } else one(value, path);
}

function checkShape(path: string, shape: Shape, obj: Record<string, unknown>, problems: string[]): void {
  for (const [name, spec] of Object.entries(shape.attributes)) {
    if (spec.requirement === 'required' && (obj[name] === undefined || obj[name] === null)) problems.push(`${path}.${name}: required`);
  }
  for (const [name, value] of Object.entries(obj)) {
    const spec = shape.attributes[name];
    if (!spec) {
      problems.push(`${path}.${name}: not an attribute of this class/object`);
      continue;
    }
    checkValue(`${path}.${name}`, spec, value, problems);
  }
  const c = shape.constraints;
  if (c.at_least_one && !c.at_least_one.some((n) => obj[n] !== undefined)) problems.push(`${path}: needs at least one of ${c.at_least_one.join(', ')}`);
  if (c.just_one && c.just_one.filter((n) => obj[n] !== undefined).length !== 1) problems.push(`${path}: needs exactly one of ${c.just_one.join(', ')}`);
}

function checkObject(path: string, shape: Shape, v: unknown, problems: string[]): void {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) {
    problems.push(`${path}: expected an object`);
    return;
  }
  checkShape(path, shape, v as Record<string, unknown>, problems);
}

/** Problems of one event; empty when it conforms. */
export function validateOcsf(event: Record<string, unknown>): string[] {
  const problems: string[] = [];
  const cls = OCSF_SUBSET.classes[String(event.class_uid)];
  if (!cls) return [`class_uid ${String(event.class_uid)} is not a vendored class`];
  if (event.category_uid !== cls.category_uid) problems.push(`category_uid must be ${cls.category_uid} for ${cls.name}`);
  if (event.type_uid !== (event.class_uid as number) * 100 + (event.activity_id as number)) problems.push('type_uid must be class_uid * 100 + activity_id');
  checkShape(cls.name, cls, event, problems);
  return problems;
}
