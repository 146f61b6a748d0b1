// Jest runs tests in a vm context whose `Object` differs from the one the host's
// structuredClone returns; oidc-provider checks `constructor === Object` on cloned client
// metadata and then rejects every client (jest issues #14011, #14074). Rebuilding plain
// objects and arrays in this realm keeps the check true; other values pass through.
const hostClone = globalThis.structuredClone;

function toThisRealm(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(toThisRealm);
  if (value !== null && typeof value === 'object') {
    const proto = Object.getPrototypeOf(value);
    if (proto === null || proto.constructor?.name === 'Object') {
      const out: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(value)) out[k] = toThisRealm(v);
      return out;
    }
  }
  return value;
}

globalThis.structuredClone = ((value: unknown, options?: Parameters<typeof structuredClone>[1]) => toThisRealm(hostClone(value, options))) as typeof structuredClone;
