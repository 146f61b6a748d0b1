import { LeashError } from '../errors/leash-error.js';
import type { IssuedToken, Revocation, RevocationScope, StateChange } from '../store/records.js';
import type { Store } from '../store/store.js';
import { storeResetError } from '../store/store-identity.js';
import { performance } from 'node:perf_hooks';
import type { Clock } from '../time/clock.js';
import type { AudienceResolver } from './revocation-audiences.js';
import type { RevocationService, RevokeContext, RevokeOptions, Revoker, TokenFacts } from './revocation-service.js';

export interface RevocationViewOptions {
  readonly store: Store;
  readonly clock: Clock;
  readonly syncIntervalMs: number;
  readonly maxStalenessMs: number;
  /** Longest life of any token Leash issues (ms), so a record is kept until all it covers expired. */
  readonly maxTokenLifeMs: () => number;
  readonly revokers: ReadonlyMap<string, Revoker>;
  readonly log?: (msg: string, fields?: Record<string, unknown>) => void;
  /** Runs once per revocation made on this replica (the audit event). */
  readonly onRevoked?: (revocation: Revocation) => Promise<void>;
  /** The audiences each revocation concerns, stored with it (feed scoping); absent: every resource server. */
  readonly audiences?: AudienceResolver;
}

const BATCH = 1000;

/**
 * The in-memory revocation view of one replica. Changes arrive over the store's pub/sub
 * as they happen; a periodic read of the feed from the last cursor is the safety net for
 * a missed message. If the view cannot prove it is in step (pub/sub down, or no
 * successful sync within `maxStalenessMs`), every check refuses: fail closed.
 *
 * Each sync first checks the store's epoch (store-identity.ts): a store found reset
 * refuses every check at once (ERR_STORE_RESET) until an operator accepts the reset; then
 * the view re-reads the feed of the new epoch from the start. Records it already holds are
 * kept: a revocation the store lost is still enforced here until it expires.
 */
export class RevocationView implements RevocationService {
  readonly #o: RevocationViewOptions;
  readonly #tokens = new Map<string, number>();
  readonly #tasks = new Map<string, number>();
  readonly #keys = new Map<string, number>();
  /** plugin -> [issuedBefore, keepUntil] of the latest revocation. */
  readonly #plugins = new Map<string, { issuedBefore: number; keepUntil: number }>();
  readonly #suspended = new Set<string>();
  readonly #listeners = new Set<(r: Revocation) => void>();
  /** Every seq up to here has been read from the store, in `#epoch`. */
  #cursor = 0;
  /** The store epoch the cursor belongs to. */
  #epoch: string | undefined;
  /** Seqs above the cursor already applied (from pub/sub or locally), so listeners hear each once. */
  readonly #ahead = new Set<number>();
  #lastSync = Number.NEGATIVE_INFINITY;
  #timer: NodeJS.Timeout | undefined;
  #unsubscribe: (() => void) | undefined;
  #syncing: Promise<void> | undefined;
  #failing = false;

  constructor(opts: RevocationViewOptions) {
    this.#o = opts;
  }

  async start(): Promise<void> {
    this.#unsubscribe = this.#o.store.subscribe((change) => this.#onChange(change));
    await this.sync();
    this.#timer = setInterval(() => void this.sync().catch(() => undefined), this.#o.syncIntervalMs);
    this.#timer.unref();
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    this.#unsubscribe?.();
    this.#unsubscribe = undefined;
  }

  /** Catch up from the store: revocations after the cursor, and the suspension set. */
  sync(): Promise<void> {
    this.#syncing ??= this.#sync().finally(() => (this.#syncing = undefined));
    return this.#syncing;
  }

