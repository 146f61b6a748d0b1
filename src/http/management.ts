import express from 'express';
import type { Metrics } from '../metrics/metrics.js';
import { MANAGEMENT_ROUTES, allowedMethods, answerOptions, unserved } from './surface.js';
import { accessLog } from './access-log.js';
import type { Logger } from '../log/logger.js';

export interface ManagementDeps {
  readonly metrics: Metrics;
  /** Resolves when this replica should take traffic; throws (with a short reason) when it should not. */
  readonly ready: () => Promise<void>;
  readonly logger: () => Logger;
  /** `serve --workers N`: the exposition text of every worker (cluster/), instead of this process's registry. */
  readonly scrape?: () => Promise<string>;
}

/**
 * The management port's routes: liveness, readiness and Prometheus metrics. They live on
 * their own listener (loopback by default) so that the public port, which faces plugins
 * and resource servers, does not publish process internals or per-plugin counters.
 */
export function createManagementApp(deps: ManagementDeps): express.Express {
  const app = express();
  app.disable('x-powered-by');
  app.disable('etag');
  app.set('query parser', 'simple');
  const allow = allowedMethods(MANAGEMENT_ROUTES);
  // Probes and scrapes arrive every few seconds: their lines are `debug`.
  app.use(accessLog({ logger: deps.logger, routes: MANAGEMENT_ROUTES, level: 'debug' }));
  app.use((_req, res, next) => {
    res.set('X-Content-Type-Options', 'nosniff').set('Cache-Control', 'no-store');
    next();
  });
  app.use(answerOptions(allow));

  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  app.get('/readyz', async (_req, res) => {
    try {
      await deps.ready();
      res.json({ status: 'ready' });
    } catch (err) {
      res.status(503).json({ status: 'unavailable', reason: err instanceof Error ? err.message.slice(0, 200) : 'not ready' });
    }
  });
  app.get('/metrics', async (_req, res) => {
    let text: string;
    try {
      text = deps.scrape ? await deps.scrape() : await deps.metrics.registry.metrics();
    } catch (err) {
      // A scrape that cannot see every worker fails rather than passing one worker off as the whole.
      res.status(503).json({ status: 'unavailable', reason: err instanceof Error ? err.message.slice(0, 200) : 'metrics unavailable' });
      return;
    }
    res.set('Content-Type', deps.metrics.registry.contentType).send(text);
  });

  // Anything else: the same JSON 404/405 as the public port.
  app.use(unserved(allow));
  return app;
}
