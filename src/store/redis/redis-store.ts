import { Redis, type RedisOptions } from 'ioredis';
import { canonicalJson } from '../../formats/canonical-json.js';
import { GENESIS_HASH, chainHashCanonical, type ChainAnchor } from '../../formats/chain-hash.js';
import { LeashError } from '../../errors/leash-error.js';
import { systemClock, type Clock } from '../../time/clock.js';
import type { ApprovalRecord, ApprovalState, AuditRecord, DecisionRollupRow, IssuedToken, LeaseRecord, Revocation, StateChange, Suspension, Task, TaskBudgets } from '../records.js';
import { DecisionFold } from '../decision-rollup.js';
import { APPROVAL_RETENTION_MS, LEASE_RETENTION_MS } from '../shared/retention.js';
import { ChangeHub, HandleSubscriptions } from '../shared/change-hub.js';
import {
  checkApproval,
  checkApprovalFilter,
  checkOpenApproval,
  checkAt,
  checkDecision,
  checkId,
  checkJtis,
  checkLease,
  checkLimit,
  checkNow,
  checkPlugin,
  checkPoll,
  checkRevocation,
  checkSince,
  checkSuspension,
  checkWindow,
} from '../shared/record-checks.js';
import type { OpenApprovalOptions, OpenApprovalOutcome, Store } from '../store.js';
import { approvalDropAt, approvalFields, byExpiryThenJti, fromApprovalHash, fromLeaseFields, leaseHead } from './redis-approvals.js';
import { RedisKeys } from './redis-keys.js';
import { RedisUsage } from './usage.js';
import type { UsageStore } from '../usage-store.js';
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
  type AcceptedReset,
  type AuditGenesis,
  type IdentityChange,
  type IdentityMode,
  type IdentityState,
  type ResetMarker,
} from '../store-identity.js';
import {
  ACCEPT_RESET,
  ADD_REVOCATION,
  AUDIT_APPEND,
  CAS_AWS_DENY,
  CONSUME_APPROVAL,
  CREATE_APPROVAL,
  OPEN_APPROVAL,
  CREATE_TASK,
  DECIDE_APPROVAL,
  END_TASK,
  INIT_IDENTITY,
  POLL_APPROVAL,
  PURGE_REVOCATIONS,
  RECORD_ISSUED,
  RECORD_LEASE,
  REMEMBER,
  RESUME,
  REVOKE_LEASE,
  SET_IF,
  SUSPEND,
} from './redis-scripts.js';

export interface RedisStoreOptions {
  /** `redis://[user:pass@]host:port[/db]` or `rediss://` (TLS). */
  readonly url: string;
  /** Prefix of every key and of the pub/sub channel (`<prefix>changes`). */
  readonly keyPrefix: string;
  readonly clock?: Clock;
  /** Overrides a password in the URL (LEASH_REDIS_PASSWORD keeps it out of the config file). */
  readonly password?: string | undefined;
  /** How long opening (and each reconnection attempt) may take. Default 2000 ms. */
  readonly connectTimeoutMs?: number;
  /** A command with no reply within this fails closed. Default 1500 ms. */
  readonly commandTimeoutMs?: number;
  /**
   * Serve even when the server does not persist with AOF (see "Durability"): revocations
   * and the audit chain are then lost whenever Redis restarts. Default false: without AOF
   * the store refuses to open, and refuses every call after a reconnection to such a server.
   */
  readonly allowVolatile?: boolean;
  /** `serve` (default): initialise the epoch, refuse a pending reset. `inspect`: operator tooling, read only. */
  readonly identity?: IdentityMode;
  /** Operational warnings (persistence refused or recovered). */
  readonly log?: (msg: string, fields?: Record<string, unknown>) => void;
  /** Issued-token records outlive their expiry by this much (clock skew, late introspection). Default 5 min. */
  readonly tokenMarginMs?: number;
  /** The per-task token index (the tokens-per-task quota) lives this long past its last token. Default 48 h. */
  readonly taskIndexRetentionMs?: number;
  /** An ended task is forgotten this long after it ends (0 = kept forever). Default 7 days. */
  readonly endedTaskRetentionMs?: number;
}

/**
 * The Redis store: every Store role on one shared Redis, so several Leash replicas see one
 * state. Notes on the choices:
 *
 * Durability. Redis acknowledges a write once it is in memory and, with AOF, once it is in
 * the append-only file. "Nothing lost" needs `appendonly yes`: with `appendfsync always`
 * the reply is sent after the fsync (an acknowledged revocation survives a power loss);
 * with `everysec` it survives a redis-server crash or SIGKILL (the write reached the
 * kernel before the reply) but a power loss can take the last second. Without AOF, RDB
 * snapshots lose everything since the last one. `persistence()` reports what the server
 * runs with (CONFIG GET, or INFO persistence where CONFIG is forbidden); it is checked at
 * open and after every reconnection (a restarted server may run another configuration),
 * and without AOF the store refuses unless `allowVolatile`.
 *
 * Identity. A Redis that restarts empty (no AOF, FLUSHALL, a lost volume) must not pass for
 * a store with no revocations: the store's epoch (store-identity.ts) is read after every
 * reconnection and on every `checkEpoch`, and the audit append and revocation scripts
 * refuse to write in another epoch, so neither the chain nor the feed's numbering silently
 * restarts at 1.
 *
 * Fail closed. No offline queue, no retry of a failed command, a timeout on every command:
 * while Redis is unreachable every call rejects within ~commandTimeoutMs with
 * ERR_BACKEND_UNAVAILABLE instead of waiting. The connection reconnects by itself with a
 * capped backoff (at most 1 s between attempts), so service resumes without a restart.
 *
 * Time. Every expiry comparison uses the injected clock (replay cache, live tokens,
 * keepUntil), as the SQLite store does; Redis TTLs are only garbage collection and are
 * set relative (PX) from that clock, so a skewed server clock never drops a key early.
 *
 * Audit chain. The hash is sha256 over canonical JSON computed in Node by the same
 * function SQLite uses (Redis Lua has no sha256, and cjson would not reproduce canonical
 * JSON byte for byte). Appends are a compare-and-set: compute the record from the head this
 * process last saw, then a script appends only if the head is still that one; on conflict
 * it returns the current head and we recompute and retry. One round trip when uncontended.
 *
 * Change feed. Writes that change what replicas must know (revocations, suspensions)
 * PUBLISH the StateChange in the same script as the write, on `<prefix>changes`. A
 * dedicated subscriber connection delivers them to local listeners, the writer's own
 * included (so every replica, this one too, sees one ordered stream). Pub/sub is
 * at-most-once: a replica catches up after a gap with `revocationsSince`.
 */
export async function openRedisStore(opts: RedisStoreOptions): Promise<RedisStore> {
  const store = new RedisStore(opts);
  await store.connect();
  return store;
}

