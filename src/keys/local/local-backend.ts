import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { KeyMaterial, KeyringRepository } from '../rotation/backend.js';
import type { Ring } from '../rotation/keyring.js';
import { assertPrivateFileMode, LocalKeyError, writePrivateFileAtomic } from './key-files.js';
import { withKeyringLock } from './keyring-lock.js';
import { KEYRING_FILE, keyFileName, parseKeyring, serializeKeyring } from './keyring.js';
import { generatePrivateJwk, publicMembers, signerFromPrivateJwk } from './node-signing-key.js';

/**
 * `keyring.json` in the key folder. Compare-and-set is on the document's `version` member;
 * the read-compare-write below runs synchronously, so managers in one process never
 * interleave, and under a lock file (keyring-lock.ts), so the workers of `serve --workers`
 * (or replicas sharing the folder on one machine) do not either.
 */
export function createLocalKeyringRepository(dir: string): KeyringRepository {
  const file = join(dir, KEYRING_FILE);
  const read = (): { ring: Ring; version: number } | undefined => {
    if (!existsSync(file)) return undefined;
    return parseKeyring(file, readFileSync(file, 'utf8'));
  };
  return {
    async load() {
      return read();
    },
    async save(ring, expectedVersion) {
      ensureKeyDir(dir);
      return withKeyringLock(join(dir, `${KEYRING_FILE}.lock`), () => {
        const now = read()?.version ?? 0;
        if (now !== expectedVersion) return false;
        writePrivateFileAtomic(file, serializeKeyring(ring, expectedVersion + 1));
        return true;
      });
    },
  };
}

/** Creates the key folder (0700); a path that cannot be one is named as the setting it came from. */
function ensureKeyDir(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    const why = (err as NodeJS.ErrnoException).code ?? 'error';
    throw new LocalKeyError(dir, `settings.keys.dir '${dir}' cannot be created as a folder (${why}): point it at a writable folder`, { cause: err });
  }
}

/** One private JWK file per key, `<kid>.jwk.json`, mode 0600. */
export function createLocalKeyMaterial(dir: string): KeyMaterial {
  const keyringPath = join(dir, KEYRING_FILE);
  return {
    async create(alg) {
      ensureKeyDir(dir);
      const { kid, jwk } = await generatePrivateJwk(alg);
      // Key file first: a crash in between leaves an unused file, never a keyring naming a missing key.
      writePrivateFileAtomic(join(dir, keyFileName(kid)), `${JSON.stringify(jwk)}\n`);
      return { kid, publicJwk: publicMembers(jwk) };
    },
    async load(entry) {
      const file = join(dir, keyFileName(entry.kid));
      if (!existsSync(file)) throw new LocalKeyError(file, `'${keyringPath}' lists key ${entry.kid} but '${file}' does not exist`);
      assertPrivateFileMode(file);
      let jwk: unknown;
      try {
        jwk = JSON.parse(readFileSync(file, 'utf8'));
      } catch (err) {
        throw new LocalKeyError(file, `'${file}' is not a JSON Web Key`, { cause: err });
      }
      return signerFromPrivateJwk(entry, jwk, file, (msg, cause) => new LocalKeyError(file, msg, cause === undefined ? undefined : { cause }));
    },
    async destroy(entry) {
      rmSync(join(dir, keyFileName(entry.kid)), { force: true });
    },
  };
}
