import { createHash } from 'node:crypto';
import { decodeJwt, errors as joseErrors, jwtVerify, type JWTPayload, type JWTVerifyGetKey } from 'jose';
import { LeashError, isLeashError } from '../errors/leash-error.js';
import type { ReplayCache } from '../store/store.js';
import { epochSeconds, type Clock } from '../time/clock.js';
import { verifyWithCandidates } from './candidate-keys.js';
import { MAX_TOKEN_LENGTH } from '../client/token-limits.js';

/*
 * RFC 7523 §2.2 `private_key_jwt`: a client proves it holds a key it registered by a
 * short-lived, single-use assertion. One implementation for every client Leash
 * authenticates this way: resource servers (introspection, RFC 7009, the revocation feed)
 * and plugins (the token endpoint).
 */

/** RFC 7523 §2.2. */
export const CLIENT_ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

/** Asymmetric algorithms accepted on a client assertion (never `none` or HMAC: the JWKS is public). */
export const CLIENT_ASSERTION_ALGORITHMS = ['ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519', 'PS256', 'PS384', 'PS512', 'RS256', 'RS384', 'RS512'] as const;

/** An assertion may live at most this long from now: it proves a request, it is not a credential. */
export const MAX_ASSERTION_LIFETIME_SECONDS = 300;
const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;

const failed = (method: string, reason: string, description: string, cause?: unknown) =>
  new LeashError('ERR_CLIENT_AUTH_FAILED', description, { method, reason }, cause === undefined ? undefined : { cause });

/** The keys a client's assertions verify with, `otherMethod` (why not) when that client authenticates another way, or undefined when it is unknown. */
export type AssertionKeyLookup = (clientId: string) => { readonly keys: JWTVerifyGetKey; readonly algorithms: readonly string[] } | { readonly otherMethod: string } | undefined;

export interface ClientAssertionVerifierDeps {
  /** Acceptable `aud` values: the issuer and the endpoint URLs. */
  readonly audiences: ReadonlySet<string>;
  readonly clock: Clock;
  readonly replay: ReplayCache;
  readonly clockSkewSeconds: number;
  /** Replay-cache namespace (resource servers and plugins are different client sets). */
  readonly replayPrefix: string;
  /** The `aud` named in error descriptions. */
  readonly audienceHint: string;
}

export interface ClientAssertionVerifier {
  /**
   * RFC 7523 §2.2 / §3: the assertion's signature (a key the client registered, an
   * allowed asymmetric algorithm), `iss` = `sub` = the client id (= `client_id` when sent),
   * `aud` one of ours, `exp` at most MAX_ASSERTION_LIFETIME_SECONDS ahead, `iat` not in the
   * future, a `jti` used once (remembered until `exp`, across replicas). Throws
   * ERR_CLIENT_AUTH_FAILED (`invalid_client`), ERR_REQUEST_MALFORMED, or
   * ERR_BACKEND_UNAVAILABLE when the client's remote keys cannot be fetched.
   */
  verify(
    input: {
      readonly type: string | undefined;
      readonly assertion: string | undefined;
      readonly clientId: string | undefined;
      /** Instead of the verifier's own cache: a dry run (explain) passes a read-only view. */
      readonly replay?: ReplayCache | undefined;
    },
    lookup: AssertionKeyLookup,
  ): Promise<{ clientId: string; payload: JWTPayload }>;
}

