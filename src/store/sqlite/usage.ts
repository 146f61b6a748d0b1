import type Database from 'better-sqlite3';
import {
  ALL_AUDIENCES,
  MAX_TOKEN_SOURCES,
  type ChargeLimits,
  type CredentialLink,
  type CredentialLinkKind,
  type DownstreamEvent,
  type EvidenceKind,
  type EvidenceRow,
  type TaskEventRef,
  type TaskUsageTotals,
  type TokenUseResult,
  type UsageAggregate,
  type UsageBatch,
  type UsageBatchResult,
  type UsageOutcome,
  type UsageStore,
} from '../usage-store.js';
import { KnownSources } from '../shared/known-sources.js';

/*
 * The usage tables of the SQLite store. A batch is one IMMEDIATE transaction, so a token's
 * sources and a task's counters are read and written under the write lock: two processes on
 * the file cannot both see a source as new, or both charge the last call of a budget.
 * Usage rows are not fsynced one by one (they are volume, not decisions): a crash can lose
 * the last commits of the WAL, never half a batch.
 */

type Run = <T>(op: string, fn: () => T) => T;

type MinuteRow = {
  minute: number;
  task: string;
  jti: string;
  server: string;
  audience: string;
  method: string;
  route: string;
  outcome: UsageOutcome;
  plugin: string;
  calls: number;
  errors: number;
  bytes: number;
  duration_ms: number;
  max_duration_ms: number;
  first_at: number;
  last_at: number;
};

type DownstreamRow = {
  id: string;
  source: 'cloudtrail' | 'vault';
  at: number;
  task: string;
  plugin: string;
  jti: string;
  action: string;
  target: string;
  outcome: 'success' | 'failure';
  principal: string;
  link: string;
  source_address: string;
};

