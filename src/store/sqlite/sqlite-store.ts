import { chmodSync, mkdirSync, realpathSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { canonicalJson } from '../../formats/canonical-json.js';
import { chainHashCanonical, type ChainAnchor } from '../../formats/chain-hash.js';
import { LeashError } from '../../errors/leash-error.js';
import { systemClock, type Clock } from '../../time/clock.js';
import {
  DECISION_TYPES,
  type ApprovalRecord,
  type ApprovalState,
  type AuditRecord,
  type DecisionRollupRow,
  type IssuedToken,
  type LeaseRecord,
  type Revocation,
  type StateChange,
  type Suspension,
  type Task,
  type TaskBudgets,
} from '../records.js';
import type { OpenApprovalOptions, OpenApprovalOutcome, Store } from '../store.js';
import {
  APPROVAL_RETENTION_MS,
  decideApprovalRow,
  insertApproval,
  listApprovalRows,
  openApprovalRow,
  prepareApprovals,
  toApproval,
  type ApprovalDecision,
  type ApprovalStatements,
} from './approvals.js';
import { acquireHub, HandleSubscriptions, type ChangeHub } from './change-hub.js';
import { LEASE_RETENTION_MS, insertLease, leaseRows, prepareLeases, type LeaseStatements } from './leases.js';
import { SchemaTooNewError, migrate } from './migrations.js';
import { acceptResetRows, initialiseIdentity, markReset, prepareIdentity, readEpoch, readGenesis, readIdentity, type IdentityStatements } from './identity.js';
import {
  IdentityTracker,
  describeReset,
  genesisAnchor,
  judgeIdentity,
  storeResetError,
  type AcceptedReset,
  type IdentityChange,
  type IdentityMode,
  type IdentityState,
  type ResetMarker,
} from '../store-identity.js';
import { SqliteUsage } from './usage.js';
import type { UsageStore } from '../usage-store.js';
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
  revocationChange,
} from './record-checks.js';

export interface SqliteStoreOptions {
  /** Database file; its folder is created. `:memory:` for tests only (nothing survives). */
  readonly path: string;
  readonly clock?: Clock;
  /**
   * When a commit waits for fsync.
   * - `state-changes` (default): acknowledged state changes (task opened, task ended) are
   *   fsynced before they return; the hot path (issued-token index, audit, replay) is not.
   * - `every-commit`: every commit is fsynced (~10x slower writes; see the note below).
   */
  readonly fsync?: 'state-changes' | 'every-commit';
  /** How long a write waits for another process's lock before failing closed. */
  readonly busyTimeoutMs?: number;
  /** Purge expired replay keys once every this many `remember` calls. */
  readonly replayPurgeEvery?: number;
  /** Purge finished counter windows once every this many `incrementWindow` calls. */
  readonly counterPurgeEvery?: number;
  /** Purge long-finished approvals (7 days) and revoked leases (1 day) once every this many creations. */
  readonly recordPurgeEvery?: number;
  /** `serve` (default): initialise the epoch, refuse a pending reset. `inspect`: operator tooling, read only. */
  readonly identity?: IdentityMode;
}

/*
 * Durability, measured on the 2-core dev VM (ext4 on virtio; 5,000 single-row commits):
 *   WAL + synchronous=NORMAL  ~11-12 µs per commit  (~85k commits/s)
 *   WAL + synchronous=FULL    ~120-130 µs per commit (~8k commits/s): one fsync each
 * In WAL mode NORMAL already survives a *process* crash (a commit is in the WAL, in the OS
 * page cache, before it returns); only an OS crash or power loss can lose the last commits,
 * and then atomically, as a prefix: the audit chain stays intact, just shorter.
 * FULL on the hot path would spend ~250 µs of the single JS thread per exchange (two
 * commits) for that: more than the exchange's whole crypto budget. So the connection runs
 * NORMAL, and the commits whose loss would be a security failure, above all a task end
 * (a revocation that must never come undone), switch the connection to FULL for that one
 * commit. Since the WAL is append-only, that fsync also makes every earlier commit durable.
 * Revocations and suspensions (issue 3) are such commits too: acknowledged means on disk.
 *
 * Change feed: in-process only. Every handle this process opens on the same file shares one
 * hub, so a revocation written through one handle reaches the subscribers of all of them,
 * synchronously, after the commit and before the write's promise resolves. Another process
 * on the same file learns nothing by push; it catches up with `revocationsSince`.
 */

type TaskRow = {
  id: string;
  plugins: string;
  attributes: string;
  created_at: number;
  expires_at: number;
  created_by: string;
  state: 'active' | 'ended';
  ended_at: number | null;
  ended_by: string | null;
  budgets?: string | null;
};

type TokenRow = {
  jti: string;
  plugin: string;
  task: string | null;
  audience: string;
  scopes: string;
  kind: string;
  kid: string | null;
  issued_at: number;
  expires_at: number;
  jkt: string | null;
};

type AuditRow = { seq: number; ts: number; type: string; event: string; prev_hash: string; hash: string };

type RevocationRow = {
  seq: number;
  scope: Revocation['scope'];
  id: string;
  issued_before: number;
  revoked_at: number;
  keep_until: number;
  reason: string;
  actor: string;
  /** JSON array; NULL: every resource server. */
  audiences: string | null;
};

type SuspensionRow = { plugin: string; since: number; actor: string; reason: string };

const UNAVAILABLE = 'the state store is unavailable; retry later';