const UNAVAILABLE = 'the state store is unavailable; retry later';

function unavailable(op: string, err: unknown): LeashError {
  const message = err instanceof Error ? err.message : String(err);
  return new LeashError('ERR_BACKEND_UNAVAILABLE', UNAVAILABLE, { backend: 'redis', op, message }, { cause: err });
}

function positive(name: string, v: number | undefined, dflt: number, allowZero = false): number {
  const x = v ?? dflt;
  if (!Number.isSafeInteger(x) || x < (allowZero ? 0 : 1)) throw new TypeError(`${name} must be a ${allowZero ? 'non-negative' : 'positive'} integer`);
  return x;
}

/** Reconnect backoff: 50, 100, 200 ... ms, capped at 1 s, with jitter so replicas do not stampede. */
function retryStrategy(times: number): number {
  return Math.min(50 * 2 ** Math.min(times - 1, 10), 1000) + Math.floor(Math.random() * 50);
}

type TaskHead = { id: string; plugins: string[]; attributes: Record<string, string>; createdAt: number; expiresAt: number; createdBy: string; budgets?: TaskBudgets };
type TaskEnd = { endedAt: number; endedBy: string };
type PendingAppend = { type: string; canonical: string; ts: number; resolve: (r: AuditRecord) => void; reject: (err: unknown) => void };

export class RedisStore implements Store {
  readonly kind = 'redis';
  readonly keyPrefix: string;
  readonly #k: RedisKeys;
  readonly #client: Redis;
  readonly #sub: Redis;
  readonly #clock: Clock;
  readonly #allowVolatile: boolean;
  readonly #mode: IdentityMode;
  readonly #log: (msg: string, fields?: Record<string, unknown>) => void;
  /** `host:port[/db]`, never the credentials: for messages. */
  readonly address: string;
  readonly #identity = new IdentityTracker(undefined);
  /** Set while a (re)connection is being verified (persistence, identity): calls wait for it. */
  #verifying: Promise<void> | undefined;
  /** Why every call is refused: the server does not persist with AOF. */
  #refusal: LeashError | undefined;
  #judging: Promise<void> | undefined;
  #opened = false;
  /** The connection error seen while opening: ioredis rejects connect() with a generic message. */
  #openError: Error | undefined;
  /** Highest revocation seq this handle has written or read (what a reset would lose). */
  #revocationSeq = 0;
  /** Where the audit chain begins (an empty chain's head). */
  #genesis: AuditGenesis | null = null;
  readonly #tokenMarginMs: number;
  readonly #taskIndexRetentionMs: number;
  readonly #endedTaskRetentionMs: number;
  readonly #hub = new ChangeHub();
  readonly #subscriptions = new HandleSubscriptions();
  #subscribed = false;
  #closed = false;
  /** The audit head as this process last saw it: the first guess of each compare-and-set. */
  #head: ChainAnchor = { seq: 0, hash: GENESIS_HASH };
  readonly #pendingAppends: PendingAppend[] = [];
  #appending = false;
  /** The usage role (src/store/redis/usage.ts), on the same connection and behind the same error boundary. */
  readonly #usage: RedisUsage;

