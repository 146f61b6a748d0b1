import { createHash, X509Certificate } from 'node:crypto';
import { createRemoteJWKSet, customFetch, errors as joseErrors, jwtVerify, type JWTPayload, type JWTVerifyGetKey } from 'jose';
import { actDepthOf, chainPluginsOf, MAX_CHAIN_JTI, parseChainJti, PERSON_PRINCIPAL } from './chain-jti.js';
import { systemClock, type Clock } from './clock.js';
import { DpopProofError, verifyDpopProof, type ReplayCache } from './dpop-proof.js';
import { LeashVerifyError, type LeashRefusalReason, type LeashRefusedToken } from './errors.js';
import { createMemoryReplayCache } from './replay-memory.js';
import type { LeashRevocationView } from './revocation-follower.js';
import { MAX_TOKEN_LENGTH } from './token-limits.js';

export interface LeashVerifierOptions {
  /** Leash's issuer URL (`iss`), exactly as in its tokens. */
  readonly issuer: string;
  /** This API's identifier: the `aud` Leash puts in tokens meant for it. */
  readonly audience: string | readonly string[];
  /** Default: `jwks_uri` from `<issuer>/.well-known/openid-configuration`. */
  readonly jwksUri?: string;
  /** Scopes every request must carry; `verify` and the middleware can add more. */
  readonly requiredScopes?: readonly string[];
  /** Leeway for `exp`/`nbf`/`iat` and DPoP `iat`. Default 30 seconds. */
  readonly clockSkewSeconds?: number;
  /** Token signature algorithms. Default ES256 and EdDSA. */
  readonly algorithms?: readonly string[];
  /** DPoP proof algorithms. Default ES256, EdDSA and Ed25519 (RFC 9864's name for EdDSA over Ed25519). */
  readonly dpopAlgorithms?: readonly string[];
  /** How old a DPoP proof may be. Default 60 seconds. */
  readonly dpopMaxAgeSeconds?: number;
  /** Where used proof ids are remembered. Default: in memory, 100k entries. */
  readonly replayCache?: ReplayCache;
  readonly fetch?: typeof fetch;
  readonly clock?: Clock;
  /**
   * Revocations to honour, e.g. `createRevocationFollower(...)`: a revoked token is
   * `invalid_token`; while the view is not fresh every token is refused with 503
   * `temporarily_unavailable` (fail closed). Without it only signature and expiry count.
   */
  readonly revocations?: LeashRevocationView;
}

/** What a resource server needs from a request; `url` is the absolute URL the client called. */
export interface LeashRequestLike {
  readonly authorization?: string | undefined;
  readonly dpop?: string | readonly string[] | undefined;
  readonly method: string;
  readonly url: string;
  /**
   * The TLS client certificate this request came with (DER bytes, PEM text or an
   * X509Certificate): required for certificate-bound tokens (`cnf.x5t#S256`, RFC 8705).
   * The middleware reads it from the TLS connection, or from `clientCertificate` behind a
   * TLS-terminating proxy.
   */
  readonly clientCertificate?: Uint8Array | string | X509Certificate | undefined;
}

/** The verified caller. */
export interface LeashPrincipal {
  /** The plugin (`plugin` claim). */
  readonly plugin: string;
  readonly sub: string;
  /** The task the token was issued for. */
  readonly task: string;
  readonly scopes: readonly string[];
  readonly jti: string;
  /** Seconds since the epoch. */
  readonly exp: number;
  /** The attested workload behind the plugin, when Leash recorded it. */
  readonly workload?: { readonly issuer: string; readonly sub: string };
  /** The DPoP key thumbprint for sender-constrained tokens. */
  readonly jkt?: string;
  /** RFC 8705 `x5t#S256` of the client certificate a certificate-bound token was presented with. */
  readonly x5t?: string;
  readonly claims: JWTPayload;
}

