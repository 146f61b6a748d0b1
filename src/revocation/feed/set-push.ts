import { randomUUID } from 'node:crypto';
import { backoffDelay } from '../../client/backoff.js';
import type { ResourceServerConfig } from '../../config/schema.js';
import { signJwt } from '../../keys/jws.js';
import type { KeyManager } from '../../keys/key-manager.js';
import type { Revocation } from '../../store/records.js';
import { epochSeconds, systemClock, type Clock } from '../../time/clock.js';
import { concerns } from '../revocation-audiences.js';
import type { RevocationService } from '../revocation-service.js';
import { buildSetClaims, SET_MEDIA_TYPE } from './set-event.js';

/** What happened to one SET at one receiver; `retry` is reported per failed attempt that will be tried again. */
export type SetPushOutcome =
  | { readonly kind: 'delivered'; readonly seq: number; readonly jti: string; readonly attempt: number; readonly status: number }
  | { readonly kind: 'retry'; readonly seq: number; readonly jti: string; readonly attempt: number; readonly status?: number; readonly error: string; readonly delayMs: number }
  | { readonly kind: 'failed'; readonly seq: number; readonly jti: string; readonly attempt: number; readonly status?: number; readonly error: string }
  | { readonly kind: 'dropped'; readonly seq: number; readonly jti: string };

export interface SetPusherOptions {
  /** Leash's issuer URL (`iss`). */
  readonly issuer: string;
  readonly keys: Pick<KeyManager, 'current'>;
  /** The store epoch, carried by every SET (see FeedRevocation.epoch); the broker always gives it. */
  readonly epoch?: () => string | undefined;
  /** Every configured resource server; those without `push` are ignored. */
  readonly servers: readonly ResourceServerConfig[];
  readonly fetch?: typeof fetch;
  readonly clock?: Clock;
  /** Attempts per SET when a server's `push.max_attempts` is not set. Default 6. */
  readonly maxAttempts?: number;
  /** First retry delay; doubles per attempt, with jitter. Default 500 ms. */
  readonly baseDelayMs?: number;
  /** Ceiling of the retry delay. Default 30 s. */
  readonly maxDelayMs?: number;
  /** Per POST. Default 5 s. */
  readonly timeoutMs?: number;
  /** SETs waiting per receiver (besides one being POSTed); beyond it the oldest is dropped (and counted). Default 1000. */
  readonly queueLimit?: number;
  /** Jitter source in [0, 1). */
  readonly random?: () => number;
  /** Metrics and audit hook; must not throw (it is isolated if it does). */
  readonly onResult?: (server: ResourceServerConfig, outcome: SetPushOutcome) => void;
}

export interface SetPushStats {
  readonly queued: number;
  readonly delivered: number;
  readonly failed: number;
  readonly dropped: number;
}

export interface SetPusher {
  /** Subscribes to the service's revocations; each one is queued for every push receiver. */
  start(revocation: Pick<RevocationService, 'onRevocation'>): void;
  /** Unsubscribes, aborts POSTs in flight and forgets queued SETs. */
  stop(): void;
  /** Queue one revocation for every receiver it concerns (what `start` does per event). Never blocks. */
  publish(revocation: Revocation): void;
  /** Resolves once every queue is empty and nothing is in flight. */
  idle(): Promise<void>;
  /** Per receiver id. */
  stats(): Record<string, SetPushStats>;
}

interface Pending {
  readonly revocation: Revocation;
  readonly jti: string;
  /** Signed once and resent as is, so every retry carries the same `jti` for the receiver to dedupe. */
  token: string | undefined;
  attempts: number;
}

/** A receiver's answer that no retry will change (RFC 8935 §2.3 errors other than a stale key). */
class PermanentFailure extends Error {}

const BODY_PEEK_BYTES = 4096;

