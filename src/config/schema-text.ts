import { DURATION_PATTERN } from './duration.js';

/**
 * Human wording for schema constraints, shared by the loader's error messages and the
 * generated reference doc, so both say the same thing. A test checks that every `pattern`
 * in the schema has a hint here: a regex is not an explanation.
 */

/** Noun phrases completing "must be ..." for each pattern used in schema.ts. */
export const PATTERN_HINTS: Readonly<Record<string, string>> = {
  '^[A-Za-z0-9_./*-]{1,128}$': 'an MCP tool name or glob: 1-128 characters of A-Z, a-z, 0-9, `_`, `.`, `/`, `-`, `*`',
  '^[A-Za-z0-9_.-]{1,64}$': 'an argument name: 1-64 characters of A-Z, a-z, 0-9, `_`, `.`, `-`',
  '^[a-z0-9][a-z0-9._-]{0,62}$': 'an identifier: 1-63 characters of a-z, 0-9, `.`, `_`, `-`, starting with a letter or digit',
  '^[0-9a-f]{64}$': '64 lowercase hex characters (a SHA-256 digest)',
  '^https?://[^?#]+[^/?#]$': 'an http(s) URL without query, fragment or trailing slash',
  '^[\\x21\\x23-\\x5B\\x5D-\\x7E]+$': 'a scope token: printable ASCII without spaces, `"` or `\\`',
  '^openid( [\\x21\\x23-\\x5B\\x5D-\\x7E]+)*$': '`openid`, then more scope tokens separated by one space',
  '^(workload|task|request)\\.[A-Za-z0-9_./:-]+$': '`workload.<name>`, `task.<name>` or `request.<name>`',
  '^([01][0-9]|2[0-3]):[0-5][0-9]$': 'a UTC time `HH:MM` from `00:00` to `23:59`',
  '^([01][0-9]|2[0-4]):[0-5][0-9]$': 'a UTC time `HH:MM` from `00:01` to `24:00`',
  '^rediss?://': 'a `redis://` or `rediss://` URL',
  '^[a-z]{2}(-[a-z]+)+-[0-9]$': 'an AWS region such as `us-east-1`',
  '^arn:aws[a-z-]*:iam::[0-9]{12}:role/[A-Za-z0-9+=,.@_/-]{1,512}$': 'an IAM role ARN `arn:aws:iam::<12-digit account>:role/<path/name>`',
  '^[a-z0-9-]+:[A-Za-z0-9*]+$': 'an IAM action `service:Action` (`*` allowed in the action)',
  '^(\\*|arn:aws[a-z-]*:[^\\s]+)$': '`*` or a resource ARN',
  '^[A-Za-z0-9:_-]{1,64}$': '1-64 characters of A-Z, a-z, 0-9, `:`, `_`, `-`',
  '^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$': 'a Vault mount or path: segments of A-Z, a-z, 0-9, `_`, `-` separated by `/`, no leading or trailing `/`',
  '^[A-Za-z0-9_.-]+$': 'a name of A-Z, a-z, 0-9, `.`, `_`, `-`',
  '^https?://[^?#]+$': 'an http(s) URL without query or fragment',
  '^[A-Z_][A-Z0-9_]*$': 'an environment variable name (A-Z, 0-9, `_`, not starting with a digit)',
  '^[A-Za-z0-9-]+$': 'an HTTP header name (letters, digits, `-`)',
  '^[0-9A-Fa-f.:]+(/[0-9]{1,3})?$': 'an IPv4 or IPv6 address, or a CIDR range such as `10.0.0.0/8`',
  '^[A-Za-z0-9_-]+(/[A-Za-z0-9_.@-]+)+$': 'a Vault API path with a mount and at least one more segment, e.g. `database/creds/readonly`',
  '^[0-9]{4}-[0-9]{2}-[0-9]{2}(T[0-9]{2}:[0-9]{2}(:[0-9]{2}(\\.[0-9]+)?)?(Z|[+-][0-9]{2}:[0-9]{2}))?$': 'a UTC day `YYYY-MM-DD` or an RFC 3339 date-time with a zone (`2027-01-31T12:00:00Z`)',
  '^[\\x21-\\x7e]{1,48}$': '1-48 printable ASCII characters, no spaces (an RFC 5424 APP-NAME)',
  [DURATION_PATTERN]: 'a duration: whole numbers with a unit, `ms`, `s`, `m`, `h` or `d` (`30s`, `15m`, `1h30m`, `1d`)',
};

/** A JSON Schema node as TypeBox emits it; only the members we read. */
export interface SchemaNode {
  readonly type?: string;
  readonly const?: unknown;
  readonly anyOf?: readonly SchemaNode[];
  /** A union discriminated on a key (`discriminator.propertyName`): one branch per value of that key. */
  readonly oneOf?: readonly SchemaNode[];
  readonly discriminator?: { readonly propertyName: string };
  readonly title?: string;
  readonly items?: SchemaNode;
  readonly properties?: Readonly<Record<string, SchemaNode>>;
  readonly patternProperties?: Readonly<Record<string, SchemaNode>>;
  readonly required?: readonly string[];
  readonly default?: unknown;
  readonly description?: string;
  readonly pattern?: string;
  readonly format?: string;
  readonly minimum?: number;
  readonly maximum?: number;
  readonly minItems?: number;
  readonly minLength?: number;
  readonly uniqueItems?: boolean;
}

const ARTICLE: Readonly<Record<string, string>> = {
  string: 'a string',
  integer: 'an integer',
  number: 'a number',
  boolean: 'true or false',
  array: 'a list',
  object: 'an object',
  null: 'null',
};

/** "a string", "a list of strings", "{equals|glob}", "'jwt'": a short phrase for one schema. */
export function describeSchema(s: SchemaNode): string {
  if (s.const !== undefined) return JSON.stringify(s.const);
  if (s.anyOf) return describeAlternatives(s.anyOf);
  if (s.oneOf) return describeAlternatives(s.oneOf);
  if (s.type === 'array') {
    const item = s.items ? describeSchema(s.items) : undefined;
    return item?.startsWith('a ') ? `a list of ${item.slice(2)}s` : item ? `a list of ${item}` : 'a list';
  }
  if (s.type === 'object' && s.properties) return `{${Object.keys(s.properties).join('|')}}`;
  return (s.type && ARTICLE[s.type]) ?? 'a value';
}

/** One phrase for a union: "one of \"a\", \"b\"" for literals, else "x or y". */
export function describeAlternatives(branches: readonly SchemaNode[]): string {
  if (branches.every((b) => b.const !== undefined)) return `one of ${branches.map((b) => JSON.stringify(b.const)).join(', ')}`;
  const parts = branches.map(describeSchema);
  return parts.length <= 2 ? parts.join(' or ') : `${parts.slice(0, -1).join(', ')} or ${parts[parts.length - 1]}`;
}

/** JSON type of a parsed value, in JSON Schema's words. */
export function jsonType(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'number';
  return typeof v;
}

/** Could `v` be meant for this branch (same JSON type)? Used to pick the branch to blame. */
export function fitsType(s: SchemaNode, v: unknown): boolean {
  const t = jsonType(v);
  if (s.const !== undefined) return jsonType(s.const) === t || (t === 'integer' && jsonType(s.const) === 'number');
  if (s.anyOf) return s.anyOf.some((b) => fitsType(b, v));
  if (s.oneOf) return s.oneOf.some((b) => fitsType(b, v));
  if (s.type === undefined) return true;
  if (s.type === 'number') return t === 'number' || t === 'integer';
  if (s.type === 'integer') return t === 'integer' || t === 'number';
  return s.type === t;
}
