import { createHash } from 'node:crypto';
import { ISSUER_KINDS, type IssuerKind, type TrustedIssuerConfig } from '../config/schema.js';
import type { ErrorCode } from '../errors/codes.js';
import { LeashError, isLeashError } from '../errors/leash-error.js';
import type { Clock } from '../time/clock.js';
import type { Attestor, WorkloadIdentity } from './attestor.js';
import type { FetchLike } from './fetch-json.js';
import { createAwsAttestor } from './aws/aws-attestor.js';
import { SERVER_ID_HEADER, TOKEN_TYPE_AWS_SIGV4, decodeSignedRequest } from './aws/signed-request.js';
import { createAzureAttestor } from './azure/azure-attestor.js';
import { createGcpAttestor } from './gcp/gcp-attestor.js';
import { createGitHubActionsAttestor } from './github-actions/github-actions-attestor.js';
import { createGitLabAttestor } from './gitlab/gitlab-attestor.js';
import { IdentityCache } from './identity-cache.js';
import type { AttestorDeps, AttestorFactory } from './jwt-attestor.js';
import { createKubernetesAttestor } from './kubernetes/kubernetes-attestor.js';
import { createOidcAttestor } from './oidc/oidc-attestor.js';
import { createSpiffeAttestor } from './spiffe/spiffe-attestor.js';
import { decodeUnverified } from './verify-jwt.js';
import { MAX_TOKEN_LENGTH } from '../client/token-limits.js';

/** The closed set of attestor kinds, one folder each. `x509-svid` is not a token: it is verified from the TLS client certificate (x509-svid/). */
export const ATTESTOR_FACTORIES: Readonly<Record<Exclude<IssuerKind, 'x509-svid'>, AttestorFactory>> = Object.freeze({
  kubernetes: createKubernetesAttestor,
  spiffe: createSpiffeAttestor,
  'github-actions': createGitHubActionsAttestor,
  gitlab: createGitLabAttestor,
  gcp: createGcpAttestor,
  azure: createAzureAttestor,
  aws: createAwsAttestor,
  oidc: createOidcAttestor,
});

export interface AttestationService {
  /**
   * Verify a presented attestation against the trusted issuers; throws LeashError
   * (`ERR_ATTESTATION_*`). `tokenType` is its RFC 8693 token type: a JWT (the default) or
   * a signed AWS GetCallerIdentity request.
   */
  verify(subjectToken: string, tokenType?: string): Promise<WorkloadIdentity>;
}

export interface AttestationDeps {
  readonly clock: Clock;
  readonly baseDir: string;
  readonly fetch?: FetchLike | undefined;
  /** Called once per refused attestation: the trusted issuer's name (undefined when none was chosen) and the code. */
  readonly onFailure?: ((issuer: string | undefined, code: ErrorCode) => void) | undefined;
  /** Verified-identity cache; `maxEntries: 0` disables it. Defaults: 10,000 entries, 60 s. */
  readonly cache?: { readonly maxEntries?: number; readonly maxAgeSeconds?: number } | undefined;
  /** Decorate each attestor (metrics, tracing). */
  readonly wrap?: ((attestor: Attestor) => Attestor) | undefined;
}

const DEFAULT_CACHE_ENTRIES = 10_000;
const DEFAULT_CACHE_MAX_AGE = 60;

/** base64url SHA-256 of a token: what logs, audit events and caches use instead of the token. */
export function tokenDigest(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('base64url');
}

/** Build the attestor for one trusted issuer; an unknown kind is a programming error listing the valid ones. */
export function createAttestor(cfg: TrustedIssuerConfig, deps: AttestorDeps): Attestor {
  const kind: string = cfg.kind;
  if (!Object.hasOwn(ATTESTOR_FACTORIES, kind)) {
    throw new TypeError(`unknown trusted issuer kind '${kind}': valid kinds are ${ISSUER_KINDS.filter((k) => k !== 'x509-svid').join(', ')}`);
  }
  return ATTESTOR_FACTORIES[kind as keyof typeof ATTESTOR_FACTORIES](cfg, deps);
}

interface Route {
  readonly attestor: Attestor;
  readonly audiences: ReadonlySet<string>;
  /** Identities from this issuer are not reused past iat + max_token_age (+ skew). */
  readonly maxAgeSeconds: number;
  /** With Kubernetes TokenReview: an identity is not reused longer than a review's answer. */
  readonly reuseMs: number;
}

/**
 * The attestation step of the exchange: pick the trusted issuer by the token's (unverified)
 * `iss`, verify with that issuer's attestor, and remember the result by token digest until
 * the token expires (or the cache's max age passes). Failures are never cached.
 */
