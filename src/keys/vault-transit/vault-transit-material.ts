import { createPublicKey } from 'node:crypto';
import { calculateJwkThumbprint, type JWK } from 'jose';
import type { SigningAlgorithm } from '../../config/schema.js';
import { LeashError } from '../../errors/leash-error.js';
import { VaultError, type TransitKey, type VaultClient } from '../../vault/vault-client.js';
import type { SigningKey } from '../key-manager.js';
import type { KeyMaterial } from '../rotation/backend.js';
import { publicMembers } from '../local/node-signing-key.js';
import { VaultKeyError } from '../vault-kv/vault-keyring.js';

type TransitType = 'ecdsa-p256' | 'ed25519';
const TRANSIT_TYPE: Record<SigningAlgorithm, TransitType> = { ES256: 'ecdsa-p256', EdDSA: 'ed25519' };

/** The public JWK of one Transit key version (PEM SPKI for ECDSA, base64 raw bytes for Ed25519). */
export function transitPublicJwk(type: string, publicKey: string): JWK {
  if (type === 'ed25519') {
    const raw = Buffer.from(publicKey, 'base64');
    if (raw.length !== 32) throw new VaultKeyError('Vault answered an Ed25519 public key that is not 32 bytes');
    return { kty: 'OKP', crv: 'Ed25519', x: raw.toString('base64url') };
  }
  if (type === 'ecdsa-p256') return publicMembers(createPublicKey(publicKey).export({ format: 'jwk' }) as JWK);
  throw new VaultKeyError(`Transit key type '${type}' cannot sign JWTs for Leash (ecdsa-p256 or ed25519)`);
}

/**
 * vault-transit: one Transit key `<mount>/keys/<key>`; each Leash key is one version of it
 * (`ref`), and Vault signs the JWS signing input, so the private key never leaves Vault.
 * A removed Leash key's version cannot be deleted on its own (Transit only trims every
 * version below a minimum); it is simply never used again.
 */
export function createVaultTransitKeyMaterial(
  vault: () => VaultClient,
  loc: { readonly mount: string; readonly key: string },
  log: (msg: string, fields?: Record<string, unknown>) => void = () => undefined,
): KeyMaterial {
  let freshVersion: number | undefined;

  async function readKey(): Promise<TransitKey> {
    const key = await vault().transitReadKey(loc.mount, loc.key);
    if (!key) throw new VaultKeyError(`the Transit key '${loc.mount}/keys/${loc.key}' does not exist`);
    return key;
  }

  async function versionJwk(key: TransitKey, version: number): Promise<{ kid: string; publicJwk: JWK }> {
    const v = key.versions.find((x) => x.version === version);
    if (!v) throw new VaultKeyError(`the Transit key '${loc.mount}/keys/${loc.key}' has no version ${version}`);
    const publicJwk = transitPublicJwk(key.type, v.publicKey);
    return { kid: await calculateJwkThumbprint(publicJwk, 'sha256'), publicJwk };
  }

  return {
    async create(alg) {
      const want = TRANSIT_TYPE[alg];
      let key = await vault().transitReadKey(loc.mount, loc.key);
      if (!key) {
        // First start: the key's first version is the first Leash key (no wasted version).
        await vault().transitCreateKey(loc.mount, loc.key, want);
        key = await readKey();
        freshVersion = key.latestVersion;
      }
      if (key.type !== want) {
        throw new VaultKeyError(`the Transit key '${loc.mount}/keys/${loc.key}' is ${key.type}; algorithm ${alg} needs ${want}`);
      }
      if (freshVersion === undefined) {
        await vault().transitRotate(loc.mount, loc.key);
        key = await readKey();
      }
      const version = freshVersion ?? key.latestVersion;
      freshVersion = undefined;
      return { ...(await versionJwk(key, version)), ref: version };
    },

    async load(entry): Promise<SigningKey> {
      if (entry.ref === undefined) throw new VaultKeyError(`keyring entry ${entry.kid} has no Transit version (ref)`);
      const version = entry.ref;
      const key = await readKey();
      const type = TRANSIT_TYPE[entry.alg];
      if (key.type !== type) throw new VaultKeyError(`the Transit key '${loc.mount}/keys/${loc.key}' is ${key.type}, not ${type} as key ${entry.kid} needs`);
      const { kid, publicJwk } = await versionJwk(key, version);
      // The kid is the thumbprint: a different key under the same name must not sign as this kid.
      if (kid !== entry.kid) throw new VaultKeyError(`Transit version ${version} of '${loc.key}' has thumbprint ${kid}, not ${entry.kid}`);
      return Object.freeze({
        kid,
        alg: entry.alg,
        publicJwk: Object.freeze({ ...publicJwk, kid, alg: entry.alg, use: 'sig' }),
        visibleUntil: undefined,
        async sign(data: Uint8Array): Promise<Uint8Array> {
          try {
            return await vault().transitSign(loc.mount, loc.key, version, data, type);
          } catch (err) {
            // Fail closed; Vault's text stays in the log.
            log('Vault Transit could not sign', { kid, reason: err instanceof VaultError ? err.reason : 'error', status: err instanceof VaultError ? err.status : undefined });
            throw new LeashError('ERR_SIGNING_UNAVAILABLE', 'the signing service is unavailable', { backend: 'vault-transit', kid }, { cause: err });
          }
        },
      });
    },

    async destroy() {
      // A Transit version cannot be deleted alone; the keyring no longer names it, so it never signs again.
    },
  };
}
