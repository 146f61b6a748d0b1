import { errors as joseErrors, type CompactVerifyGetKey, type FlattenedJWSInput, type CompactJWSHeaderParameters, type JWTVerifyGetKey } from 'jose';
import { publicKeyObject, verifyCompactSignature } from '../keys/jws-verify.js';
import { verifyWithCandidates } from './candidate-keys.js';
import type { TrustedIssuerConfig } from '../config/schema.js';
import type { ErrorCode } from '../errors/codes.js';
import { LeashError, isLeashError } from '../errors/leash-error.js';
import { epochSeconds, type Clock } from '../time/clock.js';
import { MAX_TOKEN_LENGTH } from '../client/token-limits.js';

/** Header members that point at or carry a key: an attacker would choose it. Never used, never fetched. */
const KEY_HEADERS = ['jku', 'x5u', 'jwk', 'x5c'] as const;

/** With several keys matching a kid-less token, at most this many are tried. */

const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

export type JsonObject = Record<string, unknown>;

export interface DecodedJwt {
  readonly header: JsonObject;
  readonly payload: JsonObject;
}

/** A token whose signature, issuer, audience and times have all been checked. */
export interface VerifiedJwt extends DecodedJwt {
  readonly issuedAt: number | undefined;
  readonly expiresAt: number;
}

/** The part of a trusted issuer's config the shared checks read. */
export type JwtCheckConfig = Pick<TrustedIssuerConfig, 'issuer' | 'audience' | 'algorithms' | 'max_token_age' | 'clock_skew'>;

export type JwtVerifier = (token: string) => Promise<VerifiedJwt>;

const fail = (code: ErrorCode, description: string, detail?: Record<string, unknown>, cause?: unknown) => new LeashError(code, description, detail, cause === undefined ? undefined : { cause });

/**
 * Split and decode a compact JWS WITHOUT verifying it: for routing (which issuer?) and for
 * the pre-signature header checks. Anything that is not three base64url parts with JSON
 * object header and payload is ERR_ATTESTATION_MALFORMED.
 */
export function decodeUnverified(token: string): DecodedJwt {
  if (typeof token !== 'string' || token.length === 0) throw fail('ERR_ATTESTATION_MALFORMED', 'the attestation is empty: send a JWT');
  if (token.length > MAX_TOKEN_LENGTH) throw fail('ERR_ATTESTATION_MALFORMED', 'the attestation is too long to be a JWT');
  if (!COMPACT_JWS.test(token)) throw fail('ERR_ATTESTATION_MALFORMED', 'the attestation is not a compact JWS (three base64url parts)');
  const [h, p] = token.split('.') as [string, string, string];
  return { header: decodePart(h, 'header'), payload: decodePart(p, 'payload') };
}

function decodePart(part: string, what: string): JsonObject {
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
  } catch {
    throw fail('ERR_ATTESTATION_MALFORMED', `the attestation's ${what} is not base64url JSON`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw fail('ERR_ATTESTATION_MALFORMED', `the attestation's ${what} is not a JSON object`);
  }
  return value as JsonObject;
}

/** `none` and every HMAC algorithm are refused whatever a config says: a public key is not a secret. */
export function isForbiddenAlgorithm(alg: string): boolean {
  return alg.toLowerCase() === 'none' || /^HS/i.test(alg);
}

/**
 * The checks every attestation kind shares, in a fixed order, each with its own code:
 * shape → alg → key-bearing headers → crit → signature → iss → aud → exp → nbf → iat → age.
 * Built once per issuer; the per-token path is one decode and one signature verification.
 */
