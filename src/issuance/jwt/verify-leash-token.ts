import type { KeyObject } from 'node:crypto';
import { LeashError } from '../../errors/leash-error.js';
import type { KeyManager } from '../../keys/key-manager.js';
import { publicKeyObject, verifyCompactSignature } from '../../keys/jws-verify.js';
import { epochSeconds, type Clock } from '../../time/clock.js';
import { actorsOf, parseActClaim, parseChainEffects, type ActClaim } from './act-claim.js';
import { parseChainJti, PERSON_PRINCIPAL } from '../../client/chain-jti.js';
import { MAX_TOKEN_LENGTH } from '../../client/token-limits.js';

/** The claims of a Leash access token (see jwt-issuer.ts), typed after verification. */
export interface LeashTokenClaims {
  readonly iss: string;
  readonly jti: string;
  readonly sub: string;
  readonly plugin: string;
  readonly client_id: string;
  readonly aud: string;
  readonly scope: string;
  readonly task?: string;
  /** Seconds since the epoch. */
  readonly exp: number;
  readonly iat: number;
  readonly nbf?: number;
  /** Sender constraint: a DPoP key (RFC 9449 `jkt`), a client certificate (RFC 8705 `x5t#S256`), or both. */
  readonly cnf?: { readonly jkt?: string; readonly 'x5t#S256'?: string };
  readonly workload?: { readonly issuer: string; readonly sub: string };
  /** Delegated tokens: the actors (RFC 8693 §4.1, newest outermost); `sub` is then the chain's root. */
  readonly act?: ActClaim;
  /** Delegated tokens: the effects of every grant along the chain. */
  readonly chain_effects?: readonly string[];
  /**
   * Delegated tokens: jtis of the upstream tokens, root's first, immediate upstream last
   * (one per actor before this one). Revoking any of them revokes this token.
   */
  readonly chain_jti?: readonly string[];
  /** `person` on a token issued on a person's behalf (directly or down a chain): `sub` is the person, every plugin an actor. */
  readonly principal?: typeof PERSON_PRINCIPAL;
  /** Set when a human approved the request this token answers. */
  readonly approval?: { readonly id: string; readonly approver: string; readonly at: number };
  /** RFC 9396: what the token is for (a per-call credential names one MCP tool call). */
  readonly authorization_details?: readonly Readonly<Record<string, unknown>>[];
  /** The key that signed it (protected header), for key-scoped revocation. */
  readonly kid: string;
}

export interface VerifyLeashTokenDeps {
  readonly issuer: string;
  readonly keys: KeyManager;
  readonly clock: Clock;
  readonly clockSkewSeconds: number;
}

/** Leash signs nothing else; a token announcing any other alg is not ours. */
const ALGORITHMS = ['ES256', 'EdDSA'];
const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;
/** Header members that carry or point at a key: verification only ever uses the KeyManager's JWKS. */
const KEY_HEADERS = ['jku', 'x5u', 'jwk', 'x5c'];

/**
 * The published keys by kid, as node:crypto public keys. `jwks()` is the same object until a
 * key is published or withdrawn, so the map is rebuilt only then, never per verification.
 */
const lookups = new WeakMap<KeyManager, { jwks: object; byKid: ReadonlyMap<string, { alg: unknown; key: KeyObject }> }>();

function keyLookup(keys: KeyManager): ReadonlyMap<string, { alg: unknown; key: KeyObject }> {
  let jwks: { keys: unknown[] };
  try {
    jwks = keys.jwks();
  } catch (cause) {
    throw new LeashError('ERR_BACKEND_UNAVAILABLE', 'the signing keys cannot be read; retry later', { reason: 'jwks_unavailable' }, { cause });
  }
  const cached = lookups.get(keys);
  if (cached && cached.jwks === jwks) return cached.byKid;
  const byKid = new Map<string, { alg: unknown; key: KeyObject }>();
  try {
    for (const jwk of jwks.keys as Array<Record<string, unknown>>) {
      if (typeof jwk.kid !== 'string' || (jwk.use !== undefined && jwk.use !== 'sig')) continue;
      byKid.set(jwk.kid, { alg: jwk.alg, key: publicKeyObject(jwk) });
    }
  } catch (cause) {
    throw new LeashError('ERR_BACKEND_UNAVAILABLE', 'the published signing keys are unusable; retry later', { reason: 'jwks_invalid' }, { cause });
  }
  lookups.set(keys, { jwks, byKid });
  return byKid;
}