export interface LeashVerifier {
  /** DPoP algorithms accepted, for the `algs` challenge parameter. */
  readonly dpopAlgorithms: readonly string[];
  /** The audiences this verifier accepts (usage records name the one a call was for). */
  readonly audiences: readonly string[];
  verify(req: LeashRequestLike, opts?: { requiredScopes?: readonly string[] }): Promise<LeashPrincipal>;
}

const DEFAULT_ALGS = ['ES256', 'EdDSA'] as const;
/** Proof algorithms: clients such as openid-client 6 sign Ed25519 proofs as `alg: Ed25519` (RFC 9864). */
const DEFAULT_DPOP_ALGS = ['ES256', 'EdDSA', 'Ed25519'] as const;
/** token68 (RFC 9110 §11.2), which both Bearer and DPoP credentials use. */
const TOKEN68 = /^[A-Za-z0-9\-._~+/]+=*$/;

/**
 * Verifies Leash access tokens at a resource server: RFC 9068 `at+jwt` checked against
 * Leash's published keys, this API as audience, required scopes, a `task`, and for
 * sender-constrained tokens (`cnf.jkt`) a DPoP proof (RFC 9449 §7) bound to the token and
 * to this request.
 */
export function createLeashVerifier(opts: LeashVerifierOptions): LeashVerifier {
  if (!opts.issuer || !opts.audience || (Array.isArray(opts.audience) && opts.audience.length === 0)) {
    throw new TypeError('createLeashVerifier: issuer and audience are required');
  }
  const clock = opts.clock ?? systemClock;
  const skew = opts.clockSkewSeconds ?? 30;
  const algorithms = [...(opts.algorithms ?? DEFAULT_ALGS)];
  const dpopAlgorithms = [...(opts.dpopAlgorithms ?? DEFAULT_DPOP_ALGS)];
  const dpopMaxAge = opts.dpopMaxAgeSeconds ?? 60;
  const replay = opts.replayCache ?? createMemoryReplayCache({ now: () => clock.now() });
  const fetchFn = opts.fetch ?? globalThis.fetch;
  const baseScopes = opts.requiredScopes ?? [];
  let jwks: Promise<JWTVerifyGetKey> | undefined;

  function remoteSet(uri: string): JWTVerifyGetKey {
    return createRemoteJWKSet(new URL(uri), { [customFetch]: fetchFn });
  }

  async function discoverJwks(): Promise<JWTVerifyGetKey> {
    const url = `${opts.issuer.replace(/\/+$/, '')}/.well-known/openid-configuration`;
    const res = await fetchFn(url, { headers: { accept: 'application/json' } });
    const doc = (await res.json()) as { issuer?: unknown; jwks_uri?: unknown };
    if (!res.ok || doc.issuer !== opts.issuer || typeof doc.jwks_uri !== 'string') {
      throw new Error(`discovery at ${url} did not name issuer ${opts.issuer} with a jwks_uri`);
    }
    return remoteSet(doc.jwks_uri);
  }

  function keySet(): Promise<JWTVerifyGetKey> {
    if (!jwks) {
      jwks = opts.jwksUri ? Promise.resolve(remoteSet(opts.jwksUri)) : discoverJwks();
      jwks.catch(() => {
        jwks = undefined;
      });
    }
    return jwks;
  }

  async function verifyToken(token: string, scheme: 'Bearer' | 'DPoP'): Promise<{ payload: JWTPayload; kid: string | undefined }> {
    let getKey: JWTVerifyGetKey;
    try {
      getKey = await keySet();
    } catch (err) {
      throw new LeashVerifyError('temporarily_unavailable', "the issuer's keys could not be fetched", { scheme, cause: err });
    }
    try {
      const { payload, protectedHeader } = await jwtVerify(token, getKey, {
        issuer: opts.issuer,
        audience: opts.audience as string | string[],
        typ: 'at+jwt',
        algorithms,
        clockTolerance: skew,
        currentDate: new Date(clock.now()),
        requiredClaims: ['exp', 'jti', 'sub'],
      });
      return { payload, kid: protectedHeader.kid };
    } catch (err) {
      throw tokenError(err, scheme);
    }
  }

  return {
    dpopAlgorithms,
    audiences: typeof opts.audience === 'string' ? [opts.audience] : [...opts.audience],
    async verify(req: LeashRequestLike, callOpts = {}): Promise<LeashPrincipal> {
      const { scheme, token } = parseAuthorization(req.authorization);
      const { payload: claims, kid } = await verifyToken(token, scheme);
      try {
        return await checkClaims(req, callOpts, scheme, token, claims, kid);
      } catch (err) {
        // The signature verified: a refusal from here on can name the token (by its ids) in a usage report.
        if (err instanceof LeashVerifyError && err.token === undefined) throw withToken(err, idsOf(claims));
        throw err;
      }
    },
  };

  async function checkClaims(
    req: LeashRequestLike,
    callOpts: { requiredScopes?: readonly string[] },
    scheme: 'Bearer' | 'DPoP',
    token: string,
    claims: JWTPayload,
    kid: string | undefined,
  ): Promise<LeashPrincipal> {
    const task = claims.task;
    if (typeof task !== 'string' || task === '') throw new LeashVerifyError('invalid_token', "the token has no 'task' claim", { scheme });
    const plugin = typeof claims.plugin === 'string' ? claims.plugin : claims.sub;
    if (typeof plugin !== 'string' || typeof claims.jti !== 'string' || typeof claims.exp !== 'number' || typeof claims.sub !== 'string') {
      throw new LeashVerifyError('invalid_token', 'the token lacks sub, jti or exp', { scheme });
    }
    if (opts.revocations) {
      // Checked before the DPoP proof so a revoked token does not spend a proof's jti.
      if (!opts.revocations.fresh()) throw new LeashVerifyError('temporarily_unavailable', 'the revocation list is not up to date; retry later', { scheme });
      if (typeof claims.iat !== 'number') throw new LeashVerifyError('invalid_token', "the token has no 'iat' claim", { scheme });
      // A delegated token is revoked with any token it derives from (`chain_jti`).
      let upstream: string[] | undefined;
      if (claims.chain_jti !== undefined) {
        upstream = parseChainJti(claims.chain_jti, actDepthOf(claims.act, MAX_CHAIN_JTI), claims.principal === PERSON_PRINCIPAL);
        if (!upstream || upstream.includes(claims.jti)) throw new LeashVerifyError('invalid_token', "the token's 'chain_jti' claim is malformed", { scheme });
      }
      const chainPlugins = chainPluginsOf(claims.sub, claims.act, plugin, claims.principal === PERSON_PRINCIPAL);
      if (opts.revocations.isRevoked({ jti: claims.jti, plugin, task, kid, iat: claims.iat, ...(upstream ? { upstream } : {}), ...(chainPlugins.length > 0 ? { chainPlugins } : {}) })) {
        throw new LeashVerifyError('invalid_token', 'token revoked', { scheme, reason: 'revoked' });
      }
    }

    // Sender constraint (RFC 9449 §7, RFC 8705 §3): a bound token is only good with its key's proof, or over a connection with its certificate.
    const cnf = claims.cnf as Record<string, unknown> | undefined;
    const boundJkt = typeof cnf?.jkt === 'string' ? cnf.jkt : undefined;
    const boundX5t = typeof cnf?.['x5t#S256'] === 'string' ? (cnf['x5t#S256'] as string) : undefined;
    if (cnf !== undefined && (typeof cnf !== 'object' || cnf === null || Object.keys(cnf).some((k) => k !== 'jkt' && k !== 'x5t#S256') || (boundJkt === undefined && boundX5t === undefined))) {
      throw new LeashVerifyError('invalid_token', "the token's 'cnf' claim is neither a DPoP nor a certificate binding", { scheme });
    }
    if (boundX5t !== undefined) {
      const presented = thumbprintOf(req.clientCertificate);
      if (presented === undefined) throw new LeashVerifyError('invalid_token', 'the token is bound to a client certificate: call over mutual TLS with it', { scheme });
      if (presented !== boundX5t) throw new LeashVerifyError('invalid_token', 'the token is bound to another client certificate than the one presented', { scheme });
    }
    if (boundJkt !== undefined) {
      if (scheme !== 'DPoP') {
        throw new LeashVerifyError('invalid_token', 'the token is DPoP-bound: send it as "Authorization: DPoP <token>" with a DPoP proof', { scheme: 'DPoP', reason: 'bad_dpop' });
      }
      let jkt: string;
      try {
        ({ jkt } = await verifyDpopProof({
          proof: req.dpop === undefined ? undefined : typeof req.dpop === 'string' ? req.dpop : [...req.dpop],
          method: req.method.toUpperCase(),
          url: req.url,
          now: clock.now(),
          maxAgeSeconds: dpopMaxAge,
          clockSkewSeconds: skew,
          algorithms: dpopAlgorithms,
          replay,
          accessToken: token,
        }));
      } catch (err) {
        if (err instanceof DpopProofError) throw new LeashVerifyError('invalid_dpop_proof', err.description, { scheme: 'DPoP', cause: err });
        throw err;
      }
      if (jkt !== boundJkt) {
        throw new LeashVerifyError('invalid_token', 'the DPoP proof is signed by a key the token is not bound to', { scheme: 'DPoP', reason: 'bad_dpop', token: { ...idsOf(claims), jkt } });
      }
    } else if (scheme === 'DPoP') {
      throw new LeashVerifyError('invalid_token', 'the token is not DPoP-bound: send it as "Authorization: Bearer <token>"', { scheme: 'DPoP' });
    }

    const scopes = typeof claims.scope === 'string' ? claims.scope.split(' ').filter((s) => s !== '') : [];
    const needed = [...new Set([...baseScopes, ...(callOpts.requiredScopes ?? [])])];
    const missing = needed.filter((s) => !scopes.includes(s));
    if (missing.length > 0) {
      throw new LeashVerifyError('insufficient_scope', `the token lacks scope ${missing.join(' ')}`, { scheme, scope: needed });
    }

    const workload = claims.workload as { issuer?: unknown; sub?: unknown } | undefined;
    return {
      plugin,
      sub: claims.sub,
      task,
      scopes,
      jti: claims.jti,
      exp: claims.exp,
      ...(typeof workload?.issuer === 'string' && typeof workload.sub === 'string' ? { workload: { issuer: workload.issuer, sub: workload.sub } } : {}),
      ...(boundJkt !== undefined ? { jkt: boundJkt } : {}),
      ...(boundX5t !== undefined ? { x5t: boundX5t } : {}),
      claims,
    };
  }
}

