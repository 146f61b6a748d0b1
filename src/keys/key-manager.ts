import type { JWK } from 'jose';
import type { SigningAlgorithm } from '../config/schema.js';

/**
 * A key is a signer with an id. The private half may live elsewhere (a file, Vault KV,
 * Vault Transit); callers only ever ask it to sign the JWS signing input.
 */
export interface SigningKey {
  readonly kid: string;
  readonly alg: SigningAlgorithm;
  /** Public JWK with `kid`, `alg`, `use: "sig"`. */
  readonly publicJwk: JWK;
  /**
   * Last moment (ms since epoch) verifiers are guaranteed to still find this key in the
   * JWKS; a token signed with it must expire before. `undefined`: no planned end.
   */
  readonly visibleUntil: number | undefined;
  /** Sign `data` (the ASCII JWS signing input); returns the raw JWS signature bytes. */
  sign(data: Uint8Array): Uint8Array | Promise<Uint8Array>;
}

export type KeyState = 'next' | 'current' | 'retired';

export interface KeyInfo {
  readonly kid: string;
  readonly alg: SigningAlgorithm;
  readonly state: KeyState;
  readonly createdAt: number;
  readonly backend: string;
}

/** Holds the signing keys and publishes the JWKS. One folder per backend under keys/. */
export interface KeyManager {
  readonly backend: string;
  /** Load or create keys. Called once before serving. */
  init(): Promise<void>;
  /** The key that signs now. Throws LeashError ERR_SIGNING_UNAVAILABLE if none can sign. */
  current(): SigningKey;
  /** Every key verifiers must know: next, current and retired-but-still-visible. */
  jwks(): { keys: JWK[] };
  list(): KeyInfo[];
}
