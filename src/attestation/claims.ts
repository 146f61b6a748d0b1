import { LeashError } from '../errors/leash-error.js';
import type { JsonObject } from './verify-jwt.js';

/** A claim's own value: never one inherited from Object.prototype (`constructor`, `__proto__`...). */
export function own(container: JsonObject, key: string): unknown {
  return Object.hasOwn(container, key) ? container[key] : undefined;
}

/** A claim that must be a non-empty string: absent → CLAIM_MISSING, anything else → CLAIM_INVALID. */
export function requiredString(container: JsonObject, key: string, name: string = key): string {
  const value = own(container, key);
  if (value === undefined || value === null) throw new LeashError('ERR_ATTESTATION_CLAIM_MISSING', `the attestation has no '${name}' claim`, { claim: name });
  if (typeof value !== 'string' || value.length === 0) throw new LeashError('ERR_ATTESTATION_CLAIM_INVALID', `the attestation's '${name}' claim must be a non-empty string`, { claim: name });
  return value;
}

/** A nested claim object: absent → CLAIM_MISSING (or undefined when optional), not an object → CLAIM_INVALID. */
export function claimObject(container: JsonObject, key: string, name: string, optional: true): JsonObject | undefined;
export function claimObject(container: JsonObject, key: string, name: string, optional?: false): JsonObject;
export function claimObject(container: JsonObject, key: string, name: string, optional = false): JsonObject | undefined {
  const value = own(container, key);
  if (value === undefined || value === null) {
    if (optional) return undefined;
    throw new LeashError('ERR_ATTESTATION_CLAIM_MISSING', `the attestation has no '${name}' claim`, { claim: name });
  }
  if (typeof value !== 'object' || Array.isArray(value)) throw new LeashError('ERR_ATTESTATION_CLAIM_INVALID', `the attestation's '${name}' claim must be an object`, { claim: name });
  return value as JsonObject;
}

/**
 * A claim as an attribute value: strings as they are, numbers and booleans stringified,
 * absent or null → undefined; objects and arrays cannot be matched as strings → CLAIM_INVALID.
 */
export function scalarAttribute(container: JsonObject, key: string): string | undefined {
  const value = own(container, key);
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  throw new LeashError('ERR_ATTESTATION_CLAIM_INVALID', `the attestation's '${key}' claim must be a string, number or boolean`, { claim: key });
}

/** Copy the listed claims that are present, as strings. */
export function copyAttributes(payload: JsonObject, claims: readonly string[]): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (const claim of claims) {
    const value = scalarAttribute(payload, claim);
    if (value !== undefined) out.push([claim, value]);
  }
  return out;
}
