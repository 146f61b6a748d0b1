import express, { type NextFunction, type Request, type Response, type Router } from 'express';
import type { Static, TSchema } from '@sinclair/typebox';
import { Ajv, type ValidateFunction } from 'ajv';
import type { AdminRole } from '../../config/schema.js';
import { translateErrors } from '../../config/validate.js';
import type { AuditSink } from '../../audit/recorder.js';
import { LeashError } from '../../errors/leash-error.js';
import { toOAuthError } from '../../errors/oauth-error.js';
import type { Metrics } from '../../metrics/metrics.js';
import type { Task } from '../../store/records.js';
import type { Clock } from '../../time/clock.js';
import type { UserTokens } from '../../users/user-tokens.js';
import type { AdminAuthenticator, AdminPrincipal } from './authenticate.js';
import { sendAdminError } from './errors.js';

export type AdminMethod = 'GET' | 'POST' | 'DELETE';

/**
 * What the route table says about one admin route: enough to serve it, to list it in
 * `surface.ts` and to check `docs/openapi.yaml` against it.
 */
export interface AdminRouteSpec<B extends TSchema | undefined = TSchema | undefined, Q extends TSchema | undefined = TSchema | undefined> {
  /** Label of the route in metrics and audit events (`keys.rotate`). */
  readonly route: string;
  readonly method: AdminMethod;
  /** Express-style path: `:name` is one path segment. */
  readonly path: string;
  /**
   * Any one of these roles admits the caller. `authenticated`: any authenticated admin,
   * the domain decides (approvals: role or approver group, separation of duties).
   */
  readonly roles: readonly AdminRole[] | 'authenticated';
  /** The JSON body (TypeBox); a route without one ignores any body. */
  readonly body?: B;
  /** A request without a body is read as `{}` (otherwise a body is required). */
  readonly bodyOptional?: boolean;
  /** The query parameters (strings), checked like the body; unknown ones are ignored. */
  readonly query?: Q;
  /**
   * Ownership (tasks): the task the `:id` names belongs to the caller that opened it; the
   * roles listed here may act on anyone's. Another caller's task answers exactly like an
   * unknown id (404), and the refusal is audited with the real reason.
   */
  readonly ownedTask?: { readonly anyOwner: readonly AdminRole[] };
  /**
   * A person's token from a trusted user identity provider also admits the caller, as a
   * principal with no role and `person` set: the domain decides what a person may do.
   */
  readonly persons?: true;
}

type Body<B> = B extends TSchema ? Static<B> : undefined;

/** One admitted call: who, the path parameters, and the body and query once they passed their schema. */
export interface AdminCall<B extends TSchema | undefined, Q extends TSchema | undefined> {
  readonly principal: AdminPrincipal;
  readonly params: Readonly<Record<string, string>>;
  readonly body: Body<B>;
  readonly query: Body<Q>;
  /** The task of an `ownedTask` route, already checked. */
  readonly task: Task | undefined;
}

/** What a handler returns: the JSON answer (status 200 unless told), optionally a Location. */
export interface AdminResult {
  readonly status?: number;
  readonly location?: string;
  readonly body: unknown;
  /** A rendering other than JSON (a text or HTML view), sent instead of `body`. */
  readonly raw?: { readonly contentType: string; readonly content: string; readonly headers?: Readonly<Record<string, string>> };
}

export interface AdminRoute {
  readonly spec: AdminRouteSpec;
  readonly handle: (call: AdminCall<TSchema | undefined, TSchema | undefined>) => Promise<AdminResult>;
}

/**
 * One admin route: the shape does authentication, the role (and ownership) check, the
 * audit of a refusal, body and query validation (every problem with its path, one error
 * format), metrics (every outcome counted the same way), `Cache-Control` and error
 * rendering; the handler calls the domain and returns the answer.
 */
export function adminRoute<B extends TSchema | undefined = undefined, Q extends TSchema | undefined = undefined>(
  spec: AdminRouteSpec<B, Q>,
  handle: (call: AdminCall<B, Q>) => Promise<AdminResult>,
): AdminRoute {
  return { spec, handle: handle as AdminRoute['handle'] };
}

export interface AdminRouteDeps {
  readonly authenticator: () => AdminAuthenticator;
  readonly audit: AuditSink;
  readonly metrics: Metrics;
  readonly clock: Clock;
  /** Largest JSON body accepted (read per request, so a reload applies). */
  readonly maxBodyBytes: () => number;
  /** Looks up the task of an `ownedTask` route (required when there is one). */
  readonly tasks?: { get(id: string): Promise<Task | undefined> };
  /** Trusted user identity providers, for `persons` routes. */
  readonly users?: () => Pick<UserTokens, 'configured' | 'isPersonToken' | 'verify'>;
}

