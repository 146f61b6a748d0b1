import type { JWK } from 'jose';
import { certificateAuthMethods, type CertificateSources } from '../../mtls/certificate-client-auth.js';
import { TOKEN_EXCHANGE_GRANT } from '../../formats/token-types.js';
import { CLIENT_ASSERTION_ALGORITHMS } from '../../attestation/client-assertion.js';
import { introspectionMetadata } from './introspection.js';
import { revocationMetadata } from './revocation-endpoint.js';
import { AUTHORIZATION_DETAILS_TYPES } from '../../exchange/authorization-details.js';

export interface DiscoveryInput {
  /** `settings.issuer`: every URL below is under it, whatever Host a request names. */
  readonly issuer: string;
  /** `settings.dpop.algorithms`: what the token endpoint accepts on a DPoP proof. */
  readonly dpopAlgorithms: readonly string[];
  /** The published JWKS: its algorithms are the ones a verifier meets on Leash's tokens. */
  readonly jwks: { readonly keys: readonly JWK[] };
  /** Where client certificates come from: which RFC 8705 §2 methods can really be used. */
  readonly certificates?: CertificateSources | undefined;
}

/**
 * The one metadata document, served at `/.well-known/openid-configuration` (OIDC
 * Discovery 1.0) and `/.well-known/oauth-authorization-server` (RFC 8414). Leash builds it
 * itself so that every member is something that works: there is no authorization,
 * userinfo, end-session, PAR or registration endpoint, no `openid` scope, and no member
 * about authorization requests (response modes, PKCE, request objects, claims).
 */
export function discoveryDocument(input: DiscoveryInput): Record<string, unknown> {
  const issuer = input.issuer.replace(/\/+$/, '');
  const signingAlgorithms = [...new Set(input.jwks.keys.map((k) => k.alg).filter((a): a is string => typeof a === 'string'))];
  return {
    issuer: input.issuer,
    token_endpoint: `${issuer}/token`,
    jwks_uri: `${issuer}/jwks`,
    grant_types_supported: [TOKEN_EXCHANGE_GRANT],
    // Plugins prove themselves with their attestation (`none`); those that registered a key also (or instead) with
    // private_key_jwt, and those that registered a certificate with it, over mutual TLS (only when the listener asks for one).
    token_endpoint_auth_methods_supported: ['none', 'private_key_jwt', ...certificateAuthMethods(input.certificates)],
    token_endpoint_auth_signing_alg_values_supported: [...CLIENT_ASSERTION_ALGORITHMS],
    // Required by both specifications; Leash has no authorization endpoint, so it takes no response_type.
    response_types_supported: [],
    // Required by OIDC Discovery: `sub` is the plugin id, the same for every audience.
    subject_types_supported: ['public'],
    // Required by OIDC Discovery: the algorithms of the JWTs Leash signs (access tokens, AWS web-identity tokens).
    id_token_signing_alg_values_supported: signingAlgorithms,
    dpop_signing_alg_values_supported: [...input.dpopAlgorithms],
    // RFC 9396 §10: the types the token endpoint accepts in `authorization_details`.
    authorization_details_types_supported: [...AUTHORIZATION_DETAILS_TYPES],
    ...introspectionMetadata(input.issuer),
    ...revocationMetadata(input.issuer),
  };
}
