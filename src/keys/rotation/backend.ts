import type { JWK } from 'jose';
import type { SigningAlgorithm } from '../../config/schema.js';
import type { SigningKey } from '../key-manager.js';
import type { Ring, RingKey } from './keyring.js';

/**
 * Where the shared keyring lives, with compare-and-set: a replica that loses the race sees
 * `false`, reloads and re-plans, so a due transition happens once across all replicas.
 */
export interface KeyringRepository {
  /** undefined: no keyring yet (first start). Throws when the store cannot be read. */
  load(): Promise<{ ring: Ring; version: number } | undefined>;
  /** `expectedVersion` 0: only if none exists. Returns false on a compare-and-set conflict. */
  save(ring: Ring, expectedVersion: number): Promise<boolean>;
}

/** Where private keys live and how they sign. */
export interface KeyMaterial {
  /** Creates and stores a new key; `kid` is the RFC 7638 thumbprint of `publicJwk`. */
  create(alg: SigningAlgorithm): Promise<{ kid: string; publicJwk: JWK; ref?: number | undefined }>;
  /** A signer for a keyring entry; checks the material still matches the kid. */
  load(entry: RingKey): Promise<SigningKey>;
  /** Destroys a removed key's material where the backend allows (best effort for the caller). */
  destroy(entry: Pick<RingKey, 'kid' | 'ref'>): Promise<void>;
}
