import type { VaultClient } from '../../vault/vault-client.js';
import type { KeyMaterial } from '../rotation/backend.js';
import { generatePrivateJwk, publicMembers, signerFromPrivateJwk } from '../local/node-signing-key.js';
import { VaultKeyError, type VaultKvLocation } from './vault-keyring.js';

/**
 * vault-kv private keys: generated in memory (node:crypto), stored as the KV v2 secret
 * `<path>/keys/<kid>` and loaded by every replica into a KeyObject. Nothing touches disk.
 */
export function createVaultKvKeyMaterial(vault: () => VaultClient, loc: VaultKvLocation): KeyMaterial {
  const keyPath = (kid: string) => `${loc.path}/keys/${kid}`;
  return {
    async create(alg) {
      const { kid, jwk } = await generatePrivateJwk(alg);
      // cas 0: never overwrite material that exists under this kid.
      await vault().kvWrite(loc.mount, keyPath(kid), { jwk }, 0);
      return { kid, publicJwk: publicMembers(jwk) };
    },
    async load(entry) {
      const where = `${loc.mount}/data/${keyPath(entry.kid)}`;
      const secret = await vault().kvRead(loc.mount, keyPath(entry.kid));
      if (!secret) throw new VaultKeyError(`the keyring lists key ${entry.kid} but Vault has no secret at '${where}'`);
      return signerFromPrivateJwk(entry, secret.data.jwk, where, (msg, cause) => new VaultKeyError(msg, { cause }));
    },
    async destroy(entry) {
      await vault().kvDestroy(loc.mount, keyPath(entry.kid));
    },
  };
}
