import type { Ring } from '../rotation/keyring.js';
import { KID, keyringDocument, parseKeyringDocument, type KeyringProblem } from '../rotation/keyring-document.js';
import { LocalKeyError } from './key-files.js';

/** `keyring.json` in the key folder: the keyring document (rotation/keyring-document.ts) with its own `version` counter. */
export const KEYRING_FILE = 'keyring.json';

export function keyFileName(kid: string): string {
  if (!KID.test(kid)) throw new TypeError('kid must be an RFC 7638 SHA-256 thumbprint');
  return `${kid}.jwk.json`;
}

const localProblem: KeyringProblem = (where, message, cause) => new LocalKeyError(where, message, cause === undefined ? undefined : { cause });

/** Parses `keyring.json` text. */
export function parseKeyring(file: string, text: string): { ring: Ring; version: number } {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw localProblem(file, `'${file}' is not valid JSON`, err);
  }
  return parseKeyringDocument(file, doc, localProblem);
}

export function serializeKeyring(ring: Ring, version: number): string {
  return `${JSON.stringify(keyringDocument(ring, version), null, 2)}\n`;
}