/** One implementation of `private_key_jwt`, for resource servers (introspection, RFC 7009, the feed) and plugins (the token endpoint). */
export function createClientAssertionVerifier(deps: ClientAssertionVerifierDeps): ClientAssertionVerifier {
  const skew = deps.clockSkewSeconds;
  const method = 'private_key_jwt';

  async function verifyAssertion(assertion: string, keys: JWTVerifyGetKey, algorithms: readonly string[], clientId: string): Promise<JWTPayload> {
    const options = {
      issuer: clientId,
      algorithms: [...algorithms],
      requiredClaims: ['exp', 'jti', 'sub', 'aud'],
      clockTolerance: skew,
      currentDate: new Date(deps.clock.now()),
    };
    return verifyWithCandidates(
      async (key) => (await (key ? jwtVerify(assertion, key, options) : jwtVerify(assertion, keys, options))).payload,
      () => failed('private_key_jwt', 'signature', 'client_assertion signature does not verify with your registered keys'),
      assertionError,
    );
  }

  return {
    async verify({ type, assertion, clientId: bodyClientId, replay = deps.replay }, lookup) {
      if (type === undefined || assertion === undefined) throw new LeashError('ERR_REQUEST_MALFORMED', 'private_key_jwt needs both client_assertion and client_assertion_type');
      if (type !== CLIENT_ASSERTION_TYPE) throw failed(method, 'assertion_type', `client_assertion_type must be ${CLIENT_ASSERTION_TYPE}`);
      if (assertion.length > MAX_TOKEN_LENGTH || !COMPACT_JWS.test(assertion)) throw failed(method, 'malformed_assertion', 'client_assertion is not a compact JWS');
      let unverified: JWTPayload;
      try {
        unverified = decodeJwt(assertion);
      } catch {
        throw failed(method, 'malformed_assertion', 'client_assertion is not a JWT');
      }
      const clientId = unverified.iss;
      if (typeof clientId !== 'string' || clientId.length === 0) throw failed(method, 'malformed_assertion', 'client_assertion has no iss: set iss and sub to your client id');
      if (bodyClientId !== undefined && bodyClientId !== clientId) throw failed(method, 'client_id_mismatch', 'client_id does not match the assertion iss');
      const registered = lookup(clientId);
      if (!registered) throw failed(method, 'unknown_client', 'client_assertion signature does not verify with your registered keys');
      if ('otherMethod' in registered) throw failed(method, 'method_not_allowed', registered.otherMethod);

      const payload = await verifyAssertion(assertion, registered.keys, registered.algorithms, clientId);
      const now = epochSeconds(deps.clock);
      if (payload.sub !== clientId) throw failed(method, 'sub_mismatch', 'client_assertion sub must equal iss (your client id)');
      const aud = typeof payload.aud === 'string' ? [payload.aud] : Array.isArray(payload.aud) ? payload.aud : [];
      if (!aud.some((a) => deps.audiences.has(a))) throw failed(method, 'audience', `client_assertion aud must be ${deps.audienceHint} or the endpoint URL`);
      const exp = payload.exp as number; // required by jwtVerify
      if (exp > now + MAX_ASSERTION_LIFETIME_SECONDS + skew) throw failed(method, 'lifetime', `client_assertion exp must be at most ${MAX_ASSERTION_LIFETIME_SECONDS}s ahead`);
      if (typeof payload.iat === 'number' && payload.iat > now + skew) throw failed(method, 'iat', 'client_assertion iat is in the future: check clocks');
      const jti = payload.jti;
      if (typeof jti !== 'string' || jti.length === 0 || jti.length > 256) throw failed(method, 'jti', 'client_assertion needs a jti (single use)');
      const digest = createHash('sha256').update(`${clientId}\n${jti}`).digest('base64url');
      if (!(await replay.remember(`${deps.replayPrefix}:${digest}`, (exp + skew) * 1000))) throw failed(method, 'replay', 'client_assertion was already used: send a new jti each time');
      return { clientId, payload };
    },
  };
}

function assertionError(err: unknown): LeashError {
  if (isLeashError(err)) {
    // The server's remote JWKS being unreachable is an outage, not a bad credential.
    if (err.code === 'ERR_ATTESTATION_KEYS_UNAVAILABLE' || err.code === 'ERR_BACKEND_UNAVAILABLE') {
      return new LeashError('ERR_BACKEND_UNAVAILABLE', "the client's keys cannot be fetched; retry later", err.detail, { cause: err });
    }
    return failed('private_key_jwt', 'signature', 'client_assertion signature does not verify with your registered keys', err);
  }
  if (err instanceof joseErrors.JWTExpired) return failed('private_key_jwt', 'expired', 'client_assertion has expired', err);
  if (err instanceof joseErrors.JWTClaimValidationFailed) return failed('private_key_jwt', `claim_${err.claim}`, `client_assertion claim '${err.claim}' is missing or invalid`, err);
  if (err instanceof joseErrors.JOSEAlgNotAllowed) return failed('private_key_jwt', 'alg', 'client_assertion alg is not accepted (asymmetric algorithms only)', err);
  return failed('private_key_jwt', 'signature', 'client_assertion signature does not verify with your registered keys', err);
}