function idsOf(claims: JWTPayload): LeashRefusedToken {
  const str = (v: unknown) => (typeof v === 'string' && v.length > 0 ? v : undefined);
  const ids: { -readonly [K in keyof LeashRefusedToken]: LeashRefusedToken[K] } = {};
  const jti = str(claims.jti);
  const plugin = str(claims.plugin) ?? str(claims.sub);
  const task = str(claims.task);
  const aud = str(claims.aud);
  if (jti) ids.jti = jti;
  if (plugin) ids.plugin = plugin;
  if (task) ids.task = task;
  if (aud) ids.aud = aud;
  return ids;
}

function withToken(err: LeashVerifyError, token: LeashRefusedToken): LeashVerifyError {
  return new LeashVerifyError(err.error, err.error_description, {
    status: err.status,
    scheme: err.scheme,
    missingCredentials: err.missingCredentials,
    ...(err.scope ? { scope: err.scope } : {}),
    cause: err.cause,
    reason: err.reason,
    token,
  });
}

/** RFC 8705 §3.1: base64url SHA-256 of the certificate's DER; undefined when there is none (or it cannot be read). */
function thumbprintOf(cert: Uint8Array | string | X509Certificate | undefined): string | undefined {
  if (cert === undefined) return undefined;
  let der: Uint8Array;
  try {
    der = cert instanceof X509Certificate ? cert.raw : typeof cert === 'string' ? new X509Certificate(cert).raw : cert;
  } catch {
    return undefined;
  }
  return der.length > 0 ? createHash('sha256').update(der).digest('base64url') : undefined;
}

