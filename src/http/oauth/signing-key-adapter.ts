import { createPublicKey, type KeyObject } from 'node:crypto';
import { ExternalSigningKey } from 'oidc-provider';
import type { SigningKey } from '../../keys/key-manager.js';

/**
 * Presents a Leash SigningKey to oidc-provider's keystore (its experimental external
 * signing support), so the provider never holds a private key of its own: the same key
 * seam later serves Vault Transit, whose private half never leaves Vault.
 */
export class SigningKeyAdapter extends ExternalSigningKey {
  readonly #key: SigningKey;
  readonly #public: KeyObject;

  constructor(key: SigningKey) {
    super();
    this.#key = key;
    this.#public = createPublicKey({ key: key.publicJwk as never, format: 'jwk' });
    // The typings declare only getters; the class has setters for both.
    const writable = this as unknown as { kid: string; alg: string };
    writable.kid = key.kid;
    writable.alg = key.alg;
  }

  override keyObject(): KeyObject {
    return this.#public;
  }

  override sign(data: Uint8Array): Uint8Array | Promise<Uint8Array> {
    return this.#key.sign(data);
  }
}
