import { Redis, type RedisOptions } from 'ioredis';
import { GENESIS_HASH, type ChainAnchor } from '../../formats/chain-hash.js';
import { LeashError } from '../../errors/leash-error.js';
import type { Clock } from '../../time/clock.js';
import type { StateChange } from '../records.js';
import { ChangeHub, HandleSubscriptions } from '../shared/change-hub.js';
import {
  IdentityTracker,
  describeReset,
  freshGenesis,
  genesisAnchor,
  judgeIdentity,
  mergeMarker,
  newEpoch,
  parseGenesis,
  parseMarker,
  storeResetError,
  type AuditGenesis,
  type IdentityMode,
  type IdentityState,
  type ResetMarker,
} from '../store-identity.js';
import { RedisKeys } from './redis-keys.js';
import { INIT_IDENTITY, SET_IF } from './redis-scripts.js';

/*
 * The two connections of one Redis store handle (commands, and the change channel's
 * subscriber) and what every role shares on them: the error boundary (`call`), the
 * verification of every (re)connection (persistence, then the store's identity), the
 * audit head and revocation seq this handle has seen (what a reset would lose), and the
 * hub that delivers the change channel to local listeners. See redis-store.ts for the
 * durability, identity and fail-closed choices.
 */

const UNAVAILABLE = 'the state store is unavailable; retry later';
/** How long after a verification threw on a live connection a call may start the next. */
const VERIFY_RETRY_MS = 250;

export function unavailable(op: string, err: unknown): LeashError {
  const message = err instanceof Error ? err.message : String(err);
  return new LeashError('ERR_BACKEND_UNAVAILABLE', UNAVAILABLE, { backend: 'redis', op, message }, { cause: err });
}

export function closedError(op: string): LeashError {
  return new LeashError('ERR_BACKEND_UNAVAILABLE', UNAVAILABLE, { backend: 'redis', op, message: 'the store is closed' });
}

/** Reconnect backoff: 50, 100, 200 ... ms, capped at 1 s, with jitter so replicas do not stampede. */
function retryStrategy(times: number): number {
  return Math.min(50 * 2 ** Math.min(times - 1, 10), 1000) + Math.floor(Math.random() * 50);
}

export interface ConnectionOptions {
  readonly url: string;
  readonly keyPrefix: string;
  readonly clock: Clock;
  readonly password: string | undefined;
  readonly connectTimeoutMs: number;
  readonly commandTimeoutMs: number;
  readonly allowVolatile: boolean;
  readonly mode: IdentityMode;
  readonly log: (msg: string, fields?: Record<string, unknown>) => void;
}

export type Persistence = { appendonly: string | undefined; appendfsync: string | undefined };

export class RedisConnection {
  readonly k: RedisKeys;
  readonly client: Redis;
  readonly #sub: Redis;
  readonly clock: Clock;
  readonly mode: IdentityMode;
  /** `host:port[/db]`, never the credentials: for messages. */
  readonly address: string;
  readonly identity = new IdentityTracker(undefined);
  readonly hub = new ChangeHub();
  readonly subscriptions = new HandleSubscriptions();
  /** The audit head as this process last saw it: the first guess of each compare-and-set. */
  head: ChainAnchor = { seq: 0, hash: GENESIS_HASH };
  /** Where the audit chain begins (an empty chain's head). */
  genesis: AuditGenesis | null = null;
  /** Highest revocation seq this handle has written or read (what a reset would lose). */
  revocationSeq = 0;
  closed = false;
  /** Why every call is refused: the server does not persist with AOF. */
  refusal: LeashError | undefined;
  /** True once the server confirmed the change channel's subscription (and until it drops). */
  listening = false;
  readonly #allowVolatile: boolean;
  readonly #log: (msg: string, fields?: Record<string, unknown>) => void;
  /** Set while a (re)connection is being verified (persistence, identity): calls wait for it. */
  #verifying: Promise<void> | undefined;
  #judging: Promise<void> | undefined;
  /**
   * The main connection is up and was verified (persistence, identity) since it last
   * connected. The subscriber reconnects on its own: without this, a change channel back on
   * a restarted server counted as a fresh revocation view before the main connection had
   * found that server without AOF. Calls are refused until it is true.
   */
  #verified = false;
  /**
   * Bumped whenever the main connection closes: a verification that began on an earlier
   * connection cannot vouch for the one that replaced it.
   */
  #generation = 0;
  /** When a verification last threw (a timeout on a live connection): the next waits a little. */
  #verifyFailedAt = -Infinity;
  #opened = false;
  /** The connection error seen while opening: ioredis rejects connect() with a generic message. */
  #openError: Error | undefined;