export function createAttestation(issuers: readonly TrustedIssuerConfig[], deps: AttestationDeps): AttestationService {
  const routes = new Map<string, Route[]>();
  const awsRoutes: Route[] = [];
  issuers.forEach((cfg, i) => {
    // Presented as a TLS client certificate, not as a subject_token (x509-svid/).
    if (cfg.kind === 'x509-svid') return;
    const built = createAttestor(cfg, { clock: deps.clock, baseDir: deps.baseDir, fetch: deps.fetch, configPath: `/trusted_issuers/${i}` });
    const attestor = deps.wrap ? deps.wrap(built) : built;
    const route: Route = {
      attestor,
      audiences: new Set(typeof cfg.audience === 'string' ? [cfg.audience] : cfg.audience),
      maxAgeSeconds: cfg.max_token_age + cfg.clock_skew,
      reuseMs: cfg.token_review ? cfg.token_review.cache_seconds * 1000 : Number.POSITIVE_INFINITY,
    };
    if (cfg.kind === 'aws') {
      awsRoutes.push(route);
      return;
    }
    const list = routes.get(cfg.issuer);
    if (list) list.push(route);
    else routes.set(cfg.issuer, [route]);
  });

  const cache = new IdentityCache(deps.cache?.maxEntries ?? DEFAULT_CACHE_ENTRIES);
  const cacheMaxAgeMs = (deps.cache?.maxAgeSeconds ?? DEFAULT_CACHE_MAX_AGE) * 1000;
  // Concurrent first presentations of one token share one verification.
  const inflight = new Map<string, Promise<Outcome>>();

  const report = (issuer: string | undefined, err: unknown) => {
    if (!deps.onFailure || !isLeashError(err)) return;
    try {
      deps.onFailure(issuer, err.code);
    } catch {
      // metrics must never change the decision
    }
  };

  /** AWS issuers are told apart by the server id the request was signed for (their `audience`). */
  function awsRoutesFor(token: string): Route[] {
    if (awsRoutes.length === 0) throw new LeashError('ERR_ATTESTATION_ISSUER_UNKNOWN', 'no trusted issuer of kind aws accepts signed AWS requests here');
    const serverId = decodeSignedRequest(token).headers.get(SERVER_ID_HEADER);
    const matching = awsRoutes.filter((r) => serverId !== undefined && r.audiences.has(serverId));
    return matching.length > 0 ? matching : awsRoutes.slice(0, 1);
  }

  /** Candidates for a token's iss: one normally; several issuers sharing an iss are told apart by audience. */
  function routesFor(token: string, tokenType: string | undefined): Route[] {
    if (tokenType === TOKEN_TYPE_AWS_SIGV4) return awsRoutesFor(token);
    const { payload } = decodeUnverified(token);
    const iss = payload.iss;
    if (iss === undefined) throw new LeashError('ERR_ATTESTATION_CLAIM_MISSING', "the attestation has no 'iss': Leash cannot tell which trusted issuer made it", { claim: 'iss' });
    const candidates = typeof iss === 'string' ? routes.get(iss) : undefined;
    if (!candidates) throw new LeashError('ERR_ATTESTATION_ISSUER_UNKNOWN', "the attestation's iss is not a trusted issuer");
    if (candidates.length === 1) return candidates;
    const aud = payload.aud;
    const named = typeof aud === 'string' ? [aud] : Array.isArray(aud) ? aud : [];
    const matching = candidates.filter((r) => named.some((a) => typeof a === 'string' && r.audiences.has(a)));
    // None matches: let the first (config order) refuse it, with its audience error.
    return matching.length > 0 ? matching : candidates.slice(0, 1);
  }

  /** Never rejects: the outcome says which issuer refused, for the failure hook. */
  async function verifyCold(token: string, tokenType: string | undefined, digest: string): Promise<Outcome> {
    let candidates: Route[];
    try {
      candidates = routesFor(token, tokenType);
    } catch (err) {
      return { ok: false, err, issuer: undefined };
    }
    let first: Outcome | undefined;
    for (const route of candidates) {
      try {
        return { ok: true, identity: await route.attestor.verify(token, digest), route };
      } catch (err) {
        first ??= { ok: false, err, issuer: route.attestor.name };
      }
    }
    return first as Outcome;
  }

  return {
    async verify(subjectToken, tokenType) {
      if (typeof subjectToken !== 'string' || subjectToken.length === 0 || subjectToken.length > MAX_TOKEN_LENGTH) {
        try {
          if (tokenType === TOKEN_TYPE_AWS_SIGV4) decodeSignedRequest(subjectToken);
          else decodeUnverified(subjectToken); // throws the right MALFORMED description
        } catch (err) {
          report(undefined, err);
          throw err;
        }
      }
      const digest = tokenDigest(subjectToken);
      // The type is part of the key: an identity verified from a signed AWS request is not
      // one for the same text presented as a JWT (it would not verify as one).
      const key = tokenType === TOKEN_TYPE_AWS_SIGV4 ? `aws:${digest}` : digest;
      const now = deps.clock.now();
      const hit = cache.get(key, now);
      if (hit) return hit;

      let pending = inflight.get(key);
      if (!pending) {
        pending = verifyCold(subjectToken, tokenType, digest).finally(() => inflight.delete(key));
        inflight.set(key, pending);
      }
      const outcome = await pending;
      if (!outcome.ok) {
        report(outcome.issuer, outcome.err);
        throw outcome.err;
      }
      const { identity, route } = outcome;
      let until = Math.min(identity.expiresAt * 1000, now + cacheMaxAgeMs, now + route.reuseMs);
      if (identity.issuedAt !== undefined) until = Math.min(until, (identity.issuedAt + route.maxAgeSeconds) * 1000);
      if (until > now) cache.set(key, identity, until);
      return identity;
    },
  };
}

type Outcome = { readonly ok: true; readonly identity: WorkloadIdentity; readonly route: Route } | { readonly ok: false; readonly err: unknown; readonly issuer: string | undefined };
