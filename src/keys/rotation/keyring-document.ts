import { SIGNING_ALGORITHMS } from '../../config/schema.js';
import type { KeyState } from '../key-manager.js';
import type { Ring, RingKey } from './keyring.js';

/**
 * The keyring document: which keys exist and what slot each is in (SPIRE-style slots:
 * next → current → retired). The same document is `keyring.json` for the local backend and
 * the KV v2 secret `<path>/keyring` for the Vault backends. Times are ISO-8601 so people can
 * read it; files written before rotation existed (no `version`, no activation times) still load.
 */
export interface KeyringDocEntry {
  readonly kid: string;
  readonly alg: string;
  readonly state: KeyState;
  readonly created_at: string;
  readonly activated_at?: string;
  readonly retired_at?: string;
  readonly remove_at?: string;
  readonly ref?: number;
}

export const KEY_STATES: readonly KeyState[] = ['next', 'current', 'retired'];
/** An RFC 7638 SHA-256 thumbprint, base64url: also keeps `<kid>.jwk.json` and `keys/<kid>` inside their folder. */
export const KID = /^[A-Za-z0-9_-]{43}$/;
const ENTRY_MEMBERS = new Set(['kid', 'alg', 'state', 'created_at', 'activated_at', 'retired_at', 'remove_at', 'ref']);
const DOC_MEMBERS = new Set(['version', 'keys']);
const OPTIONAL_TIMES = [
  ['activated_at', 'activatedAt'],
  ['retired_at', 'retiredAt'],
  ['remove_at', 'removeAt'],
] as const;

/** Thrown for a keyring document that is not valid; `where` names the file or Vault path. */
export type KeyringProblem = (where: string, message: string, cause?: unknown) => Error;

/**
 * Checks a keyring document, listing every problem at once with its position. `version` is
 * the document's own counter (the local backend's compare-and-set); absent in old files: 1.
 */
export function parseKeyringDocument(where: string, doc: unknown, problem: KeyringProblem): { ring: Ring; version: number } {
  if (!isObject(doc) || !Array.isArray(doc.keys)) {
    throw problem(where, `'${where}' must be an object with a 'keys' array`);
  }
  const problems: string[] = [];
  for (const m of Object.keys(doc)) if (!DOC_MEMBERS.has(m)) problems.push(`unknown member '${m}'`);
  const version = doc.version ?? 1;
  if (typeof version !== 'number' || !Number.isSafeInteger(version) || version < 1) problems.push('version: must be a positive integer');
  const keys: RingKey[] = [];
  const seen = new Set<string>();
  doc.keys.forEach((raw: unknown, i: number) => {
    const at = `keys[${i}]`;
    if (!isObject(raw)) {
      problems.push(`${at}: must be an object`);
      return;
    }
    for (const m of Object.keys(raw)) if (!ENTRY_MEMBERS.has(m)) problems.push(`${at}: unknown member '${m}'`);
    const { kid, alg, state, created_at: createdAt, ref } = raw;
    if (typeof kid !== 'string' || !KID.test(kid)) problems.push(`${at}.kid: must be an RFC 7638 thumbprint (43 base64url characters)`);
    else if (seen.has(kid)) problems.push(`${at}.kid: duplicate kid ${kid}`);
    else seen.add(kid);
    if (typeof alg !== 'string' || !(SIGNING_ALGORITHMS as readonly string[]).includes(alg)) {
      problems.push(`${at}.alg: must be one of ${SIGNING_ALGORITHMS.join(', ')}`);
    }
    if (typeof state !== 'string' || !(KEY_STATES as readonly string[]).includes(state)) {
      problems.push(`${at}.state: must be one of ${KEY_STATES.join(', ')}`);
    }
    const time = (member: string, value: unknown): number | undefined => {
      if (value === undefined) return undefined;
      const ms = typeof value === 'string' ? Date.parse(value) : Number.NaN;
      if (Number.isNaN(ms)) problems.push(`${at}.${member}: must be an ISO-8601 date`);
      return ms;
    };
    const created = time('created_at', createdAt ?? '');
    if (ref !== undefined && (typeof ref !== 'number' || !Number.isSafeInteger(ref) || ref < 1)) problems.push(`${at}.ref: must be a positive integer`);
    const entry: Record<string, unknown> = { kid, alg, state, createdAt: created };
    for (const [member, field] of OPTIONAL_TIMES) {
      const ms = time(member, raw[member]);
      if (ms !== undefined) entry[field] = ms;
    }
    if (state === 'retired' && raw.remove_at === undefined) {
      // Without it the key would stay published for ever.
      problems.push(`${at}.remove_at: a retired key needs one (when it leaves the JWKS)`);
    }
    if (ref !== undefined) entry.ref = ref;
    keys.push(entry as unknown as RingKey);
  });
  const current = keys.filter((k) => k.state === 'current').length;
  const next = keys.filter((k) => k.state === 'next').length;
  if (current !== 1) problems.push(`exactly one key must be in state 'current' (found ${current})`);
  if (next > 1) problems.push(`at most one key may be in state 'next' (found ${next})`);
  if (problems.length > 0) {
    throw problem(where, `'${where}' is invalid:\n  ${problems.join('\n  ')}`);
  }
  return { ring: { keys }, version: version as number };
}

/** The document for a ring (times as ISO-8601; absent fields omitted). */
export function keyringDocument(ring: Ring, version?: number): { version?: number; keys: KeyringDocEntry[] } {
  const keys = ring.keys.map((k) => {
    const entry: Record<string, unknown> = { kid: k.kid, alg: k.alg, state: k.state, created_at: iso(k.createdAt) };
    if (k.activatedAt !== undefined) entry.activated_at = iso(k.activatedAt);
    if (k.retiredAt !== undefined) entry.retired_at = iso(k.retiredAt);
    if (k.removeAt !== undefined) entry.remove_at = iso(k.removeAt);
    if (k.ref !== undefined) entry.ref = k.ref;
    return entry as unknown as KeyringDocEntry;
  });
  return version === undefined ? { keys } : { version, keys };
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
