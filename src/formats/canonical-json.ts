/**
 * JSON with object keys sorted recursively (UTF-16 code-unit order, as RFC 8785 sorts), so
 * the order in which code happened to build an event never changes its hash. Otherwise it
 * follows JSON.stringify exactly (toJSON, undefined members dropped, undefined in arrays and
 * non-finite numbers become null), so what is hashed is what a JSON store gives back.
 * A value JSON cannot carry (bigint, a cycle) is a programming error: TypeError.
 */
export function canonicalJson(value: unknown): string {
  const out = serialise(value, new Set());
  if (out === undefined) throw new TypeError('canonicalJson: the value has no JSON form');
  return out;
}

function serialise(value: unknown, seen: Set<object>): string | undefined {
  if (value !== null && typeof value === 'object' && typeof (value as { toJSON?: unknown }).toJSON === 'function') {
    value = (value as { toJSON: () => unknown }).toJSON();
  }
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return JSON.stringify(value);
    case 'number':
      return Number.isFinite(value) ? JSON.stringify(value) : 'null';
    case 'bigint':
      throw new TypeError('canonicalJson: bigint has no JSON form; convert it to a string or number');
    case 'undefined':
    case 'function':
    case 'symbol':
      return undefined;
    case 'object':
      break; // below
  }
  if (value === null) return 'null';
  const obj = value as object;
  if (seen.has(obj)) throw new TypeError('canonicalJson: cyclic structure');
  seen.add(obj);
  let out: string;
  if (Array.isArray(obj)) {
    out = '[';
    for (let i = 0; i < obj.length; i++) out += (i === 0 ? '' : ',') + (serialise(obj[i], seen) ?? 'null');
    out += ']';
  } else {
    const rec = obj as Record<string, unknown>;
    out = '{';
    for (const key of Object.keys(rec).sort()) {
      const v = serialise(rec[key], seen);
      if (v !== undefined) out += (out.length === 1 ? '' : ',') + JSON.stringify(key) + ':' + v;
    }
    out += '}';
  }
  seen.delete(obj);
  return out;
}
