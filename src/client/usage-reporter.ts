import { backoffDelay } from './backoff.js';
import { systemClock, type Clock } from './clock.js';
import type { Agent as HttpAgent } from 'node:http';
import { fetchJsonPost, nodeJsonPost, type PostAnswer } from './json-post.js';

/** How a call ended at the resource server: served, or the refusal it made. */
export type UsageRecordOutcome = 'ok' | 'expired' | 'revoked' | 'wrong_audience' | 'missing_scope' | 'bad_dpop' | 'invalid_token' | 'budget_exceeded' | 'unavailable';

/**
 * One call made with a Leash credential, as a resource server reports it. General enough
 * for an MCP server or gateway: `method` `TOOL` and the tool name as `route`.
 */
export interface UsageRecordInput {
  /** ms since the epoch; default now. */
  readonly at?: number;
  readonly jti?: string | undefined;
  readonly plugin?: string | undefined;
  readonly task?: string | undefined;
  /** The audience this server answered for. */
  readonly audience: string;
  readonly method: string;
  /** Route template or tool name: never a raw path with ids in it. */
  readonly route: string;
  readonly status: number;
  readonly durationMs?: number;
  readonly bytes?: number;
  readonly outcome?: UsageRecordOutcome;
  /** The DPoP key thumbprint the call was made with. */
  readonly jkt?: string | undefined;
  /** The caller's address as this server saw it. */
  readonly source?: string | undefined;
  /** Scopes the route checked. */
  readonly scopes?: readonly string[] | undefined;
  /** Already counted by a synchronous budget check. */
  readonly charged?: boolean;
}

export interface UsageReporterOptions {
  /** Leash's issuer URL; reports go to `<issuer>/usage` unless `usageUrl` says otherwise. */
  readonly issuer: string;
  /**
   * Where Leash takes usage reports when `settings.usage.listen` gives them a port of their
   * own (e.g. `https://leash-usage.internal:8081`): reports and budget checks go to
   * `<usageUrl>/usage` and `<usageUrl>/usage/budget`. Client assertions still name
   * `<issuer>/usage` as their audience. Default: the issuer.
   */
  readonly usageUrl?: string;
  /** This resource server's id in Leash's `resource_servers` (the same credentials as introspection). */
  readonly clientId: string;
  /** client_secret_basic. Exactly one of `clientSecret` or `clientAssertion`. */
  readonly clientSecret?: string;
  /** private_key_jwt: a fresh assertion (iss = sub = clientId, aud = `<issuer>/usage`, new jti) per request. */
  readonly clientAssertion?: (audience: string) => Promise<string>;
  /** Records per request. Default 100. */
  readonly batchSize?: number;
  /** A partial batch is sent after this long. Default 1000 ms. */
  readonly flushIntervalMs?: number;
  /** Records held at most (queued and being sent); past it the oldest are dropped and counted. Default 10,000. */
  readonly maxQueue?: number;
  /** Deliveries of one batch before it is dropped (and counted). Default 8. */
  readonly maxAttempts?: number;
  /** First retry delay, doubled per attempt (equal jitter), capped at 30 s. Default 500 ms. */
  readonly retryBaseMs?: number;
  /** Per-request timeout. Default 5000 ms. */
  readonly timeoutMs?: number;
  /**
   * The agent reports and budget checks go through (e.g. an https.Agent with a private CA or
   * a client certificate). Default: a keep-alive agent of the reporter's own, closed by `close()`.
   */
  readonly agent?: HttpAgent;
  /** Send with this `fetch` instead of node:http(s) (tests; an undici dispatcher). `agent` is then unused. */
  readonly fetch?: typeof fetch;
  readonly clock?: Clock;
  /** Told about failed deliveries and refused records; never about secrets. */
  readonly onError?: (err: Error) => void;
}

export interface UsageReporterStats {
  /** Waiting to be sent (not counting a batch in flight). */
  readonly queued: number;
  /** Accepted by Leash. */
  readonly sent: number;
  /** Dropped here: a full queue (oldest first) or a batch out of attempts. */
  readonly dropped: number;
  /** Refused by Leash (malformed, another server's audience, or a batch refused whole). */
  readonly rejected: number;
  /** Delivery attempts that failed and were retried. */
  readonly retries: number;
}

export interface UsageReporter {
  /** Queues one record. Never throws, never waits: the API call never waits on Leash. */
  report(record: UsageRecordInput): void;
  /** Sends everything queued now (and waits for it, retries included, or until attempts run out). */
  flush(): Promise<void>;
  /** Synchronous task budget check at `<issuer>/usage/budget`: charges one call for the token. */
  charge(jti: string, audience: string): Promise<{ readonly allowed: boolean; readonly task?: string; readonly reason?: string }>;
  stats(): UsageReporterStats;
  /** Flushes what is queued (best effort), then stops. */
  close(): Promise<void>;
}

const ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
const MAX_BACKOFF_MS = 30_000;
/** Answers that will not change on retry: the batch is dropped and counted as rejected. */
const FINAL = new Set([400, 401, 403, 404, 405, 413, 415]);

class UsageReportError extends Error {
  constructor(
    message: string,
    readonly status?: number,
  ) {
    super(message);
    this.name = 'UsageReportError';
  }
}

/**
 * Reports calls to Leash in the background: batched, asynchronous, bounded (a full queue
 * drops the oldest record and counts it), authenticated as this resource server, retried
 * with backoff. One batch is in flight at a time, so a Leash outage costs at most one
 * request per backoff step.
 */
export function createUsageReporter(opts: UsageReporterOptions): UsageReporter {
  if (!opts.issuer || !opts.clientId) throw new TypeError('createUsageReporter: issuer and clientId are required');
  if ((opts.clientSecret === undefined) === (opts.clientAssertion === undefined)) throw new TypeError('createUsageReporter: give exactly one of clientSecret or clientAssertion');
  const base = opts.issuer.replace(/\/+$/, '');
  if (opts.usageUrl !== undefined && !/^https?:\/\/[^/?#]+\/*$/.test(opts.usageUrl))
    throw new TypeError('createUsageReporter: usageUrl must be an http(s) origin, such as https://leash-usage.internal:8081');
  const target = opts.usageUrl === undefined ? base : opts.usageUrl.replace(/\/+$/, '');
  const batchSize = opts.batchSize ?? 100;
  const maxQueue = opts.maxQueue ?? 10_000;
  const maxAttempts = opts.maxAttempts ?? 8;
  const retryBase = opts.retryBaseMs ?? 500;
  const timeout = opts.timeoutMs ?? 5000;
  const interval = opts.flushIntervalMs ?? 1000;
  const clock = opts.clock ?? systemClock;
  if (opts.agent !== undefined && opts.fetch !== undefined) throw new TypeError('createUsageReporter: give agent or fetch, not both');
  if (!Number.isInteger(batchSize) || batchSize < 1 || !Number.isInteger(maxQueue) || maxQueue < batchSize)
    throw new TypeError('createUsageReporter: batchSize must be >= 1 and maxQueue >= batchSize');
  // Made once the options are known good: nothing to close after a TypeError.
  const transport = opts.fetch ? { post: fetchJsonPost(opts.fetch), close: () => undefined } : nodeJsonPost({ tls: target.startsWith('https:'), agent: opts.agent });

  // A ring over a plain array: `head` is the oldest record; compacted now and then.
  let queue: UsageRecordInput[] = [];
  let head = 0;
  let inFlight: UsageRecordInput[] | undefined;
  let sending: Promise<void> | undefined;
  let timer: NodeJS.Timeout | undefined;
  let closed = false;
  const counts = { sent: 0, dropped: 0, rejected: 0, retries: 0 };

  const size = () => queue.length - head;
  const report = (err: Error) => {
    try {
      opts.onError?.(err);
    } catch {
      // the hook's own failure is not ours
    }
  };

  async function authHeaders(path: string, body: Record<string, unknown>): Promise<Record<string, string>> {
    const headers: Record<string, string> = { 'content-type': 'application/json', accept: 'application/json' };
    if (opts.clientAssertion) {
      body.client_id = opts.clientId;
      body.client_assertion_type = ASSERTION_TYPE;
      body.client_assertion = await opts.clientAssertion(`${base}${path}`);
    } else {
      const credentials = `${formEncode(opts.clientId)}:${formEncode(opts.clientSecret as string)}`;
      headers.authorization = `Basic ${Buffer.from(credentials, 'utf8').toString('base64')}`;
    }
    return headers;
  }

  async function post(path: string, body: Record<string, unknown>): Promise<PostAnswer> {
    const headers = await authHeaders(path, body);
    return transport.post(`${target}${path}`, headers, JSON.stringify(body), timeout);
  }

  async function send(batch: UsageRecordInput[]): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      let wait: number | undefined;
      try {
        const res = await post('/usage', { records: batch.map(wire) });
        if (res.status >= 200 && res.status < 300) {
          const answer = parseJson(res.text) as { accepted?: unknown; rejected?: unknown; problems?: unknown };
          const accepted = typeof answer.accepted === 'number' ? answer.accepted : batch.length;
          const rejected = typeof answer.rejected === 'number' ? answer.rejected : 0;
          counts.sent += accepted;
          counts.rejected += rejected;
          if (rejected > 0) report(new UsageReportError(`Leash refused ${rejected} of ${batch.length} usage records: ${JSON.stringify(answer.problems ?? []).slice(0, 300)}`));
          return;
        }
        if (FINAL.has(res.status)) {
          counts.rejected += batch.length;
          report(new UsageReportError(`Leash refused a batch of ${batch.length} usage records (HTTP ${res.status}): ${res.text.slice(0, 200)}`, res.status));
          return;
        }
        if (res.retryAfter !== undefined && res.retryAfter > 0) wait = Math.min(res.retryAfter * 1000, MAX_BACKOFF_MS);
        report(new UsageReportError(`usage report failed (HTTP ${res.status}); retrying`, res.status));
      } catch (err) {
        report(new UsageReportError(`usage report failed (${(err as Error)?.name ?? 'Error'}); retrying`));
      }
      if (attempt >= maxAttempts) {
        counts.dropped += batch.length;
        return;
      }
      counts.retries += 1;
      await new Promise((r) => setTimeout(r, wait ?? backoffDelay(attempt, { baseMs: retryBase, capMs: MAX_BACKOFF_MS, random: Math.random })).unref?.());
    }
  }

  function take(): UsageRecordInput[] | undefined {
    if (size() === 0) return undefined;
    const batch = queue.slice(head, head + batchSize);
    head += batch.length;
    if (head > 1024 && head * 2 > queue.length) {
      queue = queue.slice(head);
      head = 0;
    }
    return batch;
  }

  /** Drains the queue one batch at a time; `all` sends partial batches too. */
  function pump(all: boolean): Promise<void> {
    if (!sending) {
      const run = async () => {
        while (size() >= batchSize || (all && size() > 0)) {
          inFlight = take();
          if (inFlight) await send(inFlight);
          inFlight = undefined;
        }
      };
      // Cleared in `.finally` (always a later tick), so an empty run cannot leave a settled promise behind.
      sending = run().finally(() => {
        sending = undefined;
      });
    }
    return sending;
  }

  function arm(): void {
    if (timer || closed) return;
    timer = setTimeout(() => {
      timer = undefined;
      void pump(true).then(() => {
        if (size() > 0) arm();
      });
    }, interval);
    timer.unref();
  }

  return {
    report(record) {
      if (closed) return;
      queue.push(record.at === undefined ? { ...record, at: clock.now() } : record);
      // Bounded: what is held (queued plus in flight) never passes maxQueue.
      while (size() + (inFlight?.length ?? 0) > maxQueue && size() > 0) {
        head += 1;
        counts.dropped += 1;
      }
      if (size() >= batchSize) void pump(false);
      else arm();
    },
    async flush() {
      while (sending) await sending;
      await pump(true);
    },
    async charge(jti, audience) {
      const res = await post('/usage/budget', { jti, audience });
      const body = parseJson(res.text) as { allowed?: unknown; task?: unknown; reason?: unknown; error?: unknown; error_description?: unknown };
      if (res.status < 200 || res.status >= 300) throw new UsageReportError(`budget check failed (HTTP ${res.status}): ${typeof body.error === 'string' ? body.error : ''}`, res.status);
      return {
        allowed: body.allowed === true,
        ...(typeof body.task === 'string' ? { task: body.task } : {}),
        ...(typeof body.reason === 'string' ? { reason: body.reason } : {}),
      };
    },
    stats() {
      return { queued: size(), ...counts };
    },
    async close() {
      if (timer) clearTimeout(timer);
      timer = undefined;
      await this.flush().catch(() => undefined);
      closed = true;
      transport.close();
    },
  };
}

/** The wire form (`POST /usage`): snake_case, absent members left out. */
function wire(r: UsageRecordInput): Record<string, unknown> {
  const w: Record<string, unknown> = { at: r.at, audience: r.audience, method: r.method, route: r.route, status: r.status };
  if (r.jti !== undefined) w.jti = r.jti;
  if (r.plugin !== undefined) w.plugin = r.plugin;
  if (r.task !== undefined) w.task = r.task;
  if (r.durationMs !== undefined) w.duration_ms = Math.max(0, Math.round(r.durationMs));
  if (r.bytes !== undefined) w.bytes = r.bytes;
  if (r.outcome !== undefined) w.outcome = r.outcome;
  if (r.jkt !== undefined) w.jkt = r.jkt;
  if (r.source !== undefined) w.source = r.source;
  if (r.scopes !== undefined && r.scopes.length > 0) w.scopes = r.scopes;
  if (r.charged) w.charged = true;
  return w;
}

/** An answer's JSON object, or `{}` when it is not one. */
function parseJson(text: string): Record<string, unknown> {
  try {
    const v = JSON.parse(text) as unknown;
    return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

function formEncode(value: string): string {
  return encodeURIComponent(value).replace(/%20/g, '+');
}
