import { Router, type Request, type Response } from 'express';
import type { AuditSink } from '../../audit/recorder.js';
import { LeashError } from '../../errors/leash-error.js';
import type { LeashTokenClaims } from '../../issuance/jwt/verify-leash-token.js';
import type { RevocationService } from '../../revocation/revocation-service.js';
import { requireRole, type AdminAuthenticator } from '../admin/authenticate.js';
import { sendAdminError } from '../admin/errors.js';
import { CLIENT_ASSERTION_ALGORITHMS, CLIENT_AUTH_METHODS, attemptedClientAuth, formBody, methodNotAllowed, oauthFormParser, sendOAuthError, type ResourceServerAuthenticator } from './client-auth.js';
import { tokenFacts } from './introspection.js';

export const REVOCATION_PATH = '/revoke';

/** How one revocation request ended, for a metric (low cardinality). */
export type RevocationOutcome = 'revoked' | 'already_revoked' | 'unknown_token' | 'refused' | 'invalid_client' | 'invalid_request' | 'forbidden' | 'unavailable';

export interface RevocationEndpointDeps {
  /** The current generation's resource-server authenticator. */
  readonly authenticator: () => ResourceServerAuthenticator;
  /** The current generation's admin authenticator (security role revokes any token). */
  readonly admin: () => AdminAuthenticator;
  readonly verify: (token: string) => Promise<LeashTokenClaims | undefined>;
  readonly revocation: RevocationService;
  /** For `admin.denied` events on refused admin credentials (as the admin API does). */
  readonly audit?: AuditSink;
  readonly maxBodyBytes?: number;
  readonly onResult?: (outcome: RevocationOutcome) => void;
}

/** Who asked, and what they may revoke. */
type Caller =
  | { readonly kind: 'admin'; readonly actor: string }
  | { readonly kind: 'resource_server'; readonly actor: string; readonly audiences: readonly string[] }
  | { readonly kind: 'holder'; readonly actor: string; readonly clientId: string };

/** RFC 8414 members for the revocation endpoint (into oidc-provider's `discovery` extras). */
export function revocationMetadata(issuer: string): Record<string, unknown> {
  return {
    revocation_endpoint: `${issuer.replace(/\/+$/, '')}${REVOCATION_PATH}`,
    // `none`: a plugin (public client) revokes its own token by naming its client_id.
    revocation_endpoint_auth_methods_supported: ['none', ...CLIENT_AUTH_METHODS],
    revocation_endpoint_auth_signing_alg_values_supported: [...CLIENT_ASSERTION_ALGORITHMS],
  };
}

/**
 * `POST /revoke` (RFC 7009) for Leash access tokens. Three callers may revoke:
 *  - the holder: the plugin, a public client, sending `client_id` equal to the token's
 *    `client_id` (RFC 7009 §2.1: the server checks the token was issued to that client);
 *  - an authenticated resource server, for a token meant for one of its audiences;
 *  - an admin with the `security` role (`Authorization: Bearer`), for any token.
 * A token that is not a live Leash token (unknown, malformed, expired, foreign) answers 200
 * with nothing to do (§2.2); a live one presented by a client it was not issued to is
 * refused with `unauthorized_client` (§2.1). Revoking twice is one revocation.
 */