  constructor(opts: ConnectionOptions) {
    this.k = new RedisKeys(opts.keyPrefix);
    this.clock = opts.clock;
    this.mode = opts.mode;
    this.#allowVolatile = opts.allowVolatile;
    this.#log = opts.log;
    this.address = redisAddress(opts.url);
    const options: RedisOptions = {
      lazyConnect: true,
      connectTimeout: opts.connectTimeoutMs,
      commandTimeout: opts.commandTimeoutMs,
      // Fail closed: never park a command until Redis returns.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      autoResendUnfulfilledCommands: false,
      retryStrategy,
      connectionName: 'leash',
      // Commands of concurrent requests issued in one event-loop turn go out as one pipeline
      // (one write, one read): the Redis side of group commit. Order is kept.
      enableAutoPipelining: true,
    };
    if (opts.password !== undefined) options.password = opts.password;
    this.client = new Redis(opts.url, options);
    // The subscriber resubscribes itself on every 'ready' (below), so `listening` turns
    // true only once the server has confirmed the subscription, not merely reconnected.
    this.#sub = this.client.duplicate({ autoResubscribe: false, enableAutoPipelining: false });
    // Without a listener ioredis drops errors silently; the store reports them per call.
    this.client.on('error', (err: unknown) => {
      if (!this.#opened && err instanceof Error) this.#openError = err;
    });
    this.#sub.on('error', () => undefined);
    // Every reconnection may be to another server, or the same one restarted empty or
    // without AOF: calls wait until it is verified again.
    this.client.on('close', () => {
      this.#verified = false;
      this.#generation++;
      // The pause after a failed verification is for retries on one live connection; a new
      // connection is verified as soon as it is ready.
      this.#verifyFailedAt = -Infinity;
    });
    this.client.on('ready', () => this.#ensureVerifying());
    this.#sub.on('ready', () => this.#resubscribe());
    this.#sub.on('close', () => {
      this.listening = false;
    });
    this.#sub.on('end', () => {
      this.listening = false;
    });
    this.#sub.on('message', (channel: string, message: string) => {
      if (channel === this.k.changes) this.#deliver(message);
    });
  }

  /**
   * Connects both connections and subscribes; fails closed (ERR_BACKEND_UNAVAILABLE) if Redis
   * cannot be reached or does not persist with AOF (unless allowed), ERR_STORE_RESET if a
   * reset waits for an operator (serving handles).
   */
  async connect(): Promise<void> {
    try {
      await this.client.connect();
      const refusal = await this.#persistenceProblem();
      if (refusal) throw new Error(refusal);
      await this.#openIdentity();
      await this.#sub.connect();
      // 'ready' has fired and sent SUBSCRIBE; open only once the server confirmed it.
      const deadline = Date.now() + (this.client.options.connectTimeout ?? 2000);
      while (!this.listening) {
        if (Date.now() > deadline) throw new Error('timed out subscribing to the change channel');
        await new Promise((r) => setTimeout(r, 2));
      }
      const head = await this.client.get(this.k.auditHead);
      if (head) this.head = parseHead(head);
      this.#opened = true;
      this.#verified = true;
    } catch (err) {
      this.closed = true;
      this.client.disconnect();
      this.#sub.disconnect();
      if (err instanceof LeashError) throw err;
      // "Connection is closed." says nothing; the socket error before it (ECONNREFUSED, ENOTFOUND, a TLS failure) does.
      const cause = err instanceof Error && /connection is closed/i.test(err.message) && this.#openError ? this.#openError : err;
      throw unavailable('open', cause);
    }
  }

  /** Undefined when the server persists with AOF (or volatility is allowed); else why not. */
  async #persistenceProblem(): Promise<string | undefined> {
    const p = await this.persistence();
    if (p.appendonly === 'yes') return undefined;
    const why =
      p.appendonly === undefined
        ? `cannot confirm that the Redis server at ${this.address} persists with AOF (CONFIG GET and INFO persistence were both refused)`
        : `the Redis server at ${this.address} runs without AOF (appendonly ${p.appendonly})`;
    if (this.#allowVolatile) {
      this.#log(`${why}; serving anyway because settings.store.allow_volatile is true: a Redis restart loses every revocation and the audit chain`, { backend: 'redis' });
      return undefined;
    }
    return `${why}; Leash needs appendonly yes so acknowledged revocations survive a restart (or settings.store.allow_volatile: true to accept losing them)`;
  }

  /**
   * What the server persists with: CONFIG GET where allowed; managed services often rename
   * or forbid CONFIG, and then INFO persistence says whether AOF is on (`aof_enabled`),
   * though not its fsync policy. Undefined fields when neither answers.
   */
  async persistence(): Promise<Persistence> {
    let reply: unknown;
    try {
      reply = await this.client.config('GET', 'append*');
    } catch (err) {
      if (!(err instanceof Error && /unknown command|NOPERM|ERR/i.test(err.message) && this.client.status === 'ready')) throw err;
      let info: string;
      try {
        info = await this.client.info('persistence');
      } catch (err2) {
        if (err2 instanceof Error && /unknown command|NOPERM|ERR/i.test(err2.message) && this.client.status === 'ready') return { appendonly: undefined, appendfsync: undefined };
        throw err2;
      }
      const m = /^aof_enabled:(\d+)/m.exec(info);
      return { appendonly: m ? (m[1] === '1' ? 'yes' : 'no') : undefined, appendfsync: undefined };
    }
    const flat = Array.isArray(reply) ? (reply as unknown[]).map(String) : [];
    const get = (name: string) => {
      const i = flat.indexOf(name);
      return i >= 0 && i % 2 === 0 ? flat[i + 1] : undefined;
    };
    return { appendonly: get('appendonly'), appendfsync: get('appendfsync') };
  }

  /** At open: a serving handle initialises the store's epoch, or refuses a pending reset. */
  async #openIdentity(): Promise<void> {
    let state: IdentityState;
    if (this.mode === 'serve') {
      const epoch = newEpoch();
      const r = (await INIT_IDENTITY.run(this.client, [this.k.storeEpoch, this.k.storeReset, this.k.auditGenesis], [epoch, JSON.stringify(freshGenesis(epoch))])) as Array<string | null>;
      state = { epoch: r[0] ?? null, marker: parseMarker(r[1]), genesis: parseGenesis(r[2]) };
      if (state.marker) {
        const e = storeResetError(state.marker, 'redis', 'open');
        throw new LeashError(e.code, e.description, { ...e.detail, message: describeReset(state.marker) });
      }
    } else {
      state = await this.readIdentity();
    }
    if (state.epoch !== null) this.identity.set(state.epoch);
    this.genesis = state.genesis;
  }

  async readIdentity(): Promise<IdentityState> {
    const [epoch, marker, genesis] = await this.client.mget(this.k.storeEpoch, this.k.storeReset, this.k.auditGenesis);
    return { epoch: epoch ?? null, marker: parseMarker(marker), genesis: parseGenesis(genesis) };
  }

  /** After a reconnection: persistence first (a restarted server may run without AOF), then identity. */
  /**
   * Starts verifying the current connection unless that is done or under way. Reached from
   * 'ready', and from a call: ioredis reports 'ready' a tick after the connection is, and a
   * verification that threw on a live connection is started again by the next call (after
   * VERIFY_RETRY_MS), so the handle heals without waiting for a reconnection.
   */
  #ensureVerifying(): void {
    if (!this.#opened || this.closed || this.#verified || this.#verifying || this.refusal) return;
    if (this.client.status !== 'ready' || performance.now() - this.#verifyFailedAt < VERIFY_RETRY_MS) return;
    const v: Promise<void> = this.verifyConnection().finally(() => {
      if (this.#verifying !== v) return;
      this.#verifying = undefined;
      // The connection was replaced while this one was being verified: verify the new one.
      if (!this.#verified) this.#ensureVerifying();
    });
    this.#verifying = v;
  }

  /** The main connection is up and verified on the server it is connected to now. */
  get trusted(): boolean {
    // A verification under way has already cleared #verified (ensureVerifying starts one only then).
    return this.#verified && this.client.status === 'ready';
  }

  async verifyConnection(): Promise<void> {
    const generation = this.#generation;
    try {
      const problem = await this.#persistenceProblem();
      if (problem) {
        if (!this.refusal) this.#log(`refusing every call: ${problem}`, { backend: 'redis' });
        this.refusal = new LeashError('ERR_BACKEND_UNAVAILABLE', UNAVAILABLE, { backend: 'redis', op: 'persistence', message: problem });
        return;
      }
      if (this.refusal) this.#log(`the Redis server at ${this.address} persists with AOF again; serving`, { backend: 'redis' });
      this.refusal = undefined;
      await this.judge();
      this.#verified = generation === this.#generation && this.client.status === 'ready';
    } catch {
      // Dropped again (its next 'ready' verifies again) or timed out on a live connection
      // (the next call does): calls fail closed meanwhile.
      this.#verifyFailedAt = performance.now();
    }
  }

  /** Applies judgeIdentity to what the server holds now (serving handles); one at a time. */
  judge(): Promise<void> {
    this.#judging ??= this.#judgeOnce().finally(() => (this.#judging = undefined));
    return this.#judging;
  }

  async #judgeOnce(): Promise<void> {
    const mine = this.identity.epoch;
    if (this.mode !== 'serve' || mine === undefined) return;
    const state = await this.readIdentity();
    const j = judgeIdentity(mine, state);
    if (j.verdict === 'in-step') {
      if (this.identity.reset) this.identity.clear(state.genesis ?? undefined);
      return;
    }
    if (j.verdict === 'adopt') {
      const head = await this.client.get(this.k.auditHead);
      this.head = head ? parseHead(head) : genesisAnchor(j.genesis);
      this.genesis = j.genesis;
      this.identity.adopt(j.epoch, j.genesis);
      return;
    }
    const mineMarker: ResetMarker = { previousEpoch: mine, foundEpoch: state.epoch, detectedAt: this.clock.now(), auditHead: this.head, revocationSeq: this.revocationSeq };
    // Compare-and-set, so replicas that find the reset together keep the highest heads they saw.
    for (let attempt = 0; attempt < 10; attempt++) {
      const raw = await this.client.get(this.k.storeReset);
      const merged = mergeMarker(parseMarker(raw), mineMarker);
      const text = JSON.stringify(merged);
      if (text === raw || (await SET_IF.run(this.client, [this.k.storeReset], [raw ?? '', text])) === 1) {
        this.identity.failClosed(merged);
        return;
      }
    }
    this.identity.failClosed(mineMarker);
  }

  #resubscribe(): void {
    if (this.closed) return;
    this.#sub.subscribe(this.k.changes).then(
      () => {
        if (this.#sub.status === 'ready' && !this.closed) this.listening = true;
      },
      () => {
        this.listening = false;
        // A dropped connection retries on its next 'ready'; a timed-out SUBSCRIBE on a live
        // connection would otherwise never be retried.
        if (this.#sub.status === 'ready') setTimeout(() => this.#sub.status === 'ready' && this.#resubscribe(), 250).unref();
      },
    );
  }

  #deliver(message: string): void {
    let change: StateChange;
    try {
      change = JSON.parse(message) as StateChange;
    } catch {
      return;
    }
    // Only the two shapes the contract knows; anything else on the channel is ignored.
    if (change?.type === 'revocation' && typeof change.revocation?.seq === 'number') this.hub.publish(change);
    else if (change?.type === 'suspension' && typeof change.plugin === 'string' && typeof change.suspended === 'boolean') this.hub.publish(change);
  }

  /**
   * Every Redis call goes through here: closed, unreachable, slow or failing all fail closed,
   * and so do a server that does not persist with AOF and a store found reset (`ungated`:
   * the identity calls that find and end those states).
   */
  async call<T>(op: string, fn: () => Promise<T>, opts: { ungated?: boolean } = {}): Promise<T> {
    if (this.closed) throw closedError(op);
    if (!opts.ungated && this.#opened) {
      // A call never reaches a server nobody has verified since the connection came up.
      this.#ensureVerifying();
      if (this.#verifying) await this.#verifying;
      if (this.refusal) throw this.refusal;
      const reset = this.identity.reset;
      if (reset) throw storeResetError(reset, 'redis', op);
      if (!this.#verified) throw unavailable(op, new Error(`the connection to the Redis server at ${this.address} is not verified since it (re)connected`));
    }
    try {
      return await fn();
    } catch (err) {
      if (err instanceof LeashError) throw err;
      if (err instanceof Error && err.message.startsWith('LEASH_STORE_RESET')) {
        // A write found another epoch: find out what happened (marker, fail closed) and refuse.
        await this.judge().catch(() => undefined);
        const reset = this.identity.reset;
        if (reset) throw storeResetError(reset, 'redis', op);
        // An accepted reset was adopted meanwhile: nothing was written; the caller may retry.
        throw unavailable(op, new Error('the store epoch changed under this write; nothing was written'));
      }
      throw unavailable(op, err);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.listening = false;
    this.subscriptions.closeAll();
    // disconnect(), not quit(): quit waits for a reply a dead server never sends.
    await Promise.all([ended(this.client), ended(this.#sub)]);
  }
}

/** Disconnects and resolves once the connection is fully closed (no socket or timer left behind). */
function ended(c: Redis): Promise<void> {
  // Without an open socket (down, between reconnection attempts) disconnect() only cancels
  // the next attempt and no 'end' follows: nothing is left to wait for.
  const socketOpen = c.status === 'connecting' || c.status === 'connect' || c.status === 'ready';
  const done = socketOpen
    ? new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 2000);
        t.unref();
        c.once('end', () => {
          clearTimeout(t);
          resolve();
        });
      })
    : Promise.resolve();
  c.disconnect();
  return done;
}

/** `host:port[/db]` of a Redis URL, without user or password. */
export function redisAddress(url: string): string {
  try {
    const u = new URL(url);
    const db = u.pathname && u.pathname !== '/' ? u.pathname : '';
    return `${u.hostname}:${u.port || '6379'}${db}`;
  } catch {
    return 'an unparsable URL';
  }
}

export function formatHead(h: ChainAnchor): string {
  return `${h.seq}:${h.hash}`;
}

export function parseHead(s: string): ChainAnchor {
  const i = s.indexOf(':');
  const seq = Number(s.slice(0, i));
  const hash = s.slice(i + 1);
  if (i < 1 || !Number.isSafeInteger(seq) || !/^[0-9a-f]{64}$/.test(hash)) throw new Error('audit head is malformed');
  return { seq, hash };
}
