/**
 * Member names that hold a credential, compared after lower-casing and dropping `_`, `-`
 * and `.`, so `subject_token`, `subjectToken` and `Subject-Token` all match. Exact names,
 * not substrings: `subject_token_sha256` (a digest, which is what events should carry) is
 * left alone.
 */
const SECRET_NAMES: ReadonlySet<string> = new Set([
  'subjecttoken',
  'actortoken',
  'accesstoken',
  'refreshtoken',
  'idtoken',
  'token',
  'secret',
  'password',
  'passwd',
  'clientsecret',
  'clientassertion',
  'apikey',
  'authorization',
  'privatekey',
  'sessiontoken',
  'secretaccesskey',
]);

export const REDACTED = '[redacted]';

/** A compact JWS/JWE anywhere in a string: header `eyJ…` then two to four more segments. */
const JWT_IN_TEXT = /eyJ[A-Za-z0-9_-]{2,}(?:\.[A-Za-z0-9_-]*){2,4}/g;

const MAX_DEPTH = 16;

export function isSecretName(name: string): boolean {
  // Events reuse a small set of member names: remember the answer (bounded, names are short).
  let known = NAME_VERDICTS.get(name);
  if (known === undefined) {
    known = SECRET_NAMES.has(name.toLowerCase().replace(/[-_.]/g, ''));
    if (name.length <= 64) {
      if (NAME_VERDICTS.size >= 4096) NAME_VERDICTS.clear();
      NAME_VERDICTS.set(name, known);
    }
  }
  return known;
}

const NAME_VERDICTS = new Map<string, boolean>();

/**
 * A copy of `event` with credential-named members and JWT-looking text replaced, and the
 * paths that were touched (empty when the event was clean).
 */
export function scrubSecrets(event: Readonly<Record<string, unknown>>): { value: Record<string, unknown>; paths: string[] } {
  const paths: string[] = [];
  const value = scrubObject(event, '', paths, 0);
  return { value, paths };
}

function scrubObject(obj: Readonly<Record<string, unknown>>, prefix: string, paths: string[], depth: number): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, v] of Object.entries(obj)) {
    const path = prefix === '' ? key : `${prefix}.${key}`;
    if (v !== undefined && v !== null && isSecretName(key)) {
      out[key] = REDACTED;
      paths.push(path);
    } else {
      out[key] = scrubValue(v, path, paths, depth + 1);
    }
  }
  return out;
}

function scrubValue(v: unknown, path: string, paths: string[], depth: number): unknown {
  if (typeof v === 'string') {
    if (!v.includes('eyJ')) return v; // cheap pre-check: almost every string is clean
    JWT_IN_TEXT.lastIndex = 0;
    if (!JWT_IN_TEXT.test(v)) return v;
    paths.push(path);
    return v.replace(JWT_IN_TEXT, '[redacted-jwt]');
  }
  if (v === null || typeof v !== 'object' || depth > MAX_DEPTH) return v;
  if (Array.isArray(v)) return v.map((item, i) => scrubValue(item, `${path}[${i}]`, paths, depth + 1));
  // Not a plain object (Date, Buffer…): it serialises itself; the realm-safe check matters under jest's vm.
  if (Object.prototype.toString.call(v) !== '[object Object]' || typeof (v as { toJSON?: unknown }).toJSON === 'function') return v;
  return scrubObject(v as Record<string, unknown>, path, paths, depth);
}
