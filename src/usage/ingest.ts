import type { AuditEventType } from '../audit/events.js';
import type { Settings } from '../config/schema.js';
import type { Metrics } from '../metrics/metrics.js';
import type { RevocationService } from '../revocation/revocation-service.js';
import type { IssuedToken, Task } from '../store/records.js';
import type { ReplayCache, TaskStore, TokenIndex } from '../store/store.js';
import type { EvidenceMark, TaskUsageDelta, TaskUsageTotals, TokenUse, UsageAggregate, UsageStore } from '../store/usage-store.js';
import type { Clock } from '../time/clock.js';
import { detectAnomalies, type AnomalyContext } from './anomalies.js';
import type { UsageCall } from './report.js';
import type { RevocationTimes } from './revocation-times.js';
import { innerMap } from './nested-map.js';
import { UsageVolume } from './volume.js';

/** The resource server a batch came from: its id and the audiences it answers for. */
export interface ReportingServer {
  readonly id: string;
  readonly audiences: readonly string[];
}

export interface UsageIngestorDeps {
  readonly store: UsageStore & Pick<TokenIndex, 'getIssued'> & Pick<TaskStore, 'getTask'> & ReplayCache;
  readonly clock: Clock;
  readonly settings: () => Settings;
  readonly revocation: RevocationService;
  readonly revokedAt: RevocationTimes;
  readonly audit: { record(type: AuditEventType, event: Record<string, unknown>): Promise<unknown> };
  readonly metrics: Metrics;
  /** Told every accepted call with its token (audit sinks that take usage records). */
  readonly onCalls?: (server: ReportingServer, calls: readonly UsageCall[], tokens: ReadonlyMap<string, IssuedToken | null>) => void;
  /** Told the totals of every task a batch touched (budgets). */
  readonly onTotals?: (totals: readonly TaskUsageTotals[], tasks: ReadonlyMap<string, Task>) => Promise<void>;
  readonly log?: (msg: string, fields?: Record<string, unknown>) => void;
}

const MINUTE = 60_000;
const DAY = 86_400_000;
/** Issued-token records are immutable: cached by jti (a miss too), bounded. */
const TOKEN_CACHE = 20_000;
/** An active task is re-read after this long (an ended one never changes again). */
const TASK_CACHE_MS = 1000;
/** Introspections waiting to be recorded as use; past it the oldest are dropped and counted. */
const INTROSPECTION_QUEUE = 10_000;

/**
 * Ingests usage reports: aggregates them per jti/route/minute/outcome (the store keeps no
 * row per call), records which sources presented each token, adds to task budget counters
 * and last-used evidence, all in one store write per batch; then looks for anomalies in
 * what the store answered (first use, a second source, use after revocation or task end,
 * another server's token, route drift) and records those, not the calls, as audit events.
 * Nothing here runs on the /token or /introspect path: introspections are queued and
 * ingested in the background.
 */
export class UsageIngestor {
  readonly #d: UsageIngestorDeps;
  readonly #tokens = new Map<string, IssuedToken | null>();
  readonly #tasks = new Map<string, { task: Task | undefined; at: number }>();
  /** The batches of each server waiting for this turn's store write. */
  readonly #pending = new Map<string, PendingGroup>();
  #queue: Array<{ server: ReportingServer; call: UsageCall }> = [];
  #draining: Promise<void> | undefined;
  /** Call aggregates of committed batches, held for the volume write. */
  readonly #volume: UsageVolume;

  constructor(deps: UsageIngestorDeps) {
    this.#d = deps;
    this.#volume = new UsageVolume({ store: deps.store, metrics: deps.metrics, retentionMs: () => deps.settings().usage.retention_days * DAY, log: deps.log });
  }

  /**
   * Ingests a batch already validated (audiences included) from one server. Batches that
   * arrive while a store write is being prepared are coalesced into one (group commit): one
   * store write and one anomaly pass per server per event-loop turn, answered only once the
   * write has committed. Reports of the same tokens aggregate into the same rows, so under
   * load the store work per record falls as the rate grows.
   */
  async ingest(server: ReportingServer, calls: readonly UsageCall[]): Promise<void> {
    if (calls.length === 0) return;
    const started = process.hrtime.bigint();
    const d = this.#d;
    const now = d.clock.now();
    const tokens = await this.#issued(calls);
    const tasks = await this.#tasksOf(calls, tokens, now);
    const group = this.#groupFor(server);
    group.add(calls, tokens, tasks);
    await group.committed;
    d.metrics.usageRecords.inc({ outcome: 'accepted' }, calls.length);
    d.onCalls?.(server, calls, tokens);
    d.metrics.usageBatchDuration.observe(Number(process.hrtime.bigint() - started) / 1e9);
  }

