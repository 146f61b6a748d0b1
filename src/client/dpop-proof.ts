import { createHash } from 'node:crypto';
import { calculateJwkThumbprint, compactVerify, importJWK, type JWK } from 'jose';
import { normalizeHtu } from './htu.js';
import { MAX_TOKEN_LENGTH } from './token-limits.js';

/**
 * RFC 9449 §4.3 proof checks, shared by resource servers (the SDK's verifier) and the
 * broker's token endpoint (src/dpop/ turns a refusal into a LeashError): one implementation
 * of a security check, so the two cannot drift.
 */

/** Remembers proof ids until they expire (the broker's Store is one; the SDK has an in-memory one). */
export interface ReplayCache {
  /** True the first time `key` is seen before `expiresAt`; false on a replay. */
  remember(key: string, expiresAt: number): Promise<boolean>;
}

/** Why a proof was refused: none was sent, it is not valid, or it was already used. */
export type DpopProofFailure = 'required' | 'invalid' | 'replay';

/** A refused proof; `description` says what to fix and is safe to show the caller. */
export class DpopProofError extends Error {
  readonly failure: DpopProofFailure;
  readonly description: string;
  constructor(failure: DpopProofFailure, description: string) {
    super(description);
    this.name = 'DpopProofError';
    this.failure = failure;
    this.description = description;
  }
}

export interface VerifyDpopProofOptions {
  /** The `DPoP` header as received; more than one (an array) is refused. */
  readonly proof: string | readonly string[] | undefined;
  /** The request method, e.g. `POST`. */
  readonly method: string;
  /** The absolute URL the request was sent to (query and fragment are ignored). */
  readonly url: string;
  /** Milliseconds since the epoch. */
  readonly now: number;
  readonly maxAgeSeconds: number;
  readonly clockSkewSeconds: number;
  /** Accepted proof algorithms; asymmetric only. */
  readonly algorithms: readonly string[];
  readonly replay: ReplayCache;
  /** At a resource server: the access token the proof must be bound to (`ath`). */
  readonly accessToken?: string | undefined;
}

export interface DpopProofResult {
  /** RFC 7638 SHA-256 thumbprint of the proof key, as `cnf.jkt` carries it. */
  readonly jkt: string;
}

const MAX_JTI_LENGTH = 256;
const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;
const PRIVATE_JWK_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'k', 'oth'] as const;
const SYMMETRIC = /^(none|HS\d+)$/i;

function invalid(description: string): DpopProofError {
  return new DpopProofError('invalid', description);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function decodeJson(segment: string, what: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(segment, 'base64url').toString('utf8'));
  } catch {
    throw invalid(`DPoP proof ${what} is not base64url-encoded JSON`);
  }
  if (!isObject(value)) throw invalid(`DPoP proof ${what} must be a JSON object`);
  return value;
}

/** base64url(SHA-256(ASCII access token)), the `ath` claim (RFC 9449 §4.2). */
export function accessTokenHash(accessToken: string): string {
  return createHash('sha256').update(accessToken, 'ascii').digest('base64url');
}

/**
 * Checks a DPoP proof JWT as RFC 9449 §4.3 lists, each failed check named in the error
 * description (a DpopProofError: `invalid`; a replayed proof is `replay`; no proof at all is
 * `required`). The replay cache is consulted last, so a proof that fails any other
 * check never occupies a slot. Returns the proof key's thumbprint.
 */