function unavailable(op: string, err: unknown): LeashError {
  const e = err as { code?: unknown; message?: unknown };
  return new LeashError(
    'ERR_BACKEND_UNAVAILABLE',
    UNAVAILABLE,
    { backend: 'sqlite', op, code: typeof e?.code === 'string' ? e.code : undefined, message: typeof e?.message === 'string' ? e.message : String(err) },
    { cause: err },
  );
}

/** Thrown inside a write when the store's epoch is not this handle's: the write is rolled back. */
class EpochMismatch extends Error {}

function isConstraintError(err: unknown): boolean {
  const code = (err as { code?: unknown })?.code;
  return typeof code === 'string' && code.startsWith('SQLITE_CONSTRAINT');
}

/**
 * Opens (creating if needed) the embedded store. Synchronous, so the composition root can
 * build it in a constructor; a file that cannot be opened or migrated throws
 * ERR_BACKEND_UNAVAILABLE at once (fail closed at start, not at the first request).
 */
export function openSqliteStore(opts: SqliteStoreOptions): SqliteStore {
  return new SqliteStore(opts);
}

/** Audit seqs folded into the decision rollup per write transaction: short, so appends interleave. */
const ROLLUP_BATCH = 20_000;

/** Fold audit decisions with `from < seq <= to` into per-day groups (type, plugin, denial reason, issued audience and scopes). */
const FOLD_SQL = `
  INSERT INTO decision_rollup (day, type, plugin, reason, audience, scopes, n, last_at)
  SELECT ts / 86400000,
         type,
         coalesce(json_extract(event, '$.plugin'), ''),
         CASE WHEN type = 'exchange.denied' THEN coalesce(json_extract(event, '$.reason'), '') ELSE '' END,
         CASE WHEN type = 'exchange.issued' THEN coalesce(json_extract(event, '$.audience'), '') ELSE '' END,
         CASE WHEN type = 'exchange.issued' THEN coalesce(json_extract(event, '$.scopes'), '') ELSE '' END,
         count(*),
         max(ts)
    FROM audit
   WHERE seq > ? AND seq <= ?
     AND type IN (${DECISION_TYPES.map((t) => `'${t}'`).join(', ')})
   GROUP BY 1, 2, 3, 4, 5, 6
  ON CONFLICT (day, type, plugin, reason, audience, scopes) DO UPDATE SET n = n + excluded.n, last_at = max(last_at, excluded.last_at)`;

/** The days in the window, summed over days. */
const ROLLUP_SQL = `
  SELECT type, plugin, reason, audience, scopes, sum(n) AS n, max(last_at) AS last_at
    FROM decision_rollup
   WHERE day >= ? AND day <= ?
   GROUP BY 1, 2, 3, 4, 5`;

/**
 * The embedded Store: one SQLite file in WAL mode, statements prepared once. better-sqlite3
 * is synchronous, so each method does its work before returning a settled promise; the
 * async shape is the Store contract's (a networked backend needs it).
 */
export class SqliteStore implements Store {
  readonly kind = 'sqlite';
  readonly path: string;
  readonly #db: Database.Database;
  readonly #clock: Clock;
  readonly #fsyncAll: boolean;
  readonly #purgeEvery: number;
  readonly #counterPurgeEvery: number;
  #rememberCalls = 0;
  #incrementCalls = 0;
  readonly #recordPurgeEvery: number;
  #approvalCreates = 0;
  #leaseRecords = 0;
  #hub: ChangeHub | undefined;
  #releaseHub: () => void = () => undefined;
  /** This handle's subscriptions, dropped on close (the hub may outlive it). */
  readonly #subscriptions = new HandleSubscriptions();
  #closed = false;
  /** The chain head as this process last saw it; `append` still re-reads it in its transaction. */
  #head: ChainAnchor;
  readonly #s: ReturnType<typeof prepare>;
  readonly #a: ApprovalStatements;
  readonly #l: LeaseStatements;
  readonly #appendTx: (type: string, canonicalEvent: string, ts: number) => AuditRow;
  readonly #openApprovalTx: (a: ApprovalRecord, opts: OpenApprovalOptions) => OpenApprovalOutcome;
  /** Prepared on first use: only the review runs them. */
  #rollup: { cursor: Database.Statement; setCursor: Database.Statement; fold: Database.Statement; read: Database.Statement; oldest: Database.Statement } | undefined;
  readonly #addRevocationTx: (r: Omit<Revocation, 'seq'>) => RevocationRow;
  readonly #i: IdentityStatements;
  readonly #identity: IdentityTracker;
  readonly #mode: IdentityMode;
  /** Highest revocation seq this handle has written or read (what a reset would lose). */
  #revocationSeq = 0;
  /** The usage role (src/store/sqlite/usage.ts), on this handle and behind the same error boundary. */
  readonly #usage: SqliteUsage;

