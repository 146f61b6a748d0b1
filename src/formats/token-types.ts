/** Token type URNs (RFC 8693 §3). */
export const TOKEN_EXCHANGE_GRANT = 'urn:ietf:params:oauth:grant-type:token-exchange';
export const TOKEN_TYPE_JWT = 'urn:ietf:params:oauth:token-type:jwt';
export const TOKEN_TYPE_ID_TOKEN = 'urn:ietf:params:oauth:token-type:id_token';
export const TOKEN_TYPE_ACCESS_TOKEN = 'urn:ietf:params:oauth:token-type:access_token';

/**
 * Leash-defined: the X.509-SVID the request came with (the TLS client certificate, or a
 * trusted proxy's header); `subject_token` is that certificate, base64url DER (RFC 8705
 * proves possession in the handshake, the parameter names which certificate is meant).
 */
export const TOKEN_TYPE_TLS_CLIENT_CERTIFICATE = 'urn:leash:params:oauth:token-type:tls-client-certificate';
/** Leash-defined: the subject is the client this request authenticated (private_key_jwt); `subject_token` is its client id. */
export const TOKEN_TYPE_CLIENT = 'urn:leash:params:oauth:token-type:client';
/** Leash-defined: a SigV4-signed AWS STS GetCallerIdentity request (the `aws` attestation kind). */
export const TOKEN_TYPE_AWS_SIGV4 = 'urn:leash:params:oauth:token-type:aws-sigv4-get-caller-identity';

/**
 * Attestations are JWTs (a Kubernetes or OIDC token may be labelled either way), signed AWS
 * requests, the TLS client certificate (an X.509-SVID), or the authenticated client itself.
 */
export const ACCEPTED_SUBJECT_TOKEN_TYPES: ReadonlySet<string> = new Set([TOKEN_TYPE_JWT, TOKEN_TYPE_ID_TOKEN, TOKEN_TYPE_AWS_SIGV4, TOKEN_TYPE_TLS_CLIENT_CERTIFICATE, TOKEN_TYPE_CLIENT]);
/** In a delegation the subject_token is a Leash access token (a JWT). */
export const UPSTREAM_SUBJECT_TOKEN_TYPES: ReadonlySet<string> = new Set([TOKEN_TYPE_ACCESS_TOKEN, TOKEN_TYPE_JWT]);
/** Leash-defined: a Vault dynamic secret (RFC 8693 §3 allows URIs for other token types). */
export const TOKEN_TYPE_VAULT_SECRET = 'urn:leash:params:oauth:token-type:vault-secret';
/** Leash-defined: AWS credentials (RFC 8693 §3 allows URIs for other token types). */
export const TOKEN_TYPE_AWS_CREDENTIALS = 'urn:leash:params:oauth:token-type:aws-credentials';

/** What `requested_token_type` may name, per credential kind. */
export const REQUESTABLE_TYPES: Readonly<Record<string, ReadonlySet<string>>> = {
  jwt: new Set([TOKEN_TYPE_ACCESS_TOKEN, TOKEN_TYPE_JWT]),
  'aws-sts': new Set([TOKEN_TYPE_AWS_CREDENTIALS]),
  vault: new Set([TOKEN_TYPE_VAULT_SECRET]),
};
export const ANY_REQUESTABLE_TYPE: ReadonlySet<string> = new Set(Object.values(REQUESTABLE_TYPES).flatMap((s) => [...s]));

/** Credential kinds that can carry `cnf.jkt` (RFC 9449); only these are ever sender-constrained. */
export const SENDER_CONSTRAINABLE_KINDS: ReadonlySet<string> = new Set(['jwt']);
