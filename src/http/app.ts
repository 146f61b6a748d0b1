import type { ReplayCache } from '../store/store.js';
import express, { type NextFunction, type Request, type Response } from 'express';
import { LeashError } from '../errors/leash-error.js';
import { toOAuthError } from '../errors/oauth-error.js';
import { safeErrorDescription } from '../client/error-description.js';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { KeyManager } from '../keys/key-manager.js';
import type { Metrics } from '../metrics/metrics.js';
import { adminRouter, type AdminApiDeps } from './admin/table.js';
import type { RevocationService } from '../revocation/revocation-service.js';
import type { ResourceServerAuthenticator } from './oauth/client-auth.js';
import { introspectionRouter, type IntrospectionDeps } from './oauth/introspection.js';
import { revocationRouter } from './oauth/revocation-endpoint.js';
import type { LeashTokenClaims } from '../issuance/jwt/verify-leash-token.js';
import type { Settings } from '../config/schema.js';
import { discoveryDocument } from './oauth/discovery.js';
import { certificateSources } from '../mtls/certificate-client-auth.js';
import { bodyLimit } from './body-limit.js';
import { setRetryAfter } from './retry-after.js';
import { ROUTES, USAGE_ROUTES, allowedMethods, answerOptions, unserved, type RouteSpec } from './surface.js';
import { USAGE_PATH } from './usage-routes.js';
import { accessLog, inRequestContext } from './access-log.js';
import type { Logger } from '../log/logger.js';
import { admissionControl, type AdmissionRejection } from './admission.js';
import { REQUEST_ID_HEADER, requestIdFrom } from '../log/request-context.js';
import { consoleRouter, type ConsoleDeps } from './console/router.js';
import { CONSOLE_ROUTES } from './console/routes.js';

export type NodeHandler = (req: IncomingMessage, res: ServerResponse) => void;

export interface HttpDeps extends AdminApiDeps, Pick<ConsoleDeps, 'exceptions' | 'policy'> {
  readonly keys: KeyManager;
  readonly metrics: Metrics;
  /** The current generation's settings (issuer, DPoP algorithms) for the discovery document. */
  readonly settings: () => Settings;
  /** The current oidc-provider handler; swapped when policy or keys change. */
  readonly oauth: () => NodeHandler;
  readonly revocation: RevocationService;
  /** GET|POST /revocations and /revocations/stream (revocationFeedRouter). */
  readonly revocationFeed: express.Router;
  /** The current generation's resource-server authenticator (RFC 7662 / RFC 7009 callers). */
  readonly resourceServers: () => ResourceServerAuthenticator;
  /** verifyLeashToken bound to this broker's issuer, keys, clock and skew. */
  readonly verifyToken: (token: string) => Promise<LeashTokenClaims | undefined>;
  /** `POST /usage` (usageRouter) and the introspection hook that records introspections as use. */
  readonly usage?: { readonly router: express.Router; readonly introspected: IntrospectionDeps['onUse'] };
  /** Spent per-call credentials (introspection `single_use=consume`): the store's replay cache. */
  readonly singleUse: ReplayCache;
  /** The operational log (access lines). */
  readonly logger: () => Logger;
  /** `settings.log.access` of the generation in force. */
  readonly accessLog: () => boolean;
}

/** The routes whose work is expensive (signing, verifying, store writes): subject to admission control. */
const ADMITTED_PATHS: ReadonlySet<string> = new Set(['/token', '/introspect', '/usage', '/usage/budget']);

/** The path of a request target, lower-cased, without query or trailing slash (what express's routing would match). */
function admittedPath(url: string | undefined): string {
  const raw = url ?? '';
  const q = raw.indexOf('?');
  const path = (q < 0 ? raw : raw.slice(0, q)).toLowerCase();
  return path.length > 1 && path.endsWith('/') ? path.slice(0, -1) : path;
}

/**
 * `503 temporarily_unavailable` + `Retry-After` for a request admission refused, written
 * on the bare node:http response: the same answer whether it was shed before express (no
 * access-log middleware ran: its request id and line are written here) or refused from the queue.
 */
