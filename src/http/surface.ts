import type { Request, RequestHandler, Response } from 'express';
import { LeashError } from '../errors/leash-error.js';
import { toOAuthError } from '../errors/oauth-error.js';
import { ADMIN_ROUTES } from './admin/table.js';

type Method = 'GET' | 'POST' | 'DELETE';

/** One route Leash serves: an express-style path (`:name` is one path segment) and its methods. */
export interface RouteSpec {
  readonly path: string;
  readonly methods: readonly Method[];
}

/** The admin route table (admin/table.ts) as surface entries: one per path, its methods in table order. */
function adminSurface(): RouteSpec[] {
  const byPath = new Map<string, Method[]>();
  for (const r of ADMIN_ROUTES) byPath.set(r.path, [...(byPath.get(r.path) ?? []), r.method]);
  return [...byPath].map(([path, methods]) => ({ path, methods }));
}

/** Usage reports and the synchronous budget check: on the public port, or on the usage port (settings.usage.listen) alone. */
export const USAGE_ROUTES: readonly RouteSpec[] = [
  { path: '/usage', methods: ['POST'] },
  { path: '/usage/budget', methods: ['POST'] },
];

/**
 * Every route Leash answers. The express routers (and oidc-provider, for `/token` only)
 * serve them; this table answers what they do not: `OPTIONS` (204 with `Allow`, never a
 * CORS header), a known path with another method (405 with `Allow`) and any other path
 * (404), always as OAuth-shaped JSON. A route added to a router belongs here too (the
 * route inventory test in test/http/surface.test.ts fails until both agree).
 */
export const ROUTES: readonly RouteSpec[] = [
  // OAuth / OIDC
  { path: '/token', methods: ['POST'] },
  { path: '/introspect', methods: ['POST'] },
  { path: '/revoke', methods: ['POST'] },
  { path: '/jwks', methods: ['GET'] },
  { path: '/.well-known/openid-configuration', methods: ['GET'] },
  { path: '/.well-known/oauth-authorization-server', methods: ['GET'] },
  // revocation feed
  { path: '/revocations', methods: ['GET', 'POST'] },
  { path: '/revocations/stream', methods: ['GET', 'POST'] },
  // usage reports from resource servers (on a port of their own with settings.usage.listen)
  ...USAGE_ROUTES,
  // tasks (orchestrators) and the admin API: from the admin route table
  ...adminSurface(),
];

/** The management port's routes (management.ts); the public port serves none of them. */
export const MANAGEMENT_ROUTES: readonly RouteSpec[] = [
  { path: '/healthz', methods: ['GET'] },
  { path: '/readyz', methods: ['GET'] },
  { path: '/metrics', methods: ['GET'] },
];

const ORDER: readonly string[] = ['GET', 'HEAD', 'POST', 'DELETE'];

/** Matches the way express routes: case-insensitive, an optional trailing slash. */
function compile(path: string): RegExp {
  const segments = path.split('/').map((s) => (s.startsWith(':') ? '[^/]+' : s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')));
  return new RegExp(`^${segments.join('/')}/?$`, 'i');
}

/** The route template a path falls under (`/tasks/:id` for `/tasks/tsk_1`), or undefined. Built once from `routes`. */
export function routeMatcher(routes: readonly RouteSpec[]): (path: string) => string | undefined {
  const compiled = routes.map((r) => ({ re: compile(r.path), path: r.path }));
  return (path) => compiled.find((r) => r.re.test(path))?.path;
}

/**
 * The `Allow` value of a path (GET implies HEAD), or undefined when Leash serves nothing
 * there. Built once from `routes`.
 */
export function allowedMethods(routes: readonly RouteSpec[] = ROUTES): (path: string) => string | undefined {
  const compiled = routes.map((r) => ({ re: compile(r.path), methods: r.methods }));
  return (path) => {
    const methods = new Set<string>();
    for (const r of compiled) {
      if (!r.re.test(path)) continue;
      for (const m of r.methods) methods.add(m);
      if (r.methods.includes('GET')) methods.add('HEAD');
    }
    return methods.size === 0 ? undefined : ORDER.filter((m) => methods.has(m)).join(', ');
  };
}

/** The RFC 6749 §5.2 JSON shape for errors of the HTTP surface itself (no route, wrong method). */
export function sendSurfaceError(res: Response, err: LeashError): void {
  const { status, body } = toOAuthError(err);
  res.status(status).json(body);
}

/**
 * First in the chain: answers `OPTIONS` itself (204 with the path's `Allow`, no CORS
 * headers: no endpoint is meant for browsers), so neither express's automatic text/plain
 * answer nor oidc-provider's CORS preflight (which echoes any Origin) ever runs.
 */
export function answerOptions(allow: (path: string) => string | undefined): RequestHandler {
  return (req, res, next) => {
    if (req.method !== 'OPTIONS') return next();
    const methods = allow(req.path);
    if (methods === undefined) return sendSurfaceError(res, new LeashError('ERR_ROUTE_NOT_FOUND', 'no such endpoint'));
    res.status(204).set('Allow', methods).end();
  };
}

/** Last in the chain: nothing served the request. A known path names its methods (405), any other is 404. */
export function unserved(allow: (path: string) => string | undefined): RequestHandler {
  return (req: Request, res: Response) => {
    const methods = allow(req.path);
    if (methods === undefined) return sendSurfaceError(res, new LeashError('ERR_ROUTE_NOT_FOUND', 'no such endpoint'));
    res.set('Allow', methods);
    sendSurfaceError(res, new LeashError('ERR_METHOD_NOT_ALLOWED', `this endpoint takes ${methods}`));
  };
}