  constructor(opts: SqliteStoreOptions) {
    this.path = opts.path;
    this.#clock = opts.clock ?? systemClock;
    this.#fsyncAll = opts.fsync === 'every-commit';
    const purgeEvery = opts.replayPurgeEvery ?? 1024;
    if (!Number.isInteger(purgeEvery) || purgeEvery < 1) throw new TypeError('replayPurgeEvery must be a positive integer');
    this.#purgeEvery = purgeEvery;
    const counterPurgeEvery = opts.counterPurgeEvery ?? 256;
    if (!Number.isInteger(counterPurgeEvery) || counterPurgeEvery < 1) throw new TypeError('counterPurgeEvery must be a positive integer');
    this.#counterPurgeEvery = counterPurgeEvery;
    const recordPurgeEvery = opts.recordPurgeEvery ?? 256;
    if (!Number.isInteger(recordPurgeEvery) || recordPurgeEvery < 1) throw new TypeError('recordPurgeEvery must be a positive integer');
    this.#recordPurgeEvery = recordPurgeEvery;
    this.#mode = opts.identity ?? 'serve';
    const inMemory = opts.path === ':memory:' || opts.path === '';
    let db: Database.Database | undefined;
    try {
      if (!inMemory) mkdirSync(dirname(opts.path), { recursive: true, mode: 0o700 });
      db = new Database(opts.path);
      // Owner-only: the file holds the audit trail and task state. SQLite gives the -wal and
      // -shm files the main file's permissions.
      if (!inMemory) chmodSync(opts.path, 0o600);
      db.pragma('journal_mode = WAL');
      db.pragma(`synchronous = ${this.#fsyncAll ? 'FULL' : 'NORMAL'}`);
      db.pragma(`busy_timeout = ${Math.max(0, Math.floor(opts.busyTimeoutMs ?? 5000))}`);
      migrate(db);
      this.#db = db;
      this.#s = prepare(db);
      this.#a = prepareApprovals(db);
      this.#l = prepareLeases(db);
      this.#i = prepareIdentity(db);
      const i = this.#i;
      const state: IdentityState = this.#mode === 'serve' ? db.transaction(() => initialiseIdentity(i)).immediate() : readIdentity(i);
      if (this.#mode === 'serve' && state.marker) throw new StoreResetAtOpen(state.marker);
      this.#identity = new IdentityTracker(state.epoch ?? undefined);
      const head = this.#s.head.get() as { seq: number; hash: string } | undefined;
      this.#head = head ?? genesisAnchor(state.genesis);
      // Keyed by the resolved file, so `./x.db` and its absolute path share one hub.
      const hub = acquireHub(inMemory ? undefined : realpathSync(opts.path));
      this.#hub = hub.hub;
      this.#releaseHub = () => hub.release();
    } catch (err) {
      try {
        db?.close();
      } catch {
        // already failing; the original error is the one to report
      }
      if (err instanceof SchemaTooNewError) {
        throw new LeashError('ERR_BACKEND_UNAVAILABLE', UNAVAILABLE, { backend: 'sqlite', op: 'open', message: err.message }, { cause: err });
      }
      if (err instanceof StoreResetAtOpen) {
        const e = storeResetError(err.marker, 'sqlite', 'open');
        throw new LeashError(e.code, e.description, { ...e.detail, message: describeReset(err.marker) }, { cause: err });
      }
      throw unavailable('open', err);
    }
    const s = this.#s;
    // IMMEDIATE: takes the write lock before reading the head, so another process sharing
    // the file cannot append between our read and our insert and fork the chain.
    const appendTx = this.#db.transaction((type: string, canonicalEvent: string, ts: number): AuditRow => {
      this.#assertEpoch();
      // An empty chain begins at its genesis (seq 1, or where an accepted reset continued it).
      const h = (s.head.get() as { seq: number; hash: string } | undefined) ?? genesisAnchor(readGenesis(this.#i));
      const seq = h.seq + 1;
      const hash = chainHashCanonical(h.hash, seq, ts, type, canonicalEvent);
      s.insertAudit.run(seq, ts, type, canonicalEvent, h.hash, hash);
      return { seq, ts, type, event: canonicalEvent, prev_hash: h.hash, hash };
    });
    this.#appendTx = appendTx.immediate.bind(appendTx);
    const a = this.#a;
    const openApprovalTx = this.#db.transaction((rec: ApprovalRecord, opts: OpenApprovalOptions) => openApprovalRow(a, rec, opts));
    this.#openApprovalTx = openApprovalTx.immediate.bind(openApprovalTx);
    const addRevocationTx = this.#db.transaction((r: Omit<Revocation, 'seq'>): RevocationRow => {
      this.#assertEpoch();
      return s.insertRevocation.get(r.scope, r.id, r.issuedBefore, r.revokedAt, r.keepUntil, r.reason, r.actor, r.audiences === undefined ? null : JSON.stringify(r.audiences)) as RevocationRow;
    });
    this.#addRevocationTx = addRevocationTx.immediate.bind(addRevocationTx);
    this.#usage = new SqliteUsage(this.#db, (op, fn) => this.#run(op, fn));
  }

  /** Inside a write transaction: the store must still be in this handle's epoch. */
  #assertEpoch(): void {
    const mine = this.#identity.epoch;
    if (mine !== undefined && readEpoch(this.#i) !== mine) throw new EpochMismatch();
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
    return this.#run('identity', () => readIdentity(this.#i), { ungated: true });
  }

  async checkEpoch(): Promise<void> {
    this.#run('checkEpoch', () => this.#judge(), { ungated: true });
    const reset = this.#identity.reset;
    if (reset) throw storeResetError(reset, 'sqlite', 'checkEpoch');
  }

  async acceptReset(by: string, at: number): Promise<AcceptedReset | undefined> {
    const i = this.#i;
    const accepted = this.#run('acceptReset', () => this.#durably(() => this.#db.transaction(() => acceptResetRows(i, by, at)).immediate()), { ungated: true });
    if (accepted) {
      this.#identity.set(accepted.epoch);
      if (!this.#s.head.get()) this.#head = genesisAnchor(accepted.genesis);
      this.#run('checkEpoch', () => this.#judge(), { ungated: true });
    }
    return accepted;
  }

  /** Applies judgeIdentity to what the file holds now; leaves the marker on a reset (serve handles only). */
  #judge(): void {
    const mine = this.#identity.epoch;
    if (this.#mode !== 'serve' || mine === undefined) return;
    const state = readIdentity(this.#i);
    const j = judgeIdentity(mine, state);
    if (j.verdict === 'in-step') {
      if (this.#identity.reset) this.#identity.clear(state.genesis ?? undefined);
      return;
    }
    if (j.verdict === 'adopt') {
      this.#identity.adopt(j.epoch, j.genesis);
      const head = this.#s.head.get() as { seq: number; hash: string } | undefined;
      this.#head = head ?? genesisAnchor(j.genesis);
      return;
    }
    const mineMarker: ResetMarker = {
      previousEpoch: mine,
      foundEpoch: state.epoch,
      detectedAt: this.#clock.now(),
      auditHead: this.#head,
      revocationSeq: this.#revocationSeq,
    };
    const i = this.#i;
    const stored = this.#durably(() => this.#db.transaction(() => markReset(i, mineMarker)).immediate());
    this.#identity.failClosed(stored);
  }

  // ---- UsageStore (src/store/sqlite/usage.ts) ----------------------------------------
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

  /** The chain head as last appended or read by this process (seq 0 = empty log). */
  get auditHead(): ChainAnchor {
    return this.#head;
  }

  /** The raw connection, for operational tooling and tests; bypasses every guard. */
  get database(): Database.Database {
    return this.#db;
  }

  // ---- TaskStore -------------------------------------------------------------------

  async createTask(task: Task): Promise<void> {
    const plugins = JSON.stringify(task.plugins);
    const attributes = JSON.stringify(task.attributes);
    this.#run('createTask', () => {
      try {
        this.#durably(() =>
          this.#s.insertTask.run(
            task.id,
            plugins,
            attributes,
            task.createdAt,
            task.expiresAt,
            task.createdBy,
            task.state,
            task.endedAt ?? null,
            task.endedBy ?? null,
            task.budgets === undefined ? null : JSON.stringify(task.budgets),
          ),
        );
      } catch (err) {
        // Ids are random; a duplicate is a caller bug, and overwriting could revive an ended task.
        if (isConstraintError(err)) throw new TypeError(`createTask: a task with this id already exists`, { cause: err });
        throw err;
      }
    });
  }

  async getTask(id: string): Promise<Task | undefined> {
    const row = this.#run('getTask', () => this.#s.getTask.get(id) as TaskRow | undefined);
    return row && toTask(row);
  }

  async endTask(id: string, at: number, by: string): Promise<Task | undefined> {
    const row = this.#run('endTask', () => {
      // Only an active task changes: ending twice keeps the first end's time and actor.
      const ended = this.#durably(() => this.#s.endTask.get(at, by, id) as TaskRow | undefined);
      return ended ?? (this.#s.getTask.get(id) as TaskRow | undefined);
    });
    return row && toTask(row);
  }

  async countActiveTasks(now: number): Promise<number> {
    return this.#run('countActiveTasks', () => (this.#s.countActive.get(now) as { n: number }).n);
  }

  async listExpiredActiveTasks(now: number, limit: number): Promise<Task[]> {
    checkNow('listExpiredActiveTasks', now);
    checkLimit('listExpiredActiveTasks', limit);
    const rows = this.#run('listExpiredActiveTasks', () => this.#s.expiredActive.all(now, limit) as TaskRow[]);
    return rows.map(toTask);
  }

  // ---- TokenIndex ------------------------------------------------------------------

  async recordIssued(t: IssuedToken): Promise<void> {
    const scopes = JSON.stringify(t.scopes);
    this.#run('recordIssued', () => {
      try {
        this.#s.insertToken.run(t.jti, t.plugin, t.task ?? null, t.audience, scopes, t.kind, t.kid ?? null, t.issuedAt, t.expiresAt, t.jkt ?? null);
      } catch (err) {
        if (isConstraintError(err)) throw new TypeError('recordIssued: a token with this jti is already recorded', { cause: err });
        throw err;
      }
    });
  }

  async getIssued(jti: string): Promise<IssuedToken | undefined> {
    const row = this.#run('getIssued', () => this.#s.getToken.get(jti) as TokenRow | undefined);
    return row && toToken(row);
  }

  async listIssuedForTask(taskId: string): Promise<IssuedToken[]> {
    const rows = this.#run('listIssuedForTask', () => this.#s.tokensForTask.all(taskId) as TokenRow[]);
    return rows.map(toToken);
  }

  async listLiveIssuedForPlugin(plugin: string, now: number): Promise<IssuedToken[]> {
    checkPlugin('listLiveIssuedForPlugin', plugin);
    checkNow('listLiveIssuedForPlugin', now);
    const rows = this.#run('listLiveIssuedForPlugin', () => this.#s.liveForPlugin.all(plugin, now) as TokenRow[]);
    return rows.map(toToken);
  }

  async countIssuedForTask(taskId: string): Promise<number> {
    return this.#run('countIssuedForTask', () => (this.#s.countForTask.get(taskId) as { n: number }).n);
  }

  // ---- RevocationStore -------------------------------------------------------------

  async addRevocation(r: Omit<Revocation, 'seq'>): Promise<Revocation> {
    checkRevocation(r);
    const row = this.#run('addRevocation', () => this.#durably(() => this.#addRevocationTx(r)));
    const stored = toRevocation(row);
    this.#revocationSeq = Math.max(this.#revocationSeq, stored.seq);
    this.#publish(revocationChange(stored));
    return stored;
  }

  async revocationsSince(cursor: number, limit: number, now: number): Promise<Revocation[]> {
    checkSince(cursor, limit, now);
    const rows = this.#run('revocationsSince', () => this.#s.revocationsSince.all(cursor, now, limit) as RevocationRow[]);
    if (rows.length > 0) this.#revocationSeq = Math.max(this.#revocationSeq, rows[rows.length - 1]!.seq);
    return rows.map(toRevocation);
  }

  async purgeRevocations(now: number): Promise<number> {
    checkNow('purgeRevocations', now);
    return this.#run('purgeRevocations', () => this.#s.purgeRevocations.run(now).changes);
  }

  // ---- SuspensionStore -------------------------------------------------------------

  async suspendPlugin(sp: Suspension): Promise<boolean> {
    checkSuspension(sp);
    const changed = this.#run('suspendPlugin', () => this.#durably(() => this.#s.suspend.run(sp.plugin, sp.since, sp.actor, sp.reason).changes === 1));
    if (changed) this.#publish({ type: 'suspension', plugin: sp.plugin, suspended: true });
    return changed;
  }

  async resumePlugin(plugin: string): Promise<boolean> {
    checkPlugin('resumePlugin', plugin);
    const changed = this.#run('resumePlugin', () => this.#durably(() => this.#s.resume.run(plugin).changes === 1));
    if (changed) this.#publish({ type: 'suspension', plugin, suspended: false });
    return changed;
  }

  async listSuspensions(): Promise<Suspension[]> {
    const rows = this.#run('listSuspensions', () => this.#s.listSuspensions.all() as SuspensionRow[]);
    return rows.map((r) => ({ plugin: r.plugin, since: r.since, actor: r.actor, reason: r.reason }));
  }

  // ---- CounterStore ----------------------------------------------------------------

  async incrementWindow(key: string, windowMs: number, now: number, by = 1): Promise<number> {
    const start = checkWindow(key, windowMs, now, by);
    return this.#run('incrementWindow', () => {
      // Amortised, like the replay cache: finished windows are dead weight, never read again.
      if (++this.#incrementCalls % this.#counterPurgeEvery === 0) this.#s.purgeCounters.run(now);
      return (this.#s.increment.get(key, windowMs, start, start + windowMs, by) as { count: number }).count;
    });
  }

  // ---- ApprovalStore ---------------------------------------------------------------
  // Creation, decision and redemption are fsynced: a redemption undone by a crash could be
  // redeemed again, a lost decision would be shown to its approver as never taken.

  async createApproval(a: ApprovalRecord): Promise<void> {
    checkApproval(a);
    const now = this.#clock.now();
    this.#run('createApproval', () => {
      if (++this.#approvalCreates % this.#recordPurgeEvery === 0) this.#a.purge.run(now - APPROVAL_RETENTION_MS);
      try {
        this.#durably(() => insertApproval(this.#a, a));
      } catch (err) {
        // Ids are random; overwriting could resurrect a decided or used approval.
        if (isConstraintError(err)) throw new TypeError('createApproval: an approval with this id already exists', { cause: err });
        throw err;
      }
    });
  }

  async openApproval(a: ApprovalRecord, opts: OpenApprovalOptions): Promise<OpenApprovalOutcome> {
    checkOpenApproval(a, opts);
    const now = this.#clock.now();
    return this.#run('openApproval', () => {
      if (++this.#approvalCreates % this.#recordPurgeEvery === 0) this.#a.purge.run(now - APPROVAL_RETENTION_MS);
      try {
        // IMMEDIATE: the write lock is taken before the counts are read.
        return this.#durably(() => this.#openApprovalTx(a, opts));
      } catch (err) {
        if (isConstraintError(err)) throw new TypeError('openApproval: an approval with this id already exists', { cause: err });
        throw err;
      }
    });
  }

  async getApproval(id: string): Promise<ApprovalRecord | undefined> {
    const row = this.#run('getApproval', () => this.#a.get.get(id) as Parameters<typeof toApproval>[0] | undefined);
    return row && toApproval(row);
  }

  async decideApproval(id: string, decision: ApprovalDecision): Promise<ApprovalRecord | undefined> {
    checkId('decideApproval', 'id', id);
    checkDecision(decision);
    return this.#run('decideApproval', () => this.#durably(() => decideApprovalRow(this.#a, id, decision)));
  }

  async consumeApproval(id: string, at: number): Promise<boolean> {
    checkId('consumeApproval', 'id', id);
    checkAt('consumeApproval', at);
    return this.#run('consumeApproval', () => this.#durably(() => this.#a.consume.run({ id, at }).changes === 1));
  }

  async recordApprovalPoll(id: string, at: number, minIntervalMs: number): Promise<'ok' | 'slow_down'> {
    checkPoll(id, at, minIntervalMs);
    return this.#run('recordApprovalPoll', () => {
      if (this.#a.poll.run({ id, at, min: minIntervalMs }).changes === 1) return 'ok';
      // No row moved: too soon, or an unknown id (nothing to pace; the caller's lookup says unknown).
      return this.#a.exists.get(id) === undefined ? 'ok' : 'slow_down';
    });
  }

  async listApprovals(filter: { readonly state?: ApprovalState; readonly now: number; readonly limit: number }): Promise<ApprovalRecord[]> {
    checkApprovalFilter(filter);
    return this.#run('listApprovals', () => listApprovalRows(this.#a, filter));
  }

  // ---- LeaseStore ------------------------------------------------------------------

  async recordLease(l: LeaseRecord): Promise<void> {
    checkLease(l);
    const now = this.#clock.now();
    this.#run('recordLease', () => {
      if (++this.#leaseRecords % this.#recordPurgeEvery === 0) this.#l.purge.run(now - LEASE_RETENTION_MS);
      try {
        // Fsynced: a lease forgotten in a crash would outlive its task's revocation.
        this.#durably(() => insertLease(this.#l, l));
      } catch (err) {
        if (isConstraintError(err)) throw new TypeError('recordLease: a lease for this jti is already recorded', { cause: err });
        throw err;
      }
    });
  }

  async leasesForTokens(jtis: readonly string[]): Promise<LeaseRecord[]> {
    checkJtis('leasesForTokens', jtis);
    if (jtis.length === 0) return [];
    return this.#run('leasesForTokens', () => leaseRows(this.#l.forTokens.all(JSON.stringify(jtis))));
  }

  async dueLeases(now: number, limit: number): Promise<LeaseRecord[]> {
    checkNow('dueLeases', now);
    checkLimit('dueLeases', limit);
    return this.#run('dueLeases', () => leaseRows(this.#l.due.all(now, limit)));
  }

  async markLeaseRevoked(jti: string, at: number): Promise<boolean> {
    checkId('markLeaseRevoked', 'jti', jti);
    checkAt('markLeaseRevoked', at);
    // Not fsynced: losing it only means the sweeper revokes the lease again (idempotent in Vault).
    return this.#run('markLeaseRevoked', () => this.#l.revoke.run(at, jti).changes === 1);
  }

  // ---- AwsDenyStore ----------------------------------------------------------------

  async getAwsDeny(roleArn: string): Promise<string | undefined> {
    checkId('getAwsDeny', 'roleArn', roleArn);
    const row = this.#run('getAwsDeny', () => this.#s.getAwsDeny.get(roleArn) as { state: string } | undefined);
    return row?.state;
  }

  async casAwsDeny(roleArn: string, expected: string | undefined, next: string | undefined): Promise<boolean> {
    checkId('casAwsDeny', 'roleArn', roleArn);
    if (expected !== undefined && (typeof expected !== 'string' || expected.length === 0)) throw new TypeError('casAwsDeny: expected must be a non-empty string or undefined');
    if (next !== undefined && (typeof next !== 'string' || next.length === 0)) throw new TypeError('casAwsDeny: next must be a non-empty string or undefined');
    // Fsynced: a deny Leash promised must survive a crash until IAM has it.
    return this.#run('casAwsDeny', () =>
      this.#durably(() => {
        if (expected === undefined) return next === undefined ? this.#s.getAwsDeny.get(roleArn) === undefined : this.#s.insertAwsDeny.run(roleArn, next).changes === 1;
        if (next === undefined) return this.#s.deleteAwsDeny.run(roleArn, expected).changes === 1;
        return this.#s.updateAwsDeny.run(next, roleArn, expected).changes === 1;
      }),
    );
  }

  async listAwsDenyRoles(): Promise<string[]> {
    return this.#run('listAwsDenyRoles', () => (this.#s.listAwsDenies.all() as { role_arn: string }[]).map((r) => r.role_arn));
  }

  // ---- ChangeFeed ------------------------------------------------------------------

  subscribe(listener: (change: StateChange) => void): () => void {
    if (typeof listener !== 'function') throw new TypeError('subscribe: listener must be a function');
    if (this.#closed || !this.#hub) return () => undefined;
    return this.#subscriptions.subscribe(this.#hub, listener);
  }

  subscribed(): boolean {
    return !this.#closed;
  }

  /** After the commit: a listener never sees a change that could still roll back. */
  #publish(change: StateChange): void {
    this.#hub?.publish(change);
  }

  // ---- AuditLog --------------------------------------------------------------------

  async append(type: string, event: Record<string, unknown>, ts: number): Promise<AuditRecord> {
    if (typeof type !== 'string' || type.length === 0) throw new TypeError('append: type must be a non-empty string');
    if (!Number.isSafeInteger(ts)) throw new TypeError('append: ts must be an integer number of milliseconds');
    // Stored text = hashed text, so what read() returns re-hashes to the same value.
    const canonical = canonicalJson(event);
    const row = this.#run('append', () => this.#appendTx(type, canonical, ts));
    this.#head = { seq: row.seq, hash: row.hash };
    return toAudit(row);
  }

  async read(fromSeq: number, limit: number): Promise<AuditRecord[]> {
    if (!Number.isSafeInteger(fromSeq)) throw new TypeError('read: fromSeq must be an integer');
    if (!Number.isSafeInteger(limit) || limit < 1) throw new TypeError('read: limit must be a positive integer');
    const rows = this.#run('read', () => this.#s.readAudit.all(fromSeq, limit) as AuditRow[]);
    return rows.map(toAudit);
  }

  // ---- DecisionHistory -------------------------------------------------------------

  /**
   * From the per-day rollup, brought up to date first: audit rows after the rollup's cursor
   * are folded in SQL (each event's JSON parsed once, ever), in short write transactions so
   * appends are never held up for long. A store's first review folds its whole history;
   * later ones only what was appended since. Day granularity: the window's first and last
   * days count whole.
   */
  async decisionRollup(since: number, until: number): Promise<{ rows: DecisionRollupRow[]; oldestAt: number | undefined }> {
    if (!Number.isSafeInteger(since) || !Number.isSafeInteger(until)) throw new TypeError('decisionRollup: since and until must be integers (ms)');
    const r = (this.#rollup ??= {
      cursor: this.#db.prepare('SELECT seq FROM decision_rollup_cursor WHERE id = 1'),
      setCursor: this.#db.prepare('INSERT INTO decision_rollup_cursor (id, seq) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET seq = excluded.seq'),
      fold: this.#db.prepare(FOLD_SQL),
      read: this.#db.prepare(ROLLUP_SQL),
      oldest: this.#db.prepare('SELECT ts FROM audit ORDER BY seq LIMIT 1'),
    });
    const head = this.#run('decisionRollup', () => (this.#s.head.get() as { seq: number } | undefined)?.seq ?? 0);
    for (;;) {
      const done = this.#run('decisionRollup', () =>
        this.#db
          .transaction(() => {
            // Re-read inside the write lock: another process may have folded meanwhile.
            const from = (r.cursor.get() as { seq: number } | undefined)?.seq ?? 0;
            if (from >= head) return true;
            const to = Math.min(head, from + ROLLUP_BATCH);
            r.fold.run(from, to);
            r.setCursor.run(to);
            return to >= head;
          })
          .immediate(),
      );
      if (done) break;
      // Let appends waiting for the write lock in.
      await new Promise((resolve) => setImmediate(resolve));
    }
    return this.#run('decisionRollup', () => {
      const rows = r.read.all(Math.floor(since / 86_400_000), Math.floor((until - 1) / 86_400_000)) as {
        type: DecisionRollupRow['type'];
        plugin: string;
        reason: string;
        audience: string;
        scopes: string;
        n: number;
        last_at: number;
      }[];
      const oldest = r.oldest.get() as { ts: number } | undefined;
      return {
        rows: rows.map((x) => ({
          type: x.type,
          plugin: x.plugin || undefined,
          reason: x.reason || undefined,
          audience: x.audience || undefined,
          scopes: x.scopes ? (JSON.parse(x.scopes) as unknown[]).filter((v): v is string => typeof v === 'string') : [],
          count: x.n,
          lastAt: x.last_at,
        })),
        oldestAt: oldest?.ts,
      };
    });
  }

  // ---- ReplayCache -----------------------------------------------------------------

  async remember(key: string, expiresAt: number): Promise<boolean> {
    if (typeof key !== 'string' || key.length === 0) throw new TypeError('remember: key must be a non-empty string');
    if (!Number.isFinite(expiresAt)) throw new TypeError('remember: expiresAt must be a number of milliseconds');
    const now = this.#clock.now();
    return this.#run('remember', () => {
      // Amortised clean-up instead of a timer: no background work to stop, no lost wake-ups.
      if (++this.#rememberCalls % this.#purgeEvery === 0) this.#s.purgeReplay.run(now);
      // One statement: insert, or take over a row whose expiry has passed; a live row is
      // left alone and changes nothing, which is the replay.
      return this.#s.remember.run({ key, expiresAt, now }).changes === 1;
    });
  }

  // ---- lifecycle -------------------------------------------------------------------

  async ping(): Promise<void> {
    this.#run('ping', () => this.#s.ping.get());
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#subscriptions.closeAll();
    this.#releaseHub();
    try {
      this.#db.close();
    } catch (err) {
      throw unavailable('close', err);
    }
  }

  /**
   * Every database call goes through here: a closed, locked or failing DB fails closed, and
   * so does a store found reset (`ungated`: the identity calls that find and end a reset).
   */
  #run<T>(op: string, fn: () => T, opts: { ungated?: boolean } = {}): T {
    if (this.#closed) throw new LeashError('ERR_BACKEND_UNAVAILABLE', UNAVAILABLE, { backend: 'sqlite', op, message: 'the store is closed' });
    const reset = this.#identity.reset;
    if (reset && !opts.ungated) throw storeResetError(reset, 'sqlite', op);
    try {
      return fn();
    } catch (err) {
      if (err instanceof EpochMismatch) {
        // Another epoch under a write: find out what happened (marker, fail closed) and refuse.
        try {
          this.#judge();
        } catch (judgeErr) {
          throw unavailable(op, judgeErr);
        }
        const found = this.#identity.reset;
        if (found) throw storeResetError(found, 'sqlite', op);
        // An accepted reset was adopted meanwhile: nothing was written; the caller may retry.
        throw unavailable(op, new Error('the store epoch changed under this write; nothing was written'));
      }
      // Misuse (ours or a bad binding: TypeError/RangeError) stays a programming error.
      if ((err instanceof TypeError && !isDbNotOpen(err)) || err instanceof RangeError) throw err;
      if (err instanceof LeashError) throw err;
      throw unavailable(op, err);
    }
  }

  /** Runs one commit with synchronous=FULL: it returns only once it is on disk. */
  #durably<T>(fn: () => T): T {
    if (this.#fsyncAll) return fn();
    // Not a prepared statement: SQLite applies `PRAGMA synchronous` when the statement is
    // compiled, so re-running a prepared one does nothing (and preparing one switches at once).
    this.#db.exec('PRAGMA synchronous = FULL');
    try {
      return fn();
    } finally {
      this.#db.exec('PRAGMA synchronous = NORMAL');
    }
  }
}