  constructor(opts: RedisStoreOptions) {
    if (typeof opts.url !== 'string' || !/^rediss?:\/\//.test(opts.url)) throw new TypeError('url must start with redis:// or rediss://');
    if (typeof opts.keyPrefix !== 'string' || !/^[A-Za-z0-9:_-]{1,64}$/.test(opts.keyPrefix)) {
      throw new TypeError('keyPrefix must be 1-64 characters of A-Z a-z 0-9 : _ -');
    }
    this.keyPrefix = opts.keyPrefix;
    this.#k = new RedisKeys(opts.keyPrefix);
    this.#clock = opts.clock ?? systemClock;
    this.#allowVolatile = opts.allowVolatile ?? false;
    this.#mode = opts.identity ?? 'serve';
    this.#log = opts.log ?? (() => undefined);
    this.address = redisAddress(opts.url);
    this.#tokenMarginMs = positive('tokenMarginMs', opts.tokenMarginMs, 5 * 60_000);
    this.#taskIndexRetentionMs = positive('taskIndexRetentionMs', opts.taskIndexRetentionMs, 48 * 3600_000);
    this.#endedTaskRetentionMs = positive('endedTaskRetentionMs', opts.endedTaskRetentionMs, 7 * 86400_000, true);
    const connectTimeout = positive('connectTimeoutMs', opts.connectTimeoutMs, 2000);
    const commandTimeout = positive('commandTimeoutMs', opts.commandTimeoutMs, 1500);
    const options: RedisOptions = {
      lazyConnect: true,
      connectTimeout,
      commandTimeout,
      // Fail closed: never park a command until Redis returns.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      autoResendUnfulfilledCommands: false,
      retryStrategy,
      connectionName: 'leash',
    };
    if (opts.password !== undefined) options.password = opts.password;
    this.#client = new Redis(opts.url, options);
    // The subscriber resubscribes itself on every 'ready' (below), so `subscribed()` turns
    // true only once the server has confirmed the subscription, not merely reconnected.
    this.#sub = this.#client.duplicate({ autoResubscribe: false });
    // Without a listener ioredis drops errors silently; the store reports them per call.
    this.#client.on('error', (err: unknown) => {
      if (!this.#opened && err instanceof Error) this.#openError = err;
    });
    this.#sub.on('error', () => undefined);
    // Every reconnection may be to another server, or the same one restarted empty or
    // without AOF: calls wait until it is verified again.
    this.#client.on('ready', () => {
      if (!this.#opened || this.#closed) return;
      const v: Promise<void> = this.#verifyConnection().finally(() => {
        if (this.#verifying === v) this.#verifying = undefined;
      });
      this.#verifying = v;
    });
    this.#sub.on('ready', () => this.#resubscribe());
    this.#sub.on('close', () => {
      this.#subscribed = false;
    });
    this.#sub.on('end', () => {
      this.#subscribed = false;
    });
    this.#sub.on('message', (channel: string, message: string) => {
      if (channel === this.#k.changes) this.#deliver(message);
    });
    this.#usage = new RedisUsage(this.#client, opts.keyPrefix, this.#clock, (op, fn) => this.#call(op, fn));
  }

  // ---- UsageStore (src/store/redis/usage.ts) -----------------------------------------
  ingestUsage: UsageStore['ingestUsage'] = (b) => this.#usage.ingestUsage(b);
  chargeTaskUsage: UsageStore['chargeTaskUsage'] = (...a) => this.#usage.chargeTaskUsage(...a);
  taskUsageTotals: UsageStore['taskUsageTotals'] = (t) => this.#usage.taskUsageTotals(t);
  markBudgetExhausted: UsageStore['markBudgetExhausted'] = (...a) => this.#usage.markBudgetExhausted(...a);
  budgetExhaustions: UsageStore['budgetExhaustions'] = (t) => this.#usage.budgetExhaustions(t);
  listTaskUsage: UsageStore['listTaskUsage'] = (...a) => this.#usage.listTaskUsage(...a);
  usageEvidence: UsageStore['usageEvidence'] = (f) => this.#usage.usageEvidence(f);
  indexTaskEvents: UsageStore['indexTaskEvents'] = (...a) => this.#usage.indexTaskEvents(...a);
  listTaskEvents: UsageStore['listTaskEvents'] = (...a) => this.#usage.listTaskEvents(...a);
  recordDownstream: UsageStore['recordDownstream'] = (...a) => this.#usage.recordDownstream(...a);
  listTaskDownstream: UsageStore['listTaskDownstream'] = (...a) => this.#usage.listTaskDownstream(...a);
  listPluginDownstream: UsageStore['listPluginDownstream'] = (...a) => this.#usage.listPluginDownstream(...a);
  purgeUsage: UsageStore['purgeUsage'] = (...a) => this.#usage.purgeUsage(...a);
  linkCredentials: UsageStore['linkCredentials'] = (...a) => this.#usage.linkCredentials(...a);
  resolveCredentialLinks: UsageStore['resolveCredentialLinks'] = (...a) => this.#usage.resolveCredentialLinks(...a);

  /**
   * Connects both connections and subscribes; fails closed (ERR_BACKEND_UNAVAILABLE) if Redis
   * cannot be reached or does not persist with AOF (unless allowed), ERR_STORE_RESET if a
   * reset waits for an operator (serving handles).
   */
  async connect(): Promise<void> {
    try {
      await this.#client.connect();
      const refusal = await this.#persistenceProblem();
      if (refusal) throw new Error(refusal);
      await this.#openIdentity();
      await this.#sub.connect();
      // 'ready' has fired and sent SUBSCRIBE; open only once the server confirmed it.
      const deadline = Date.now() + (this.#client.options.connectTimeout ?? 2000);
      while (!this.#subscribed) {
        if (Date.now() > deadline) throw new Error('timed out subscribing to the change channel');
        await new Promise((r) => setTimeout(r, 2));
      }
      const head = await this.#client.get(this.#k.auditHead);
      if (head) this.#head = parseHead(head);
      this.#opened = true;
    } catch (err) {
      this.#closed = true;
      this.#client.disconnect();
      this.#sub.disconnect();
      if (err instanceof LeashError) throw err;
      // "Connection is closed." says nothing; the socket error before it (ECONNREFUSED, ENOTFOUND, a TLS failure) does.
      const cause = err instanceof Error && /connection is closed/i.test(err.message) && this.#openError ? this.#openError : err;
      throw unavailable('open', cause);
    }
  }

  /** Undefined when the server persists with AOF (or volatility is allowed); else why not. */
  async #persistenceProblem(): Promise<string | undefined> {
    const p = await this.#persistence();
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

  /** At open: a serving handle initialises the store's epoch, or refuses a pending reset. */
  async #openIdentity(): Promise<void> {
    let state: IdentityState;
    if (this.#mode === 'serve') {
      const epoch = newEpoch();
      const r = (await INIT_IDENTITY.run(this.#client, [this.#k.storeEpoch, this.#k.storeReset, this.#k.auditGenesis], [epoch, JSON.stringify(freshGenesis(epoch))])) as Array<string | null>;
      state = { epoch: r[0] ?? null, marker: parseMarker(r[1]), genesis: parseGenesis(r[2]) };
      if (state.marker) {
        const e = storeResetError(state.marker, 'redis', 'open');
        throw new LeashError(e.code, e.description, { ...e.detail, message: describeReset(state.marker) });
      }
    } else {
      state = await this.#readIdentity();
    }
    if (state.epoch !== null) this.#identity.set(state.epoch);
    this.#genesis = state.genesis;
  }

  async #readIdentity(): Promise<IdentityState> {
    const [epoch, marker, genesis] = await this.#client.mget(this.#k.storeEpoch, this.#k.storeReset, this.#k.auditGenesis);
    return { epoch: epoch ?? null, marker: parseMarker(marker), genesis: parseGenesis(genesis) };
  }

  /** After a reconnection: persistence first (a restarted server may run without AOF), then identity. */
  async #verifyConnection(): Promise<void> {
    try {
      const problem = await this.#persistenceProblem();
      if (problem) {
        if (!this.#refusal) this.#log(`refusing every call: ${problem}`, { backend: 'redis' });
        this.#refusal = new LeashError('ERR_BACKEND_UNAVAILABLE', UNAVAILABLE, { backend: 'redis', op: 'persistence', message: problem });
        return;
      }
      if (this.#refusal) this.#log(`the Redis server at ${this.address} persists with AOF again; serving`, { backend: 'redis' });
      this.#refusal = undefined;
      await this.#judge();
    } catch {
      // The connection dropped again: its next 'ready' verifies again; calls fail meanwhile.
    }
  }

  // ---- StoreIdentity ---------------------------------------------------------------

  epoch(): string | undefined {
    return this.#identity.epoch;
  }

  resetPending(): ResetMarker | undefined {
    return this.#identity.reset;
  }

  onIdentityChange(listener: (change: IdentityChange) => void): () => void {
    return this.#identity.subscribe(listener);
  }

  async identity(): Promise<IdentityState> {
    return this.#call('identity', () => this.#readIdentity(), { ungated: true });
  }

  async checkEpoch(): Promise<void> {
    await this.#call(
      'checkEpoch',
      async () => {
        // A server refused for lack of AOF is no witness of the store's identity: its
        // identity is judged only once it persists again (the refusal then ends).
        if (this.#refusal) await this.#verifyConnection();
        else await this.#judge();
      },
      { ungated: true },
    );
    if (this.#refusal) throw this.#refusal;
    const reset = this.#identity.reset;
    if (reset) throw storeResetError(reset, 'redis', 'checkEpoch');
  }

  /** Applies judgeIdentity to what the server holds now (serving handles); one at a time. */
  #judge(): Promise<void> {
    this.#judging ??= this.#judgeOnce().finally(() => (this.#judging = undefined));
    return this.#judging;
  }

  async #judgeOnce(): Promise<void> {
    const mine = this.#identity.epoch;
    if (this.#mode !== 'serve' || mine === undefined) return;
    const state = await this.#readIdentity();
    const j = judgeIdentity(mine, state);
    if (j.verdict === 'in-step') {
      if (this.#identity.reset) this.#identity.clear(state.genesis ?? undefined);
      return;
    }
    if (j.verdict === 'adopt') {
      const head = await this.#client.get(this.#k.auditHead);
      this.#head = head ? parseHead(head) : genesisAnchor(j.genesis);
      this.#genesis = j.genesis;
      this.#identity.adopt(j.epoch, j.genesis);
      return;
    }
    const mineMarker: ResetMarker = { previousEpoch: mine, foundEpoch: state.epoch, detectedAt: this.#clock.now(), auditHead: this.#head, revocationSeq: this.#revocationSeq };
    // Compare-and-set, so replicas that find the reset together keep the highest heads they saw.
    for (let attempt = 0; attempt < 10; attempt++) {
      const raw = await this.#client.get(this.#k.storeReset);
      const merged = mergeMarker(parseMarker(raw), mineMarker);
      const text = JSON.stringify(merged);
      if (text === raw || (await SET_IF.run(this.#client, [this.#k.storeReset], [raw ?? '', text])) === 1) {
        this.#identity.failClosed(merged);
        return;
      }
    }
    this.#identity.failClosed(mineMarker);
  }

  async acceptReset(by: string, at: number): Promise<AcceptedReset | undefined> {
    return this.#call(
      'acceptReset',
      async () => {
        for (let attempt = 0; attempt < 10; attempt++) {
          const [epochRaw, markerRaw, genesisRaw] = await this.#client.mget(this.#k.storeEpoch, this.#k.storeReset, this.#k.auditGenesis);
          const marker = parseMarker(markerRaw);
          if (!marker) return undefined;
          const falseAlarm = epochRaw === marker.previousEpoch;
          const epoch = epochRaw ?? newEpoch();
          const current = parseGenesis(genesisRaw);
          const reset = { ...marker, acceptedAt: at, acceptedBy: by };
          const continued: AuditGenesis = { epoch, seq: marker.auditHead.seq + 1, prevHash: marker.auditHead.hash, reset };
          const recorded: AuditGenesis = { ...(current?.epoch === epoch ? current : freshGenesis(epoch)), reset };
          const r = Number(
            await ACCEPT_RESET.run(
              this.#client,
              [this.#k.storeEpoch, this.#k.storeReset, this.#k.auditGenesis, this.#k.auditHead, this.#k.revocationSeq],
              [markerRaw ?? '', epochRaw ?? '', epoch, JSON.stringify(continued), JSON.stringify(recorded), formatHead(marker.auditHead), marker.revocationSeq, falseAlarm ? '1' : '0'],
            ),
          );
          if (r < 0) continue;
          const genesis = r === 0 ? (current ?? freshGenesis(epoch)) : r === 2 ? continued : recorded;
          this.#identity.set(epoch);
          this.#genesis = genesis;
          const head = await this.#client.get(this.#k.auditHead);
          this.#head = head ? parseHead(head) : genesisAnchor(genesis);
          if (this.#mode === 'serve') await this.#judge();
          return { marker, epoch, genesis, continued: r === 2 };
        }
        throw new Error('accept-reset: the store kept changing underneath (10 attempts)');
      },
      { ungated: true },
    );
  }

  /** What the server persists with (CONFIG GET); undefined fields when CONFIG is disabled. */
  async persistence(): Promise<{ appendonly: string | undefined; appendfsync: string | undefined }> {
    return this.#call('persistence', () => this.#persistence(), { ungated: true });
  }

  /**
   * CONFIG GET where allowed; managed services often rename or forbid CONFIG, and then
   * INFO persistence says whether AOF is on (`aof_enabled`), though not its fsync policy.
   */
  async #persistence(): Promise<{ appendonly: string | undefined; appendfsync: string | undefined }> {
    let reply: unknown;
    try {
      reply = await this.#client.config('GET', 'append*');
    } catch (err) {
      if (!(err instanceof Error && /unknown command|NOPERM|ERR/i.test(err.message) && this.#client.status === 'ready')) throw err;
      let info: string;
      try {
        info = await this.#client.info('persistence');
      } catch (err2) {
        if (err2 instanceof Error && /unknown command|NOPERM|ERR/i.test(err2.message) && this.#client.status === 'ready') return { appendonly: undefined, appendfsync: undefined };
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

  // ---- TaskStore -------------------------------------------------------------------

  async createTask(task: Task): Promise<void> {
    const head: TaskHead = {
      id: task.id,
      plugins: [...task.plugins],
      attributes: { ...task.attributes },
      createdAt: task.createdAt,
      expiresAt: task.expiresAt,
      createdBy: task.createdBy,
      ...(task.budgets !== undefined ? { budgets: task.budgets } : {}),
    };
    const end = task.state === 'ended' ? JSON.stringify({ endedAt: task.endedAt, endedBy: task.endedBy }) : '';
    const created = await this.#call('createTask', () => CREATE_TASK.run(this.#client, [this.#k.task(task.id), this.#k.activeTasks], [JSON.stringify(head), task.state, end, task.expiresAt, task.id]));
    // Ids are random; a duplicate is a caller bug, and overwriting could revive an ended task.
    if (created !== 1) throw new TypeError('createTask: a task with this id already exists');
  }

  async getTask(id: string): Promise<Task | undefined> {
    const r = await this.#call('getTask', () => this.#client.hmget(this.#k.task(id), 'd', 'st', 'e'));
    return toTask(r);
  }

  async endTask(id: string, at: number, by: string): Promise<Task | undefined> {
    const end: TaskEnd = { endedAt: at, endedBy: by };
    const r = await this.#call('endTask', () => END_TASK.run(this.#client, [this.#k.task(id), this.#k.activeTasks], [JSON.stringify(end), id, this.#endedTaskRetentionMs]));
    return toTask(r);
  }

  async countActiveTasks(now: number): Promise<number> {
    return this.#call('countActiveTasks', () => this.#client.zcount(this.#k.activeTasks, `(${now}`, '+inf'));
  }

  async listExpiredActiveTasks(now: number, limit: number): Promise<Task[]> {
    checkNow('listExpiredActiveTasks', now);
    checkLimit('listExpiredActiveTasks', limit);
    return this.#call('listExpiredActiveTasks', async () => {
      const ids = await this.#client.zrangebyscore(this.#k.activeTasks, '-inf', now, 'LIMIT', 0, limit);
      if (ids.length === 0) return [];
      const p = this.#client.pipeline();
      for (const id of ids) p.hmget(this.#k.task(id), 'd', 'st', 'e');
      const tasks: Task[] = [];
      for (const [err, r] of (await p.exec()) ?? []) {
        if (err) throw err;
        const t = toTask(r);
        // An index entry whose task is gone (retention) or no longer active is skipped.
        if (t && t.state === 'active') tasks.push(t);
      }
      return tasks;
    });
  }

  // ---- TokenIndex ------------------------------------------------------------------

  async recordIssued(t: IssuedToken): Promise<void> {
    const now = this.#clock.now();
    const json = JSON.stringify(tokenJson(t));
    const ttl = Math.max(1, t.expiresAt - now + this.#tokenMarginMs);
    const recorded = await this.#call('recordIssued', () =>
      RECORD_ISSUED.run(
        this.#client,
        [this.#k.token(t.jti), t.task === undefined ? this.#k.tokensOfTask('') : this.#k.tokensOfTask(t.task), this.#k.tokensOfPlugin(t.plugin)],
        [json, ttl, t.issuedAt, t.jti, t.expiresAt, t.task === undefined ? '0' : '1', ttl + this.#taskIndexRetentionMs, now - this.#tokenMarginMs],
      ),
    );
    if (recorded !== 1) throw new TypeError('recordIssued: a token with this jti is already recorded');
  }

  async getIssued(jti: string): Promise<IssuedToken | undefined> {
    const raw = await this.#call('getIssued', () => this.#client.get(this.#k.token(jti)));
    return raw === null ? undefined : fromTokenJson(raw);
  }

  async listIssuedForTask(taskId: string): Promise<IssuedToken[]> {
    return this.#call('listIssuedForTask', async () => {
      const jtis = await this.#client.zrange(this.#k.tokensOfTask(taskId), '0', '-1');
      return this.#tokens(jtis);
    });
  }

  async listLiveIssuedForPlugin(plugin: string, now: number): Promise<IssuedToken[]> {
    checkPlugin('listLiveIssuedForPlugin', plugin);
    checkNow('listLiveIssuedForPlugin', now);
    return this.#call('listLiveIssuedForPlugin', async () => {
      const jtis = await this.#client.zrangebyscore(this.#k.tokensOfPlugin(plugin), `(${now}`, '+inf');
      const tokens = (await this.#tokens(jtis)).filter((t) => t.expiresAt > now);
      return tokens.sort((a, b) => a.issuedAt - b.issuedAt || (a.jti < b.jti ? -1 : a.jti > b.jti ? 1 : 0));
    });
  }

  async countIssuedForTask(taskId: string): Promise<number> {
    return this.#call('countIssuedForTask', () => this.#client.zcard(this.#k.tokensOfTask(taskId)));
  }

  async #tokens(jtis: string[]): Promise<IssuedToken[]> {
    const out: IssuedToken[] = [];
    for (let i = 0; i < jtis.length; i += 500) {
      const batch = jtis.slice(i, i + 500);
      const raws = await this.#client.mget(...batch.map((j) => this.#k.token(j)));
      // A record past its retention is gone while its index entry lingers: skip it.
      for (const raw of raws) if (raw !== null) out.push(fromTokenJson(raw));
    }
    return out;
  }

  // ---- AuditLog --------------------------------------------------------------------

  async append(type: string, event: Record<string, unknown>, ts: number): Promise<AuditRecord> {
    if (typeof type !== 'string' || type.length === 0) throw new TypeError('append: type must be a non-empty string');
    if (!Number.isSafeInteger(ts)) throw new TypeError('append: ts must be an integer number of milliseconds');
    const canonical = canonicalJson(event);
    if (this.#closed) throw new LeashError('ERR_BACKEND_UNAVAILABLE', UNAVAILABLE, { backend: 'redis', op: 'append', message: 'the store is closed' });
    return new Promise<AuditRecord>((resolve, reject) => {
      this.#pendingAppends.push({ type, canonical, ts, resolve, reject });
      if (!this.#appending) void this.#flushAppends();
    });
  }

  /**
   * Group commit: appends waiting in this process go in one compare-and-set, so local
   * writers never race each other for the head (only other replicas can), and a burst costs
   * one round trip (one fsync under appendfsync always) instead of one each.
   */
  async #flushAppends(): Promise<void> {
    this.#appending = true;
    try {
      while (this.#pendingAppends.length > 0) {
        const batch = this.#pendingAppends.splice(0, 256);
        try {
          const records = await this.#call('append', () => this.#appendBatch(batch));
          records.forEach((r, i) => batch[i]!.resolve(r));
        } catch (err) {
          for (const p of batch) p.reject(err);
        }
      }
    } finally {
      this.#appending = false;
    }
  }

  async #appendBatch(batch: readonly PendingAppend[]): Promise<AuditRecord[]> {
    let head = this.#head;
    // Each conflict means another replica appended in between; with group commit a round
    // of N contending replicas lets at least one through, so this ends quickly.
    for (let attempt = 0; attempt < 100; attempt++) {
      const records: AuditRecord[] = [];
      const args: Array<string | number> = [formatHead(genesisAnchor(this.#genesis)), formatHead(head), batch.length];
      let prev = head;
      for (const p of batch) {
        const seq = prev.seq + 1;
        const hash = chainHashCanonical(prev.hash, seq, p.ts, p.type, p.canonical);
        args.push(seq, JSON.stringify([p.ts, p.type, p.canonical, prev.hash, hash]));
        records.push({ seq, ts: p.ts, type: p.type, event: JSON.parse(p.canonical) as Record<string, unknown>, prevHash: prev.hash, hash });
        prev = { seq, hash };
      }
      args.push(formatHead(prev), this.#identity.epoch ?? '');
      const r = await AUDIT_APPEND.run(this.#client, [this.#k.auditHead, this.#k.auditLog, this.#k.storeEpoch], args);
      if (r === 1) {
        this.#head = prev;
        return records;
      }
      head = parseHead(String(r));
      this.#head = head;
      if (attempt >= 3) await new Promise((res) => setTimeout(res, Math.random() * 5 * attempt));
    }
    throw new Error('audit append: the chain head kept moving (100 conflicts)');
  }

  async read(fromSeq: number, limit: number): Promise<AuditRecord[]> {
    if (!Number.isSafeInteger(fromSeq)) throw new TypeError('read: fromSeq must be an integer');
    if (!Number.isSafeInteger(limit) || limit < 1) throw new TypeError('read: limit must be a positive integer');
    const first = Math.max(1, fromSeq);
    return this.#call('read', async () => {
      const fields = Array.from({ length: limit }, (_, i) => String(first + i));
      const raws = await this.#client.hmget(this.#k.auditLog, ...fields);
      const out: AuditRecord[] = [];
      for (let i = 0; i < raws.length; i++) {
        const raw = raws[i];
        // Seqs are contiguous: the first hole is the end of the log.
        if (raw === null || raw === undefined) break;
        const [ts, type, event, prevHash, hash] = JSON.parse(raw) as [number, string, string, string, string];
        out.push({ seq: first + i, ts, type, event: JSON.parse(event) as Record<string, unknown>, prevHash, hash });
      }
      return out;
    });
  }

  // ---- DecisionHistory -------------------------------------------------------------

  /** Redis cannot group: the log is read in pages and folded here (the SQLite store does it in SQL). */
  async decisionRollup(since: number, until: number): Promise<{ rows: DecisionRollupRow[]; oldestAt: number | undefined }> {
    if (!Number.isSafeInteger(since) || !Number.isSafeInteger(until)) throw new TypeError('decisionRollup: since and until must be integers (ms)');
    const fold = new DecisionFold();
    let oldestAt: number | undefined;
    // Whole UTC days, as the SQLite rollup counts them.
    const from = Math.floor(since / 86_400_000) * 86_400_000;
    const to = (Math.floor((until - 1) / 86_400_000) + 1) * 86_400_000;
    for (let seq = 1; ;) {
      const page = await this.read(seq, 1000);
      if (page.length === 0) break;
      oldestAt ??= page[0]!.ts;
      for (const r of page) if (r.ts >= from && r.ts < to) fold.add(r);
      seq = page[page.length - 1]!.seq + 1;
      if (page.length < 1000) break;
    }
    return { rows: fold.rows(), oldestAt };
  }

  // ---- ReplayCache -----------------------------------------------------------------

  async remember(key: string, expiresAt: number): Promise<boolean> {
    if (typeof key !== 'string' || key.length === 0) throw new TypeError('remember: key must be a non-empty string');
    if (!Number.isFinite(expiresAt)) throw new TypeError('remember: expiresAt must be a number of milliseconds');
    const now = this.#clock.now();
    const ttl = Math.max(1, Math.ceil(expiresAt - now));
    const r = await this.#call('remember', () => REMEMBER.run(this.#client, [this.#k.replay(key)], [expiresAt, now, ttl]));
    return r === 1;
  }

  // ---- RevocationStore -------------------------------------------------------------

  async addRevocation(r: Omit<Revocation, 'seq'>): Promise<Revocation> {
    checkRevocation(r);
    // Field order fixed here; the script prepends `{"seq":N,`.
    const body = JSON.stringify({
      scope: r.scope,
      id: r.id,
      issuedBefore: r.issuedBefore,
      revokedAt: r.revokedAt,
      keepUntil: r.keepUntil,
      reason: r.reason,
      actor: r.actor,
      ...(r.audiences === undefined ? {} : { audiences: r.audiences }),
    }).slice(1);
    const raw = await this.#call('addRevocation', () =>
      ADD_REVOCATION.run(this.#client, [this.#k.revocationSeq, this.#k.revocationLog, this.#k.revocationKeep, this.#k.storeEpoch], [body, r.keepUntil, this.#k.changes, this.#identity.epoch ?? '']),
    );
    const stored = JSON.parse(String(raw)) as Revocation;
    this.#revocationSeq = Math.max(this.#revocationSeq, stored.seq);
    return stored;
  }

  async revocationsSince(cursor: number, limit: number, now: number): Promise<Revocation[]> {
    checkSince(cursor, limit, now);
    return this.#call('revocationsSince', async () => {
      const out: Revocation[] = [];
      let from = cursor;
      // Records past keepUntil but not yet purged are skipped without cutting the page short.
      while (out.length < limit) {
        const want = limit - out.length;
        const raws = await this.#client.zrangebyscore(this.#k.revocationLog, `(${from}`, '+inf', 'LIMIT', 0, want);
        for (const raw of raws) {
          const rec = JSON.parse(raw) as Revocation;
          from = rec.seq;
          if (rec.keepUntil > now) out.push(rec);
        }
        this.#revocationSeq = Math.max(this.#revocationSeq, from);
        if (raws.length < want) break;
      }
      return out;
    });
  }

  async purgeRevocations(now: number): Promise<number> {
    checkNow('purgeRevocations', now);
    return this.#call('purgeRevocations', async () => {
      let total = 0;
      for (;;) {
        const n = Number(await PURGE_REVOCATIONS.run(this.#client, [this.#k.revocationKeep, this.#k.revocationLog], [now, 1000]));
        total += n;
        if (n < 1000) return total;
      }
    });
  }

  // ---- SuspensionStore -------------------------------------------------------------

  async suspendPlugin(s: Suspension): Promise<boolean> {
    checkSuspension(s);
    const record = JSON.stringify({ plugin: s.plugin, since: s.since, actor: s.actor, reason: s.reason });
    const change: StateChange = { type: 'suspension', plugin: s.plugin, suspended: true };
    const r = await this.#call('suspendPlugin', () => SUSPEND.run(this.#client, [this.#k.suspensions], [s.plugin, record, this.#k.changes, JSON.stringify(change)]));
    return r === 1;
  }

  async resumePlugin(plugin: string): Promise<boolean> {
    checkPlugin('resumePlugin', plugin);
    const change: StateChange = { type: 'suspension', plugin, suspended: false };
    const r = await this.#call('resumePlugin', () => RESUME.run(this.#client, [this.#k.suspensions], [plugin, this.#k.changes, JSON.stringify(change)]));
    return r === 1;
  }

  async listSuspensions(): Promise<Suspension[]> {
    const raws = await this.#call('listSuspensions', () => this.#client.hvals(this.#k.suspensions));
    return raws.map((raw) => JSON.parse(raw) as Suspension).sort((a, b) => (a.plugin < b.plugin ? -1 : a.plugin > b.plugin ? 1 : 0));
  }

  // ---- CounterStore ----------------------------------------------------------------

  async incrementWindow(key: string, windowMs: number, now: number, by = 1): Promise<number> {
    const start = checkWindow(key, windowMs, now, by);
    const k = this.#k.counter(key, windowMs, start);
    // The key outlives its window by a minute, for replicas whose clocks lag a little.
    const ttl = start + windowMs - now + 60_000;
    return this.#call('incrementWindow', async () => {
      const res = await this.#client.multi().incrby(k, by).pexpire(k, ttl).exec();
      if (!res) throw new Error('incrementWindow: transaction aborted');
      const [err, value] = res[0]!;
      if (err) throw err;
      return Number(value);
    });
  }

  // ---- ApprovalStore ---------------------------------------------------------------
  // Every transition is one script (check and write together). Records and their index
  // entries are dropped APPROVAL_RETENTION_MS after the last moment they matter.

  async createApproval(a: ApprovalRecord): Promise<void> {
    checkApproval(a);
    const now = this.#clock.now();
    const drop = approvalDropAt(a, APPROVAL_RETENTION_MS);
    const k = this.#k;
    const created = await this.#call('createApproval', () =>
      CREATE_APPROVAL.run(
        this.#client,
        [k.approval(a.id), k.approvalsIndex('all'), k.approvalsIndex('pending'), k.approvalsIndex('approved'), k.approvalsIndex('denied'), k.approvalsIndex('used'), k.approvalsDrop],
        [a.id, a.requestedAt, a.state, Math.max(1, drop - now), drop, now, 500, ...approvalFields(a)],
      ),
    );
    // Ids are random; overwriting could resurrect a decided or used approval.
    if (created !== 1) throw new TypeError('createApproval: an approval with this id already exists');
  }

  async openApproval(a: ApprovalRecord, opts: OpenApprovalOptions): Promise<OpenApprovalOutcome> {
    checkOpenApproval(a, opts);
    const drop = approvalDropAt(a, APPROVAL_RETENTION_MS);
    const k = this.#k;
    const now = a.requestedAt;
    const reply = (await this.#call('openApproval', () =>
      OPEN_APPROVAL.run(
        this.#client,
        [
          k.approval(a.id),
          k.approvalsIndex('all'),
          k.approvalsIndex('pending'),
          k.approvalsDrop,
          k.approvalsPendingOfPlugin(a.plugin),
          a.task === undefined ? k.approvalsPendingOfPlugin(a.plugin) : k.approvalsPendingOfTask(a.task),
        ],
        [
          a.id,
          now,
          a.expiresAt,
          Math.max(1, drop - this.#clock.now()),
          drop,
          500,
          a.requestHash,
          opts.dedupeKey,
          opts.maxPerPlugin,
          opts.maxPerTask,
          a.task === undefined ? '0' : '1',
          k.approval(''),
          ...approvalFields(a),
        ],
      ),
    )) as unknown[];
    const [outcome, x, n] = reply.map(String);
    if (outcome === 'created') return { outcome: 'created' };
    if (outcome === 'limited') return { outcome: 'limited', scope: x === 'task' ? 'task' : 'plugin', pending: Number(n) };
    if (outcome === 'existing') {
      const existing = await this.getApproval(x as string);
      // Decided or dropped between the script and this read: it is no longer pending, so ask again.
      if (existing) return { outcome: 'existing', approval: existing };
      return this.openApproval(a, opts);
    }
    // Ids are random; overwriting could resurrect a decided or used approval.
    throw new TypeError('openApproval: an approval with this id already exists');
  }

  async getApproval(id: string): Promise<ApprovalRecord | undefined> {
    const h = await this.#call('getApproval', () => this.#client.hgetall(this.#k.approval(id)));
    return fromApprovalHash(h);
  }

  async decideApproval(
    id: string,
    d: { readonly state: 'approved' | 'denied'; readonly by: string; readonly reason: string | undefined; readonly at: number; readonly redeemBy: number | undefined },
  ): Promise<ApprovalRecord | undefined> {
    checkId('decideApproval', 'id', id);
    checkDecision(d);
    const now = this.#clock.now();
    const k = this.#k;
    const r = await this.#call('decideApproval', () =>
      DECIDE_APPROVAL.run(
        this.#client,
        [k.approval(id), k.approvalsIndex('pending'), k.approvalsIndex(d.state), k.approvalsDrop],
        [id, d.state, d.at, d.by, d.reason === undefined ? '0' : '1', d.reason ?? '', d.redeemBy === undefined ? '0' : '1', d.redeemBy ?? 0, now, APPROVAL_RETENTION_MS],
      ),
    );
    return r === null ? undefined : fromApprovalHash(r);
  }

  async consumeApproval(id: string, at: number): Promise<boolean> {
    checkId('consumeApproval', 'id', id);
    checkAt('consumeApproval', at);
    const now = this.#clock.now();
    const k = this.#k;
    const r = await this.#call('consumeApproval', () =>
      CONSUME_APPROVAL.run(this.#client, [k.approval(id), k.approvalsIndex('approved'), k.approvalsIndex('used'), k.approvalsDrop], [id, at, now, APPROVAL_RETENTION_MS]),
    );
    return r === 1;
  }

  async recordApprovalPoll(id: string, at: number, minIntervalMs: number): Promise<'ok' | 'slow_down'> {
    checkPoll(id, at, minIntervalMs);
    const r = await this.#call('recordApprovalPoll', () => POLL_APPROVAL.run(this.#client, [this.#k.approval(id)], [at, minIntervalMs]));
    return r === 1 ? 'ok' : 'slow_down';
  }

  async listApprovals(filter: { readonly state?: ApprovalState; readonly now: number; readonly limit: number }): Promise<ApprovalRecord[]> {
    checkApprovalFilter(filter);
    const { state, now, limit } = filter;
    const index = this.#k.approvalsIndex(state ?? 'all');
    return this.#call('listApprovals', async () => {
      const out: ApprovalRecord[] = [];
      // Newest first (ties by id, descending, as SQLite). Entries whose record is gone, has
      // moved on to another state meanwhile, or (pending) has expired are skipped without
      // cutting the page short.
      const page = Math.max(limit, 50);
      for (let start = 0; out.length < limit; start += page) {
        const ids = await this.#client.zrevrange(index, start, start + page - 1);
        if (ids.length > 0) {
          const p = this.#client.pipeline();
          for (const id of ids) p.hgetall(this.#k.approval(id));
          for (const [err, h] of (await p.exec()) ?? []) {
            if (err) throw err;
            const a = fromApprovalHash(h);
            if (!a || (state !== undefined && a.state !== state) || (state === 'pending' && a.expiresAt <= now)) continue;
            out.push(a);
            if (out.length === limit) break;
          }
        }
        if (ids.length < page) break;
      }
      return out;
    });
  }

  // ---- LeaseStore ------------------------------------------------------------------

  async recordLease(l: LeaseRecord): Promise<void> {
    checkLease(l);
    const ttl = l.revokedAt === undefined ? 0 : Math.max(1, l.revokedAt + LEASE_RETENTION_MS - this.#clock.now());
    const r = await this.#call('recordLease', () => RECORD_LEASE.run(this.#client, [this.#k.lease(l.jti), this.#k.leasesDue], [l.jti, leaseHead(l), l.expiresAt, l.revokedAt ?? '', ttl]));
    if (r !== 1) throw new TypeError('recordLease: a lease for this jti is already recorded');
  }

  async leasesForTokens(jtis: readonly string[]): Promise<LeaseRecord[]> {
    checkJtis('leasesForTokens', jtis);
    if (jtis.length === 0) return [];
    return this.#call('leasesForTokens', async () => {
      const leases = await this.#leases([...new Set(jtis)]);
      return leases.filter((l) => l.revokedAt === undefined).sort(byExpiryThenJti);
    });
  }

  async dueLeases(now: number, limit: number): Promise<LeaseRecord[]> {
    checkNow('dueLeases', now);
    checkLimit('dueLeases', limit);
    return this.#call('dueLeases', async () => {
      const out: LeaseRecord[] = [];
      for (let start = 0; out.length < limit;) {
        const want = limit - out.length;
        const jtis = await this.#client.zrangebyscore(this.#k.leasesDue, '-inf', now, 'LIMIT', start, want);
        start += jtis.length;
        // The due index only holds unrevoked leases; the filter guards a record lost underneath it.
        for (const l of await this.#leases(jtis)) if (l.revokedAt === undefined) out.push(l);
        if (jtis.length < want) break;
      }
      return out;
    });
  }

  async markLeaseRevoked(jti: string, at: number): Promise<boolean> {
    checkId('markLeaseRevoked', 'jti', jti);
    checkAt('markLeaseRevoked', at);
    const ttl = Math.max(1, at + LEASE_RETENTION_MS - this.#clock.now());
    const r = await this.#call('markLeaseRevoked', () => REVOKE_LEASE.run(this.#client, [this.#k.lease(jti), this.#k.leasesDue], [jti, at, ttl]));
    return r === 1;
  }

  // ---- AwsDenyStore ----------------------------------------------------------------

  async getAwsDeny(roleArn: string): Promise<string | undefined> {
    checkId('getAwsDeny', 'roleArn', roleArn);
    const v = await this.#call('getAwsDeny', () => this.#client.hget(this.#k.awsDenies, roleArn));
    return v ?? undefined;
  }

  async casAwsDeny(roleArn: string, expected: string | undefined, next: string | undefined): Promise<boolean> {
    checkId('casAwsDeny', 'roleArn', roleArn);
    if (expected !== undefined && (typeof expected !== 'string' || expected.length === 0)) throw new TypeError('casAwsDeny: expected must be a non-empty string or undefined');
    if (next !== undefined && (typeof next !== 'string' || next.length === 0)) throw new TypeError('casAwsDeny: next must be a non-empty string or undefined');
    const r = await this.#call('casAwsDeny', () => CAS_AWS_DENY.run(this.#client, [this.#k.awsDenies], [roleArn, expected ?? '', next ?? '']));
    return r === 1;
  }

  async listAwsDenyRoles(): Promise<string[]> {
    return this.#call('listAwsDenyRoles', async () => (await this.#client.hkeys(this.#k.awsDenies)).sort());
  }

  async #leases(jtis: readonly string[]): Promise<LeaseRecord[]> {
    const out: LeaseRecord[] = [];
    for (let i = 0; i < jtis.length; i += 500) {
      const p = this.#client.pipeline();
      for (const jti of jtis.slice(i, i + 500)) p.hmget(this.#k.lease(jti), 'd', 'r');
      for (const [err, r] of (await p.exec()) ?? []) {
        if (err) throw err;
        const l = fromLeaseFields(r);
        if (l) out.push(l);
      }
    }
    return out;
  }

  // ---- ChangeFeed ------------------------------------------------------------------

  subscribe(listener: (change: StateChange) => void): () => void {
    if (typeof listener !== 'function') throw new TypeError('subscribe: listener must be a function');
    if (this.#closed) return () => undefined;
    return this.#subscriptions.subscribe(this.#hub, listener);
  }

  subscribed(): boolean {
    // A server refused for lack of AOF is no source of truth: the revocation view must not
    // keep answering from pub/sub for its staleness window, but refuse at once.
    return this.#subscribed && !this.#closed && this.#refusal === undefined;
  }

  #resubscribe(): void {
    if (this.#closed) return;
    this.#sub.subscribe(this.#k.changes).then(
      () => {
        if (this.#sub.status === 'ready' && !this.#closed) this.#subscribed = true;
      },
      () => {
        this.#subscribed = false;
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
    if (change?.type === 'revocation' && typeof change.revocation?.seq === 'number') this.#hub.publish(change);
    else if (change?.type === 'suspension' && typeof change.plugin === 'string' && typeof change.suspended === 'boolean') this.#hub.publish(change);
  }

  // ---- lifecycle -------------------------------------------------------------------

  async ping(): Promise<void> {
    await this.#call('ping', () => this.#client.ping());
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#subscribed = false;
    this.#subscriptions.closeAll();
    // disconnect(), not quit(): quit waits for a reply a dead server never sends.
    await Promise.all([ended(this.#client), ended(this.#sub)]);
  }

  /**
   * Every Redis call goes through here: closed, unreachable, slow or failing all fail closed,
   * and so do a server that does not persist with AOF and a store found reset (`ungated`:
   * the identity calls that find and end those states).
   */
  async #call<T>(op: string, fn: () => Promise<T>, opts: { ungated?: boolean } = {}): Promise<T> {
    if (this.#closed) throw new LeashError('ERR_BACKEND_UNAVAILABLE', UNAVAILABLE, { backend: 'redis', op, message: 'the store is closed' });
    if (this.#verifying && !opts.ungated) await this.#verifying;
    if (!opts.ungated) {
      if (this.#refusal) throw this.#refusal;
      const reset = this.#identity.reset;
      if (reset) throw storeResetError(reset, 'redis', op);
    }
    try {
      return await fn();
    } catch (err) {
      if (err instanceof LeashError) throw err;
      if (err instanceof Error && err.message.startsWith('LEASH_STORE_RESET')) {
        // A write found another epoch: find out what happened (marker, fail closed) and refuse.
        await this.#judge().catch(() => undefined);
        const reset = this.#identity.reset;
        if (reset) throw storeResetError(reset, 'redis', op);
        // An accepted reset was adopted meanwhile: nothing was written; the caller may retry.
        throw unavailable(op, new Error('the store epoch changed under this write; nothing was written'));
      }
      throw unavailable(op, err);
    }
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

function formatHead(h: ChainAnchor): string {
  return `${h.seq}:${h.hash}`;
}

function parseHead(s: string): ChainAnchor {
  const i = s.indexOf(':');
  const seq = Number(s.slice(0, i));
  const hash = s.slice(i + 1);
  if (i < 1 || !Number.isSafeInteger(seq) || !/^[0-9a-f]{64}$/.test(hash)) throw new Error('audit head is malformed');
  return { seq, hash };
}

function toTask(reply: unknown): Task | undefined {
  if (!Array.isArray(reply)) return undefined;
  const [d, st, e] = reply as Array<string | null>;
  if (typeof d !== 'string' || (st !== 'active' && st !== 'ended')) return undefined;
  const h = JSON.parse(d) as TaskHead;
  const end = typeof e === 'string' && e.length > 0 ? (JSON.parse(e) as Partial<TaskEnd>) : undefined;
  return {
    id: h.id,
    plugins: h.plugins,
    attributes: h.attributes,
    createdAt: h.createdAt,
    expiresAt: h.expiresAt,
    createdBy: h.createdBy,
    state: st,
    endedAt: end?.endedAt ?? undefined,
    endedBy: end?.endedBy ?? undefined,
    ...(h.budgets !== undefined ? { budgets: h.budgets } : {}),
  };
}

type TokenJson = Omit<IssuedToken, 'task' | 'kid' | 'jkt'> & { task: string | null; kid: string | null; jkt: string | null };

function tokenJson(t: IssuedToken): TokenJson {
  return {
    jti: t.jti,
    plugin: t.plugin,
    task: t.task ?? null,
    audience: t.audience,
    scopes: [...t.scopes],
    kind: t.kind,
    kid: t.kid ?? null,
    issuedAt: t.issuedAt,
    expiresAt: t.expiresAt,
    jkt: t.jkt ?? null,
  };
}

function fromTokenJson(raw: string): IssuedToken {
  const j = JSON.parse(raw) as TokenJson;
  return { ...j, task: j.task ?? undefined, kid: j.kid ?? undefined, jkt: j.jkt ?? undefined };
}
