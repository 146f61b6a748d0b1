import { systemClock, type Clock } from './clock.js';

/** What a revocation check needs from a verified Leash token. `iat` in seconds; `kid` from the JWS header. */
export interface RevocationFacts {
  readonly jti: string;
  readonly plugin: string;
  readonly task?: string | undefined;
  readonly kid?: string | undefined;
  readonly iat: number;
  /** A delegated token's `chain_jti`: revoking any upstream token by jti revokes it too. */
  readonly upstream?: readonly string[] | undefined;
  /** A delegated token's other chain plugins (`sub` and earlier `act` actors): revoking one revokes it. */
  readonly chainPlugins?: readonly string[] | undefined;
}

/** A local view of Leash's revocations, as `createLeashVerifier({ revocations })` consults it. */
export interface LeashRevocationView {
  isRevoked(facts: RevocationFacts): boolean;
  /** False until the first sync, and whenever the view has not been confirmed within its staleness bound. */
  fresh(): boolean;
}

export type RevocationFollowerMode = 'sse' | 'poll';

export interface RevocationFollowerOptions {
  /** Leash base URL (its `iss`); the feed is `<issuer>/revocations`. */
  readonly issuer: string;
  /** This resource server's id in Leash's `resource_servers`. */
  readonly clientId: string;
  /** client_secret_basic. Exactly one of `clientSecret` or `clientAssertion`. */
  readonly clientSecret?: string;
  /**
   * private_key_jwt (RFC 7523): returns a fresh signed assertion (iss = sub = clientId,
   * aud = issuer, new jti, short exp) for every request; sent in a form POST.
   */
  readonly clientAssertion?: () => Promise<string>;
  /** `sse` (default): a Server-Sent Events stream, polling while it is down. `poll`: polling only. */
  readonly mode?: RevocationFollowerMode;
  /** Poll period in `poll` mode. Default 5 s. */
  readonly pollIntervalMs?: number;
  /** `fresh()` turns false when nothing was heard from Leash for this long. Default 45 s (three SSE heartbeats). */
  readonly maxStalenessMs?: number;
  /** A stream silent this long (no event, no heartbeat) is dropped and reopened. Default 40 s. */
  readonly streamIdleMs?: number;
  /** First reconnect delay; doubles on consecutive failures up to 30 s. Default 1 s. */
  readonly reconnectDelayMs?: number;
  readonly fetch?: typeof fetch;
  readonly clock?: Clock;
  /** Told about failures (network, auth, malformed answers); never about secrets. */
  readonly onError?: (err: Error) => void;
}

export interface RevocationFollower extends LeashRevocationView {
  /** Resolves after the first complete sync; rejects if the follower is closed first. */
  ready(): Promise<void>;
  /** The feed cursor: every revocation up to this seq has been applied. */
  cursor(): number;
  /**
   * Leash's store epoch the cursor belongs to (undefined until the first answer, or from a
   * Leash too old to send one). When it changes the store was reset: the follower drops its
   * cursor, reads the new epoch's feed from the start, and is not fresh until it has.
   */
  epoch(): string | undefined;
  /** The transport in use (`sse` falls back to `poll` if the server has no stream). */
  mode(): RevocationFollowerMode;
  /** Revocation records held (expired ones are forgotten). */
  size(): number;
  close(): void;
}

/** One record of the feed, as `GET /revocations` and the stream publish it (times in seconds). */
interface FeedRecord {
  seq: number;
  scope: 'token' | 'task' | 'plugin' | 'key';
  id: string;
  issued_before: number;
  keep_until: number;
  epoch?: string;
}

const SCOPES: ReadonlySet<string> = new Set(['token', 'task', 'plugin', 'key']);
const ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
const MAX_RECONNECT_MS = 30_000;
const MAX_LINE_CHARS = 1 << 20;
const PAGE = 1000;
/** Answers that mean "this server has no stream": poll instead. */
const NO_STREAM = new Set([404, 405, 406, 501]);

