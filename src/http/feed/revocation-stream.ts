import type { Request, Response } from 'express';
import { LeashError } from '../../errors/leash-error.js';
import type { Revocation } from '../../store/records.js';
import type { RevocationFeedDeps } from './feed-routes.js';
import { concerns } from '../../revocation/revocation-audiences.js';
import { toFeedItem } from '../../revocation/feed/feed-item.js';

/** Shared by every stream of one router. */
export interface StreamRegistry {
  readonly open: Set<{ end(): void }>;
  readonly maxStreams: number;
  readonly heartbeatMs: number;
  readonly maxStreamMs: number;
  readonly retryMs: number;
  readonly maxBatch: number;
}

/** A client this far behind (bytes queued in the socket) is cut off; it resumes with Last-Event-ID. */
const MAX_BUFFERED_BYTES = 1 << 20;
/** How many recently sent seqs are remembered to drop a record published twice (pub/sub and sync). */
const RECENT_SEQS = 4096;

export function sseEvent(r: Revocation, epoch: string): string {
  // JSON.stringify never emits a raw newline, so one `data:` line carries the whole record.
  return `id: ${r.seq}\nevent: revocation\ndata: ${JSON.stringify(toFeedItem(r, epoch))}\n\n`;
}

/**
 * Serves one SSE stream of the revocations that concern `audiences` (the authenticated
 * resource server's): subscribes to live revocations first, replays the store after
 * `cursor`, then forwards live ones. Live records that arrive during the replay are held
 * and only those past the replay's last seq are sent, so nothing is missed or doubled.
 * The first replay page is read before any header is written, so a store outage is a
 * clean 503 rather than a stream that ends at once.
 */
export async function openRevocationStream(req: Request, res: Response, cursor: number, audiences: readonly string[], deps: RevocationFeedDeps, registry: StreamRegistry): Promise<void> {
  if (registry.open.size >= registry.maxStreams) {
    throw new LeashError('ERR_BACKEND_UNAVAILABLE', `this replica serves at most ${registry.maxStreams} revocation streams; retry later or poll GET /revocations`);
  }

  let closed = false;
  let replaying = true;
  const held: Revocation[] = [];
  let floor = cursor;
  let highest = cursor;
  const recent = new Set<number>();
  let heartbeat: NodeJS.Timeout | undefined;
  let lifetime: NodeJS.Timeout | undefined;
  const epoch = () => deps.store.epoch() ?? '';

  const stream = {
    end(): void {
      if (closed) return;
      cleanup();
      res.end();
    },
  };
  const unsubscribe = deps.revocation.onRevocation((r) => {
    if (closed || !concerns(r, audiences)) return;
    if (replaying) held.push(r);
    else send(r);
  });
  registry.open.add(stream);

  function cleanup(): void {
    if (closed) return;
    closed = true;
    unsubscribe();
    if (heartbeat) clearInterval(heartbeat);
    if (lifetime) clearTimeout(lifetime);
    registry.open.delete(stream);
  }
  res.on('close', cleanup);

  function send(r: Revocation): void {
    if (closed || r.seq <= floor || recent.has(r.seq)) return;
    recent.add(r.seq);
    if (recent.size > RECENT_SEQS) recent.delete(recent.values().next().value as number);
    highest = Math.max(highest, r.seq);
    res.write(sseEvent(r, epoch()));
    if (res.writableLength > MAX_BUFFERED_BYTES) stream.end();
  }

  /** Replay writes wait for the socket to drain so a long history does not pile up in memory. */
  async function write(chunk: string): Promise<void> {
    if (res.write(chunk) || closed) return;
    await new Promise<void>((resolve) => {
      const done = () => {
        res.off('drain', done);
        res.off('close', done);
        resolve();
      };
      res.on('drain', done);
      res.on('close', done);
    });
  }

  try {
    let batch = await deps.store.revocationsSince(cursor, registry.maxBatch, deps.clock.now());
    if (closed) return;
    res.status(200).set({
      'Content-Type': 'text/event-stream; charset=utf-8',
      'Cache-Control': 'no-store',
      Connection: 'keep-alive',
      // nginx and friends buffer responses unless told not to.
      'X-Accel-Buffering': 'no',
    });
    res.flushHeaders();
    req.socket.setNoDelay(true);
    await write(`retry: ${registry.retryMs}\n\n`);

    let last = cursor;
    for (;;) {
      for (const r of batch) {
        if (closed) return;
        // Records of other audiences are skipped, not sent; the `synced` cursor covers them.
        if (concerns(r, audiences)) {
          recent.add(r.seq);
          await write(sseEvent(r, epoch()));
        }
        last = r.seq;
        highest = Math.max(highest, r.seq);
      }
      if (batch.length < registry.maxBatch || closed) break;
      batch = await deps.store.revocationsSince(last, registry.maxBatch, deps.clock.now());
    }
    if (closed) return;
    floor = last;
    replaying = false;
    for (const r of held.splice(0)) send(r);
    // Tells a follower the history is complete: from here its view is as fresh as the stream.
    res.write(`event: synced\ndata: ${JSON.stringify({ cursor: highest, epoch: epoch() })}\n\n`);

    heartbeat = setInterval(() => {
      try {
        // A replica whose view went stale may be missing live records: end the stream so
        // the follower reconnects (and replays from the store) rather than trust silence.
        deps.revocation.assertFresh();
      } catch {
        stream.end();
        return;
      }
      res.write(': heartbeat\n\n');
    }, registry.heartbeatMs);
    heartbeat.unref();
    lifetime = setTimeout(() => stream.end(), registry.maxStreamMs);
    lifetime.unref();
  } catch (err) {
    cleanup();
    throw err;
  }
}
