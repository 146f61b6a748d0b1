import { VaultError, type VaultClient } from '../../vault/vault-client.js';
import type { KeyringRepository } from '../rotation/backend.js';
import { keyringDocument, parseKeyringDocument } from '../rotation/keyring-document.js';

/** Where the Vault backends keep the keyring (and vault-kv its private keys). */
export interface VaultKvLocation {
  readonly mount: string;
  readonly path: string;
}

/** A keyring or key in Vault that Leash cannot use; the message names the path, never data. */
export class VaultKeyError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'VaultKeyError';
  }
}

/**
 * The keyring as the KV v2 secret `<mount>/data/<path>/keyring`. Compare-and-set is KV's
 * own `cas` on the secret version, so replicas on one Vault apply each transition once.
 */
export function createVaultKeyringRepository(vault: () => VaultClient, loc: VaultKvLocation): KeyringRepository {
  const path = `${loc.path}/keyring`;
  const where = `${loc.mount}/data/${path}`;
  return {
    async load() {
      const secret = await vault().kvRead(loc.mount, path);
      if (!secret) return undefined;
      const { ring } = parseKeyringDocument(where, secret.data, (_where, message, cause) => new VaultKeyError(message, { cause }));
      return { ring, version: secret.version };
    },
    async save(ring, expectedVersion) {
      try {
        await vault().kvWrite(loc.mount, path, { ...keyringDocument(ring) }, expectedVersion);
        return true;
      } catch (err) {
        if (err instanceof VaultError && err.reason === 'cas_mismatch') return false;
        throw err;
      }
    },
  };
}