export async function verifyDpopProof(opts: VerifyDpopProofOptions): Promise<DpopProofResult> {
  for (const alg of opts.algorithms) {
    if (SYMMETRIC.test(alg)) throw new TypeError(`verifyDpopProof: '${alg}' is not an asymmetric algorithm`);
  }
  const expectedHtu = normalizeHtu(opts.url);
  if (expectedHtu === undefined) throw new TypeError('verifyDpopProof: url must be an absolute http(s) URL');

  // 1. exactly one well-formed JWT (RFC 9449 §4.3 points 1-2)
  const { proof } = opts;
  if (proof === undefined || proof === '') throw new DpopProofError('required', 'no DPoP proof: send one DPoP header');
  if (typeof proof !== 'string') throw invalid('send exactly one DPoP header');
  if (proof.length > MAX_TOKEN_LENGTH) throw invalid('DPoP proof is too long');
  if (!COMPACT_JWS.test(proof)) throw invalid('DPoP proof must be a compact JWS (three base64url parts)');
  const [headerPart, payloadPart] = proof.split('.') as [string, string, string];

  // 2. header: typ, alg, jwk (points 4-7)
  const header = decodeJson(headerPart, 'header');
  if (header.typ !== 'dpop+jwt') throw invalid("DPoP proof header 'typ' must be 'dpop+jwt'");
  const alg = header.alg;
  if (typeof alg !== 'string' || alg === '') throw invalid("DPoP proof header 'alg' is missing");
  if (SYMMETRIC.test(alg)) throw invalid(`DPoP proof 'alg' must be asymmetric, not ${alg}`);
  if (!opts.algorithms.includes(alg)) throw invalid(`DPoP proof 'alg' ${alg} is not accepted; use one of ${opts.algorithms.join(', ')}`);
  const jwk = header.jwk;
  if (!isObject(jwk) || typeof jwk.kty !== 'string') throw invalid("DPoP proof header 'jwk' must be a public JWK");
  for (const m of PRIVATE_JWK_MEMBERS) {
    if (m in jwk) throw invalid("DPoP proof header 'jwk' must not contain private key material");
  }

  // 3. signature with the header's key (point 6)
  try {
    const key = await importJWK(jwk as JWK, alg);
    if (key instanceof Uint8Array) throw new Error('symmetric key');
    await compactVerify(proof, key, { algorithms: [alg] });
  } catch {
    throw invalid("DPoP proof signature does not verify with the header 'jwk' (or the key does not fit 'alg')");
  }
  const payload = decodeJson(payloadPart, 'payload');

  // 4. claims (points 8-11)
  const { jti, htm, htu, iat, ath } = payload;
  if (typeof jti !== 'string' || jti.length === 0) throw invalid("DPoP proof 'jti' is missing");
  if (jti.length > MAX_JTI_LENGTH) throw invalid(`DPoP proof 'jti' is longer than ${MAX_JTI_LENGTH} characters`);
  if (htm !== opts.method) throw invalid(`DPoP proof 'htm' must be the request method ${opts.method}`);
  if (typeof htu !== 'string' || normalizeHtu(htu) !== expectedHtu) {
    throw invalid(`DPoP proof 'htu' must be the request URL ${expectedHtu} (without query and fragment)`);
  }
  if (typeof iat !== 'number' || !Number.isFinite(iat)) throw invalid("DPoP proof 'iat' is missing");
  const nowSeconds = opts.now / 1000;
  if (iat < nowSeconds - opts.maxAgeSeconds) throw invalid(`DPoP proof is older than ${opts.maxAgeSeconds}s: make a fresh proof per request`);
  if (iat > nowSeconds + opts.clockSkewSeconds) throw invalid("DPoP proof 'iat' is in the future: check the client clock");
  if (opts.accessToken !== undefined) {
    if (typeof ath !== 'string') throw invalid("DPoP proof 'ath' is missing: a proof sent with an access token must hash it");
    if (ath !== accessTokenHash(opts.accessToken)) throw invalid("DPoP proof 'ath' does not match the access token");
  }

  // 5. replay (point 12): a jti is single-use per key for as long as the proof could be accepted
  const jkt = await calculateJwkThumbprint(jwk as JWK, 'sha256');
  const fresh = await opts.replay.remember(`dpop:${jkt}:${jti}`, Math.ceil((iat + opts.maxAgeSeconds + opts.clockSkewSeconds) * 1000));
  if (!fresh) throw new DpopProofError('replay', 'DPoP proof was already used: make a fresh proof (new jti) per request');
  return { jkt };
}