/** A serving handle opened on a store with a pending reset. */
class StoreResetAtOpen extends Error {
  constructor(readonly marker: ResetMarker) {
    super(describeReset(marker));
  }
}

/** better-sqlite3 reports a closed connection as a TypeError; that is an outage, not misuse. */
function isDbNotOpen(err: TypeError): boolean {
  return /database connection is not open/i.test(err.message);
}

function prepare(db: Database.Database) {
  return {
    insertTask: db.prepare('INSERT INTO tasks (id, plugins, attributes, created_at, expires_at, created_by, state, ended_at, ended_by, budgets) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)'),
    getTask: db.prepare('SELECT * FROM tasks WHERE id = ?'),
    getAwsDeny: db.prepare('SELECT state FROM aws_denies WHERE role_arn = ?'),
    // OR IGNORE: a row another writer inserted first makes this compare-and-set fail, not throw.
    insertAwsDeny: db.prepare('INSERT OR IGNORE INTO aws_denies (role_arn, state) VALUES (?, ?)'),
    updateAwsDeny: db.prepare('UPDATE aws_denies SET state = ? WHERE role_arn = ? AND state = ?'),
    deleteAwsDeny: db.prepare('DELETE FROM aws_denies WHERE role_arn = ? AND state = ?'),
    listAwsDenies: db.prepare('SELECT role_arn FROM aws_denies ORDER BY role_arn'),
    endTask: db.prepare("UPDATE tasks SET state = 'ended', ended_at = ?, ended_by = ? WHERE id = ? AND state = 'active' RETURNING *"),
    countActive: db.prepare("SELECT count(*) AS n FROM tasks WHERE state = 'active' AND expires_at > ?"),
    insertToken: db.prepare('INSERT INTO issued_tokens (jti, plugin, task, audience, scopes, kind, kid, issued_at, expires_at, jkt) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)'),
    getToken: db.prepare('SELECT * FROM issued_tokens WHERE jti = ?'),
    tokensForTask: db.prepare('SELECT * FROM issued_tokens WHERE task = ? ORDER BY issued_at, jti'),
    expiredActive: db.prepare("SELECT * FROM tasks WHERE state = 'active' AND expires_at <= ? ORDER BY expires_at, id LIMIT ?"),
    liveForPlugin: db.prepare('SELECT * FROM issued_tokens WHERE plugin = ? AND expires_at > ? ORDER BY issued_at, jti'),
    countForTask: db.prepare('SELECT count(*) AS n FROM issued_tokens WHERE task = ?'),
    insertRevocation: db.prepare('INSERT INTO revocations (scope, id, issued_before, revoked_at, keep_until, reason, actor, audiences) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING *'),
    revocationsSince: db.prepare('SELECT * FROM revocations WHERE seq > ? AND keep_until > ? ORDER BY seq LIMIT ?'),
    purgeRevocations: db.prepare('DELETE FROM revocations WHERE keep_until <= ?'),
    suspend: db.prepare('INSERT INTO suspensions (plugin, since, actor, reason) VALUES (?, ?, ?, ?) ON CONFLICT (plugin) DO NOTHING'),
    resume: db.prepare('DELETE FROM suspensions WHERE plugin = ?'),
    listSuspensions: db.prepare('SELECT plugin, since, actor, reason FROM suspensions ORDER BY plugin'),
    increment: db.prepare(
      'INSERT INTO counters (key, window_ms, window_start, expires_at, count) VALUES (?, ?, ?, ?, ?) ON CONFLICT (key, window_ms, window_start) DO UPDATE SET count = count + excluded.count RETURNING count',
    ),
    purgeCounters: db.prepare('DELETE FROM counters WHERE expires_at <= ?'),
    head: db.prepare('SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1'),
    insertAudit: db.prepare('INSERT INTO audit (seq, ts, type, event, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?)'),
    readAudit: db.prepare('SELECT seq, ts, type, event, prev_hash, hash FROM audit WHERE seq >= ? ORDER BY seq LIMIT ?'),
    remember: db.prepare('INSERT INTO replay (key, expires_at) VALUES (@key, @expiresAt) ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at WHERE replay.expires_at <= @now'),
    purgeReplay: db.prepare('DELETE FROM replay WHERE expires_at <= ?'),
    ping: db.prepare('SELECT 1'),
  };
}

