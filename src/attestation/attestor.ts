import type { IssuerKind } from '../config/schema.js';

/**
 * A verified workload attestation: who the workload is, according to one trusted issuer.
 * `subject` is the identity string bindings match (e.g. `system:serviceaccount:ns:sa`,
 * a SPIFFE ID, a GitHub `sub`); `attributes` are the normalised claims bindings and
 * conditions may test (e.g. `namespace`, `service_account`, `repository`).
 */
export interface WorkloadIdentity {
  /**
   * Name of the trusted issuer (config), not the `iss` URL; the client authentication
   * method (`private_key_jwt`, `tls_client_auth`, `self_signed_tls_client_auth`) for a
   * plugin that exchanged with its client authentication alone (then `subject` is its id).
   */
  readonly issuer: string;
  readonly kind: IssuerKind | 'private_key_jwt' | 'tls_client_auth' | 'self_signed_tls_client_auth';
  readonly subject: string;
  readonly attributes: Readonly<Record<string, string>>;
  /** Seconds since epoch. */
  readonly issuedAt: number | undefined;
  readonly expiresAt: number;
  /** base64url SHA-256 of the presented token: what audit events carry, never the token. */
  readonly tokenDigest: string;
}

/** Verifies one trusted issuer's tokens. One implementation per issuer kind. */
export interface Attestor {
  readonly name: string;
  readonly kind: IssuerKind;
  /** The exact `iss` this attestor accepts. */
  readonly issuer: string;
  /**
   * Verify a compact JWS and map it to a workload identity. Throws LeashError
   * (`ERR_ATTESTATION_*`) for anything untrusted; never returns a partial identity.
   */
  verify(token: string, digest: string): Promise<WorkloadIdentity>;
}