/** The admin principal, or for a `persons` route the person whose token this is. */
async function authenticate(spec: AdminRouteSpec, authorization: string | undefined, deps: AdminRouteDeps): Promise<AdminPrincipal> {
  try {
    return await deps.authenticator().authenticate(authorization);
  } catch (adminErr) {
    const users = spec.persons ? deps.users?.() : undefined;
    const token = /^Bearer +(\S+)$/i.exec(authorization?.trim() ?? '')?.[1];
    if (!users?.configured || token === undefined || !users.isPersonToken(token)) throw adminErr;
    let person: string;
    try {
      person = (await users.verify(token)).qualified;
    } catch {
      throw adminErr;
    }
    return { id: `person:${person}`, roles: new Set(), groups: new Set(), person };
  }
}

/** The outcome label of `leash_admin_requests_total` for a refused or failed call. */
export function adminOutcome(err: unknown): string {
  if (err instanceof LeashError) {
    if (err.code === 'ERR_ADMIN_UNAUTHENTICATED') return 'unauthenticated';
    if (err.code === 'ERR_ADMIN_FORBIDDEN' || err.code === 'ERR_TASK_NOT_OWNER') return 'forbidden';
  }
  const { status } = toOAuthError(err);
  if (status === 404) return 'not_found';
  if (status === 409) return 'conflict';
  if (status < 500) return 'invalid';
  return 'unavailable';
}

/** Codes that are an admin refusal (audited as `admin.denied`), wherever they are raised. */
const DENIALS: ReadonlySet<string> = new Set(['ERR_ADMIN_UNAUTHENTICATED', 'ERR_ADMIN_FORBIDDEN', 'ERR_TASK_NOT_OWNER']);

const TASK_ID = /^tsk_[A-Za-z0-9_-]{10,64}$/;

/** Where the shape keeps what it knows of a call, for the error middleware. */
interface CallState {
  readonly spec: AdminRouteSpec;
  principal?: AdminPrincipal;
  task?: string;
}

const ajv = new Ajv({ allErrors: true, strict: true, verbose: true });
const compiled = new WeakMap<TSchema, ValidateFunction>();

function check(schema: TSchema, value: unknown, where: string): void {
  let validate = compiled.get(schema);
  if (!validate) compiled.set(schema, (validate = ajv.compile(schema)));
  if (validate(value)) return;
  // A pattern says little to a caller: the schema's description says what is expected.
  const errors = validate.errors ?? [];
  const described = errors.filter((e) => e.keyword === 'pattern' && typeof (e.parentSchema as { description?: unknown } | undefined)?.description === 'string');
  const problems = [
    ...described.map((e) => ({ path: e.instancePath, message: `must be ${(e.parentSchema as { description: string }).description}` })),
    ...translateErrors(errors.filter((e) => !described.includes(e))),
  ].map((p) => `${p.path || '/'} ${p.message}`);
  throw new LeashError('ERR_ADMIN_INVALID', `${where}: ${problems.join('; ')}`);
}

function denied(spec: AdminRouteSpec, principal: AdminPrincipal): void {
  if (spec.roles === 'authenticated') return;
  const roles = spec.roles;
  if (roles.some((r) => principal.roles.has(r))) return;
  throw new LeashError('ERR_ADMIN_FORBIDDEN', roles.length === 1 ? `this call needs the '${roles[0]}' role` : `this call needs one of the roles ${roles.map((r) => `'${r}'`).join(', ')}`);
}

/** express.json as a promise, run only for an admitted caller. */
function readJson(req: Request, res: Response, limit: number): Promise<void> {
  return new Promise((resolve, reject) =>
    express.json({ limit, strict: true })(req, res, (err?: unknown) => {
      if (err === undefined) return resolve();
      const type = (err as { type?: string }).type;
      if (type === 'entity.too.large') return reject(new LeashError('ERR_REQUEST_TOO_LARGE', `request body larger than ${limit} bytes`));
      if (type === 'entity.parse.failed') return reject(new LeashError('ERR_ADMIN_INVALID', 'the body is not valid JSON'));
      reject(new LeashError('ERR_ADMIN_INVALID', 'the body could not be read'));
    }),
  );
}