function toTask(r: TaskRow): Task {
  return {
    id: r.id,
    plugins: JSON.parse(r.plugins) as string[],
    attributes: JSON.parse(r.attributes) as Record<string, string>,
    createdAt: r.created_at,
    expiresAt: r.expires_at,
    createdBy: r.created_by,
    state: r.state,
    endedAt: r.ended_at ?? undefined,
    endedBy: r.ended_by ?? undefined,
    ...(typeof r.budgets === 'string' ? { budgets: JSON.parse(r.budgets) as TaskBudgets } : {}),
  };
}

function toToken(r: TokenRow): IssuedToken {
  return {
    jti: r.jti,
    plugin: r.plugin,
    task: r.task ?? undefined,
    audience: r.audience,
    scopes: JSON.parse(r.scopes) as string[],
    kind: r.kind,
    kid: r.kid ?? undefined,
    issuedAt: r.issued_at,
    expiresAt: r.expires_at,
    jkt: r.jkt ?? undefined,
  };
}

function toRevocation(r: RevocationRow): Revocation {
  return {
    seq: r.seq,
    scope: r.scope,
    id: r.id,
    issuedBefore: r.issued_before,
    revokedAt: r.revoked_at,
    keepUntil: r.keep_until,
    reason: r.reason,
    actor: r.actor,
    ...(r.audiences === null ? {} : { audiences: JSON.parse(r.audiences) as string[] }),
  };
}

function toAudit(r: AuditRow): AuditRecord {
  return { seq: r.seq, ts: r.ts, type: r.type, event: JSON.parse(r.event) as Record<string, unknown>, prevHash: r.prev_hash, hash: r.hash };
}