/** The feed's epoch changed: the cursor was dropped; sync again from the start at once. */
class EpochChanged extends Error {
  constructor(previous: string, next: string) {
    super(`Leash's store was reset (epoch ${previous} -> ${next}): dropped the cursor, reading the feed again from the start`);
    this.name = 'RevocationFollowerError';
  }
}

class FollowerError extends Error {
  constructor(
    message: string,
    readonly status?: number,
  ) {
    super(message);
    this.name = 'RevocationFollowerError';
  }
}

/**
 * Follows Leash's revocation feed and keeps an in-memory view of what is revoked, so a
 * resource server rejects a revoked token within seconds without calling introspection.
 * Streams (SSE, resuming with Last-Event-ID) and polls while the stream is down; falls
 * back to polling when the server has no stream. Fail closed is the caller's part:
 * while `fresh()` is false, refuse (the verifier answers 503).
 *
 * Every answer carries Leash's store epoch. A changed epoch means the store was reset and
 * the cursor means nothing there: the follower drops it, turns not fresh and reads the new
 * feed from the start. Records it holds are kept (they are still revocations, and expire on
 * their own). An answer without the epoch after one with it is refused as malformed.
 */
export function createRevocationFollower(opts: RevocationFollowerOptions): RevocationFollower {
  if (!opts.issuer || !opts.clientId) throw new TypeError('createRevocationFollower: issuer and clientId are required');
  if ((opts.clientSecret === undefined) === (opts.clientAssertion === undefined)) {
    throw new TypeError('createRevocationFollower: give exactly one of clientSecret or clientAssertion');
  }
  const base = opts.issuer.replace(/\/+$/, '');
  const fetchFn = opts.fetch ?? globalThis.fetch;
  const clock = opts.clock ?? systemClock;
  const pollInterval = opts.pollIntervalMs ?? 5000;
  const maxStaleness = opts.maxStalenessMs ?? 45_000;
  const streamIdle = opts.streamIdleMs ?? 40_000;
  const reconnectBase = opts.reconnectDelayMs ?? 1000;
  let transport: RevocationFollowerMode = opts.mode ?? 'sse';

  const tokens = new Map<string, number>();
  const tasks = new Map<string, number>();
  const keys = new Map<string, number>();
  const plugins = new Map<string, { issuedBefore: number; keepUntil: number }>();
  let cursor = 0;
  let epoch: string | undefined;
  /** When the view was last confirmed complete (ms); -Infinity until the first sync. */
  let confirmedAt = Number.NEGATIVE_INFINITY;
  let closed = false;
  let inFlight: AbortController | undefined;
  let wake: (() => void) | undefined;

  let resolveReady!: () => void;
  let rejectReady!: (err: Error) => void;
  const readyPromise = new Promise<void>((resolve, reject) => {
    resolveReady = resolve;
    rejectReady = reject;
  });
  readyPromise.catch(() => undefined);

  const report = (err: unknown) => {
    if (closed) return;
    try {
      opts.onError?.(err instanceof Error ? err : new Error(String(err)));
    } catch {
      // the hook's own failure is not ours to handle
    }
  };

  function confirm(at: number): void {
    confirmedAt = Math.max(confirmedAt, at);
    resolveReady();
  }

  /** Every answer's epoch goes through here before anything of it is applied. */
  function observeEpoch(value: unknown): void {
    if (typeof value !== 'string' || value === '') {
      // A Leash that never sent one is older than epochs; one that stops sending is wrong.
      if (epoch !== undefined) throw new FollowerError('the feed answered without the store epoch it sent before');
      return;
    }
    if (epoch === undefined) {
      epoch = value;
      return;
    }
    if (value === epoch) return;
    const previous = epoch;
    epoch = value;
    cursor = 0;
    confirmedAt = Number.NEGATIVE_INFINITY;
    throw new EpochChanged(previous, value);
  }

  function apply(raw: unknown): void {
    const r = raw as Partial<FeedRecord> | null;
    if (r && typeof r === 'object') observeEpoch(r.epoch);
    // A record this follower cannot read could be a revocation it fails to enforce: the
    // sync fails (and the view goes stale, so the verifier refuses) rather than skip it.
    if (!r || !Number.isSafeInteger(r.seq) || typeof r.id !== 'string' || typeof r.issued_before !== 'number' || typeof r.keep_until !== 'number' || typeof r.scope !== 'string') {
      throw new FollowerError('the feed sent a malformed revocation record');
    }
    if (!SCOPES.has(r.scope)) {
      // A scope from a newer Leash that this version cannot check: skipped (introspection still enforces it).
      cursor = Math.max(cursor, r.seq as number);
      return;
    }
    const keepUntil = r.keep_until * 1000;
    const keep = (m: Map<string, number>) => m.set(r.id as string, Math.max(keepUntil, m.get(r.id as string) ?? 0));
    if (r.scope === 'token') keep(tokens);
    else if (r.scope === 'task') keep(tasks);
    else if (r.scope === 'key') keep(keys);
    else {
      const prev = plugins.get(r.id);
      plugins.set(r.id, { issuedBefore: Math.max(r.issued_before, prev?.issuedBefore ?? 0), keepUntil: Math.max(keepUntil, prev?.keepUntil ?? 0) });
    }
    cursor = Math.max(cursor, r.seq as number);
  }

  function forgetExpired(): void {
    const now = clock.now();
    for (const m of [tokens, tasks, keys]) for (const [id, until] of m) if (until <= now) m.delete(id);
    for (const [id, p] of plugins) if (p.keepUntil <= now) plugins.delete(id);
  }

  /** GET with Basic credentials, or a form POST carrying a fresh client assertion. */
  async function request(path: string, params: Record<string, string>, headers: Record<string, string>, signal: AbortSignal): Promise<Response> {
    const init: RequestInit = { signal, redirect: 'error', headers: { ...headers } };
    let url = `${base}${path}`;
    if (opts.clientAssertion) {
      const assertion = await opts.clientAssertion();
      init.method = 'POST';
      (init.headers as Record<string, string>)['content-type'] = 'application/x-www-form-urlencoded';
      init.body = new URLSearchParams({ ...params, client_id: opts.clientId, client_assertion_type: ASSERTION_TYPE, client_assertion: assertion }).toString();
    } else {
      const query = new URLSearchParams(params).toString();
      if (query) url += `?${query}`;
      init.method = 'GET';
      // RFC 6749 §2.3.1: id and secret are form-urlencoded before they are joined.
      const credentials = `${formEncode(opts.clientId)}:${formEncode(opts.clientSecret as string)}`;
      (init.headers as Record<string, string>).authorization = `Basic ${Buffer.from(credentials, 'utf8').toString('base64')}`;
    }
    return fetchFn(url, init);
  }

  async function errorOf(res: Response, what: string): Promise<FollowerError> {
    let detail = '';
    try {
      const body = (await res.json()) as { error?: unknown; error_description?: unknown };
      if (typeof body.error === 'string') detail = `: ${body.error}${typeof body.error_description === 'string' ? ` (${body.error_description.slice(0, 200)})` : ''}`;
    } catch {
      // not JSON
    }
    return new FollowerError(`${what} answered ${res.status}${detail}`, res.status);
  }

  /** Reads every page after the cursor; the view is confirmed as of the moment the first page was asked for. */
  async function pollAll(): Promise<void> {
    const startedAt = clock.now();
    for (;;) {
      const ac = new AbortController();
      inFlight = ac;
      const timer = setTimeout(() => ac.abort(), 30_000);
      try {
        const res = await request('/revocations', { since: String(cursor), limit: String(PAGE) }, { accept: 'application/json' }, ac.signal);
        if (res.status !== 200) throw await errorOf(res, 'GET /revocations');
        const body = (await res.json()) as { revocations?: unknown; cursor?: unknown; more?: unknown; epoch?: unknown };
        if (!Array.isArray(body.revocations) || !Number.isSafeInteger(body.cursor) || typeof body.more !== 'boolean') {
          throw new FollowerError('GET /revocations answered an unexpected document');
        }
        observeEpoch(body.epoch);
        const before = cursor;
        for (const r of body.revocations) apply(r);
        cursor = Math.max(cursor, body.cursor as number);
        // A page may hold no record for this server and still move the cursor (the feed
        // skips other audiences' records): keep reading while it moves and `more` says so.
        if (!body.more || cursor === before) break;
      } finally {
        clearTimeout(timer);
        inFlight = undefined;
      }
    }
    forgetExpired();
    confirm(startedAt);
  }

  /**
   * One stream connection, until it ends. Returns whether it got as far as `synced` (so
   * the next reconnect is not a failure to back off from) or that the server has no stream.
   */
  async function stream(): Promise<{ synced: boolean; noStream?: boolean; epochChanged?: boolean }> {
    const ac = new AbortController();
    inFlight = ac;
    let synced = false;
    let idle: NodeJS.Timeout | undefined;
    const armIdle = () => {
      if (idle) clearTimeout(idle);
      idle = setTimeout(() => ac.abort(), streamIdle);
      idle.unref();
    };
    try {
      armIdle();
      const headers: Record<string, string> = { accept: 'text/event-stream', 'cache-control': 'no-store' };
      if (cursor > 0) headers['last-event-id'] = String(cursor);
      const res = await request('/revocations/stream', {}, headers, ac.signal);
      const type = res.headers.get('content-type') ?? '';
      if (res.status !== 200 || !/^text\/event-stream\b/i.test(type)) {
        const err = res.status === 200 ? new FollowerError(`the stream answered ${type || 'no content type'}, not text/event-stream`) : await errorOf(res, 'GET /revocations/stream');
        await res.body?.cancel().catch(() => undefined);
        report(err);
        return { synced, noStream: res.status === 200 || NO_STREAM.has(res.status) };
      }
      if (!res.body) throw new FollowerError('the stream has no body');
      const parser = new SseParser((event) => {
        if (event.kind === 'comment') {
          if (synced) confirm(clock.now());
          return;
        }
        if (event.type === 'revocation') {
          apply(JSON.parse(event.data));
          if (synced) confirm(clock.now());
        } else if (event.type === 'synced') {
          // The replay is complete up to this seq (records of other audiences are not sent),
          // in this epoch: a changed epoch drops the cursor first.
          const data = JSON.parse(event.data) as { cursor?: unknown; epoch?: unknown };
          observeEpoch(data.epoch);
          if (Number.isSafeInteger(data.cursor)) cursor = Math.max(cursor, data.cursor as number);
          synced = true;
          forgetExpired();
          confirm(clock.now());
        }
      });
      const decoder = new TextDecoder();
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        armIdle();
        parser.push(decoder.decode(chunk, { stream: true }));
      }
      if (!closed) report(new FollowerError('the revocation stream ended'));
    } catch (err) {
      if (err instanceof EpochChanged) {
        report(err);
        return { synced: false, epochChanged: true };
      }
      if (!closed) report(ac.signal.aborted ? new FollowerError('the revocation stream went silent; reconnecting') : err);
    } finally {
      if (idle) clearTimeout(idle);
      ac.abort();
      inFlight = undefined;
    }
    return { synced };
  }

  function sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      timer.unref();
      function done() {
        clearTimeout(timer);
        wake = undefined;
        resolve();
      }
      wake = done;
    });
  }

  /** pollAll, once more at once if the epoch changed under it (the cursor is then 0). */
  async function pollAllEpochs(): Promise<void> {
    try {
      await pollAll();
    } catch (err) {
      if (!(err instanceof EpochChanged)) throw err;
      report(err);
      await pollAll();
    }
  }

  async function run(): Promise<void> {
    let failures = 0;
    while (!closed) {
      if (transport === 'sse') {
        const { synced, noStream, epochChanged } = await stream();
        if (closed) break;
        if (noStream) {
          transport = 'poll';
          continue;
        }
        // A reset store: reconnect at once from cursor 0 (the stream replays the new epoch).
        if (epochChanged) {
          await sleep(100);
          continue;
        }
        failures = synced ? 0 : failures + 1;
        // Stream down: catch up by polling so the view stays fresh during the gap.
        try {
          await pollAllEpochs();
        } catch (err) {
          report(err);
        }
        if (closed) break;
        await sleep(failures === 0 ? 100 : Math.min(MAX_RECONNECT_MS, reconnectBase * 2 ** (failures - 1)));
      } else {
        try {
          await pollAllEpochs();
          failures = 0;
        } catch (err) {
          failures++;
          report(err);
        }
        if (closed) break;
        await sleep(failures === 0 ? pollInterval : Math.min(MAX_RECONNECT_MS, Math.max(pollInterval, reconnectBase * 2 ** (failures - 1))));
      }
    }
  }

  void run();

  return {
    isRevoked(t) {
      const now = clock.now();
      const live = (m: Map<string, number>, id: string | undefined) => id !== undefined && (m.get(id) ?? 0) > now;
      if (live(tokens, t.jti) || live(tasks, t.task) || live(keys, t.kid)) return true;
      if (t.upstream?.some((jti) => live(tokens, jti))) return true;
      return [t.plugin, ...(t.chainPlugins ?? [])].some((plugin) => {
        const p = plugins.get(plugin);
        return p !== undefined && p.keepUntil > now && t.iat <= p.issuedBefore;
      });
    },
    fresh() {
      return clock.now() - confirmedAt <= maxStaleness;
    },
    ready: () => readyPromise,
    cursor: () => cursor,
    epoch: () => epoch,
    mode: () => transport,
    size: () => tokens.size + tasks.size + keys.size + plugins.size,
    close() {
      if (closed) return;
      closed = true;
      inFlight?.abort();
      wake?.();
      rejectReady(new FollowerError('the revocation follower was closed'));
    },
  };
}

