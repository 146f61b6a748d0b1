import type { Request, RequestHandler } from 'express';
import type { Logger } from '../log/logger.js';
import { REQUEST_ID_HEADER, requestIdFrom, runInRequest, type RequestContext } from '../log/request-context.js';
import { routeMatcher, type RouteSpec } from './surface.js';

export interface AccessLogOptions {
  readonly logger: () => Logger;
  /** The routes of this port: a line names the route template, never the path as sent. */
  readonly routes: readonly RouteSpec[];
  /** Public port: `info` (when `log.access` is on); management port: `debug` (probes and scrapes are constant noise). */
  readonly level: 'info' | 'debug';
  readonly enabled?: () => boolean;
}

/**
 * First on a port: gives the request its id (the caller's `X-Request-Id` when sane,
 * otherwise a new one), returns it in the answer, runs the rest of the request inside
 * that context (the audit events it records carry the id), and writes one access line
 * when the answer is done: method, route template (`-` for a path Leash does not serve),
 * status, duration and, for an exchange, the plugin it resolved. Never a header, a query
 * string or a body: tokens travel there.
 */
export function accessLog(opts: AccessLogOptions): RequestHandler {
  const routeOf = routeMatcher(opts.routes);
  return (req, res, next) => {
    const context: RequestContext = { id: requestIdFrom(req.headers['x-request-id']) };
    (req as ContextCarrier)[CONTEXT] = context;
    res.setHeader(REQUEST_ID_HEADER, context.id);
    const started = process.hrtime.bigint();
    let logged = false;
    const done = () => {
      if (logged) return;
      logged = true;
      const logger = opts.logger();
      if ((opts.enabled && !opts.enabled()) || !logger.isLevelEnabled(opts.level)) return;
      const line: Record<string, unknown> = {
        request_id: context.id,
        method: req.method,
        // originalUrl: a mounted router has rewritten req.url by now.
        route: routeOf(pathOf(req.originalUrl)) ?? '-',
        status: res.statusCode,
        duration_ms: Math.round(Number(process.hrtime.bigint() - started) / 1e3) / 1e3,
      };
      if (context.plugin !== undefined) line.plugin = context.plugin;
      // The connection closed before the answer was complete (client gone, or cut at shutdown).
      if (!res.writableFinished) line.aborted = true;
      logger(opts.level, 'request', line);
    };
    res.once('finish', done);
    res.once('close', done);
    runInRequest(context, next);
  };
}

/** The path of a request target, without its query (which is never logged). */
function pathOf(url: string): string {
  const q = url.indexOf('?');
  return q < 0 ? url : url.slice(0, q);
}

const CONTEXT = Symbol('leash.requestContext');
type ContextCarrier = Request & { [CONTEXT]?: RequestContext };

/**
 * A middleware that reads the body continues from a stream event, where the request's
 * context is lost (events run in the socket's context). Wrapped here, its `next` runs in the
 * request's context again, so what follows (the routes, their audit events) still sees it.
 */
export function inRequestContext(mw: RequestHandler): RequestHandler {
  return (req, res, next) => {
    const context = (req as ContextCarrier)[CONTEXT];
    if (!context) return mw(req, res, next);
    mw(req, res, (err?: unknown) => runInRequest(context, () => next(err)));
  };
}
