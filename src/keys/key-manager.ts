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
  readonly backend: string;
  /** ms since epoch: when it was created and first published. */
  readonly createdAt: number;
  /** When it became `current` (started signing). */
  readonly activatedAt: number | undefined;
  /** When it stopped signing. */
  readonly retiredAt: number | undefined;
  /** `retired`: when it leaves the JWKS (every token it signed has expired by then). */
  readonly removeAt: number | undefined;
  /** `next`: earliest moment it may sign (published for at least the prepublish interval). */
  readonly signsFrom: number | undefined;
}

/** Who asked for a key operation, for the audit trail. */
export interface KeyActor {
  readonly actor: string;
  readonly reason?: string | undefined;
}

/** What one keyring transition did (audited and counted by the caller). */
export interface KeyTransition {
  readonly action: 'created' | 'promoted' | 'retired' | 'removed' | 'revoked';
  readonly kid: string;
  readonly from: KeyState | undefined;
  readonly to: KeyState | 'removed';
}

/**
 * Why a key operation was refused: a conflict with the rotation rules (not ready, JWKS
 * full, unknown kid, last key). `code` feeds the admin API's 404/409 answers.
 */
export class KeyOperationError extends Error {
  readonly code: 'unknown_kid' | 'not_ready' | 'jwks_full' | 'invalid_state';
  constructor(code: KeyOperationError['code'], message: string) {
    super(message);
    this.name = 'KeyOperationError';
    this.code = code;
  }
}

/**
 * Holds the signing keys, publishes the JWKS and runs rotation as a state machine:
 * `next` (published, not signing) → `current` → `retired` (published until every token it
 * signed has expired) → removed. The keyring is shared (a file, or Vault KV with
 * check-and-set), so several replicas apply each transition once.
 */
export interface KeyManager {
  readonly backend: string;
  /** Load or create keys (a current and a next key). Called once before serving; a Vault problem here is a clear startup error. */
  init(): Promise<void>;
  /** The key that signs now. Throws LeashError ERR_SIGNING_UNAVAILABLE if none can sign. */
  current(): SigningKey;
  /**
   * Every key verifiers must know: next, current and retired-but-still-visible. Frozen, and
   * the same object until the published set changes, so callers may cache by identity.
   */
  jwks(): { keys: JWK[] };
  list(): KeyInfo[];
  /**
   * Promote `next` to `current` (the old current retires) and prepublish a new next.
   * Throws KeyOperationError 'not_ready' when next has been published for less than the
   * prepublish interval, unless `force`.
   */
  rotate(by: KeyActor & { readonly force?: boolean }): Promise<KeyTransition[]>;
  /** Stop signing with `kid`: current → retired (next is promoted first); next → removed. */
  retire(kid: string, by: KeyActor): Promise<KeyTransition[]>;
  /**
   * Emergency: withdraw `kid` from the JWKS now (if it was current, next is promoted at
   * once, prepublish or not). The caller also revokes every token it signed.
   */
  revoke(kid: string, by: KeyActor): Promise<KeyTransition[]>;
  /**
   * Re-read the shared keyring and apply what is due: scheduled rotation, removal of
   * retired keys past `removeAt`, a missing next key. Returns what this replica changed
   * (empty when another replica already did it). Throws when the backend is unreachable.
   */
  tick(): Promise<KeyTransition[]>;
  /** Called after the key set this replica sees has changed (rebuild what holds keys). */
  onChange(listener: () => void): () => void;
  close(): Promise<void>;
}
