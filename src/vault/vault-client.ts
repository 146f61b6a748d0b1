/**
 * The typed face of Vault that Leash uses. node-vault answers `Promise<any>`; the one
 * implementation (`createVaultClient`, in node-vault-client.ts) checks every answer's
 * shape here, so no untyped Vault data travels further. Every method throws VaultError;
 * its message is for logs only and never reaches an OAuth client.
 */

/** A Vault failure. `status` is Vault's HTTP status (0: unreachable or timed out). */
export class VaultError extends Error {
  readonly status: number;
  /** 'unreachable' | 'denied' (403) | 'not_found' (404) | 'invalid' (400) | 'cas_mismatch' | 'sealed' (503) | 'server' (5xx) | 'malformed' (unexpected answer). */
  readonly reason: VaultErrorReason;
  constructor(reason: VaultErrorReason, status: number, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'VaultError';
    this.reason = reason;
    this.status = status;
  }
}

export type VaultErrorReason = 'unreachable' | 'denied' | 'not_found' | 'invalid' | 'cas_mismatch' | 'sealed' | 'server' | 'malformed';

export interface KvSecret {
  readonly data: Readonly<Record<string, unknown>>;
  readonly version: number;
}

export interface TransitKeyVersion {
  readonly version: number;
  /** PEM (SPKI) public key for ecdsa-*; for ed25519 Vault answers base64 raw 32 bytes. */
  readonly publicKey: string;
  /** ms since epoch */
  readonly createdAt: number;
}

export interface TransitKey {
  readonly name: string;
  /** Vault key type: `ecdsa-p256` or `ed25519`. */
  readonly type: string;
  readonly latestVersion: number;
  readonly versions: readonly TransitKeyVersion[];
}

/** A dynamic secret as Vault returned it (the secret `data` is the credential). */
export interface DynamicSecret {
  readonly leaseId: string;
  readonly leaseDuration: number;
  readonly renewable: boolean;
  readonly data: Readonly<Record<string, unknown>>;
}

export interface TokenInfo {
  /** Seconds left (0: never expires, e.g. root). */
  readonly ttl: number;
  readonly renewable: boolean;
  readonly policies: readonly string[];
}

export interface VaultClient {
  /** KV v2 read of the newest version; undefined when the path has no (live) version. */
  kvRead(mount: string, path: string): Promise<KvSecret | undefined>;
  /**
   * KV v2 write. `cas`: 0 = only if absent, N = only if the current version is N
   * (throws VaultError 'cas_mismatch' otherwise). Returns the new version.
   */
  kvWrite(mount: string, path: string, data: Record<string, unknown>, cas?: number): Promise<number>;
  /** KV v2 delete of every version and the metadata (a removed key's material). */
  kvDestroy(mount: string, path: string): Promise<void>;

  transitCreateKey(mount: string, name: string, type: 'ecdsa-p256' | 'ed25519'): Promise<void>;
  /** undefined when the key does not exist. */
  transitReadKey(mount: string, name: string): Promise<TransitKey | undefined>;
  transitRotate(mount: string, name: string): Promise<void>;
  /**
   * Signs `input` (the bytes to sign, i.e. the JWS signing input) with one key version.
   * ecdsa-p256 asks for sha2-256 and `marshaling_algorithm: jws`; returns the raw
   * signature bytes (the `vault:vN:` prefix stripped and checked against `version`).
   */
  transitSign(mount: string, name: string, version: number, input: Uint8Array, type: 'ecdsa-p256' | 'ed25519'): Promise<Uint8Array>;

  /** A dynamic secret: GET (`read`) or POST with a body (`write`) on `path`. */
  issueSecret(path: string, method: 'read' | 'write', params: Readonly<Record<string, string>>): Promise<DynamicSecret>;
  /** `PUT sys/leases/revoke`; a lease Vault no longer knows counts as revoked. */
  revokeLease(leaseId: string): Promise<void>;

  /** `GET auth/token/lookup-self` */
  lookupSelf(): Promise<TokenInfo>;
  /** `POST sys/capabilities-self` for each path: the capabilities this token has there. */
  capabilities(paths: readonly string[]): Promise<Record<string, readonly string[]>>;
}
