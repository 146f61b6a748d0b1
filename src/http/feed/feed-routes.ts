import express, { type Request, type Response } from 'express';
import type { ResourceServerConfig } from '../../config/schema.js';
import { LeashError } from '../../errors/leash-error.js';
import { formBody, oauthFormParser, sendOAuthError } from '../oauth/client-auth.js';
import type { RevocationStore, StoreIdentity } from '../../store/store.js';
import type { Clock } from '../../time/clock.js';
import type { RevocationService } from '../../revocation/revocation-service.js';
import type { Revocation } from '../../store/records.js';
import { concerns } from '../../revocation/revocation-audiences.js';
import { toFeedItem } from '../../revocation/feed/feed-item.js';
import { openRevocationStream, type StreamRegistry } from './revocation-stream.js';

export interface RevocationFeedDeps {
  /** Resource-server client authentication; throws LeashError ERR_CLIENT_AUTH_FAILED. */
  readonly authenticate: (req: Request) => Promise<ResourceServerConfig>;
  /** `epoch`: the store epoch every item carries, so followers notice a reset store. */
  readonly store: Pick<RevocationStore, 'revocationsSince'> & Pick<StoreIdentity, 'epoch'>;
  /** `onRevocation` feeds the live stream; `assertFresh` refuses while this replica's view is stale. */
  readonly revocation: Pick<RevocationService, 'onRevocation' | 'assertFresh'>;
  readonly clock: Clock;
  /** Most records per poll page or replay batch (and the default `limit`). Default 500. */
  readonly maxBatch?: number;
  /** SSE comment sent this often so proxies keep the stream open and followers see it is alive. Default 15 s. */
  readonly heartbeatMs?: number;
  /** Concurrent SSE streams this replica serves; beyond: 503. Default 256. */
  readonly maxStreams?: number;
  /** A stream is closed after this long, so the follower reconnects and authenticates again. Default 15 min. */
  readonly maxStreamMs?: number;
  /** SSE `retry:` hint to clients (ms). Default 2000. */
  readonly retryMs?: number;
}

export type RevocationFeedRouter = express.Router & {
  /** Streams open now. */
  openStreams(): number;
  /** Ends every open stream (shutdown); followers reconnect elsewhere with Last-Event-ID. */
  closeStreams(): void;
};

/** Store reads (of `maxBatch` rows) one poll may make looking for records of the caller's audiences. */
const SCAN_BATCHES = 4;

/** Cursors are store sequence numbers: plain non-negative integers. */
const CURSOR = /^(0|[1-9][0-9]{0,14})$/;

function parseCursor(value: unknown, name: string): number {
  if (value === undefined) return 0;
  if (typeof value !== 'string' || !CURSOR.test(value)) {
    throw new LeashError('ERR_REQUEST_MALFORMED', `${name} must be one non-negative integer: the cursor of a previous answer, or 0 for everything`);
  }
  return Number(value);
}

/** Feed parameters: the query of a GET, the form body of a POST (never both, so one source is authoritative). */
function feedParams(req: Request): { since: unknown; limit: unknown } {
  if (req.method === 'POST') {
    if (req.query.since !== undefined || req.query.limit !== undefined) {
      throw new LeashError('ERR_REQUEST_MALFORMED', 'with POST send since and limit in the form body, not the URL');
    }
    const body = formBody(req);
    return { since: body.since, limit: body.limit };
  }
  return { since: req.query.since, limit: req.query.limit };
}

function parseLimit(value: unknown, maxBatch: number): number {
  if (value === undefined) return maxBatch;
  if (typeof value !== 'string' || !/^[1-9][0-9]{0,6}$/.test(value)) {
    throw new LeashError('ERR_REQUEST_MALFORMED', `limit must be one integer from 1 to ${maxBatch}`);
  }
  // Larger pages are clamped rather than refused: `more` tells the client to come back.
  return Math.min(Number(value), maxBatch);
}

/**
 * The revocation feed for authenticated resource servers: `/revocations` (a page of records
 * after a cursor) and `/revocations/stream` (Server-Sent Events: replay after
 * `Last-Event-ID`, then live), each as GET (Basic auth) or form POST (any client auth). Both read the durable store for history, so a follower that
 * was away catches up exactly; records whose tokens have all expired are no longer served.
 * Each server sees only the records that concern its audiences (plus plugin and key
 * revocations), without the revoker's reason.
 */