/**
 * Verifies a token Leash issued: RFC 9068 `at+jwt`, ES256/EdDSA, signed by a key Leash
 * still publishes, `iss` = this broker, unexpired. Anything untrusted that fails (malformed,
 * foreign, withdrawn key, expired, wrong shape) is `undefined`, so callers answer
 * `active: false` without having to tell failures apart; only an internal fault (keys that
 * cannot be read) throws, as ERR_BACKEND_UNAVAILABLE. Revocation is the caller's check.
 */
export async function verifyLeashToken(token: string, deps: VerifyLeashTokenDeps): Promise<LeashTokenClaims | undefined> {
  if (typeof token !== 'string' || token.length === 0 || token.length > MAX_TOKEN_LENGTH || !COMPACT_JWS.test(token)) return undefined;
  const header = decodeHeader(token);
  if (!header || typeof header.kid !== 'string' || header.kid.length === 0 || typeof header.alg !== 'string' || !ALGORITHMS.includes(header.alg)) return undefined;
  if (KEY_HEADERS.some((h) => h in header) || 'crit' in header || 'b64' in header) return undefined;

  // The key Leash publishes under the kid, for the alg it was published for.
  const published = keyLookup(deps.keys).get(header.kid);
  if (!published || (published.alg !== undefined && published.alg !== header.alg)) return undefined;
  if (!isAccessTokenType(header.typ)) return undefined;
  if (verifyCompactSignature(token, header.alg, published.key) !== undefined) return undefined;
  const payload = decodePayload(token);
  if (!payload || payload.iss !== deps.issuer) return undefined;
  // RFC 7519 §4.1.4/4.1.5 with the configured skew, as jose's jwtVerify checks them.
  const now = epochSeconds(deps.clock);
  const { exp, nbf } = payload;
  if (typeof exp !== 'number' || !Number.isFinite(exp) || exp <= now - deps.clockSkewSeconds) return undefined;
  if (nbf !== undefined && (typeof nbf !== 'number' || nbf > now + deps.clockSkewSeconds)) return undefined;
  return claimsOf(payload, header.kid, deps);
}

/** RFC 9068 §4: `typ` is `at+jwt` (media type rules: case-insensitive, `application/` optional). */
function isAccessTokenType(typ: unknown): boolean {
  if (typeof typ !== 'string') return false;
  const t = typ.toLowerCase();
  return t === 'at+jwt' || t === 'application/at+jwt';
}

function decodePayload(token: string): Record<string, unknown> | undefined {
  const first = token.indexOf('.');
  return decodeObject(token.slice(first + 1, token.indexOf('.', first + 1)));
}

function decodeHeader(token: string): Record<string, unknown> | undefined {
  return decodeObject(token.slice(0, token.indexOf('.')));
}