  #groupFor(server: ReportingServer): PendingGroup {
    const open = this.#pending.get(server.id);
    if (open) return open;
    const settings = this.#d.settings();
    const group = new PendingGroup(server, settings, settings.usage.retention_days * DAY);
    this.#pending.set(server.id, group);
    // Every batch parsed within the window (or this turn, for 0) joins before the write starts.
    const write = () => {
      this.#pending.delete(server.id);
      group.settle(this.#commit(group));
    };
    const windowMs = settings.usage.commit_window_ms;
    if (windowMs > 0) setTimeout(write, windowMs);
    else setImmediate(write);
    return group;
  }

  async #commit(g: PendingGroup): Promise<void> {
    const d = this.#d;
    const markList = [...g.marks.values()];
    // The volume (per-minute call counts) can wait for the next volume write; what decides cannot.
    const deferMs = g.settings.usage.flush_interval_ms;
    const aggregates = deferMs > 0 ? [] : g.aggregates;
    const result = await d.store.ingestUsage({ aggregates, uses: g.uses, taskDeltas: g.deltas, marks: markList, retentionMs: g.retentionMs });
    // Only once committed: a batch refused here is retried by its server and must not count twice.
    if (deferMs > 0) this.#volume.add(g.server.id, g.aggregates, g.aggregateKeys, deferMs);
    const ctx: AnomalyContext = { server: g.server, settings: g.settings, now: d.clock.now(), tokens: g.tokens, tasks: g.tasks, retentionMs: g.retentionMs, deps: d };
    await detectAnomalies(ctx, g.useCalls, result.uses, markList, result.previousCalls, g.calls);
    if (result.totals.length > 0) await d.onTotals?.(result.totals, g.tasks);
  }

  /**
   * An introspection is a use of the token by the server that asked (it cannot say which
   * route: `INTROSPECT /introspect`). Queued, never awaited by the caller; a full queue
   * drops the oldest and counts it.
   */
  recordIntrospection(server: ReportingServer, call: UsageCall): void {
    if (this.#queue.length >= INTROSPECTION_QUEUE) {
      this.#queue.shift();
      this.#d.metrics.usageRecords.inc({ outcome: 'dropped' });
    }
    this.#queue.push({ server, call });
    this.#draining ??= new Promise<void>((resolve) => setImmediate(resolve)).then(() => this.#drain()).finally(() => (this.#draining = undefined));
  }

  /** Resolves once every queued introspection has been ingested and the held volume written (tests, shutdown, timeline reads). */
  async idle(): Promise<void> {
    while (this.#draining) await this.#draining;
    await this.#volume.flush();
  }

  async #drain(): Promise<void> {
    while (this.#queue.length > 0) {
      const batch = this.#queue.splice(0, 500);
      const byServer = new Map<string, { server: ReportingServer; calls: UsageCall[] }>();
      for (const { server, call } of batch) {
        const g = byServer.get(server.id) ?? { server, calls: [] };
        g.calls.push(call);
        byServer.set(server.id, g);
      }
      for (const g of byServer.values()) {
        try {
          await this.ingest(g.server, g.calls);
        } catch (err) {
          // Use evidence is best effort here: the introspection itself was answered.
          this.#d.metrics.usageRecords.inc({ outcome: 'dropped' }, g.calls.length);
          this.#d.log?.('recording introspections as use failed', { error: err instanceof Error ? err.message.slice(0, 200) : String(err), records: g.calls.length });
        }
      }
    }
  }

  async #issued(calls: readonly UsageCall[]): Promise<Map<string, IssuedToken | null>> {
    const out = new Map<string, IssuedToken | null>();
    let last: string | undefined;
    for (const c of calls) {
      // A batch often reports one token's calls one after another: the same jti is looked up once.
      if (c.jti === undefined || c.jti === last) continue;
      last = c.jti;
      let t = this.#tokens.get(c.jti);
      if (t === undefined) {
        t = (await this.#d.store.getIssued(c.jti)) ?? null;
        if (this.#tokens.size >= TOKEN_CACHE) this.#tokens.delete(this.#tokens.keys().next().value as string);
        this.#tokens.set(c.jti, t);
      }
      out.set(c.jti, t);
    }
    return out;
  }

  async #tasksOf(calls: readonly UsageCall[], tokens: ReadonlyMap<string, IssuedToken | null>, now: number): Promise<Map<string, Task>> {
    const ids = new Set<string>();
    for (const c of calls) {
      const t = c.jti === undefined ? undefined : tokens.get(c.jti)?.task;
      if (t !== undefined) ids.add(t);
      if (c.task !== undefined) ids.add(c.task);
    }
    const out = new Map<string, Task>();
    for (const id of ids) {
      const cached = this.#tasks.get(id);
      let task: Task | undefined;
      if (cached && (cached.task?.state === 'ended' || now - cached.at < TASK_CACHE_MS)) task = cached.task;
      else {
        task = await this.#d.store.getTask(id);
        if (this.#tasks.size >= TOKEN_CACHE) this.#tasks.delete(this.#tasks.keys().next().value as string);
        this.#tasks.set(id, { task, at: now });
      }
      if (task) out.set(id, task);
    }
    return out;
  }
}