/**
 * Push delivery (RFC 8935) of one signed SET (RFC 8417) per revocation to every resource
 * server with `push.url`. Each receiver has its own bounded queue and one worker that
 * delivers in order, so a slow or dead receiver delays only itself, and the revocation
 * path only ever appends to queues. Delivery is at-least-once while the process lives:
 * receivers dedupe by `jti` (stable across retries) and catch up from the poll feed.
 */
export function createSetPusher(opts: SetPusherOptions): SetPusher {
  if (!opts.issuer) throw new TypeError('createSetPusher: issuer is required');
  const fetchFn = opts.fetch ?? globalThis.fetch;
  const clock = opts.clock ?? systemClock;
  const baseDelay = opts.baseDelayMs ?? 500;
  const maxDelay = opts.maxDelayMs ?? 30_000;
  const timeoutMs = opts.timeoutMs ?? 5000;
  const queueLimit = opts.queueLimit ?? 1000;
  const random = opts.random ?? Math.random;
  if (!(queueLimit >= 1) || !(baseDelay >= 0) || !(timeoutMs > 0)) throw new TypeError('createSetPusher: queueLimit, baseDelayMs and timeoutMs must be positive');

  const stopper = new AbortController();
  let unsubscribe: (() => void) | undefined;

  function report(server: ResourceServerConfig, outcome: SetPushOutcome): void {
    try {
      opts.onResult?.(server, outcome);
    } catch {
      // A faulty hook must not stop delivery.
    }
  }

  class Receiver {
    readonly queue: Pending[] = [];
    readonly url: string;
    readonly maxAttempts: number;
    running: Promise<void> | undefined;
    /** The SET being POSTed now: not dropped, since its outcome is about to be counted. */
    posting: Pending | undefined;
    delivered = 0;
    failed = 0;
    dropped = 0;

    constructor(readonly server: ResourceServerConfig & { push: NonNullable<ResourceServerConfig['push']> }) {
      this.url = server.push.url;
      this.maxAttempts = server.push.max_attempts ?? opts.maxAttempts ?? 6;
    }

    enqueue(revocation: Revocation): void {
      if (stopper.signal.aborted) return;
      const busy = this.posting !== undefined && this.queue[0] === this.posting ? 1 : 0;
      while (this.queue.length - busy >= queueLimit) {
        const [old] = this.queue.splice(busy, 1) as [Pending];
        this.dropped++;
        report(this.server, { kind: 'dropped', seq: old.revocation.seq, jti: old.jti });
      }
      this.queue.push({ revocation, jti: randomUUID(), token: undefined, attempts: 0 });
      this.running ??= this.run().finally(() => {
        this.running = undefined;
      });
    }

    async run(): Promise<void> {
      while (this.queue.length > 0 && !stopper.signal.aborted) {
        const p = this.queue[0] as Pending;
        this.posting = p;
        const outcome = await this.attempt(p).finally(() => (this.posting = undefined));
        if (stopper.signal.aborted) return;
        if (outcome.kind === 'retry') {
          report(this.server, outcome);
          await sleep(outcome.delayMs, stopper.signal);
          continue; // p may have been dropped while it waited; the loop takes whatever is first now.
        }
        this.queue.shift();
        if (outcome.kind === 'delivered') this.delivered++;
        else this.failed++;
        report(this.server, outcome);
      }
    }

    async attempt(p: Pending): Promise<SetPushOutcome> {
      p.attempts++;
      const seq = p.revocation.seq;
      let status: number | undefined;
      try {
        p.token ??= await signJwt(
          opts.keys.current(),
          { typ: 'secevent+jwt' },
          buildSetClaims({ issuer: opts.issuer, audience: this.server.id, jti: p.jti, iat: epochSeconds(clock), revocation: p.revocation, epoch: opts.epoch?.() }),
        );
        const res = await fetchFn(this.url, {
          method: 'POST',
          headers: { 'content-type': SET_MEDIA_TYPE, accept: 'application/json' },
          body: p.token,
          // A receiver's redirect could send the SET anywhere: never followed.
          redirect: 'manual',
          signal: AbortSignal.any([stopper.signal, AbortSignal.timeout(timeoutMs)]),
        });
        status = res.status;
        if (status >= 200 && status < 300) {
          await res.body?.cancel().catch(() => undefined);
          return { kind: 'delivered', seq, jti: p.jti, attempt: p.attempts, status };
        }
        const err = await errorCode(res);
        if (status >= 300 && status < 400) throw new PermanentFailure(`receiver answered a redirect (${status}); redirects are not followed`);
        // RFC 8935 §2.3: a 400 names the reason; only a stale key (the receiver has not
        // refetched our JWKS after a rotation) or a busy receiver can change on retry.
        if (status >= 400 && status < 500 && status !== 408 && status !== 429 && err !== 'invalid_key') {
          throw new PermanentFailure(`receiver refused the SET (${status}${err ? ` ${err}` : ''})`);
        }
        throw new Error(`receiver answered ${status}${err ? ` ${err}` : ''}`);
      } catch (e) {
        const error = describe(e);
        const base = { seq, jti: p.jti, attempt: p.attempts, error, ...(status !== undefined ? { status } : {}) };
        if (e instanceof PermanentFailure || p.attempts >= this.maxAttempts) return { kind: 'failed', ...base };
        return { kind: 'retry', ...base, delayMs: backoffDelay(p.attempts, { baseMs: baseDelay, capMs: maxDelay, random }) };
      }
    }
  }

  const receivers = opts.servers.filter((s): s is ResourceServerConfig & { push: NonNullable<ResourceServerConfig['push']> } => s.push !== undefined).map((s) => new Receiver(s));

  /** Each receiver gets only the revocations that concern its audiences. */
  function publish(revocation: Revocation): void {
    for (const r of receivers) if (concerns(revocation, r.server.audiences)) r.enqueue(revocation);
  }

  return {
    start(revocation) {
      if (unsubscribe) throw new TypeError('SetPusher.start: already started');
      if (stopper.signal.aborted) throw new TypeError('SetPusher.start: stopped pushers do not restart; create a new one');
      unsubscribe = revocation.onRevocation(publish);
    },
    stop() {
      unsubscribe?.();
      stopper.abort();
      for (const r of receivers) r.queue.length = 0;
    },
    publish,
    async idle() {
      for (;;) {
        const busy = receivers.map((r) => r.running).filter((p): p is Promise<void> => p !== undefined);
        if (busy.length === 0) return;
        await Promise.all(busy);
      }
    },
    stats() {
      return Object.fromEntries(receivers.map((r) => [r.server.id, { queued: r.queue.length, delivered: r.delivered, failed: r.failed, dropped: r.dropped }]));
    },
  };
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    timer.unref();
    signal.addEventListener('abort', done, { once: true });
  });
}

/** The RFC 8935 `err` of an error answer, read from at most a few KB of the body. */
async function errorCode(res: Response): Promise<string | undefined> {
  if (!res.body) return undefined;
  const reader = res.body.getReader() as ReadableStreamDefaultReader<Uint8Array>;
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    while (size < BODY_PEEK_BYTES) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      size += value.byteLength;
    }
  } finally {
    await reader.cancel().catch(() => undefined);
  }
  try {
    const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { err?: unknown };
    return typeof body.err === 'string' && /^[a-z_]{1,64}$/.test(body.err) ? body.err : undefined;
  } catch {
    return undefined;
  }
}

/** A short, secret-free reason for logs and metrics (never the SET itself). */
function describe(e: unknown): string {
  if (e instanceof PermanentFailure) return e.message;
  const err = e as { name?: unknown; message?: unknown; cause?: { code?: unknown } };
  if (err?.name === 'TimeoutError') return 'timed out';
  if (err?.name === 'AbortError') return 'stopped';
  if (typeof err?.cause?.code === 'string') return `network error ${err.cause.code}`;
  return typeof err?.message === 'string' ? err.message.slice(0, 200) : 'delivery failed';
}
