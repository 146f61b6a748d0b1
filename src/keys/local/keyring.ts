import { SIGNING_ALGORITHMS, type SigningAlgorithm } from '../../config/schema.js';
import type { KeyState } from '../key-manager.js';
import { LocalKeyError } from './key-files.js';

/**
 * `keyring.json`: which keys exist and what slot each is in. The next/current/retired
 * states are the rotation seam (SPIRE-style slots): rotation adds a `next` key that is
 * published before it signs, promotes it, and keeps the old one `retired` until every token
 * it signed has expired.
 */
export interface KeyringEntry {
  readonly kid: string;
  readonly alg: SigningAlgorithm;
  readonly state: KeyState;
  /** ISO-8601, for people reading the file. */
  readonly created_at: string;
}

export interface Keyring {
  readonly keys: readonly KeyringEntry[];
}

export const KEYRING_FILE = 'keyring.json';
export const KEY_STATES: readonly KeyState[] = ['next', 'current', 'retired'];
/** An RFC 7638 SHA-256 thumbprint, base64url: also keeps `<kid>.jwk.json` inside the folder. */
const KID = /^[A-Za-z0-9_-]{43}$/;
const ENTRY_MEMBERS = new Set(['kid', 'alg', 'state', 'created_at']);

export function keyFileName(kid: string): string {
  if (!KID.test(kid)) throw new TypeError('kid must be an RFC 7638 SHA-256 thumbprint');
  return `${kid}.jwk.json`;
}

/** Parses and checks the keyring, listing every problem at once with its position. */
export function parseKeyring(file: string, text: string): Keyring {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new LocalKeyError(file, `'${file}' is not valid JSON`, { cause: err });
  }
  const problems: string[] = [];
  const keys: KeyringEntry[] = [];
  if (!isObject(doc) || !Array.isArray(doc.keys)) {
    throw new LocalKeyError(file, `'${file}' must be an object with a 'keys' array`);
  }
  const seen = new Set<string>();
  doc.keys.forEach((raw: unknown, i: number) => {
    const at = `keys[${i}]`;
    if (!isObject(raw)) {
      problems.push(`${at}: must be an object`);
      return;
    }
    for (const m of Object.keys(raw)) if (!ENTRY_MEMBERS.has(m)) problems.push(`${at}: unknown member '${m}'`);
    const { kid, alg, state, created_at: createdAt } = raw;
    if (typeof kid !== 'string' || !KID.test(kid)) problems.push(`${at}.kid: must be an RFC 7638 thumbprint (43 base64url characters)`);
    else if (seen.has(kid)) problems.push(`${at}.kid: duplicate kid ${kid}`);
    else seen.add(kid);
    if (typeof alg !== 'string' || !(SIGNING_ALGORITHMS as readonly string[]).includes(alg)) {
      problems.push(`${at}.alg: must be one of ${SIGNING_ALGORITHMS.join(', ')}`);
    }
    if (typeof state !== 'string' || !(KEY_STATES as readonly string[]).includes(state)) {
      problems.push(`${at}.state: must be one of ${KEY_STATES.join(', ')}`);
    }
    if (typeof createdAt !== 'string' || Number.isNaN(Date.parse(createdAt))) problems.push(`${at}.created_at: must be an ISO-8601 date`);
    keys.push({ kid, alg, state, created_at: createdAt } as KeyringEntry);
  });
  const current = keys.filter((k) => k.state === 'current').length;
  if (problems.length === 0 && current !== 1) problems.push(`exactly one key must be in state 'current' (found ${current})`);
  if (problems.length > 0) {
    throw new LocalKeyError(file, `'${file}' is invalid:\n  ${problems.join('\n  ')}`);
  }
  return { keys };
}

export function serializeKeyring(keyring: Keyring): string {
  return `${JSON.stringify({ keys: keyring.keys }, null, 2)}\n`;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