export function createJwtVerifier(cfg: JwtCheckConfig, deps: { keys: JWTVerifyGetKey; clock: Clock }): JwtVerifier {
  const algorithms = (cfg.algorithms ?? []).filter((a) => !isForbiddenAlgorithm(a));
  if (algorithms.length === 0) throw new TypeError(`issuer '${cfg.issuer}': no asymmetric algorithm allowed (none and HS* are never accepted)`);
  const allowed: ReadonlySet<string> = new Set(algorithms);
  const audiences: ReadonlySet<string> = new Set(typeof cfg.audience === 'string' ? [cfg.audience] : cfg.audience);
  const skew = cfg.clock_skew;
  const maxAge = cfg.max_token_age;
  // jose's JWT-header and JWS-header key-lookup types differ only in `b64`, which we never allow.
  const keys = deps.keys as unknown as CompactVerifyGetKey;

  return async (token) => {
    const { header, payload } = decodeUnverified(token);

    const alg = header.alg;
    if (typeof alg !== 'string' || isForbiddenAlgorithm(alg) || !allowed.has(alg)) {
      throw fail('ERR_ATTESTATION_ALG_NOT_ALLOWED', `the attestation's alg is not one this issuer may use (${algorithms.join(', ')})`, {
        alg: typeof alg === 'string' ? alg.slice(0, 32) : typeof alg,
      });
    }
    for (const name of KEY_HEADERS) {
      if (name in header) throw fail('ERR_ATTESTATION_HEADER_KEY', `the attestation's header names its own key ('${name}'): keys come only from the issuer's configured JWKS`, { header: name });
    }
    if ('crit' in header) throw fail('ERR_ATTESTATION_MALFORMED', "the attestation's header has 'crit' extensions, which are not supported");

    await verifySignature(token, header as unknown as CompactJWSHeaderParameters, keys);

    const now = epochSeconds(deps.clock);
    if (payload.iss !== cfg.issuer) throw fail('ERR_ATTESTATION_ISSUER_UNKNOWN', "the attestation's iss is not this trusted issuer");

    const aud = payload.aud;
    const tokenAudiences = typeof aud === 'string' ? [aud] : Array.isArray(aud) && aud.every((a) => typeof a === 'string') ? (aud as string[]) : undefined;
    if (tokenAudiences === undefined) throw fail('ERR_ATTESTATION_AUDIENCE', 'the attestation has no valid aud: request it for the audience Leash is configured to expect');
    if (!tokenAudiences.some((a) => audiences.has(a))) {
      throw fail('ERR_ATTESTATION_AUDIENCE', "the attestation's aud does not name the audience Leash expects for this issuer", { expected: [...audiences] });
    }

    const exp = numericDate(payload, 'exp');
    if (exp === undefined) throw fail('ERR_ATTESTATION_CLAIM_MISSING', "the attestation has no 'exp': only expiring tokens are accepted", { claim: 'exp' });
    if (exp <= now - skew) throw fail('ERR_ATTESTATION_EXPIRED', 'the attestation has expired: fetch a fresh one', { exp, now });

    const nbf = numericDate(payload, 'nbf');
    if (nbf !== undefined && nbf > now + skew) throw fail('ERR_ATTESTATION_NOT_YET_VALID', 'the attestation is not valid yet (nbf is in the future)', { nbf, now });

    const iat = numericDate(payload, 'iat');
    if (iat !== undefined) {
      if (iat > now + skew) throw fail('ERR_ATTESTATION_NOT_YET_VALID', 'the attestation was issued in the future (iat): check clocks', { iat, now });
      if (now - iat > maxAge + skew) throw fail('ERR_ATTESTATION_TOO_OLD', `the attestation is older than ${maxAge}s: fetch a fresh one`, { iat, now, max_token_age: maxAge });
    } else if (exp - now > maxAge + skew) {
      // Without iat its age is unknown; only a lifetime within max_token_age bounds it.
      throw fail('ERR_ATTESTATION_TOO_OLD', `the attestation has no iat and lives longer than ${maxAge}s: its age cannot be bounded`, { exp, now, max_token_age: maxAge });
    }

    return { header, payload, issuedAt: iat, expiresAt: exp };
  };
}

/** A NumericDate claim: absent → undefined; present but not a finite non-negative number → CLAIM_INVALID. */
function numericDate(payload: JsonObject, claim: 'exp' | 'nbf' | 'iat'): number | undefined {
  const value = payload[claim];
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
    throw fail('ERR_ATTESTATION_CLAIM_INVALID', `the attestation's '${claim}' is not a NumericDate`, { claim });
  }
  return value;
}

async function verifySignature(token: string, header: CompactJWSHeaderParameters, keys: CompactVerifyGetKey): Promise<void> {
  const [protectedHeader, payload, signature] = token.split('.') as [string, string, string];
  // What jose hands a key lookup: the issuer's key set picks by kid, kty, alg and use.
  const input: FlattenedJWSInput = { protected: protectedHeader, payload, signature };
  await verifyWithCandidates(
    async (candidate) => {
      const key = publicKeyObject(candidate ?? (await keys(header, input)));
      // The signature alone, synchronously (src/keys/jws-verify.ts); the header and claims are checked here.
      const failure = verifyCompactSignature(token, header.alg, key);
      if (failure === 'key') throw new TypeError(`the issuer's key cannot verify ${header.alg}`);
      if (failure !== undefined) throw new joseErrors.JWSSignatureVerificationFailed();
    },
    () => fail('ERR_ATTESTATION_SIGNATURE', "the attestation's signature does not verify with any of the issuer's keys"),
    mapVerifyError,
  );
}

function mapVerifyError(err: unknown): LeashError {
  if (isLeashError(err)) return err;
  const code = (err as { code?: unknown } | null)?.code;
  switch (code) {
    case 'ERR_JOSE_ALG_NOT_ALLOWED':
      return fail('ERR_ATTESTATION_ALG_NOT_ALLOWED', "the attestation's alg is not one this issuer may use", undefined, err);
    case 'ERR_JWS_INVALID':
      return fail('ERR_ATTESTATION_MALFORMED', 'the attestation is not a valid JWS', undefined, err);
    default:
      return fail('ERR_ATTESTATION_SIGNATURE', "the attestation's signature does not verify with the issuer's keys", { reason: typeof code === 'string' ? code : 'invalid' }, err);
  }
}