/**
 * Who presented the token: the DPoP key for a sender-constrained token (a bound token's
 * holder is whoever has the key), else the caller's address as the server saw it.
 */
export function sourceOf(issued: IssuedToken, call: UsageCall): string {
  if (issued.jkt !== undefined) return call.jkt !== undefined ? `jkt:${call.jkt}` : '';
  if (call.jkt !== undefined) return `jkt:${call.jkt}`;
  return call.source !== undefined ? `addr:${call.source}` : '';
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

/**
 * The batches of one server coalesced for one store write: aggregates per
 * minute/task/jti/route/outcome, one use per (token, source, outcome, task, key), task budget
 * deltas and last-used evidence. Accumulators are mutated in place: `add` runs once per
 * reported call.
 */
class PendingGroup {
  readonly aggregates: Mutable<UsageAggregate>[] = [];
  /** Per aggregate, its key within its token (or, for an unknown token, its whole key): the volume reuses it. */
  readonly aggregateKeys: string[] = [];
  readonly uses: TokenUse[] = [];
  readonly useCalls: UsageCall[] = [];
  readonly calls: UsageCall[] = [];
  readonly deltas: Mutable<TaskUsageDelta>[] = [];
  /** task → audience → its delta in `deltas`. */
  readonly #deltas = new Map<string, Map<string, Mutable<TaskUsageDelta>>>();
  readonly marks = new Map<string, Mutable<EvidenceMark>>();
  readonly tokens = new Map<string, IssuedToken | null>();
  readonly tasks = new Map<string, Task>();
  /** Per-token accumulators of this group, keyed by the (cached, shared) token record. */
  readonly #slots = new Map<IssuedToken, TokenSlot>();
  /** Aggregates of calls whose token Leash does not know. */
  readonly #unknown = new Map<string, Mutable<UsageAggregate>>();
  /** plugin → audience → the marks of the plugin at the audience. */
  readonly #markSlots = new Map<string, Map<string, MarkSlot>>();
  readonly committed: Promise<void>;
  #settle!: (outcome: Promise<void>) => void;

  constructor(
    readonly server: ReportingServer,
    readonly settings: Settings,
    readonly retentionMs: number,
  ) {
    this.committed = new Promise<void>((resolve) => (this.#settle = resolve));
  }

  /** Resolves (or rejects) every batch of the group with the write's outcome. */
  settle(outcome: Promise<void>): void {
    this.#settle(outcome);
  }

  add(calls: readonly UsageCall[], tokens: ReadonlyMap<string, IssuedToken | null>, tasks: ReadonlyMap<string, Task>): void {
    for (const [k, v] of tokens) this.tokens.set(k, v);
    for (const [k, v] of tasks) this.tasks.set(k, v);
    for (const call of calls) {
      this.calls.push(call);
      const issued = call.jti === undefined ? undefined : (tokens.get(call.jti) ?? undefined);
      if (!issued) {
        this.#addUnknown(call);
        continue;
      }
      const slot = this.#slotOf(issued);
      const minute = call.at - (call.at % MINUTE);
      // Consecutive calls of a token nearly always share their row: compared field by field, no key built.
      let a = slot.last;
      if (
        a !== undefined &&
        a.minute === minute &&
        a.route === call.route &&
        a.method === call.method &&
        a.outcome === call.outcome &&
        a.audience === call.audience &&
        (issued.task !== undefined || a.task === (call.task ?? ''))
      ) {
        accumulate(a, call);
      } else {
        // The token fixes jti, plugin and (usually) task: the per-token key holds only what varies.
        const key =
          issued.task === undefined
            ? `${minute}\u001f${call.audience}\u001f${call.method}\u001f${call.route}\u001f${call.outcome}\u001f${call.task ?? ''}`
            : `${minute}\u001f${call.audience}\u001f${call.method}\u001f${call.route}\u001f${call.outcome}`;
        // Most tokens have one row per group: the map exists only once a second one appears.
        let rows = slot.aggregates;
        if (!rows && a !== undefined) slot.aggregates = rows = new Map([[slot.lastKey, a]]);
        a = rows?.get(key);
        if (a) accumulate(a, call);
        else {
          a = newAggregate(call, minute, issued.jti, issued.plugin, issued.task ?? call.task ?? '', this.server.id);
          rows?.set(key, a);
          this.aggregates.push(a);
          this.aggregateKeys.push(key);
        }
        slot.last = a;
        slot.lastKey = key;
      }
      // Every presentation of a known token counts as a use, refused or not: a dead token tried
      // is evidence too. One per (token, source, outcome, task) per write is enough for the
      // store's answer (first use, new source) and for the anomalies, which are per token.
      const lu = slot.lastUse;
      if (lu === undefined || lu.source !== call.source || lu.jkt !== call.jkt || lu.outcome !== call.outcome || lu.task !== call.task) {
        const source = sourceOf(issued, call);
        // The first use needs no key; the set of keys exists only once a second kind of use appears.
        let seen = slot.uses;
        if (!seen && lu !== undefined) slot.uses = seen = new Set([useKeyOf(sourceOf(issued, lu), lu)]);
        const useKey = seen ? useKeyOf(source, call) : '';
        if (!seen?.has(useKey)) {
          seen?.add(useKey);
          this.uses.push({ jti: issued.jti, source, at: call.at, keepUntil: issued.expiresAt + this.retentionMs });
          this.useCalls.push(call);
        }
        slot.lastUse = call;
      }
      if (call.outcome !== 'ok' || issued.task === undefined) continue;
      let delta = slot.deltaAudience === call.audience ? slot.delta : undefined;
      if (!delta) {
        delta = this.#deltaOf(issued, issued.task, call.audience, tasks);
        slot.deltaAudience = call.audience;
        slot.delta = delta;
      }
      // A call already charged synchronously still brings its bytes.
      delta.calls += call.charged ? 0 : 1;
      delta.bytes += call.bytes;
      const marks = slot.marks;
      marks.grant ??= this.#markOf(issued, 'grant', '');
      touch(marks.grant, call.at);
      let route = slot.lastRouteMark !== undefined && slot.lastRoute === call.route && slot.lastMethod === call.method ? slot.lastRouteMark : undefined;
      if (!route) {
        const byRoute = innerMap(marks.routes, call.method);
        route = byRoute.get(call.route);
        if (!route) byRoute.set(call.route, (route = this.#markOf(issued, 'route', `${call.method} ${call.route}`)));
        slot.lastMethod = call.method;
        slot.lastRoute = call.route;
        slot.lastRouteMark = route;
      }
      touch(route, call.at);
      // Only scopes the token carries count: a server cannot make a plugin look like it used more.
      for (const sc of call.scopes) {
        if (!issued.scopes.includes(sc)) continue;
        marks.scopes ??= new Map();
        let mark = marks.scopes.get(sc);
        if (!mark) marks.scopes.set(sc, (mark = this.#markOf(issued, 'scope', sc)));
        touch(mark, call.at);
      }
    }
  }

  /** A call with an unknown token (or none): aggregated by everything it says, nothing else. */
  #addUnknown(call: UsageCall): void {
    const minute = call.at - (call.at % MINUTE);
    const task = call.task ?? '';
    const key = `${minute}\u001f${task}\u001f${call.jti ?? ''}\u001f${call.audience}\u001f${call.method}\u001f${call.route}\u001f${call.outcome}`;
    const a = this.#unknown.get(key);
    if (a) {
      accumulate(a, call);
      if (!a.plugin && call.plugin !== undefined) a.plugin = call.plugin;
    } else {
      const fresh = newAggregate(call, minute, call.jti ?? '', call.plugin ?? '', task, this.server.id);
      this.#unknown.set(key, fresh);
      this.aggregates.push(fresh);
      this.aggregateKeys.push(`?${key}`);
    }
  }

  #slotOf(issued: IssuedToken): TokenSlot {
    let slot = this.#slots.get(issued);
    if (!slot)
      this.#slots.set(
        issued,
        (slot = {
          aggregates: undefined,
          last: undefined,
          lastKey: '',
          uses: undefined,
          lastUse: undefined,
          deltaAudience: undefined,
          delta: undefined,
          marks: this.#marksOf(issued),
          lastMethod: '',
          lastRoute: '',
          lastRouteMark: undefined,
        }),
      );
    return slot;
  }

  /** Evidence marks are per plugin and audience: every token of the plugin at the audience shares one slot. */
  #marksOf(issued: IssuedToken): MarkSlot {
    // Two lookups by strings the token record already holds (their hashes cached), no key built.
    const byAudience = innerMap(this.#markSlots, issued.plugin);
    let m = byAudience.get(issued.audience);
    if (!m) byAudience.set(issued.audience, (m = { grant: undefined, routes: new Map(), scopes: undefined }));
    return m;
  }

  /** One delta per (task, audience) in the group, shared by every token of the task. */
  #deltaOf(issued: IssuedToken, task: string, audience: string, tasks: ReadonlyMap<string, Task>): Mutable<TaskUsageDelta> {
    // Looked up by task, then audience: no key string built per token and group.
    const byAudience = innerMap(this.#deltas, task);
    let d = byAudience.get(audience);
    if (!d) {
      const t = tasks.get(task);
      const keepUntil = Math.max(t?.expiresAt ?? issued.expiresAt, issued.expiresAt) + this.retentionMs;
      byAudience.set(audience, (d = { task, audience, calls: 0, bytes: 0, keepUntil }));
      this.deltas.push(d);
    }
    return d;
  }

  /** One mark per (plugin, audience, kind, name) in the group, shared by the plugin's tokens. */
  #markOf(issued: IssuedToken, kind: EvidenceMark['kind'], name: string): Mutable<EvidenceMark> {
    const mk = `${kind}\u001f${name}\u001f${issued.audience}\u001f${issued.plugin}`;
    let m = this.marks.get(mk);
    if (!m) this.marks.set(mk, (m = { plugin: issued.plugin, audience: issued.audience, kind, name, at: 0, calls: 0 }));
    return m;
  }
}

/** What one token's calls accumulate into within a group; its lookups use short keys. */
interface TokenSlot {
  /** Undefined while the token has one row in the group (`last`). */
  aggregates: Map<string, Mutable<UsageAggregate>> | undefined;
  /** The aggregate of the token's last call, and its key. */
  last: Mutable<UsageAggregate> | undefined;
  lastKey: string;
  /** Undefined while the token has one use in the group (`lastUse`). */
  uses: Set<string> | undefined;
  /** The token's last call counted as a use: a call like it adds no use. */
  lastUse: UsageCall | undefined;
  /** The task delta of the audience last seen (a token is nearly always used at one). */
  deltaAudience: string | undefined;
  delta: Mutable<TaskUsageDelta> | undefined;
  readonly marks: MarkSlot;
  /** The route mark of the token's last call. */
  lastMethod: string;
  lastRoute: string;
  lastRouteMark: Mutable<EvidenceMark> | undefined;
}

/** The evidence marks of one plugin at one audience within a group, looked up by short keys. */
interface MarkSlot {
  grant: Mutable<EvidenceMark> | undefined;
  readonly routes: Map<string, Map<string, Mutable<EvidenceMark>>>;
  scopes: Map<string, Mutable<EvidenceMark>> | undefined;
}

function newAggregate(call: UsageCall, minute: number, jti: string, plugin: string, task: string, server: string): Mutable<UsageAggregate> {
  return {
    minute,
    jti,
    plugin,
    task,
    server,
    audience: call.audience,
    method: call.method,
    route: call.route,
    outcome: call.outcome,
    calls: 1,
    errors: call.status >= 400 ? 1 : 0,
    bytes: call.bytes,
    durationMs: call.durationMs,
    maxDurationMs: call.durationMs,
    firstAt: call.at,
    lastAt: call.at,
  };
}

/** What makes two presentations of one token different uses. */
function useKeyOf(source: string, call: UsageCall): string {
  return `${source}\u001f${call.outcome}\u001f${call.task ?? ''}\u001f${call.jkt ?? ''}`;
}

function accumulate(a: Mutable<UsageAggregate>, call: UsageCall): void {
  a.calls += 1;
  if (call.status >= 400) a.errors += 1;
  a.bytes += call.bytes;
  a.durationMs += call.durationMs;
  if (call.durationMs > a.maxDurationMs) a.maxDurationMs = call.durationMs;
  if (call.at < a.firstAt) a.firstAt = call.at;
  if (call.at > a.lastAt) a.lastAt = call.at;
}

function touch(m: Mutable<EvidenceMark>, at: number): void {
  m.calls += 1;
  if (at > m.at) m.at = at;
}