function prepare(db: Database.Database) {
  return {
    addMinute: db.prepare(
      `INSERT INTO usage_minutes (minute, task, jti, server, audience, method, route, outcome, plugin, calls, errors, bytes, duration_ms, max_duration_ms, first_at, last_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (task, minute, jti, server, audience, method, route, outcome) DO UPDATE SET
         calls = calls + excluded.calls, errors = errors + excluded.errors, bytes = bytes + excluded.bytes,
         duration_ms = duration_ms + excluded.duration_ms, max_duration_ms = max(max_duration_ms, excluded.max_duration_ms),
         first_at = min(first_at, excluded.first_at), last_at = max(last_at, excluded.last_at),
         plugin = CASE WHEN plugin = '' THEN excluded.plugin ELSE plugin END`,
    ),
    getToken: db.prepare('SELECT sources FROM usage_tokens WHERE jti = ?').pluck(),
    insertToken: db.prepare('INSERT INTO usage_tokens (jti, first_at, sources, keep_until) VALUES (?, ?, ?, ?)'),
    updateToken: db.prepare('UPDATE usage_tokens SET sources = ?, keep_until = max(keep_until, ?) WHERE jti = ?'),
    // Moved by every change to recorded sources (a source added, rows purged): see KnownSources.
    sourcesVersion: db.prepare('SELECT v FROM usage_sources_version WHERE id = 0').pluck(),
    bumpSources: db.prepare('UPDATE usage_sources_version SET v = v + 1 WHERE id = 0 RETURNING v').pluck(),
    addTotals: db.prepare(
      `INSERT INTO usage_task_totals (task, audience, calls, bytes, exhausted_at, keep_until) VALUES (?, ?, ?, ?, NULL, ?)
       ON CONFLICT (task, audience) DO UPDATE SET calls = calls + excluded.calls, bytes = bytes + excluded.bytes, keep_until = max(keep_until, excluded.keep_until)`,
    ),
    addTotalsReturning: db.prepare(
      `INSERT INTO usage_task_totals (task, audience, calls, bytes, exhausted_at, keep_until) VALUES (?, ?, ?, ?, NULL, ?)
       ON CONFLICT (task, audience) DO UPDATE SET calls = calls + excluded.calls, bytes = bytes + excluded.bytes, keep_until = max(keep_until, excluded.keep_until)
       RETURNING task, audience, calls, bytes`,
    ),
    getTotal: db.prepare('SELECT task, audience, calls, bytes FROM usage_task_totals WHERE task = ? AND audience = ?'),
    totalsOfTask: db.prepare('SELECT task, audience, calls, bytes FROM usage_task_totals WHERE task = ? ORDER BY audience'),
    exhaust: db.prepare(
      `INSERT INTO usage_task_totals (task, audience, calls, bytes, exhausted_at, keep_until) VALUES (?, ?, 0, 0, ?, ?)
       ON CONFLICT (task, audience) DO UPDATE SET exhausted_at = excluded.exhausted_at, keep_until = max(keep_until, excluded.keep_until) WHERE exhausted_at IS NULL`,
    ),
    exhaustions: db.prepare('SELECT audience, exhausted_at FROM usage_task_totals WHERE task = ? AND exhausted_at IS NOT NULL'),
    // Answers the count after the write: the count before is that minus the mark's calls.
    addMark: db
      .prepare(
        `INSERT INTO usage_evidence (plugin, audience, kind, name, first_at, last_at, calls) VALUES (?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (plugin, audience, kind, name) DO UPDATE SET first_at = min(first_at, excluded.first_at), last_at = max(last_at, excluded.last_at), calls = calls + excluded.calls
       RETURNING calls`,
      )
      .pluck(),
    evidenceAll: db.prepare('SELECT * FROM usage_evidence WHERE last_at > ? ORDER BY plugin, audience, kind, name'),
    evidenceOf: db.prepare('SELECT * FROM usage_evidence WHERE plugin = ? AND last_at > ? ORDER BY audience, kind, name'),
    taskUsage: db.prepare('SELECT * FROM usage_minutes WHERE task = ? ORDER BY minute, jti, route, outcome LIMIT ?'),
    addTaskEvent: db.prepare('INSERT INTO task_events (task, seq, ts, type, keep_until) VALUES (?, ?, ?, ?, ?) ON CONFLICT (task, seq) DO NOTHING'),
    taskEvents: db.prepare('SELECT task, seq, ts, type FROM task_events WHERE task = ? ORDER BY seq LIMIT ?'),
    addDownstream: db.prepare(
      `INSERT INTO downstream_events (id, source, at, task, plugin, jti, action, target, outcome, principal, link, source_address, keep_until)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`,
    ),
    taskDownstream: db.prepare('SELECT * FROM downstream_events WHERE task = ? ORDER BY at, id LIMIT ?'),
    pluginDownstream: db.prepare('SELECT * FROM downstream_events WHERE plugin = ? AND at >= ? ORDER BY at DESC, id LIMIT ?'),
    purgeMinutes: db.prepare('DELETE FROM usage_minutes WHERE minute < ?'),
    purgeTokens: db.prepare('DELETE FROM usage_tokens WHERE keep_until <= ?'),
    purgeTotals: db.prepare('DELETE FROM usage_task_totals WHERE keep_until <= ?'),
    purgeEvidence: db.prepare('DELETE FROM usage_evidence WHERE last_at <= ?'),
    purgeTaskEvents: db.prepare('DELETE FROM task_events WHERE keep_until <= ?'),
    purgeDownstream: db.prepare('DELETE FROM downstream_events WHERE keep_until <= ?'),
    addLink: db.prepare('INSERT INTO credential_links (kind, id, jti, plugin, task, keep_until) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (kind, id) DO NOTHING'),
    links: db.prepare('SELECT kind, id, jti, plugin, task FROM credential_links WHERE kind = ? AND id IN (SELECT value FROM json_each(?)) ORDER BY id'),
    purgeLinks: db.prepare('DELETE FROM credential_links WHERE keep_until <= ?'),
  };
}

