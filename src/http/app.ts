import express, { type NextFunction, type Request, type Response } from 'express';
import { LeashError } from '../errors/leash-error.js';
import { toOAuthError } from '../errors/oauth-error.js';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { KeyManager } from '../keys/key-manager.js';
import type { Metrics } from '../metrics/metrics.js';
import type { TaskService } from '../tasks/task-service.js';
import type { AdminRouteDeps } from './admin/tasks-routes.js';
import { tasksRouter } from './admin/tasks-routes.js';
import { securityRouter } from './admin/plugins-routes.js';
import { awsAdminRouter } from './admin/aws-routes.js';
import { approvalsRouter } from './admin/approvals-routes.js';
import type { ApprovalDecisions } from '../approvals/decisions.js';
import { keysRouter } from './admin/keys-routes.js';
import type { IAMClient } from '@aws-sdk/client-iam';
import type { CompiledPolicy } from '../policy/types.js';
import type { RevocationService } from '../revocation/revocation-service.js';
import type { SuspensionStore } from '../store/store.js';
import type { ResourceServerAuthenticator } from './oauth/client-auth.js';
import { introspectionRouter } from './oauth/introspection.js';
import { revocationRouter } from './oauth/revocation-endpoint.js';
import type { LeashTokenClaims } from '../issuance/jwt/verify-leash-token.js';

export type NodeHandler = (req: IncomingMessage, res: ServerResponse) => void;

export interface HttpDeps extends AdminRouteDeps {
  readonly keys: KeyManager;
  readonly metrics: Metrics;
  readonly tasks: TaskService;
  readonly maxBodyBytes: () => number;
  /** The current oidc-provider handler; swapped when policy or keys change. */
  readonly oauth: () => NodeHandler;
  readonly ready: () => Promise<void>;
  readonly revocation: RevocationService;
  readonly suspensions: SuspensionStore;
  readonly knownPlugin: (id: string) => boolean;
  /** GET|POST /revocations and /revocations/stream (revocationFeedRouter). */
  readonly revocationFeed: express.Router;
  readonly policy: () => CompiledPolicy;
  /** Created on first use, so Leash never looks for AWS credentials unless asked to. */
  readonly awsIam: () => IAMClient;
  /** The current generation's resource-server authenticator (RFC 7662 / RFC 7009 callers). */
  readonly resourceServers: () => ResourceServerAuthenticator;
  /** verifyLeashToken bound to this broker's issuer, keys, clock and skew. */
  readonly verifyToken: (token: string) => Promise<LeashTokenClaims | undefined>;
  /** List, approve and deny pending approvals (security role or an approver group). */
  readonly approvals: ApprovalDecisions;
}

function oauthError(res: Response, status: number, error: string, description: string): void {
  res.status(status).set('Cache-Control', 'no-store').json({ error, error_description: description });
}

function domainError(res: Response, err: LeashError): void {
  const { status, body } = toOAuthError(err);
  oauthError(res, status, body.error, body.error_description);
}

/**
 * The HTTP layer only translates: Leash's own routes (JWKS, RFC 8414 metadata, tasks,
 * metrics, health) in express, everything OAuth in oidc-provider behind them.
 */
export function createHttpApp(deps: HttpDeps): express.Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('query parser', 'simple');

  app.use((req, res, next) => {
    res.set('X-Content-Type-Options', 'nosniff');
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > deps.maxBodyBytes()) {
      // Refuse before reading a byte of it.
      res.set('Connection', 'close');
      return domainError(res, new LeashError('ERR_REQUEST_TOO_LARGE', `request body larger than ${deps.maxBodyBytes()} bytes`));
    }
    next();
  });

  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  app.get('/readyz', async (_req, res) => {
    try {
      await deps.ready();
      res.json({ status: 'ready' });
    } catch {
      res.status(503).json({ status: 'unavailable' });
    }
  });

  // The JWKS comes from the KeyManager (next, current and still-visible retired keys),
  // not from oidc-provider, which only ever knows the signing key.
  app.get('/jwks', (_req, res) => {
    res.set('Cache-Control', 'public, max-age=60').type('application/jwk-set+json').send(JSON.stringify(deps.keys.jwks()));
  });

  // RFC 8414 metadata is the same document as OIDC discovery here.
  app.get('/.well-known/oauth-authorization-server', (req, res) => {
    req.url = '/.well-known/openid-configuration';
    deps.oauth()(req, res);
  });

  app.get('/metrics', async (_req, res) => {
    res.set('Content-Type', deps.metrics.registry.contentType).send(await deps.metrics.registry.metrics());
  });

  app.use('/tasks', express.json({ limit: deps.maxBodyBytes(), strict: true }), tasksRouter(deps));

  app.use('/admin/approvals', express.json({ limit: deps.maxBodyBytes(), strict: true }), approvalsRouter(deps));
  app.use('/admin/aws', awsAdminRouter({ ...deps, iam: deps.awsIam }));
  app.use('/admin/keys', keysRouter(deps, deps.maxBodyBytes()));
  app.use('/admin', securityRouter(deps, deps.maxBodyBytes()));

  // Leash answers these itself: oidc-provider cannot see its JWT access tokens.
  app.use(introspectionRouter({ authenticator: deps.resourceServers, verify: deps.verifyToken, revocation: deps.revocation, onResult: (outcome) => deps.metrics.introspections.inc({ outcome }) }));
  app.use(revocationRouter({ authenticator: deps.resourceServers, admin: deps.authenticator, verify: deps.verifyToken, revocation: deps.revocation, audit: deps.audit, onResult: (outcome) => deps.metrics.revocationRequests.inc({ outcome }) }));

  app.use(deps.revocationFeed);

  app.use((req, res) => deps.oauth()(req, res));

  // Body-parser failures and anything else thrown before a route: a clean 4xx, never a stack.
  app.use((err: { type?: string; status?: number }, _req: Request, res: Response, _next: NextFunction) => {
    if (err.type === 'entity.too.large') return domainError(res, new LeashError('ERR_REQUEST_TOO_LARGE', 'request body too large'));
    if (err.type === 'entity.parse.failed') return oauthError(res, 400, 'invalid_request', 'the body is not valid JSON');
    if (typeof err.status === 'number' && err.status >= 400 && err.status < 500) return oauthError(res, err.status, 'invalid_request', 'malformed request');
    return oauthError(res, 503, 'temporarily_unavailable', 'the broker could not complete the request; retry later');
  });
  return app;
}