function parseAuthorization(header: string | undefined): { scheme: 'Bearer' | 'DPoP'; token: string } {
  const missing = (what: string) => new LeashVerifyError('invalid_token', `${what}: send "Authorization: Bearer <token>" or "Authorization: DPoP <token>"`, { missingCredentials: true });
  if (header === undefined || header.trim() === '') throw missing('no access token');
  const match = /^([A-Za-z]+) +(\S+)$/.exec(header.trim());
  const name = (match?.[1] ?? header.trim().split(' ')[0] ?? '').toLowerCase();
  if (name !== 'bearer' && name !== 'dpop') throw missing('unsupported authorization scheme');
  const scheme = name === 'dpop' ? 'DPoP' : 'Bearer';
  const token = match?.[2];
  if (token === undefined || !TOKEN68.test(token)) {
    throw new LeashVerifyError('invalid_request', 'the Authorization header is malformed', { scheme });
  }
  if (token.length > MAX_TOKEN_LENGTH) throw new LeashVerifyError('invalid_token', 'the token is too long to be a Leash token', { scheme });
  return { scheme, token };
}

/** Maps jose's closed set of errors to RFC 6750 answers without echoing the token. */
function tokenError(err: unknown, scheme: 'Bearer' | 'DPoP'): LeashVerifyError {
  // Claim failures come after the signature check: the payload is Leash's, its ids can be reported.
  const token = err instanceof joseErrors.JWTClaimValidationFailed || err instanceof joseErrors.JWTExpired ? idsOf(err.payload) : undefined;
  const e = (description: string, reason: LeashRefusalReason = 'invalid_token') => new LeashVerifyError('invalid_token', description, { scheme, cause: err, reason, ...(token ? { token } : {}) });
  if (err instanceof joseErrors.JWTExpired) return e('the token has expired', 'expired');
  if (err instanceof joseErrors.JWTClaimValidationFailed) {
    switch (err.claim) {
      case 'aud':
        return e('the token is for another audience', 'wrong_audience');
      case 'iss':
        return e('the token is from another issuer');
      case 'typ':
        return e('the token is not an RFC 9068 access token (typ at+jwt)');
      case 'nbf':
        return e('the token is not valid yet');
      default:
        return e(`the token's '${err.claim}' claim is missing or invalid`);
    }
  }
  if (err instanceof joseErrors.JWKSNoMatchingKey) return e('the token is signed by a key the issuer does not publish');
  if (err instanceof joseErrors.JWSSignatureVerificationFailed) return e('the token signature is invalid');
  if (err instanceof joseErrors.JOSEAlgNotAllowed) return e('the token is signed with an algorithm this API does not accept');
  if (err instanceof joseErrors.JWKSTimeout || err instanceof joseErrors.JWKSInvalid) {
    return new LeashVerifyError('temporarily_unavailable', "the issuer's keys could not be fetched", { scheme, cause: err });
  }
  if (err instanceof joseErrors.JOSEError) return e('the token is malformed');
  // A network failure fetching the JWKS surfaces as a plain error: not the caller's fault.
  return new LeashVerifyError('temporarily_unavailable', "the issuer's keys could not be fetched", { scheme, cause: err });
}