async function bodyOf(spec: AdminRouteSpec, req: Request, res: Response, limit: number): Promise<unknown> {
  if (!spec.body) return undefined;
  // No body at all (`Content-Length: 0` included, whatever its content type says).
  const empty = req.headers['transfer-encoding'] === undefined && !(Number(req.headers['content-length'] ?? 0) > 0);
  if (empty) {
    if (spec.bodyOptional) return {};
    throw new LeashError('ERR_ADMIN_INVALID', 'this call takes a JSON body (Content-Type: application/json)');
  }
  if (!req.is('application/json')) throw new LeashError('ERR_ADMIN_INVALID', 'Content-Type must be application/json');
  await readJson(req, res, limit);
  const body = req.body as unknown;
  check(spec.body, body, 'the body is not valid');
  return body;
}

function queryOf(spec: AdminRouteSpec, req: Request): unknown {
  if (!spec.query) return undefined;
  const query = { ...(req.query as Record<string, unknown>) };
  check(spec.query, query, 'the query is not valid');
  return query;
}

/**
 * Serves the routes on `router` and ends with the one error middleware of the admin API:
 * count the outcome, audit a refusal (`admin.denied`, with the caller when known), render
 * the error (RFC 6749 JSON, `WWW-Authenticate` on 401/403, `Retry-After` on 503).
 */
export function serveAdminRoutes(router: Router, routes: readonly AdminRoute[], deps: AdminRouteDeps, opts: { mountedAt?: string } = {}): void {
  const mountedAt = opts.mountedAt ?? '';
  for (const { spec, handle } of routes) {
    if (!spec.path.startsWith(mountedAt)) throw new TypeError(`admin route ${spec.path} is not under ${mountedAt}`);
    if (spec.ownedTask && !deps.tasks) throw new TypeError(`admin route ${spec.path} needs deps.tasks`);
    const method = spec.method.toLowerCase() as 'get' | 'post' | 'delete';
    router[method](spec.path.slice(mountedAt.length) || '/', async (req: Request, res: Response, next: NextFunction) => {
      const state: CallState = { spec };
      res.locals.adminCall = state;
      try {
        const principal = await authenticate(spec, req.header('authorization'), deps);
        state.principal = principal;
        denied(spec, principal);
        const params = req.params as Record<string, string>;
        let task: Task | undefined;
        if (spec.ownedTask) {
          task = TASK_ID.test(params.id ?? '') ? await deps.tasks!.get(params.id as string) : undefined;
          if (!task) throw new LeashError('ERR_ADMIN_NOT_FOUND', 'no such task');
          const anyOwner = spec.ownedTask.anyOwner;
          if (task.createdBy !== principal.id && !anyOwner.some((r) => principal.roles.has(r))) {
            state.task = task.id;
            throw new LeashError('ERR_TASK_NOT_OWNER', 'no such task', { task: task.id, owner: task.createdBy });
          }
        }
        const query = queryOf(spec, req);
        const body = await bodyOf(spec, req, res, deps.maxBodyBytes());
        const result = await handle({ principal, params, body, query, task } as AdminCall<TSchema | undefined, TSchema | undefined>);
        deps.metrics.adminRequests.inc({ route: spec.route, outcome: 'ok' });
        res.status(result.status ?? 200).set('Cache-Control', 'no-store');
        if (result.location) res.location(result.location);
        if (result.raw)
          res
            .set({ ...result.raw.headers })
            .type(result.raw.contentType)
            .send(result.raw.content);
        else res.json(result.body);
      } catch (err) {
        next(err);
      }
    });
  }
  router.use(async (err: unknown, req: Request, res: Response, next: NextFunction) => {
    const state = res.locals.adminCall as CallState | undefined;
    if (!state) return next(err);
    let answer = err;
    if (err instanceof LeashError && DENIALS.has(err.code)) {
      try {
        await deps.audit.record('admin.denied', {
          route: state.spec.route,
          method: req.method,
          reason: err.code,
          ...(state.principal ? { actor: state.principal.id } : {}),
          ...(state.task ? { task: state.task } : {}),
          ...(err.code === 'ERR_ADMIN_FORBIDDEN' && err.detail ? { detail: err.detail } : {}),
        });
      } catch (auditErr) {
        // A refusal that cannot be recorded is answered as the outage it is (503), like any unaudited decision.
        answer = auditErr;
      }
    }
    deps.metrics.adminRequests.inc({ route: state.spec.route, outcome: adminOutcome(answer) });
    res.set('Cache-Control', 'no-store');
    sendAdminError(res, answer);
  });
}

/** The route table as data: method, path, roles, body and query schemas. */
export function routeTable(routes: readonly AdminRoute[]): readonly AdminRouteSpec[] {
  return routes.map((r) => r.spec);
}
