import { generateKeyPairSync } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { calculateJwkThumbprint, type JWK } from 'jose';
import type { SigningAlgorithm } from '../../config/schema.js';
import { LeashError } from '../../errors/leash-error.js';
import type { Clock } from '../../time/clock.js';
import type { KeyInfo, KeyManager, KeyState, SigningKey } from '../key-manager.js';
import { assertPrivateFileMode, LocalKeyError, writePrivateFileAtomic } from './key-files.js';
import { KEYRING_FILE, keyFileName, parseKeyring, serializeKeyring, type Keyring, type KeyringEntry } from './keyring.js';
import { createNodeSigningKey, jwkMatchesAlgorithm, publicMembers } from './node-signing-key.js';

export interface LocalKeyManagerOptions {
  /** Folder holding `keyring.json` and one `<kid>.jwk.json` per key; created 0700 if absent. */
  readonly dir: string;
  /** Algorithm of keys this manager generates (existing keys keep theirs). */
  readonly algorithm: SigningAlgorithm;
  readonly clock: Clock;
}

/** States whose keys verifiers must find in the JWKS. Every state today; rotation may add one that is not. */
const PUBLISHED: ReadonlySet<KeyState> = new Set<KeyState>(['next', 'current', 'retired']);

interface LoadedKey {
  readonly entry: KeyringEntry;
  readonly key: SigningKey;
}

/**
 * The embedded key backend: private JWKs in files under `dir`, generated on first start.
 * Meant for a single replica (or replicas sharing one read-only volume); several replicas
 * that each generate would publish different keys: use a Vault backend for those.
 */
export function createLocalKeyManager(opts: LocalKeyManagerOptions): KeyManager {
  if (!opts.dir) throw new TypeError('createLocalKeyManager: dir is required');
  const keyringPath = join(opts.dir, KEYRING_FILE);
  let loaded: readonly LoadedKey[] | undefined;
  let current: SigningKey | undefined;

  async function loadKey(entry: KeyringEntry): Promise<LoadedKey> {
    const file = join(opts.dir, keyFileName(entry.kid));
    if (!existsSync(file)) {
      throw new LocalKeyError(file, `'${keyringPath}' lists key ${entry.kid} but '${file}' does not exist`);
    }
    assertPrivateFileMode(file);
    let jwk: JWK;
    try {
      jwk = JSON.parse(readFileSync(file, 'utf8')) as JWK;
    } catch (err) {
      throw new LocalKeyError(file, `'${file}' is not a JSON Web Key`, { cause: err });
    }
    if (typeof jwk !== 'object' || jwk === null || typeof jwk.d !== 'string') {
      throw new LocalKeyError(file, `'${file}' is not a private JSON Web Key (no 'd' member)`);
    }
    if (!jwkMatchesAlgorithm(jwk, entry.alg)) {
      throw new LocalKeyError(file, `'${file}' is not a key for ${entry.alg}, the algorithm '${keyringPath}' gives it`);
    }
    // The kid is the thumbprint: a mismatch means the file was swapped or edited.
    const thumbprint = await calculateJwkThumbprint(publicMembers(jwk), 'sha256');
    if (thumbprint !== entry.kid) {
      throw new LocalKeyError(file, `'${file}' holds a key whose thumbprint is ${thumbprint}, not ${entry.kid}`);
    }
    try {
      return { entry, key: createNodeSigningKey({ kid: entry.kid, alg: entry.alg, privateJwk: jwk }) };
    } catch (err) {
      throw new LocalKeyError(file, `'${file}' could not be loaded as a ${entry.alg} private key`, { cause: err });
    }
  }

  async function generate(): Promise<void> {
    const { privateKey } =
      opts.algorithm === 'ES256' ? generateKeyPairSync('ec', { namedCurve: 'P-256' }) : generateKeyPairSync('ed25519');
    const jwk = privateKey.export({ format: 'jwk' }) as JWK;
    const kid = await calculateJwkThumbprint(publicMembers(jwk), 'sha256');
    // Key file first: a crash in between leaves an unused file, never a keyring naming a missing key.
    writePrivateFileAtomic(join(opts.dir, keyFileName(kid)), `${JSON.stringify({ ...jwk, kid, alg: opts.algorithm })}\n`);
    const keyring: Keyring = {
      keys: [{ kid, alg: opts.algorithm, state: 'current', created_at: new Date(opts.clock.now()).toISOString() }],
    };
    writePrivateFileAtomic(keyringPath, serializeKeyring(keyring));
  }

  return {
    backend: 'local',

    async init(): Promise<void> {
      mkdirSync(opts.dir, { recursive: true, mode: 0o700 });
      if (!existsSync(keyringPath)) await generate();
      const keyring = parseKeyring(keyringPath, readFileSync(keyringPath, 'utf8'));
      const keys = await Promise.all(keyring.keys.map(loadKey));
      loaded = keys;
      current = keys.find((k) => k.entry.state === 'current')?.key;
    },

    current(): SigningKey {
      if (!current) throw new LeashError('ERR_SIGNING_UNAVAILABLE', 'no signing key is loaded');
      return current;
    },

    jwks(): { keys: JWK[] } {
      return { keys: (loaded ?? []).filter((k) => PUBLISHED.has(k.entry.state)).map((k) => ({ ...k.key.publicJwk })) };
    },

    list(): KeyInfo[] {
      return (loaded ?? []).map((k) => ({
        kid: k.entry.kid,
        alg: k.entry.alg,
        state: k.entry.state,
        createdAt: Date.parse(k.entry.created_at),
        backend: 'local',
      }));
    },
  };
}