function refuseOverloaded(res: ServerResponse, reason: Exclude<AdmissionRejection, 'client_gone'>, shed: boolean, deps: Pick<HttpDeps, 'logger' | 'accessLog'>): void {
  const { status, body } = toOAuthError(
    new LeashError('ERR_OVERLOADED', reason === 'queue_timeout' ? 'the request waited too long for capacity; retry later' : 'the broker is at capacity; retry later', { reason }),
  );
  const text = JSON.stringify({ error: body.error, error_description: safeErrorDescription(body.error_description ?? '') });
  const req = (res as ServerResponse & { req?: IncomingMessage }).req;
  const id = shed ? requestIdFrom(req?.headers['x-request-id']) : undefined;
  if (id) res.setHeader(REQUEST_ID_HEADER, id);
  res.statusCode = status;
  res.setHeader('Content-Type', 'application/json; charset=utf-8');
  res.setHeader('Content-Length', Buffer.byteLength(text));
  res.setHeader('Cache-Control', 'no-store');
  res.setHeader('X-Content-Type-Options', 'nosniff');
  setRetryAfter(res, status);
  res.end(text);
  if (id && deps.accessLog()) {
    const logger = deps.logger();
    if (logger.isLevelEnabled('info')) logger('info', 'request', { request_id: id, method: req?.method, route: admittedPath(req?.url), status, duration_ms: 0, shed: true });
  }
}

function oauthError(res: Response, status: number, error: string, description: string): void {
  setRetryAfter(res, status);
  res
    .status(status)
    .set('Cache-Control', 'no-store')
    .json({ error, error_description: safeErrorDescription(description) });
}

function domainError(res: Response, err: LeashError): void {
  const { status, body } = toOAuthError(err);
  oauthError(res, status, body.error, body.error_description);
}

/** Admission control of one process: the public and usage apps share it (settings.admission counts all four routes together). */
export function createAdmission(deps: Pick<HttpDeps, 'settings' | 'metrics' | 'logger' | 'accessLog'>): Admission {
  return admissionControl({
    limits: () => deps.settings().admission,
    applies: (req) => req.method === 'POST' && ADMITTED_PATHS.has(admittedPath(req.url)),
    refuse: (res, reason, shed) => refuseOverloaded(res, reason, shed, deps),
    onRejected: (reason) => deps.metrics.admissionRejected.inc({ reason }),
    onLoad: (inFlight, queued) => {
      deps.metrics.admissionInFlight.set(inFlight);
      deps.metrics.admissionQueued.set(queued);
    },
    onWaited: (ms, outcome) => deps.metrics.admissionWait.observe({ outcome }, ms / 1000),
  });
}

export type Admission = ReturnType<typeof admissionControl>;

/**
 * What every Leash port that answers OAuth-shaped JSON starts with: the request id and
 * access line, the no-sniff and no-store headers, admission control, the body limit and
 * `OPTIONS`.
 */
function surfaceHead(
  app: express.Express,
  deps: Pick<HttpDeps, 'settings' | 'maxBodyBytes' | 'logger' | 'accessLog'>,
  admission: Admission,
  routes: readonly RouteSpec[],
  allow: (path: string) => string | undefined,
): void {
  app.disable('x-powered-by');
  app.set('query parser', 'simple');
  // First: the request id, the request's context (its audit events carry the id) and the access line.
  app.use(accessLog({ logger: deps.logger, routes, level: 'info', enabled: deps.accessLog }));
  app.use((_req, res, next) => {
    res.set('X-Content-Type-Options', 'nosniff');
    // Task and token data must never sit in a cache; the few public documents say otherwise.
    res.set('Cache-Control', 'no-store');
    next();
  });
  // Admission control before any work (body, client authentication, oidc-provider): excess
  // requests to the expensive routes are refused at once (admission.ts). The management
  // listener (probes, metrics) is a different app and never subject to it.
  app.use(admission.middleware);
  // Before anything reads a body: counts the bytes read, chunked or not (413 past the limit).
  // A usage batch has its own limit (settings.usage.max_body_bytes); every other route the broker's.
  app.use(
    inRequestContext(
      bodyLimit(
        (req) => (req.path === USAGE_PATH ? deps.settings().usage.max_body_bytes : deps.maxBodyBytes()),
        (res, max) => domainError(res, new LeashError('ERR_REQUEST_TOO_LARGE', `request body larger than ${max} bytes`)),
      ),
    ),
  );
  app.use(answerOptions(allow));
}

/** Last on every such port: nothing served it (404/405), and body-parser failures or anything thrown before a route as a clean 4xx, never a stack. */
function surfaceTail(app: express.Express, allow: (path: string) => string | undefined): void {
  app.use(unserved(allow));
  app.use((err: { type?: string; status?: number }, _req: Request, res: Response, _next: NextFunction) => {
    if (err.type === 'entity.too.large') return domainError(res, new LeashError('ERR_REQUEST_TOO_LARGE', 'request body too large'));
    if (err.type === 'entity.parse.failed') return oauthError(res, 400, 'invalid_request', 'the body is not valid JSON');
    if (typeof err.status === 'number' && err.status >= 400 && err.status < 500) return oauthError(res, err.status, 'invalid_request', 'malformed request');
    return oauthError(res, 503, 'temporarily_unavailable', 'the broker could not complete the request; retry later');
  });
}