export function revocationRouter(deps: RevocationEndpointDeps): Router {
  const router = Router();
  const done = (outcome: RevocationOutcome) => deps.onResult?.(outcome);

  router.post(REVOCATION_PATH, ...oauthFormParser(deps.maxBodyBytes), async (req: Request, res: Response) => {
    let adminAttempt = false;
    try {
      adminAttempt = /^bearer(\s|$)/i.test(req.get('authorization') ?? '');
      const caller = await identify(req, deps);
      const token = formBody(req).token;
      // token_type_hint is accepted and ignored: only Leash access tokens exist here.
      if (typeof token !== 'string' || token.length === 0) throw new LeashError('ERR_REQUEST_MALFORMED', "the 'token' parameter is required");

      const claims = await deps.verify(token);
      res.set('Cache-Control', 'no-store').set('Pragma', 'no-cache');
      if (!claims) {
        done('unknown_token');
        res.status(200).end();
        return;
      }
      if (caller.kind === 'holder' && caller.clientId !== claims.client_id) {
        throw new LeashError('ERR_CLIENT_PLUGIN_MISMATCH', 'this token was not issued to the client_id making the request', { reason: 'holder_mismatch' });
      }
      if (caller.kind === 'resource_server' && !caller.audiences.includes(claims.aud)) {
        throw new LeashError('ERR_CLIENT_PLUGIN_MISMATCH', 'this token is not meant for an audience of this resource server', { reason: 'audience_mismatch' });
      }
      // Fails closed (503) when the view is stale; a known revocation is not written twice.
      if (deps.revocation.isRevoked(tokenFacts(claims))) {
        done('already_revoked');
        res.status(200).end();
        return;
      }
      await deps.revocation.revokeToken(claims.jti, { actor: caller.actor, reason: 'rfc7009' });
      done('revoked');
      res.status(200).end();
    } catch (err) {
      done(outcomeOf(err));
      if (adminAttempt && err instanceof LeashError && (err.code === 'ERR_ADMIN_UNAUTHENTICATED' || err.code === 'ERR_ADMIN_FORBIDDEN')) {
        res.set('Cache-Control', 'no-store');
        sendAdminError(res, err);
        return;
      }
      sendOAuthError(res, err);
    }
  });
  router.all(REVOCATION_PATH, methodNotAllowed);
  return router;
}

/** Exactly one way of saying who is calling: admin bearer, client authentication, or a bare client_id. */
async function identify(req: Request, deps: RevocationEndpointDeps): Promise<Caller> {
  const authorization = req.get('authorization');
  const clientAuth = attemptedClientAuth(req);
  if (authorization !== undefined && /^bearer(\s|$)/i.test(authorization)) {
    if (clientAuth.length > 0) throw new LeashError('ERR_REQUEST_MALFORMED', 'use either an admin bearer credential or client authentication, not both');
    let actor: string | undefined;
    try {
      const principal = await deps.admin().authenticate(authorization);
      actor = principal.id;
      requireRole(principal, 'security');
      return { kind: 'admin', actor: principal.id };
    } catch (err) {
      if (err instanceof LeashError && (err.code === 'ERR_ADMIN_UNAUTHENTICATED' || err.code === 'ERR_ADMIN_FORBIDDEN')) {
        await deps.audit?.record('admin.denied', { route: 'revoke', method: req.method, reason: err.code, actor });
      }
      throw err;
    }
  }
  if (clientAuth.length > 0) {
    const server = await deps.authenticator().authenticate(req);
    return { kind: 'resource_server', actor: `resource_server:${server.id}`, audiences: server.audiences };
  }
  if (authorization !== undefined) {
    throw new LeashError('ERR_CLIENT_AUTH_FAILED', 'unsupported Authorization scheme: use Basic (resource server) or Bearer (admin)', { method: 'none', reason: 'scheme' });
  }
  const clientId = formBody(req).client_id;
  if (typeof clientId !== 'string' || clientId.length === 0 || clientId.length > 256) {
    throw new LeashError('ERR_CLIENT_AUTH_FAILED', 'identify the client: client_id (the plugin holding the token), client authentication (resource server) or an admin bearer credential', {
      method: 'none',
      reason: 'no_client',
    });
  }
  return { kind: 'holder', actor: `plugin:${clientId}`, clientId };
}

function outcomeOf(err: unknown): RevocationOutcome {
  if (!(err instanceof LeashError)) return 'unavailable';
  switch (err.code) {
    case 'ERR_CLIENT_AUTH_FAILED':
    case 'ERR_ADMIN_UNAUTHENTICATED':
      return 'invalid_client';
    case 'ERR_ADMIN_FORBIDDEN':
      return 'forbidden';
    case 'ERR_CLIENT_PLUGIN_MISMATCH':
      return 'refused';
    case 'ERR_REQUEST_MALFORMED':
    case 'ERR_REQUEST_TOO_LARGE':
      return 'invalid_request';
    default:
      return 'unavailable';
  }
}
