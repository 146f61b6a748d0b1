import express, { type Request, type Response } from 'express';
import type { ResourceServerConfig, Settings } from '../config/schema.js';
import { LeashError } from '../errors/leash-error.js';
import { sendOAuthError } from './oauth/client-auth.js';
import type { Metrics } from '../metrics/metrics.js';
import type { Clock } from '../time/clock.js';
import type { TaskBudgetEnforcer } from '../usage/budgets.js';
import type { UsageIngestor } from '../usage/ingest.js';
import { isProblem, parseUsageRecord, type RecordProblem, type UsageCall } from '../usage/report.js';

export const USAGE_PATH = '/usage';
export const BUDGET_PATH = '/usage/budget';

export interface UsageRouteDeps {
  /** Resource-server client authentication (the same credentials as introspection). */
  readonly authenticate: (req: Request) => Promise<ResourceServerConfig>;
  readonly ingestor: UsageIngestor;
  readonly budgets: TaskBudgetEnforcer;
  readonly settings: () => Settings;
  readonly clock: Clock;
  readonly metrics: Metrics;
}

/** The members of a `POST /usage` body besides `records`: client authentication only. */
const AUTH_MEMBERS = new Set(['client_id', 'client_secret', 'client_assertion', 'client_assertion_type']);
const DAY = 86_400_000;
/** Problems listed in an answer at most; the counts stay exact. */
const MAX_LISTED = 100;

/**
 * `POST /usage`: a resource server reports calls made with Leash credentials, as JSON
 * `{ "records": [ … ] }`, authenticated as itself (Basic, or `client_id`+`client_secret` or
 * `client_assertion` members beside `records`). Records for an audience the server does not
 * answer for are refused one by one, as are malformed ones; the rest are ingested. The
 * answer says how many were accepted and why the others were not, so a reporter can drop
 * them rather than retry; a 503 (the store is down) is retried.
 */
export function usageRouter(deps: UsageRouteDeps): express.Router {
  const router = express.Router();
  // One parser per body limit (the limit follows reloads), not one built per request.
  let parser: { limit: number; handler: express.RequestHandler } | undefined;
  const json = (req: Request, res: Response, next: express.NextFunction) => {
    const limit = deps.settings().usage.max_body_bytes;
    if (parser?.limit !== limit) parser = { limit, handler: express.json({ limit, strict: true, type: 'application/json' }) };
    return parser.handler(req, res, next);
  };

  router.post(USAGE_PATH, json, async (req: Request, res: Response) => {
    try {
      const settings = deps.settings();
      if (!settings.usage.enabled) throw new LeashError('ERR_ROUTE_NOT_FOUND', 'no such endpoint');
      if (!req.is('application/json')) throw new LeashError('ERR_REQUEST_MALFORMED', 'send the records as an application/json body: {"records": [...]}');
      const body = req.body as unknown;
      if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new LeashError('ERR_REQUEST_MALFORMED', 'the body must be a JSON object: {"records": [...]}');
      const server = await deps.authenticate(req);
      const b = body as Record<string, unknown>;
      const extra = Object.keys(b).find((k) => k !== 'records' && !AUTH_MEMBERS.has(k));
      if (extra !== undefined) throw new LeashError('ERR_REQUEST_MALFORMED', `unknown member '${extra.slice(0, 64)}': the body holds records and client authentication only`);
      const records = b.records;
      if (!Array.isArray(records) || records.length === 0) throw new LeashError('ERR_REQUEST_MALFORMED', "'records' must be a non-empty array");
      if (records.length > settings.usage.max_batch) throw new LeashError('ERR_REQUEST_MALFORMED', `at most ${settings.usage.max_batch} records per request`);

      const now = deps.clock.now();
      const window = { from: now - settings.usage.retention_days * DAY, to: now + settings.usage.max_skew * 1000 };
      const audiences = new Set(server.audiences);
      const accepted: UsageCall[] = [];
      const rejected: RecordProblem[] = [];
      for (let i = 0; i < records.length; i++) {
        const parsed = parseUsageRecord(records[i], i, window);
        if (isProblem(parsed)) rejected.push(parsed);
        // Only the server's own audiences: it cannot report (or smear) calls to another API.
        else if (!audiences.has(parsed.audience)) rejected.push({ index: i, field: 'audience', message: 'not an audience this resource server answers for' });
        else accepted.push(parsed);
      }
      if (rejected.length > 0) deps.metrics.usageRecords.inc({ outcome: 'rejected' }, rejected.length);
      await deps.ingestor.ingest({ id: server.id, audiences: server.audiences }, accepted);
      // Written directly: res.json would hash every answer for an ETag nobody revalidates (no-store).
      res
        .status(200)
        .set('Cache-Control', 'no-store')
        .type('application/json')
        .end(JSON.stringify({ accepted: accepted.length, rejected: rejected.length, problems: rejected.slice(0, MAX_LISTED) }));
    } catch (err) {
      sendOAuthError(res, err);
    }
  });

  /**
   * `POST /usage/budget` `{ "jti": "…", "audience": "…" }`: the synchronous budget check of
   * `requireLeashToken({ budget: 'enforce' })`. Charges one call to the token's task if its
   * budgets (in total and for the audience) allow it, atomically across replicas, and answers
   * `{ "allowed": true|false, "task", "reason"?, "used"? }`. The call it allowed is reported
   * later with `charged: true` and not counted twice.
   */
  router.post(BUDGET_PATH, json, async (req: Request, res: Response) => {
    try {
      if (!deps.settings().usage.enabled) throw new LeashError('ERR_ROUTE_NOT_FOUND', 'no such endpoint');
      if (!req.is('application/json')) throw new LeashError('ERR_REQUEST_MALFORMED', 'send an application/json body: {"jti": "...", "audience": "..."}');
      const body = req.body as unknown;
      if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new LeashError('ERR_REQUEST_MALFORMED', 'the body must be a JSON object: {"jti": "...", "audience": "..."}');
      const server = await deps.authenticate(req);
      const b = body as Record<string, unknown>;
      const extra = Object.keys(b).find((k) => k !== 'jti' && k !== 'audience' && !AUTH_MEMBERS.has(k));
      if (extra !== undefined) throw new LeashError('ERR_REQUEST_MALFORMED', `unknown member '${extra.slice(0, 64)}'`);
      if (typeof b.jti !== 'string' || b.jti.length === 0 || b.jti.length > 160) throw new LeashError('ERR_REQUEST_MALFORMED', "'jti' is required: the token's id");
      if (typeof b.audience !== 'string' || b.audience.length === 0 || b.audience.length > 256)
        throw new LeashError('ERR_REQUEST_MALFORMED', "'audience' is required: the audience the call was made to");
      const answer = await deps.budgets.charge(server, b.jti, b.audience);
      res.status(200).set('Cache-Control', 'no-store').json(answer);
    } catch (err) {
      sendOAuthError(res, err);
    }
  });

  return router;
}