/** Shed before express: under overload a refusal must cost little (admission.ts). */
function shedFirst(admission: Admission, app: express.Express): HttpHandler {
  return (req, res) => {
    if (!admission.shed(req, res)) app(req, res);
  };
}

/** The public port's request handler: admission's shedding first, then the express app. */
export type HttpHandler = (req: IncomingMessage, res: ServerResponse) => void;

/**
 * The HTTP layer only translates: Leash's own routes (JWKS, discovery, introspection,
 * revocation, tasks, admin) in express, the token endpoint in oidc-provider behind them,
 * and a JSON 404/405 for everything else (surface.ts). Health, readiness and metrics are
 * on the management port (management.ts), not here. `usageOnOwnPort`
 * (settings.usage.listen): the usage routes are on the usage app instead.
 */
export function createHttpApp(deps: HttpDeps, admission: Admission = createAdmission(deps), opts: { readonly usageOnOwnPort?: boolean } = {}): HttpHandler {
  const app = express();
  const usageHere = deps.usage !== undefined && opts.usageOnOwnPort !== true;
  const routes = usageHere ? ROUTES : ROUTES.filter((r) => !USAGE_ROUTES.includes(r));

  // The console's routes are part of the surface only while it is on (settings.console.enabled).
  const allowApi = allowedMethods(routes);
  const allowConsole = allowedMethods(CONSOLE_ROUTES);
  const allow = (path: string) => allowApi(path) ?? (deps.settings().console.enabled ? allowConsole(path) : undefined);
  surfaceHead(app, deps, admission, [...routes, ...CONSOLE_ROUTES], allow);
  // The JWKS comes from the KeyManager (next, current and still-visible retired keys),
  // not from oidc-provider, which only ever knows the signing key.
  app.get('/jwks', (_req, res) => {
    res.set('Cache-Control', 'public, max-age=60').type('application/jwk-set+json').send(JSON.stringify(deps.keys.jwks()));
  });

  // OIDC Discovery and RFC 8414 metadata: one document, built by Leash (see discovery.ts).
  const discovery = (_req: Request, res: Response) => {
    const settings = deps.settings();
    res
      .set('Cache-Control', 'public, max-age=60')
      .json(discoveryDocument({ issuer: settings.issuer, dpopAlgorithms: settings.dpop.algorithms, jwks: deps.keys.jwks(), certificates: certificateSources(settings) }));
  };
  app.get('/.well-known/openid-configuration', discovery);
  app.get('/.well-known/oauth-authorization-server', discovery);

  // oidc-provider gets the token endpoint and nothing else: none of its other routes
  // (/auth, /session/end, /request, ...) is part of Leash.
  app.post('/token', (req, res) => deps.oauth()(req, res));

  // Leash answers these itself: oidc-provider cannot see its JWT access tokens. Before the
  // admin router: a resource server's introspection is the hot one, and express walks every
  // layer mounted ahead of a route (the admin API has dozens).
  app.use(
    introspectionRouter({
      authenticator: deps.resourceServers,
      verify: deps.verifyToken,
      revocation: deps.revocation,
      singleUse: deps.singleUse,
      onResult: (outcome) => deps.metrics.introspections.inc({ outcome }),
      onUse: deps.usage?.introspected,
    }),
  );
  app.use(
    revocationRouter({
      authenticator: deps.resourceServers,
      admin: deps.authenticator,
      verify: deps.verifyToken,
      revocation: deps.revocation,
      audit: deps.audit,
      onResult: (outcome) => deps.metrics.revocationRequests.inc({ outcome }),
    }),
  );

  // `/tasks` and `/admin/*`: one route shape, one error middleware (admin/route.ts, admin/table.ts).
  app.use(adminRouter(deps));

  app.use(deps.revocationFeed);
  // The security console (off unless settings.console.enabled): HTML pages with their own CSP.
  app.use(consoleRouter(deps));
  if (usageHere) app.use(deps.usage!.router);
  surfaceTail(app, allow);
  return shedFirst(admission, app);
}

/**
 * The usage port's request handler (settings.usage.listen): `POST /usage` and
 * `/usage/budget` and nothing else, with the public port's request ids, access lines,
 * admission control (the same instance in one process) and error shapes.
 */
export function createUsageApp(deps: HttpDeps & { readonly usage: NonNullable<HttpDeps['usage']> }, admission: Admission): HttpHandler {
  const app = express();
  const allow = allowedMethods(USAGE_ROUTES);
  surfaceHead(app, deps, admission, USAGE_ROUTES, allow);
  app.use(deps.usage.router);
  surfaceTail(app, allow);
  return shedFirst(admission, app);
}
