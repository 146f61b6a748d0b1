/**
 * The closed set of domain error codes. Each maps to exactly one OAuth wire error
 * (RFC 6749 §5.2, RFC 8693 §2.2.2, RFC 9449 §5) and HTTP status; `docs/errors.md` lists
 * every code and a test checks the list and this table agree both ways.
 *
 * RFC 8693 §2.2.2: a subject_token or actor_token that is invalid for any reason, or
 * unacceptable based on policy, MUST be `invalid_request` (so every attestation, upstream
 * token and chain refusal is); a target the server will not issue for SHOULD be
 * `invalid_target`. `access_denied` is a token-endpoint error only in the CIBA-style
 * approval flow, for a person's denial. The specific code travels in the audit event and
 * in the description, so one wire error never hides which check failed; a code whose
 * answer must not tell it apart from another (`shownAs`) names that other code instead.
 */
export const ERROR_CODES = {
  // request shape
  ERR_REQUEST_MALFORMED: { oauth: 'invalid_request', status: 400 },
  ERR_REQUEST_TOO_LARGE: { oauth: 'invalid_request', status: 413 },
  // HTTP surface: a path Leash does not serve, or a method its route does not take
  ERR_ROUTE_NOT_FOUND: { oauth: 'not_found', status: 404 },
  ERR_METHOD_NOT_ALLOWED: { oauth: 'invalid_request', status: 405 },
  ERR_SUBJECT_TOKEN_TYPE_UNSUPPORTED: { oauth: 'invalid_request', status: 400 },
  ERR_REQUESTED_TOKEN_TYPE_UNSUPPORTED: { oauth: 'invalid_request', status: 400 },
  ERR_TTL_INVALID: { oauth: 'invalid_request', status: 400 },
  ERR_TTL_EXCEEDS_MAX: { oauth: 'invalid_request', status: 400 },
  // attestation (the subject_token)
  ERR_ATTESTATION_MALFORMED: { oauth: 'invalid_request', status: 400 },
  ERR_ATTESTATION_ISSUER_UNKNOWN: { oauth: 'invalid_request', status: 400 },
  ERR_ATTESTATION_ALG_NOT_ALLOWED: { oauth: 'invalid_request', status: 400 },
  ERR_ATTESTATION_HEADER_KEY: { oauth: 'invalid_request', status: 400 },
  ERR_ATTESTATION_SIGNATURE: { oauth: 'invalid_request', status: 400 },
  ERR_ATTESTATION_EXPIRED: { oauth: 'invalid_request', status: 400 },
  ERR_ATTESTATION_NOT_YET_VALID: { oauth: 'invalid_request', status: 400 },
  ERR_ATTESTATION_CLAIM_MISSING: { oauth: 'invalid_request', status: 400 },
  ERR_ATTESTATION_CLAIM_INVALID: { oauth: 'invalid_request', status: 400 },
  ERR_ATTESTATION_TOO_OLD: { oauth: 'invalid_request', status: 400 },
  ERR_ATTESTATION_AUDIENCE: { oauth: 'invalid_request', status: 400 },
  ERR_ATTESTATION_KEYS_UNAVAILABLE: { oauth: 'temporarily_unavailable', status: 503 },
  // Kubernetes TokenReview (optional per issuer): the cluster's own word on the token
  ERR_ATTESTATION_REVIEW_REJECTED: { oauth: 'invalid_request', status: 400 },
  ERR_ATTESTATION_REVIEW_UNAVAILABLE: { oauth: 'temporarily_unavailable', status: 503 },
  // client certificates (mutual TLS, RFC 8705): the connection's, or a trusted proxy's header
  ERR_CLIENT_CERT_REQUIRED: { oauth: 'invalid_request', status: 400 },
  ERR_CLIENT_CERT_MISMATCH: { oauth: 'invalid_request', status: 400 },
  ERR_CLIENT_CERT_MALFORMED: { oauth: 'invalid_request', status: 400 },
  ERR_CLIENT_CERT_HEADER_UNTRUSTED: { oauth: 'invalid_request', status: 400 },
  // identity and policy
  ERR_WORKLOAD_UNBOUND: { oauth: 'invalid_request', status: 400 },
  ERR_CLIENT_PLUGIN_MISMATCH: { oauth: 'unauthorized_client', status: 400 },
  ERR_CLIENT_AUTH_UNSUPPORTED: { oauth: 'invalid_client', status: 400 },
  ERR_CLIENT_AUTH_REQUIRED: { oauth: 'invalid_client', status: 401 },
  ERR_ATTESTATION_REQUIRED: { oauth: 'invalid_request', status: 400 },
  ERR_PLUGIN_DISABLED: { oauth: 'unauthorized_client', status: 400 },
  ERR_PLUGIN_SUSPENDED: { oauth: 'unauthorized_client', status: 400 },
  ERR_QUOTA_EXCEEDED: { oauth: 'invalid_request', status: 429 },
  ERR_AUDIENCE_MISSING: { oauth: 'invalid_target', status: 400 },
  ERR_AUDIENCE_MULTIPLE: { oauth: 'invalid_target', status: 400 },
  ERR_AUDIENCE_NOT_GRANTED: { oauth: 'invalid_target', status: 400 },
  ERR_RESOURCE_INVALID: { oauth: 'invalid_target', status: 400 },
  ERR_SCOPE_NOT_GRANTED: { oauth: 'invalid_scope', status: 400 },
  ERR_CONDITION_FAILED: { oauth: 'invalid_request', status: 400 },
  ERR_KIND_UNAVAILABLE: { oauth: 'invalid_target', status: 400 },
  ERR_EXCEPTION_EXPIRED: { oauth: 'invalid_target', status: 400 },
  // RFC 9396 authorization_details (task, MCP tool calls)
  ERR_AUTHORIZATION_DETAILS_INVALID: { oauth: 'invalid_authorization_details', status: 400 },
  ERR_TOOL_NOT_GRANTED: { oauth: 'invalid_authorization_details', status: 400 },
  ERR_TOOL_ARGUMENTS_REFUSED: { oauth: 'invalid_authorization_details', status: 400 },
  ERR_TOOL_PER_CALL_REQUIRED: { oauth: 'invalid_scope', status: 400 },
  // approvals and step-up (CIBA-style polling, OpenID CIBA §11)
  ERR_APPROVAL_PENDING: { oauth: 'authorization_pending', status: 400 },
  ERR_APPROVAL_SLOW_DOWN: { oauth: 'slow_down', status: 400 },
  ERR_APPROVAL_LIMIT: { oauth: 'slow_down', status: 400 },
  ERR_APPROVAL_DENIED: { oauth: 'access_denied', status: 400 },
  ERR_APPROVAL_EXPIRED: { oauth: 'expired_token', status: 400 },
  ERR_APPROVAL_UNKNOWN: { oauth: 'invalid_grant', status: 400 },
  ERR_APPROVAL_MISMATCH: { oauth: 'invalid_grant', status: 400 },
  ERR_APPROVAL_USED: { oauth: 'invalid_grant', status: 400 },
  ERR_STEP_UP_ATTESTATION_AGE: { oauth: 'invalid_request', status: 400 },
  ERR_STEP_UP_JUSTIFICATION: { oauth: 'invalid_request', status: 400 },
  // agents acting for a person (subject_token from a user identity provider)
  ERR_USER_TOKEN_UNTRUSTED: { oauth: 'invalid_request', status: 400 },
  ERR_USER_REQUIRED: { oauth: 'invalid_request', status: 400 },
  ERR_USER_NOT_ALLOWED: { oauth: 'invalid_request', status: 400 },
  // delegation chains (RFC 8693 actor_token)
  ERR_ACTOR_TOKEN_TYPE_UNSUPPORTED: { oauth: 'invalid_request', status: 400 },
  ERR_UPSTREAM_TOKEN_INVALID: { oauth: 'invalid_request', status: 400 },
  ERR_UPSTREAM_TOKEN_REVOKED: { oauth: 'invalid_request', status: 400 },
  ERR_DELEGATION_NOT_ALLOWED: { oauth: 'invalid_request', status: 400 },
  ERR_DELEGATION_TASK_MISMATCH: { oauth: 'invalid_request', status: 400 },
  ERR_DELEGATION_DEPTH: { oauth: 'invalid_request', status: 400 },
  ERR_DELEGATION_CYCLE: { oauth: 'invalid_request', status: 400 },
  ERR_DELEGATION_SCOPE_ESCALATION: { oauth: 'invalid_scope', status: 400 },
  ERR_DELEGATION_AUDIENCE_ESCALATION: { oauth: 'invalid_target', status: 400 },
  ERR_DELEGATION_TOXIC: { oauth: 'invalid_request', status: 400 },
  // tasks
  ERR_TASK_REQUIRED: { oauth: 'invalid_request', status: 400 },
  ERR_TASK_UNKNOWN: { oauth: 'invalid_grant', status: 400 },
  ERR_TASK_EXPIRED: { oauth: 'invalid_grant', status: 400 },
  ERR_TASK_ENDED: { oauth: 'invalid_grant', status: 400 },
  ERR_TASK_PLUGIN_NOT_ALLOWED: { oauth: 'invalid_grant', status: 400 },
  ERR_TASK_TOXIC: { oauth: 'invalid_request', status: 400 },
  ERR_TASK_BUDGET_EXHAUSTED: { oauth: 'access_denied', status: 400 },
  // DPoP (RFC 9449)
  ERR_DPOP_REQUIRED: { oauth: 'invalid_dpop_proof', status: 400 },
  ERR_DPOP_INVALID: { oauth: 'invalid_dpop_proof', status: 400 },
  ERR_DPOP_REPLAY: { oauth: 'invalid_dpop_proof', status: 400 },
  // upstream credential services (AWS STS, Vault): never their text, only these
  ERR_UPSTREAM_REFUSED: { oauth: 'invalid_target', status: 400 },
  ERR_UPSTREAM_TARGET_INVALID: { oauth: 'invalid_target', status: 400 },
  ERR_UPSTREAM_UNAVAILABLE: { oauth: 'temporarily_unavailable', status: 503 },
  // backends: fail closed
  ERR_BACKEND_UNAVAILABLE: { oauth: 'temporarily_unavailable', status: 503 },
  ERR_STORE_RESET: { oauth: 'temporarily_unavailable', status: 503 },
  ERR_SIGNING_UNAVAILABLE: { oauth: 'temporarily_unavailable', status: 503 },
  // overload (src/http/admission.ts): refused at once, or after the queue deadline, without being worked on
  ERR_OVERLOADED: { oauth: 'temporarily_unavailable', status: 503 },
  // the client closed its connection before the answer: nothing is signed or recorded for it (nobody reads this answer)
  ERR_CLIENT_GONE: { oauth: 'temporarily_unavailable', status: 503 },
  // resource-server client authentication (introspection, revocation feed)
  ERR_CLIENT_AUTH_FAILED: { oauth: 'invalid_client', status: 401 },
  // admin API (RFC 6750 bearer errors)
  ERR_ADMIN_UNAUTHENTICATED: { oauth: 'invalid_token', status: 401 },
  ERR_ADMIN_FORBIDDEN: { oauth: 'insufficient_scope', status: 403 },
  ERR_ADMIN_NOT_FOUND: { oauth: 'not_found', status: 404 },
  // another orchestrator's task: answered exactly like an unknown one, audited as this
  ERR_TASK_NOT_OWNER: { oauth: 'not_found', status: 404, shownAs: 'ERR_ADMIN_NOT_FOUND' },
  ERR_ADMIN_INVALID: { oauth: 'invalid_request', status: 400 },
  ERR_ADMIN_CONFLICT: { oauth: 'conflict', status: 409 },
} as const satisfies Record<string, { oauth: string; status: number; shownAs?: string }>;

export type ErrorCode = keyof typeof ERROR_CODES;
export type OAuthErrorName = (typeof ERROR_CODES)[ErrorCode]['oauth'];
