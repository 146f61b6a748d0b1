/**
 * The token endpoint refused, or its answer could not be used. `error` is the OAuth error
 * code the server sent (RFC 6749 §5.2 / RFC 8693 / RFC 9449, e.g. `invalid_grant`), or one
 * of the client's own: `invalid_response` (the server's answer was not understood) and
 * `network_error` (no answer; `status` 0).
 */
export class LeashExchangeError extends Error {
  readonly error: string;
  readonly error_description: string | undefined;
  readonly status: number;
  /** `authorization_pending` / `slow_down`: the approval to poll with (`approval_id`). */
  readonly approvalId: string | undefined;
  /** `authorization_pending` / `slow_down`: seconds to wait before polling again (`interval`). */
  readonly interval: number | undefined;
  constructor(error: string, errorDescription: string | undefined, status: number, options?: { cause?: unknown; approvalId?: string; interval?: number }) {
    super(errorDescription ? `${error}: ${errorDescription}` : error, options);
    this.name = 'LeashExchangeError';
    this.error = error;
    this.error_description = errorDescription;
    this.status = status;
    this.approvalId = options?.approvalId;
    this.interval = options?.interval;
  }
}

/** RFC 6750 §3.1 error codes, plus RFC 9449's `invalid_dpop_proof`. */
export type LeashVerifyErrorCode = 'invalid_request' | 'invalid_token' | 'insufficient_scope' | 'invalid_dpop_proof' | 'temporarily_unavailable';

/**
 * A resource-server check failed. `status` is the HTTP status to answer (400, 401, 403, or
 * 503 when the issuer's keys cannot be fetched); `scheme` is the auth scheme the challenge
 * should use; `missingCredentials` means no usable Authorization header was sent, in which
 * case RFC 6750 §3.1 says the challenge carries no error code.
 */
export class LeashVerifyError extends Error {
  readonly error: LeashVerifyErrorCode;
  readonly error_description: string;
  readonly status: number;
  readonly scheme: 'Bearer' | 'DPoP';
  readonly missingCredentials: boolean;
  /** For `insufficient_scope`: the scopes the request needs. */
  readonly scope: readonly string[] | undefined;
  /** The refusal as a usage record names it (`expired`, `revoked`, `wrong_audience`, `missing_scope`, `bad_dpop`, ...). */
  readonly reason: LeashRefusalReason;
  /**
   * What the refused token said about itself, when its signature verified (an expired token,
   * another audience's, a revoked one): the ids a usage report carries. Never the token.
   */
  readonly token: LeashRefusedToken | undefined;
  constructor(
    error: LeashVerifyErrorCode,
    description: string,
    opts: { status?: number; scheme?: 'Bearer' | 'DPoP'; missingCredentials?: boolean; scope?: readonly string[]; cause?: unknown; reason?: LeashRefusalReason; token?: LeashRefusedToken } = {},
  ) {
    super(`${error}: ${description}`, { cause: opts.cause });
    this.name = 'LeashVerifyError';
    this.error = error;
    this.error_description = description;
    this.status = opts.status ?? DEFAULT_STATUS[error];
    this.scheme = opts.scheme ?? 'Bearer';
    this.missingCredentials = opts.missingCredentials ?? false;
    this.scope = opts.scope;
    this.reason =
      opts.reason ?? (error === 'insufficient_scope' ? 'missing_scope' : error === 'invalid_dpop_proof' ? 'bad_dpop' : error === 'temporarily_unavailable' ? 'unavailable' : 'invalid_token');
    this.token = opts.token;
  }
}

/** Why a token was refused, in the words of a usage record. */
export type LeashRefusalReason = 'expired' | 'revoked' | 'wrong_audience' | 'missing_scope' | 'bad_dpop' | 'invalid_token' | 'unavailable';

/** The ids of a refused token whose signature verified. */
export interface LeashRefusedToken {
  readonly jti?: string;
  readonly plugin?: string;
  readonly task?: string;
  readonly aud?: string;
  /** The DPoP key of the proof presented (a `bad_dpop` refusal), when it could be read. */
  readonly jkt?: string;
}

const DEFAULT_STATUS: Record<LeashVerifyErrorCode, number> = {
  invalid_request: 400,
  invalid_token: 401,
  insufficient_scope: 403,
  invalid_dpop_proof: 401,
  temporarily_unavailable: 503,
};