  async #sync(): Promise<void> {
    const { store, clock } = this.#o;
    try {
      await store.checkEpoch();
      const epoch = store.epoch();
      if (epoch !== this.#epoch) {
        // A new epoch (first sync, or an accepted reset): its feed is read from the start.
        if (this.#epoch !== undefined) this.#o.log?.('store epoch changed; re-reading the revocation feed from the start', { previous_epoch: this.#epoch, epoch });
        this.#epoch = epoch;
        this.#cursor = 0;
        this.#ahead.clear();
      }
      for (;;) {
        const batch = await store.revocationsSince(this.#cursor, BATCH, clock.now());
        for (const r of batch) this.#apply(r);
        if (batch.length > 0) this.#cursor = Math.max(this.#cursor, batch[batch.length - 1]!.seq);
        if (batch.length < BATCH) break;
      }
      for (const seq of this.#ahead) if (seq <= this.#cursor) this.#ahead.delete(seq);
      const suspensions = await store.listSuspensions();
      this.#suspended.clear();
      for (const s of suspensions) this.#suspended.add(s.plugin);
      this.#forgetExpired(clock.now());
      this.#lastSync = performance.now();
      if (this.#failing) this.#o.log?.('revocation sync recovered');
      this.#failing = false;
    } catch (err) {
      if (!this.#failing) this.#o.log?.('revocation sync failing; refusing until it recovers', { error: (err as Error).message });
      this.#failing = true;
      throw err;
    }
  }

  #onChange(change: StateChange): void {
    if (change.type === 'revocation') this.#apply(change.revocation);
    else if (change.suspended) this.#suspended.add(change.plugin);
    else this.#suspended.delete(change.plugin);
  }

  /** Idempotent: a record may arrive by pub/sub, by sync and from this replica itself. */
  #apply(r: Revocation): void {
    const fresh = r.seq > this.#cursor && !this.#ahead.has(r.seq);
    if (r.seq > this.#cursor) this.#ahead.add(r.seq);
    switch (r.scope) {
      case 'token':
        this.#tokens.set(r.id, Math.max(r.keepUntil, this.#tokens.get(r.id) ?? 0));
        break;
      case 'task':
        this.#tasks.set(r.id, Math.max(r.keepUntil, this.#tasks.get(r.id) ?? 0));
        break;
      case 'key':
        this.#keys.set(r.id, Math.max(r.keepUntil, this.#keys.get(r.id) ?? 0));
        break;
      case 'plugin': {
        const prev = this.#plugins.get(r.id);
        this.#plugins.set(r.id, { issuedBefore: Math.max(r.issuedBefore, prev?.issuedBefore ?? 0), keepUntil: Math.max(r.keepUntil, prev?.keepUntil ?? 0) });
        break;
      }
    }
    if (fresh) for (const l of this.#listeners) l(r);
  }

  #forgetExpired(now: number): void {
    for (const m of [this.#tokens, this.#tasks, this.#keys]) for (const [id, until] of m) if (until <= now) m.delete(id);
    for (const [id, p] of this.#plugins) if (p.keepUntil <= now) this.#plugins.delete(id);
  }

  assertFresh(): void {
    const reset = this.#o.store.resetPending();
    if (reset) throw storeResetError(reset, this.#o.store.kind, 'revocation-view');
    // Freshness is about this process's own operation, so it runs on the monotonic clock,
    // not the injected one that governs token validity.
    const age = performance.now() - this.#lastSync;
    if (!this.#o.store.subscribed() || age > this.#o.maxStalenessMs) {
      throw new LeashError('ERR_BACKEND_UNAVAILABLE', 'the revocation list cannot be confirmed right now; retry later', { syncAgeMs: age, subscribed: this.#o.store.subscribed() });
    }
  }

  isRevoked(t: TokenFacts): boolean {
    this.assertFresh();
    if (this.#tokens.has(t.jti)) return true;
    // The cascade: an upstream token's record is kept until it expires, and a delegated
    // token never outlives its upstream, so the record covers every token derived from it.
    if (t.upstream?.some((jti) => this.#tokens.has(jti))) return true;
    if (t.task !== undefined && this.#tasks.has(t.task)) return true;
    if (t.kid !== undefined && this.#keys.has(t.kid)) return true;
    // The kill switch reaches down the chain: a root's or an earlier actor's revocation covers
    // what was delegated from their tokens (issued before it, as every such token was).
    return [t.plugin, ...(t.chainPlugins ?? [])].some((plugin) => {
      const p = this.#plugins.get(plugin);
      return p !== undefined && t.iat * 1000 <= p.issuedBefore;
    });
  }

  isSuspended(plugin: string): boolean {
    this.assertFresh();
    return this.#suspended.has(plugin);
  }

  onRevocation(listener: (r: Revocation) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  async #revoke(scope: RevocationScope, id: string, opts: RevokeOptions, keepUntil?: number, memo?: Map<string, readonly string[]>): Promise<Revocation> {
    const now = this.#o.clock.now();
    const audiences = await this.#o.audiences?.(scope, id, memo);
    const record = await this.#o.store.addRevocation({
      scope,
      id,
      issuedBefore: now,
      revokedAt: now,
      keepUntil: keepUntil ?? now + this.#o.maxTokenLifeMs(),
      reason: opts.reason,
      actor: opts.actor,
      ...(audiences === undefined ? {} : { audiences }),
    });
    // Applied here at once: this replica never answers from a view older than its own write.
    this.#apply(record);
    await this.#o.onRevoked?.(record);
    return record;
  }

  async revokeToken(jti: string, opts: RevokeOptions): Promise<Revocation> {
    const issued = await this.#o.store.getIssued(jti);
    const record = await this.#revoke('token', jti, opts, issued ? issued.expiresAt + 60_000 : undefined);
    if (issued) await this.#runRevokers([issued], opts, record);
    return record;
  }

  async revokeTokens(jtis: readonly string[], opts: RevokeOptions): Promise<Revocation[]> {
    const records: Revocation[] = [];
    const issued: IssuedToken[] = [];
    const audiences = new Map<string, readonly string[]>();
    for (const jti of new Set(jtis)) {
      const t = await this.#o.store.getIssued(jti);
      records.push(await this.#revoke('token', jti, opts, t ? t.expiresAt + 60_000 : undefined, audiences));
      if (t) issued.push(t);
    }
    const last = records.at(-1);
    if (last && issued.length > 0) await this.#runRevokers(issued, opts, last);
    return records;
  }

  async revokeTask(taskId: string, opts: RevokeOptions): Promise<Revocation> {
    const record = await this.#revoke('task', taskId, opts);
    await this.#runRevokers(await this.#o.store.listIssuedForTask(taskId), opts, record);
    return record;
  }

  async revokePlugin(plugin: string, opts: RevokeOptions): Promise<Revocation> {
    const record = await this.#revoke('plugin', plugin, opts);
    await this.#runRevokers(await this.#o.store.listLiveIssuedForPlugin(plugin, this.#o.clock.now()), opts, record);
    return record;
  }

  async revokeKey(kid: string, opts: RevokeOptions): Promise<Revocation> {
    return this.#revoke('key', kid, opts);
  }

  async suspend(plugin: string, opts: RevokeOptions): Promise<{ changed: boolean }> {
    const changed = await this.#o.store.suspendPlugin({ plugin, since: this.#o.clock.now(), actor: opts.actor, reason: opts.reason });
    this.#suspended.add(plugin);
    // Revoke even when already suspended: the call promises that nothing live remains.
    await this.revokePlugin(plugin, opts);
    return { changed };
  }

  async resume(plugin: string, _opts: RevokeOptions): Promise<{ changed: boolean }> {
    const changed = await this.#o.store.resumePlugin(plugin);
    this.#suspended.delete(plugin);
    return { changed };
  }

  /** Kinds with their own revocation (Vault leases, AWS sessions) get the tokens they issued. */
  async #runRevokers(tokens: readonly IssuedToken[], opts: RevokeOptions, record: Revocation): Promise<void> {
    const ctx: RevokeContext = { scope: record.scope, id: record.id, revokedAt: record.revokedAt };
    const byKind = new Map<string, IssuedToken[]>();
    for (const t of tokens) {
      if (!this.#o.revokers.has(t.kind)) continue;
      byKind.set(t.kind, [...(byKind.get(t.kind) ?? []), t]);
    }
    for (const [kind, list] of byKind) await this.#o.revokers.get(kind)!.revokeIssued(list, opts, ctx);
  }
}