function formEncode(value: string): string {
  return encodeURIComponent(value).replace(/%20/g, '+');
}

type SseEvent = { readonly kind: 'comment' } | { readonly kind: 'event'; readonly type: string; readonly data: string; readonly id: string | undefined };

/** The parts of the WHATWG event-stream format a follower needs: fields, comments, any line ending. */
class SseParser {
  #buffer = '';
  #data: string[] = [];
  #event = '';
  #id: string | undefined;

  constructor(private readonly onEvent: (event: SseEvent) => void) {}

  push(text: string): void {
    this.#buffer += text;
    let start = 0;
    for (let i = 0; i < this.#buffer.length; i++) {
      const c = this.#buffer[i];
      if (c !== '\n' && c !== '\r') continue;
      // A CR at the end of a chunk may be half of a CRLF: wait for the next chunk.
      if (c === '\r' && i === this.#buffer.length - 1) break;
      this.#line(this.#buffer.slice(start, i));
      if (c === '\r' && this.#buffer[i + 1] === '\n') i++;
      start = i + 1;
    }
    this.#buffer = this.#buffer.slice(start);
    if (this.#buffer.length > MAX_LINE_CHARS) throw new FollowerError('the stream sent a line longer than 1 MiB');
  }

  #line(line: string): void {
    if (line === '') {
      if (this.#data.length > 0) this.onEvent({ kind: 'event', type: this.#event || 'message', data: this.#data.join('\n'), id: this.#id });
      this.#data = [];
      this.#event = '';
      this.#id = undefined;
      return;
    }
    if (line.startsWith(':')) {
      this.onEvent({ kind: 'comment' });
      return;
    }
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'data') this.#data.push(value);
    else if (field === 'event') this.#event = value;
    else if (field === 'id' && !value.includes('\0')) this.#id = value;
  }
}