function decodeObject(part: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

const isText = (v: unknown): v is string => typeof v === 'string' && v.length > 0;
const isTime = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

/** The claims jose left unchecked: shape of Leash's own claims, and `iat` not in the future. */
function claimsOf(p: Record<string, unknown>, kid: string, deps: VerifyLeashTokenDeps): LeashTokenClaims | undefined {
  const { iss, jti, sub, plugin, client_id, aud, scope, task, exp, iat, nbf, cnf, workload, act, chain_effects, chain_jti, approval, authorization_details, principal } = p;
  if (!isText(iss) || !isText(jti) || !isText(sub) || !isText(plugin) || !isText(client_id) || !isText(aud) || typeof scope !== 'string') return undefined;
  if (!isTime(exp) || !isTime(iat) || (nbf !== undefined && !isTime(nbf))) return undefined;
  if (iat > epochSeconds(deps.clock) + deps.clockSkewSeconds || iat > exp) return undefined;
  if (task !== undefined && !isText(task)) return undefined;
  let binding: { jkt?: string; 'x5t#S256'?: string } | undefined;
  if (cnf !== undefined) {
    if (typeof cnf !== 'object' || cnf === null || Array.isArray(cnf)) return undefined;
    const { jkt, 'x5t#S256': x5t, ...other } = cnf as { jkt?: unknown; 'x5t#S256'?: unknown };
    // Only confirmation methods Leash issues; anything else is not one of its tokens.
    if (Object.keys(other).length > 0 || (jkt === undefined && x5t === undefined) || (jkt !== undefined && !isText(jkt)) || (x5t !== undefined && !isText(x5t))) return undefined;
    binding = { ...(jkt !== undefined ? { jkt } : {}), ...(x5t !== undefined ? { 'x5t#S256': x5t } : {}) };
  }
  let attested: { issuer: string; sub: string } | undefined;
  if (workload !== undefined) {
    const w = workload as { issuer?: unknown; sub?: unknown } | null;
    if (typeof w !== 'object' || w === null || !isText(w.issuer) || !isText(w.sub)) return undefined;
    attested = { issuer: w.issuer, sub: w.sub };
  }
  const actors = act === undefined ? undefined : parseActClaim(act);
  if (act !== undefined && !actors) return undefined;
  const effects = chain_effects === undefined ? undefined : parseChainEffects(chain_effects);
  if (chain_effects !== undefined && !effects) return undefined;
  // Absent on delegated tokens signed before the claim existed; present, it must match `act`.
  // A person-rooted token always names its plugins as actors.
  if (principal !== undefined && (principal !== PERSON_PRINCIPAL || !actors)) return undefined;
  const person = principal === PERSON_PRINCIPAL;
  const upstreamJtis = chain_jti === undefined ? undefined : parseChainJti(chain_jti, actors ? actorsOf(actors).length : 0, person);
  if (chain_jti !== undefined && (!upstreamJtis || upstreamJtis.includes(jti))) return undefined;
  let approved: { id: string; approver: string; at: number } | undefined;
  if (approval !== undefined) {
    const a = approval as { id?: unknown; approver?: unknown; at?: unknown } | null;
    if (typeof a !== 'object' || a === null || !isText(a.id) || !isText(a.approver) || !isTime(a.at)) return undefined;
    approved = { id: a.id, approver: a.approver, at: a.at };
  }
  if (
    authorization_details !== undefined &&
    (!Array.isArray(authorization_details) || !authorization_details.every((d) => typeof d === 'object' && d !== null && !Array.isArray(d) && isText((d as { type?: unknown }).type)))
  ) {
    return undefined;
  }
  return {
    iss,
    jti,
    sub,
    plugin,
    client_id,
    aud,
    scope,
    exp,
    iat,
    kid,
    ...(task !== undefined ? { task } : {}),
    ...(nbf !== undefined ? { nbf } : {}),
    ...(binding ? { cnf: binding } : {}),
    ...(attested ? { workload: attested } : {}),
    ...(actors ? { act: actors } : {}),
    ...(effects ? { chain_effects: effects } : {}),
    ...(upstreamJtis ? { chain_jti: upstreamJtis } : {}),
    ...(person ? { principal: PERSON_PRINCIPAL } : {}),
    ...(approved ? { approval: approved } : {}),
    ...(authorization_details !== undefined ? { authorization_details: authorization_details as Record<string, unknown>[] } : {}),
  };
}
