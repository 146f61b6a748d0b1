import { Router, type Request, type Response } from 'express';
import { chainPluginsOf } from '../../client/chain-jti.js';
import { LeashError } from '../../errors/leash-error.js';
import type { LeashTokenClaims } from '../../issuance/jwt/verify-leash-token.js';
import type { RevocationService, TokenFacts } from '../../revocation/revocation-service.js';
import type { ResourceServerConfig } from '../../config/schema.js';
import type { ReplayCache } from '../../store/store.js';
import { CLIENT_ASSERTION_ALGORITHMS, CLIENT_AUTH_METHODS, formBody, methodNotAllowed, oauthFormParser, sendOAuthError, type ResourceServerAuthenticator } from './client-auth.js';
import { sendNoStoreJson } from './no-store-json.js';

export const INTROSPECTION_PATH = '/introspect';

/** How one introspection ended, for a metric (low cardinality). */
export type IntrospectionOutcome = 'active' | 'inactive' | 'revoked' | 'wrong_audience' | 'used' | 'invalid_client' | 'invalid_request' | 'unavailable';

export interface IntrospectionDeps {
  /** The current generation's resource-server authenticator (swapped on policy reload). */
  readonly authenticator: () => ResourceServerAuthenticator;
  /** verifyLeashToken bound to the broker's issuer, keys and clock. */
  readonly verify: (token: string) => Promise<LeashTokenClaims | undefined>;
  readonly revocation: RevocationService;
  /** Where `single_use=consume` records spent per-call credentials (the store's replay cache: atomic across replicas). */
  readonly singleUse: ReplayCache;
  readonly maxBodyBytes?: number;
  /** Told how each request ended (wire to a counter). */
  readonly onResult?: (outcome: IntrospectionOutcome) => void;
  /** Told of every answer about a verified Leash token: the asking server used it (usage). Must not block. */
  readonly onUse?: (server: ResourceServerConfig, claims: LeashTokenClaims, outcome: IntrospectionOutcome) => void;
}

/** What a revocation check reads from verified claims. */
export function tokenFacts(claims: LeashTokenClaims): TokenFacts {
  return {
    jti: claims.jti,
    plugin: claims.plugin,
    task: claims.task,
    kid: claims.kid,
    iat: claims.iat,
    upstream: claims.chain_jti,
    // Under a person (`principal: person`) `sub` is the person, not a plugin of the chain.
    chainPlugins: chainPluginsOf(claims.sub, claims.act, claims.plugin, claims.principal !== undefined),
  };
}

/** The RFC 7662 §2.2 answer for an active token: the claims a resource server decides on. */
export function activeResponse(claims: LeashTokenClaims): Record<string, unknown> {
  const body: Record<string, unknown> = {
    active: true,
    iss: claims.iss,
    sub: claims.sub,
    aud: claims.aud,
    scope: claims.scope,
    client_id: claims.client_id,
    // A certificate-bound token is still a Bearer token on the wire (RFC 8705 §3); `cnf` carries its binding.
    token_type: claims.cnf?.jkt ? 'DPoP' : 'Bearer',
    exp: claims.exp,
    iat: claims.iat,
    nbf: claims.nbf,
    jti: claims.jti,
    plugin: claims.plugin,
    task: claims.task,
    cnf: claims.cnf,
    workload: claims.workload,
    // RFC 9396 §9.2.
    authorization_details: claims.authorization_details,
  };
  for (const k of Object.keys(body)) if (body[k] === undefined) delete body[k];
  return body;
}

/**
 * RFC 8414 / OIDC Discovery members for the introspection endpoint. oidc-provider's own
 * introspection stays disabled (it cannot see JWT access tokens); these go into its
 * `discovery` extras so the standard document advertises Leash's endpoint.
 */
export function introspectionMetadata(issuer: string): Record<string, unknown> {
  return {
    introspection_endpoint: `${issuer.replace(/\/+$/, '')}${INTROSPECTION_PATH}`,
    introspection_endpoint_auth_methods_supported: [...CLIENT_AUTH_METHODS],
    introspection_endpoint_auth_signing_alg_values_supported: [...CLIENT_ASSERTION_ALGORITHMS],
  };
}

/**
 * `POST /introspect` (RFC 7662) for authenticated resource servers. A token is active only
 * if Leash signed it with a key it still publishes, it has not expired, it is meant for
 * one of the caller's audiences and no revocation covers it (jti, an upstream token's jti
 * from `chain_jti`, task, plugin or key).
 * A revocation view that cannot prove it is fresh answers 503, never `active: true`.
 */
export function introspectionRouter(deps: IntrospectionDeps): Router {
  const router = Router();
  const done = (outcome: IntrospectionOutcome) => deps.onResult?.(outcome);

  router.post(INTROSPECTION_PATH, ...oauthFormParser(deps.maxBodyBytes), async (req: Request, res: Response) => {
    try {
      const server = await deps.authenticator().authenticate(req);
      const form = formBody(req);
      const token = form.token;
      // token_type_hint is accepted and ignored: Leash introspects only its own access tokens.
      if (typeof token !== 'string' || token.length === 0) throw new LeashError('ERR_REQUEST_MALFORMED', "the 'token' parameter is required");
      const singleUse = form.single_use;
      if (singleUse !== undefined && singleUse !== 'consume') throw new LeashError('ERR_REQUEST_MALFORMED', "'single_use' takes the value 'consume'");
      // Before anything can be called active: a stale view must not vouch for a token.
      deps.revocation.assertFresh();

      const claims = await deps.verify(token);
      if (!claims) return inactive(res, done, 'inactive');
      const used = (outcome: IntrospectionOutcome) => {
        try {
          deps.onUse?.(server, claims, outcome);
        } catch {
          // usage is evidence, never a reason to fail the answer
        }
      };
      // Another API's token is none of this caller's business (RFC 7662 §2.2, §4).
      if (!server.audiences.includes(claims.aud)) {
        used('wrong_audience');
        return inactive(res, done, 'wrong_audience');
      }
      if (deps.revocation.isRevoked(tokenFacts(claims))) {
        used('revoked');
        return inactive(res, done, 'revoked');
      }
      if (singleUse === 'consume') {
        // RFC 7662 §2.1 extension: the first caller spends the token, atomically in the store
        // (so every replica of the resource server agrees); later ones see it inactive.
        if (!claims.authorization_details) throw new LeashError('ERR_REQUEST_MALFORMED', 'single_use applies to per-call credentials (tokens with authorization_details) only');
        if (!(await deps.singleUse.remember(`single-use:${claims.jti}`, claims.exp * 1000))) return inactive(res, done, 'used');
      }
      used('active');
      done('active');
      sendNoStoreJson(res, 200, activeResponse(claims));
    } catch (err) {
      done(outcomeOf(err));
      sendOAuthError(res, err);
    }
  });

  router.all(INTROSPECTION_PATH, methodNotAllowed);
  return router;
}

function inactive(res: Response, done: (o: IntrospectionOutcome) => void, outcome: IntrospectionOutcome): void {
  done(outcome);
  sendNoStoreJson(res, 200, { active: false });
}

function outcomeOf(err: unknown): IntrospectionOutcome {
  if (!(err instanceof LeashError)) return 'unavailable';
  if (err.code === 'ERR_CLIENT_AUTH_FAILED') return 'invalid_client';
  if (err.code === 'ERR_REQUEST_MALFORMED' || err.code === 'ERR_REQUEST_TOO_LARGE') return 'invalid_request';
  return 'unavailable';
}
