import type { Metrics } from '../metrics/metrics.js';
import type { UsageAggregate, UsageStore } from '../store/usage-store.js';
import { innerMap } from './nested-map.js';

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

export interface UsageVolumeDeps {
  readonly store: Pick<UsageStore, 'ingestUsage'>;
  readonly metrics: Pick<Metrics, 'usageRecords'>;
  /** How long aggregates are kept (ms), read at each write. */
  readonly retentionMs: () => number;
  readonly log?: (msg: string, fields?: Record<string, unknown>) => void;
}

/** Rows held for the next write; reaching it writes at once. */
const MAX_ROWS = 50_000;
/** After a failed write, the next try waits at least this long. */
const RETRY_MS = 1000;

/**
 * The volume of usage: per-minute call aggregates of committed batches, held in memory and
 * written together (settings.usage.flush_interval_ms), one row per token, route, minute
 * and outcome however many batches reported them. With thousands of live tokens each
 * commit window would otherwise write every report's row again. Nothing that decides is
 * held here (first uses, sources, budget counters, evidence are written before a batch is
 * answered): a crash loses at most one interval of call counts.
 */
export class UsageVolume {
  readonly #d: UsageVolumeDeps;
  #held: Held = new Map();
  #rows = 0;
  #timer: NodeJS.Timeout | undefined;
  #writing: Promise<void> | undefined;

  constructor(deps: UsageVolumeDeps) {
    this.#d = deps;
  }

  /**
   * Holds a committed group's aggregates; `keys[i]` is the key the group built for
   * `aggregates[i]` within its token (its hash already computed). The aggregate objects
   * are not used by the group after its commit, so the first of a row is kept as is.
   */
  add(server: string, aggregates: readonly Mutable<UsageAggregate>[], keys: readonly string[], flushMs: number): void {
    let dropped = 0;
    for (let i = 0; i < aggregates.length; i++) {
      // Full: written at once (the swap is synchronous unless a write is still running).
      if (this.#rows >= MAX_ROWS) void this.flush();
      if (!this.#hold(server, keys[i]!, aggregates[i]!)) dropped += aggregates[i]!.calls;
    }
    if (dropped > 0) this.#d.metrics.usageRecords.inc({ outcome: 'dropped' }, dropped);
    this.#schedule(flushMs);
  }

  /**
   * Writes what is held. One write at a time; a failed write keeps its rows for the next
   * one, up to MAX_ROWS, past which the calls are dropped and counted.
   */
  async flush(): Promise<void> {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    while (this.#writing) await this.#writing;
    if (this.#rows === 0) return;
    const held = this.#held;
    this.#held = new Map();
    this.#rows = 0;
    this.#writing = this.#write(held).finally(() => (this.#writing = undefined));
    await this.#writing;
  }

  #hold(server: string, key: string, a: Mutable<UsageAggregate>): boolean {
    const byJti = innerMap(this.#held, server);
    const t = byJti.get(a.jti);
    if (!t) {
      if (this.#rows >= MAX_ROWS) return false;
      byJti.set(a.jti, { last: a, lastKey: key, rows: undefined });
      this.#rows++;
      return true;
    }
    // A token's reports nearly always fall in the row of its last one: no map until a second row.
    if (t.lastKey === key) {
      addAggregate(t.last, a);
      return true;
    }
    const rows = (t.rows ??= new Map([[t.lastKey, t.last]]));
    let h = rows.get(key);
    if (h) addAggregate(h, a);
    else {
      if (this.#rows >= MAX_ROWS) return false;
      rows.set(key, (h = a));
      this.#rows++;
    }
    t.last = h;
    t.lastKey = key;
    return true;
  }

  #schedule(flushMs: number): void {
    if (this.#rows >= MAX_ROWS) void this.flush();
    else if (!this.#timer && this.#rows > 0) {
      this.#timer = setTimeout(() => void this.flush(), flushMs);
      // A pending write never keeps the process alive; a graceful stop flushes.
      this.#timer.unref();
    }
  }

  async #write(held: Held): Promise<void> {
    const d = this.#d;
    const rows: Mutable<UsageAggregate>[] = [];
    for (const byJti of held.values()) for (const t of byJti.values()) rowsOf(t, (_, a) => rows.push(a));
    try {
      await d.store.ingestUsage({ aggregates: rows, uses: [], taskDeltas: [], marks: [], retentionMs: d.retentionMs() });
    } catch (err) {
      let dropped = 0;
      for (const [server, byJti] of held)
        for (const t of byJti.values())
          rowsOf(t, (key, a) => {
            if (!this.#hold(server, key, a)) dropped += a.calls;
          });
      if (dropped > 0) d.metrics.usageRecords.inc({ outcome: 'dropped' }, dropped);
      d.log?.('writing usage aggregates failed; kept for the next write', { error: err instanceof Error ? err.message.slice(0, 200) : String(err), rows: rows.length, dropped_calls: dropped });
      this.#schedule(RETRY_MS);
    }
  }
}

/** server → jti → the token's held rows. */
type Held = Map<string, Map<string, TokenRows>>;

/** One token's held rows: `last` (the row of its last report) alone until a second row appears. */
interface TokenRows {
  last: Mutable<UsageAggregate>;
  lastKey: string;
  /** key within the token → row, `last` included; undefined while the token has one row. */
  rows: Map<string, Mutable<UsageAggregate>> | undefined;
}

function rowsOf(t: TokenRows, each: (key: string, a: Mutable<UsageAggregate>) => void): void {
  if (t.rows === undefined) each(t.lastKey, t.last);
  else for (const [key, a] of t.rows) each(key, a);
}

/** Adds an aggregate of the same row into `h` (what the store's upsert does). */
function addAggregate(h: Mutable<UsageAggregate>, a: UsageAggregate): void {
  h.calls += a.calls;
  h.errors += a.errors;
  h.bytes += a.bytes;
  h.durationMs += a.durationMs;
  if (a.maxDurationMs > h.maxDurationMs) h.maxDurationMs = a.maxDurationMs;
  if (a.firstAt < h.firstAt) h.firstAt = a.firstAt;
  if (a.lastAt > h.lastAt) h.lastAt = a.lastAt;
  if (h.plugin === '') h.plugin = a.plugin;
}