export function revocationFeedRouter(deps: RevocationFeedDeps): RevocationFeedRouter {
  const maxBatch = deps.maxBatch ?? 500;
  if (!Number.isInteger(maxBatch) || maxBatch < 1) throw new TypeError('revocationFeedRouter: maxBatch must be a positive integer');
  const maxScan = maxBatch * SCAN_BATCHES;
  const registry: StreamRegistry = {
    open: new Set(),
    maxStreams: deps.maxStreams ?? 256,
    heartbeatMs: deps.heartbeatMs ?? 15_000,
    maxStreamMs: deps.maxStreamMs ?? 15 * 60_000,
    retryMs: deps.retryMs ?? 2000,
    maxBatch,
  };
  const router = express.Router() as RevocationFeedRouter;

  /**
   * One page for one resource server: the records after `since` that concern its audiences.
   * Reads at most `maxScan` store rows (`maxBatch` at a time) whatever the history, and
   * moves the cursor past records of other audiences too, so the next page starts after
   * them; `more` says whether the store has rows beyond the cursor.
   */
  async function page(since: number, limit: number, audiences: readonly string[]): Promise<{ revocations: Revocation[]; cursor: number; more: boolean }> {
    const now = deps.clock.now();
    const found: Revocation[] = [];
    let scanned = since;
    for (let read = 0; read < maxScan; read += maxBatch) {
      const rows = await deps.store.revocationsSince(scanned, maxBatch, now);
      for (const r of rows) {
        if (concerns(r, audiences)) {
          // One more than asked says there is more, without another read.
          if (found.length === limit) return { revocations: found, cursor: found.at(-1)!.seq, more: true };
          found.push(r);
        }
        scanned = r.seq;
      }
      if (rows.length < maxBatch) return { revocations: found, cursor: scanned, more: false };
    }
    return { revocations: found, cursor: scanned, more: true };
  }

  async function poll(req: Request, res: Response): Promise<void> {
    try {
      const server = await deps.authenticate(req);
      const params = feedParams(req);
      const since = parseCursor(params.since, 'since');
      const limit = parseLimit(params.limit, maxBatch);
      deps.revocation.assertFresh();
      const { revocations, cursor, more } = await page(since, limit, server.audiences);
      const epoch = deps.store.epoch() ?? '';
      res
        .status(200)
        .set('Cache-Control', 'no-store')
        .json({ revocations: revocations.map((r) => toFeedItem(r, epoch)), cursor, more, epoch });
    } catch (err) {
      sendOAuthError(res, err);
    }
  }

  async function stream(req: Request, res: Response): Promise<void> {
    try {
      const server = await deps.authenticate(req);
      // On reconnect EventSource sends Last-Event-ID; it is newer than the URL's `since`.
      const header = req.headers['last-event-id'];
      const cursor = header !== undefined && header !== '' ? parseCursor(header, 'Last-Event-ID') : parseCursor(feedParams(req).since, 'since');
      deps.revocation.assertFresh();
      // HEAD (express routes it to GET) must not hold a stream slot open.
      if (req.method === 'HEAD') return void res.status(200).set({ 'Content-Type': 'text/event-stream; charset=utf-8', 'Cache-Control': 'no-store' }).end();
      await openRevocationStream(req, res, cursor, server.audiences, deps, registry);
    } catch (err) {
      if (!res.headersSent) sendOAuthError(res, err);
      else res.end();
    }
  }

  // GET with client_secret_basic is the plain form; POST with a form body also carries
  // client_secret_post or a private_key_jwt assertion (RFC 7523), which have no GET form.
  const form = oauthFormParser();
  router.get('/revocations', poll);
  router.post('/revocations', ...form, poll);
  router.get('/revocations/stream', stream);
  router.post('/revocations/stream', ...form, stream);

  router.openStreams = () => registry.open.size;
  router.closeStreams = () => {
    for (const s of [...registry.open]) s.end();
  };
  return router;
}