/** The usage role over one SQLite handle, unchecked (CheckedStore checks the arguments); `run` is the store's error boundary (fail closed). */
export class SqliteUsage implements UsageStore {
  readonly #s: ReturnType<typeof prepare>;
  readonly #run: Run;
  readonly #known = new KnownSources();
  readonly #ingestTx: (b: UsageBatch) => UsageBatchResult;
  readonly #purgeTokensTx: (now: number) => number;
  readonly #chargeTx: (task: string, audience: string, calls: number, limits: ChargeLimits, keepUntil: number) => { charged: boolean; totals: TaskUsageTotals[] };
  // Writes of several rows, each one transaction: one commit for the lot (not one per row), all or nothing.
  readonly #indexTx: (refs: readonly TaskEventRef[], keepUntil: number) => void;
  readonly #downstreamTx: (events: readonly DownstreamEvent[], keepUntil: number) => number;
  readonly #linkTx: (links: readonly CredentialLink[], keepUntil: number) => void;

  constructor(db: Database.Database, run: Run) {
    const s = (this.#s = prepare(db));
    this.#run = run;
    const known = this.#known;
    // A write that failed after it began may have taught `known` what rolled back: forget it
    // all (always safe). One refused at BEGIN (the lock was busy; run() tries again) taught nothing.
    const forgetting = <A extends unknown[], T>(fn: (...args: A) => T) => {
      let began = false;
      const tx = db.transaction((...args: A): T => {
        began = true;
        return fn(...args);
      });
      return (...args: A): T => {
        began = false;
        try {
          return tx.immediate(...args);
        } catch (err) {
          if (began) known.forget();
          throw err;
        }
      };
    };
    // What the batch learns is remembered as it goes: a later use in the batch sees it.
    this.#ingestTx = forgetting((b: UsageBatch) => ingest(s, b, known));
    this.#purgeTokensTx = forgetting((now: number) => {
      const n = s.purgeTokens.run(now).changes;
      // A forgotten token may come back with other sources: every process starts remembering afresh.
      if (n > 0) {
        known.forget();
        known.version = s.bumpSources.get() as number;
      }
      return n;
    });
    const immediate = <A extends unknown[], T>(fn: (...args: A) => T): ((...args: A) => T) => {
      const tx = db.transaction(fn);
      return tx.immediate.bind(tx) as (...args: A) => T;
    };
    this.#chargeTx = immediate((task: string, audience: string, calls: number, limits: ChargeLimits, keepUntil: number) => {
      const before = [s.getTotal.get(task, ALL_AUDIENCES), s.getTotal.get(task, audience)] as Array<TaskUsageTotals | undefined>;
      const total = before[0]?.calls ?? 0;
      const ofAudience = before[1]?.calls ?? 0;
      const fits = (limits.totalCalls === undefined || total + calls <= limits.totalCalls) && (limits.audienceCalls === undefined || ofAudience + calls <= limits.audienceCalls);
      if (fits) {
        s.addTotals.run(task, audience, calls, 0, keepUntil);
        s.addTotals.run(task, ALL_AUDIENCES, calls, 0, keepUntil);
      }
      const totals = [s.getTotal.get(task, audience), s.getTotal.get(task, ALL_AUDIENCES)].filter((t): t is TaskUsageTotals => t !== undefined);
      return { charged: fits, totals };
    });
    this.#indexTx = immediate((refs: readonly TaskEventRef[], keepUntil: number) => {
      for (const r of refs) s.addTaskEvent.run(r.task, r.seq, r.ts, r.type, keepUntil);
    });
    this.#downstreamTx = immediate((events: readonly DownstreamEvent[], keepUntil: number) => {
      let added = 0;
      for (const e of events) added += s.addDownstream.run(e.id, e.source, e.at, e.task, e.plugin, e.jti, e.action, e.target, e.outcome, e.principal, e.link, e.sourceAddress, keepUntil).changes;
      return added;
    });
    this.#linkTx = immediate((links: readonly CredentialLink[], keepUntil: number) => {
      for (const l of links) s.addLink.run(l.kind, l.id, l.jti, l.plugin, l.task, keepUntil);
    });
  }

  async ingestUsage(batch: UsageBatch): Promise<UsageBatchResult> {
    return this.#run('ingestUsage', () => this.#ingestTx(batch));
  }

  async chargeTaskUsage(task: string, audience: string, calls: number, limits: ChargeLimits, keepUntil: number): Promise<{ charged: boolean; totals: readonly TaskUsageTotals[] }> {
    return this.#run('chargeTaskUsage', () => this.#chargeTx(task, audience, calls, limits, keepUntil));
  }

  async taskUsageTotals(task: string): Promise<TaskUsageTotals[]> {
    return this.#run('taskUsageTotals', () => this.#s.totalsOfTask.all(task) as TaskUsageTotals[]);
  }

  async markBudgetExhausted(task: string, audience: string, at: number, keepUntil: number): Promise<boolean> {
    return this.#run('markBudgetExhausted', () => this.#s.exhaust.run(task, audience, at, keepUntil).changes === 1);
  }

  async budgetExhaustions(task: string): Promise<Record<string, number>> {
    const rows = this.#run('budgetExhaustions', () => this.#s.exhaustions.all(task) as { audience: string; exhausted_at: number }[]);
    return Object.fromEntries(rows.map((r) => [r.audience, r.exhausted_at]));
  }

  async listTaskUsage(task: string, limit: number): Promise<UsageAggregate[]> {
    return this.#run('listTaskUsage', () => (this.#s.taskUsage.all(task, limit) as MinuteRow[]).map(toAggregate));
  }

  async usageEvidence(filter: { readonly plugin?: string; readonly now: number; readonly retentionMs: number }): Promise<EvidenceRow[]> {
    const after = filter.now - filter.retentionMs;
    type Row = { plugin: string; audience: string; kind: EvidenceKind; name: string; first_at: number; last_at: number; calls: number };
    const rows = this.#run('usageEvidence', () => (filter.plugin === undefined ? this.#s.evidenceAll.all(after) : this.#s.evidenceOf.all(filter.plugin, after)) as Row[]);
    return rows.map((r) => ({ plugin: r.plugin, audience: r.audience, kind: r.kind, name: r.name, firstAt: r.first_at, lastAt: r.last_at, calls: r.calls }));
  }

  async indexTaskEvents(refs: readonly TaskEventRef[], keepUntil: number): Promise<void> {
    if (refs.length === 0) return;
    this.#run('indexTaskEvents', () => this.#indexTx(refs, keepUntil));
  }

  async listTaskEvents(task: string, limit: number): Promise<TaskEventRef[]> {
    return this.#run('listTaskEvents', () => this.#s.taskEvents.all(task, limit) as TaskEventRef[]);
  }

  async recordDownstream(events: readonly DownstreamEvent[], keepUntil: number): Promise<number> {
    return this.#run('recordDownstream', () => this.#downstreamTx(events, keepUntil));
  }

  async listTaskDownstream(task: string, limit: number): Promise<DownstreamEvent[]> {
    return this.#run('listTaskDownstream', () => (this.#s.taskDownstream.all(task, limit) as DownstreamRow[]).map(toDownstream));
  }

  async listPluginDownstream(plugin: string, since: number, limit: number): Promise<DownstreamEvent[]> {
    return this.#run('listPluginDownstream', () => (this.#s.pluginDownstream.all(plugin, since, limit) as DownstreamRow[]).map(toDownstream));
  }

  async linkCredentials(links: readonly CredentialLink[], keepUntil: number): Promise<void> {
    this.#run('linkCredentials', () => this.#linkTx(links, keepUntil));
  }

  async resolveCredentialLinks(kind: CredentialLinkKind, ids: readonly string[]): Promise<CredentialLink[]> {
    return this.#run('resolveCredentialLinks', () => (ids.length === 0 ? [] : (this.#s.links.all(kind, JSON.stringify(ids)) as CredentialLink[])));
  }

  async purgeUsage(now: number, retentionMs: number): Promise<number> {
    const s = this.#s;
    return this.#run('purgeUsage', () => {
      const tokens = this.#purgeTokensTx(now);
      return (
        tokens +
        s.purgeMinutes.run(now - retentionMs).changes +
        s.purgeTotals.run(now).changes +
        s.purgeEvidence.run(now - retentionMs).changes +
        s.purgeTaskEvents.run(now).changes +
        s.purgeDownstream.run(now).changes +
        s.purgeLinks.run(now).changes
      );
    });
  }
}

// Within a batch the write lock is held, so what the batch learns is true until it commits (a rollback forgets all).
function ingest(s: ReturnType<typeof prepare>, b: UsageBatch, known: KnownSources): UsageBatchResult {
  // Positional: binding by name looks every parameter up on the object, per row.
  for (const a of b.aggregates)
    s.addMinute.run(a.minute, a.task, a.jti, a.server, a.audience, a.method, a.route, a.outcome, a.plugin, a.calls, a.errors, a.bytes, a.durationMs, a.maxDurationMs, a.firstAt, a.lastAt);
  const uses: TokenUseResult[] = [];
  if (b.uses.length > 0) {
    // One single-row read per batch: has another process changed recorded sources since this one learned them?
    const version = s.sourcesVersion.get() as number;
    if (version !== known.version) {
      known.forget();
      known.version = version;
    }
  }
  for (const u of b.uses) {
    const n = known.countIfKnown(u.jti, u.source, u.at);
    if (n !== undefined) {
      uses.push({ jti: u.jti, first: false, newSource: false, sources: n });
      continue;
    }
    const row = s.getToken.get(u.jti) as string | undefined;
    if (row === undefined) {
      const sources = u.source === '' ? [] : [u.source];
      s.insertToken.run(u.jti, u.at, JSON.stringify(sources), u.keepUntil);
      uses.push({ jti: u.jti, first: true, newSource: false, sources: sources.length });
      known.learn(u.jti, sources, sources.length, u.keepUntil, true, false);
      continue;
    }
    const sources = JSON.parse(row) as string[];
    // Past the cap a source is neither remembered nor reported again: enough evidence, bounded.
    const isNew = u.source !== '' && !sources.includes(u.source) && sources.length < MAX_TOKEN_SOURCES;
    const newSource = isNew && sources.length > 0;
    if (isNew) {
      sources.push(u.source);
      s.updateToken.run(JSON.stringify(sources), u.keepUntil, u.jti);
      // Under the write lock: nobody else moved the version since it was read.
      known.version = s.bumpSources.get() as number;
    }
    uses.push({ jti: u.jti, first: false, newSource, sources: sources.length });
    known.learn(u.jti, sources, sources.length, u.keepUntil, false, sources.length >= MAX_TOKEN_SOURCES);
  }
  // Upserts answer the totals after them: the last answer per (task, audience) is the batch's.
  const touched = new Map<string, TaskUsageTotals>();
  for (const d of b.taskDeltas) {
    touched.set(`${d.task}\u001f${d.audience}`, s.addTotalsReturning.get(d.task, d.audience, d.calls, d.bytes, d.keepUntil) as TaskUsageTotals);
    touched.set(`${d.task}\u001f${ALL_AUDIENCES}`, s.addTotalsReturning.get(d.task, ALL_AUDIENCES, d.calls, d.bytes, d.keepUntil) as TaskUsageTotals);
  }
  const previousCalls: number[] = [];
  for (const m of b.marks) previousCalls.push((s.addMark.get(m.plugin, m.audience, m.kind, m.name, m.at, m.at, m.calls) as number) - m.calls);
  return { uses, totals: [...touched.values()], previousCalls };
}

function toAggregate(r: MinuteRow): UsageAggregate {
  return {
    minute: r.minute,
    jti: r.jti,
    plugin: r.plugin,
    task: r.task,
    server: r.server,
    audience: r.audience,
    method: r.method,
    route: r.route,
    outcome: r.outcome,
    calls: r.calls,
    errors: r.errors,
    bytes: r.bytes,
    durationMs: r.duration_ms,
    maxDurationMs: r.max_duration_ms,
    firstAt: r.first_at,
    lastAt: r.last_at,
  };
}

function toDownstream(r: DownstreamRow): DownstreamEvent {
  return {
    id: r.id,
    source: r.source,
    at: r.at,
    task: r.task,
    plugin: r.plugin,
    jti: r.jti,
    action: r.action,
    target: r.target,
    outcome: r.outcome,
    principal: r.principal,
    link: r.link,
    sourceAddress: r.source_address,
  };
}
