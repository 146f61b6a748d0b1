import type { Redis } from 'ioredis';
import type { Clock } from '../../time/clock.js';
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
import { LuaScript } from './redis-scripts.js';

/*
 * The usage role of the Redis store. One batch is one script (atomic, one round trip): the
 * keys it touches are computed here and passed in KEYS, the work as one JSON argument the
 * script indexes into. Redis TTLs do the retention (relative PX from the injected clock);
 * the evidence hashes, which live as long as their plugin is used, are pruned by purgeUsage.
 *
 * Layout (under the store prefix):
 *   usage:m:<task>          hash  [minute,jti,server,audience,method,route,outcome,plugin] -> "calls,errors,bytes,ms,max,first,last"
 *   usage:m-none:<hour>     hash  the same, for calls with no task (hourly buckets, so none grows without bound)
 *   usage:tok:<jti>         hash  f (first use), k (sources), s:<source>  (calls per token are in usage:m)
 *   usage:tt:<task>         hash  c:<aud>, b:<aud>, x:<aud> (exhausted at); aud '*' = all
 *   usage:ev:<plugin>       hash  [audience,kind,name] -> "first,last,calls"
 *   usage:ev-plugins        set   plugins with evidence (for the purge)
 *   usage:te:<task>         zset  seq -> "seq|ts|type"
 *   usage:ds:<id>           string downstream event JSON (SET NX: ingesting twice stores once)
 *   usage:ds-task:<task>    zset  at -> id
 *   usage:ds-plugin:<plugin> zset at -> id
 *   usage:link:<kind>:<id>  string credential link JSON (AWS access key id, Vault lease id or accessor -> jti, plugin, task)
 *   usage:sources-version   string moved by every source added to a token and every purge of token rows (KnownSources)
 *   usage:keep              zset  key -> keep-until (tokens, totals, timelines, downstream): purgeUsage drops them by the injected clock
 *   usage:keep-minute       zset  aggregate hash -> its latest minute: dropped once past retention
 */

const INGEST = new LuaScript(
  'ingestUsage',
  `
local p = cjson.decode(ARGV[1])
local maxSources = tonumber(ARGV[2])
-- The caller left out the uses its memory of recorded sources answers; that memory holds
-- only while the version it was built at is current. If not: nothing done, send them all.
local svKey = KEYS[p.sv]
local sv = tonumber(redis.call('GET', svKey) or '0')
local sv0 = sv
if p.partial == 1 and p.v ~= sv then return cjson.encode({retry = 1, v = sv}) end
local keepKey, minuteKey = KEYS[p.kk], KEYS[p.km]
local function ttl(k, ms) if ms > 0 and redis.call('PTTL', k) < ms then redis.call('PEXPIRE', k, ms) end end
local function keep(k, untilMs) redis.call('ZADD', keepKey, 'GT', untilMs, k) end
for _, a in ipairs(p.a) do
  local k = KEYS[a[1]]
  local cur = redis.call('HGET', k, a[2])
  local c, e, b, d, x, f, l = 0, 0, 0, 0, 0, a[10], a[11]
  if cur then
    local c0, e0, b0, d0, x0, f0, l0 = string.match(cur, '^(%d+),(%d+),(%d+),(%d+),(%d+),(%d+),(%d+)$')
    c, e, b, d, x, f, l = tonumber(c0), tonumber(e0), tonumber(b0), tonumber(d0), tonumber(x0), math.min(tonumber(f0), a[10]), math.max(tonumber(l0), a[11])
  end
  redis.call('HSET', k, a[2], string.format('%d,%d,%d,%d,%d,%d,%d', c + a[3], e + a[4], b + a[5], d + a[6], math.max(x, a[7]), f, l))
  ttl(k, a[8])
  redis.call('ZADD', minuteKey, 'GT', a[9], k)
end
local uses = {}
for _, u in ipairs(p.u) do
  local k, src, at = KEYS[u[1]], u[2], u[3]
  if redis.call('EXISTS', k) == 0 then
    local n = 0
    if src ~= '' then redis.call('HSET', k, 's:' .. src, 1); n = 1 end
    redis.call('HSET', k, 'f', at, 'k', n)
    uses[#uses + 1] = {1, 0, n}
  else
    local n = tonumber(redis.call('HGET', k, 'k'))
    local fresh = 0
    if src ~= '' and n < maxSources and redis.call('HEXISTS', k, 's:' .. src) == 0 then
      if n > 0 then fresh = 1 end
      redis.call('HSET', k, 's:' .. src, 1)
      n = redis.call('HINCRBY', k, 'k', 1)
      sv = redis.call('INCR', svKey)
    end
    uses[#uses + 1] = {0, fresh, n}
  end
  ttl(k, u[4])
  keep(k, u[5])
end
local touched, order = {}, {}
for _, d in ipairs(p.d) do
  local k = KEYS[d[1]]
  for _, aud in ipairs({d[2], '*'}) do
    redis.call('HINCRBY', k, 'c:' .. aud, d[3])
    redis.call('HINCRBY', k, 'b:' .. aud, d[4])
    local key = d[1] .. '|' .. aud
    if not touched[key] then touched[key] = true; order[#order + 1] = {d[1], aud} end
  end
  ttl(k, d[5])
  keep(k, d[6])
end
local totals = {}
for _, t in ipairs(order) do
  local v = redis.call('HMGET', KEYS[t[1]], 'c:' .. t[2], 'b:' .. t[2])
  totals[#totals + 1] = {t[1], t[2], tonumber(v[1]) or 0, tonumber(v[2]) or 0}
end
local prev = {}
for _, m in ipairs(p.m) do
  local k = KEYS[m[1]]
  local cur = redis.call('HGET', k, m[2])
  local first, last, calls = m[3], m[3], 0
  if cur then
    local f0, l0, c0 = string.match(cur, '^(%d+),(%d+),(%d+)$')
    first, last, calls = math.min(tonumber(f0), m[3]), math.max(tonumber(l0), m[3]), tonumber(c0)
  end
  prev[#prev + 1] = calls
  redis.call('HSET', k, m[2], string.format('%d,%d,%d', first, last, calls + m[4]))
  redis.call('SADD', KEYS[p.pk], m[5])
end
return cjson.encode({u = uses, t = totals, m = prev, v0 = sv0, v = sv})
`,
);

/** KEYS: totals. ARGV: audience, calls, total limit ('' none), audience limit ('' none), ttl ms. Returns {charged, c:aud, b:aud, c:*, b:*}. */
// Both scripts below also record the totals key in the keep index (KEYS[2]); ZADD GT adds new members too.
const CHARGE = new LuaScript(
  'chargeTaskUsage',
  `
local k, aud, calls = KEYS[1], ARGV[1], tonumber(ARGV[2])
local total = tonumber(redis.call('HGET', k, 'c:*') or '0')
local mine = tonumber(redis.call('HGET', k, 'c:' .. aud) or '0')
local ok = (ARGV[3] == '' or total + calls <= tonumber(ARGV[3])) and (ARGV[4] == '' or mine + calls <= tonumber(ARGV[4]))
if ok then
  redis.call('HINCRBY', k, 'c:' .. aud, calls)
  redis.call('HINCRBY', k, 'c:*', calls)
  redis.call('HSETNX', k, 'b:' .. aud, 0)
  redis.call('HSETNX', k, 'b:*', 0)
  if redis.call('PTTL', k) < tonumber(ARGV[5]) then redis.call('PEXPIRE', k, ARGV[5]) end
  redis.call('ZADD', KEYS[2], 'GT', ARGV[6], k)
end
local v = redis.call('HMGET', k, 'c:' .. aud, 'b:' .. aud, 'c:*', 'b:*')
return {ok and 1 or 0, v[1] or false, v[2] or false, v[3] or false, v[4] or false}
`,
);

/** KEYS: totals. ARGV: audience, at, ttl ms. 1 the first time. */
const EXHAUST = new LuaScript(
  'markBudgetExhausted',
  `
local first = redis.call('HSETNX', KEYS[1], 'x:' .. ARGV[1], ARGV[2])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[3]) then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
redis.call('ZADD', KEYS[2], 'GT', ARGV[4], KEYS[1])
return first
`,
);

type Call = <T>(op: string, fn: () => Promise<T>) => Promise<T>;

const SEP = '\u001f';

export class RedisUsage implements UsageStore {
  readonly #client: Redis;
  readonly #prefix: string;
  readonly #clock: Clock;
  readonly #call: Call;
  readonly #known = new KnownSources();

  constructor(client: Redis, prefix: string, clock: Clock, call: Call) {
    this.#client = client;
    this.#prefix = `${prefix}usage:`;
    this.#clock = clock;
    this.#call = call;
  }

  /** Sorted set: keys dropped by purgeUsage once their keep-until (the score) has passed, by the injected clock. */
  get #keepIndex(): string {
    return this.#key('keep');
  }
  /** Moved by every change to recorded token sources (a source added, token rows purged): see KnownSources. */
  get #sourcesVersion(): string {
    return this.#key('sources-version');
  }
  /** Sorted set: aggregate hashes by their latest minute, dropped once it is past retention. */
  get #minuteIndex(): string {
    return this.#key('keep-minute');
  }

  #key(...parts: string[]): string {
    return this.#prefix + parts.join(':');
  }

  /** Relative TTL from an absolute instant, at least 1 ms. */
  #ttl(until: number): number {
    return Math.max(1, until - this.#clock.now());
  }

  async ingestUsage(batch: UsageBatch): Promise<UsageBatchResult> {
    const known = this.#known;
    const now = this.#clock.now();
    // A use from a source this process knows is on record costs Redis nothing and is not sent.
    const sent: number[] = [];
    for (let i = 0; i < batch.uses.length; i++) {
      const u = batch.uses[i]!;
      if (known.version === undefined || known.countIfKnown(u.jti, u.source, now) === undefined) sent.push(i);
    }
    const keys: string[] = [];
    const index = new Map<string, number>();
    const ki = (k: string) => {
      let i = index.get(k);
      if (i === undefined) {
        keys.push(k);
        i = keys.length; // Lua is 1-based
        index.set(k, i);
      }
      return i;
    };
    const payload = {
      a: batch.aggregates.map((a) => [
        ki(a.task === '' ? this.#key('m-none', String(Math.floor(a.minute / 3600_000))) : this.#key('m', a.task)),
        JSON.stringify([a.minute, a.jti, a.server, a.audience, a.method, a.route, a.outcome, a.plugin]),
        a.calls,
        a.errors,
        a.bytes,
        a.durationMs,
        a.maxDurationMs,
        this.#ttl(a.minute + batch.retentionMs),
        a.minute,
        a.firstAt,
        a.lastAt,
      ]),
      u: sent.map((i) => {
        const u = batch.uses[i]!;
        return [ki(this.#key('tok', u.jti)), u.source, u.at, this.#ttl(u.keepUntil), u.keepUntil];
      }),
      partial: sent.length < batch.uses.length ? 1 : 0,
      v: known.version ?? -1,
      sv: ki(this.#sourcesVersion),
      d: batch.taskDeltas.map((d) => [ki(this.#key('tt', d.task)), d.audience, d.calls, d.bytes, this.#ttl(d.keepUntil), d.keepUntil]),
      m: batch.marks.map((m) => [ki(this.#key('ev', m.plugin)), JSON.stringify([m.audience, m.kind, m.name]), m.at, m.calls, m.plugin]),
      pk: ki(this.#key('ev-plugins')),
      kk: ki(this.#keepIndex),
      km: ki(this.#minuteIndex),
    };
    let raw: unknown;
    try {
      raw = await this.#call('ingestUsage', () => INGEST.run(this.#client, keys, [JSON.stringify(payload), MAX_TOKEN_SOURCES]));
    } catch (err) {
      // Whether the script ran is unknown: nothing remembered is trusted any more.
      known.forget();
      throw err;
    }
    const r = JSON.parse(String(raw)) as { u: unknown; t: unknown; m: unknown; v0: number; v: number; retry?: number };
    if (r.retry === 1) {
      // Another process changed recorded sources: the script did nothing; again with every use.
      known.forget();
      return this.ingestUsage(batch);
    }
    // cjson encodes an empty table as {}: an empty list either way.
    const list = <T>(v: unknown): T[] => (Array.isArray(v) ? (v as T[]) : []);
    // Moved by another process before this batch: what was remembered no longer holds.
    if (known.version !== r.v0) known.forget();
    known.version = r.v;
    // In order: a use not sent takes its count from memory, after what earlier uses of the batch taught it.
    const answers = list<[number, number, number]>(r.u);
    const uses: TokenUseResult[] = [];
    for (let i = 0, j = 0; i < batch.uses.length; i++) {
      const u = batch.uses[i]!;
      if (sent[j] !== i) {
        uses.push({ jti: u.jti, first: false, newSource: false, sources: known.countIfKnown(u.jti, u.source, now) ?? 0 });
        continue;
      }
      const [first, fresh, n] = answers[j++]!;
      known.learn(u.jti, [u.source], n, u.keepUntil, first === 1, n >= MAX_TOKEN_SOURCES);
      uses.push({ jti: u.jti, first: first === 1, newSource: fresh === 1, sources: n });
    }
    return {
      uses,
      totals: list<[number, string, number, number]>(r.t).map(([k, audience, calls, bytes]) => ({ task: taskOfKey(keys[k - 1]!, this.#key('tt', '')), audience, calls, bytes })),
      previousCalls: list<number>(r.m),
    };
  }

  async chargeTaskUsage(task: string, audience: string, calls: number, limits: ChargeLimits, keepUntil: number): Promise<{ charged: boolean; totals: readonly TaskUsageTotals[] }> {
    const lim = (v: number | undefined) => (v === undefined ? '' : String(v));
    const r = (await this.#call('chargeTaskUsage', () =>
      CHARGE.run(this.#client, [this.#key('tt', task), this.#keepIndex], [audience, calls, lim(limits.totalCalls), lim(limits.audienceCalls), this.#ttl(keepUntil), keepUntil]),
    )) as [number, string | null, string | null, string | null, string | null];
    const totals: TaskUsageTotals[] = [];
    if (r[1] !== null) totals.push({ task, audience, calls: Number(r[1]), bytes: Number(r[2] ?? 0) });
    if (r[3] !== null && audience !== ALL_AUDIENCES) totals.push({ task, audience: ALL_AUDIENCES, calls: Number(r[3]), bytes: Number(r[4] ?? 0) });
    return { charged: r[0] === 1, totals };
  }

  async taskUsageTotals(task: string): Promise<TaskUsageTotals[]> {
    const h = await this.#call('taskUsageTotals', () => this.#client.hgetall(this.#key('tt', task)));
    const by = new Map<string, TaskUsageTotals>();
    for (const [field, value] of Object.entries(h)) {
      const kind = field.slice(0, 2);
      if (kind !== 'c:' && kind !== 'b:') continue;
      const audience = field.slice(2);
      const t = by.get(audience) ?? { task, audience, calls: 0, bytes: 0 };
      by.set(audience, kind === 'c:' ? { ...t, calls: Number(value) } : { ...t, bytes: Number(value) });
    }
    return [...by.values()].sort((a, b) => (a.audience < b.audience ? -1 : a.audience > b.audience ? 1 : 0));
  }

  async markBudgetExhausted(task: string, audience: string, at: number, keepUntil: number): Promise<boolean> {
    return (await this.#call('markBudgetExhausted', () => EXHAUST.run(this.#client, [this.#key('tt', task), this.#keepIndex], [audience, at, this.#ttl(keepUntil), keepUntil]))) === 1;
  }

  async budgetExhaustions(task: string): Promise<Record<string, number>> {
    const h = await this.#call('budgetExhaustions', () => this.#client.hgetall(this.#key('tt', task)));
    const out: Record<string, number> = {};
    for (const [field, value] of Object.entries(h)) if (field.startsWith('x:')) out[field.slice(2)] = Number(value);
    return out;
  }

  async listTaskUsage(task: string, limit: number): Promise<UsageAggregate[]> {
    const h = await this.#call('listTaskUsage', () => this.#client.hgetall(this.#key('m', task)));
    const rows: UsageAggregate[] = [];
    for (const [field, value] of Object.entries(h)) {
      const [minute, jti, server, audience, method, route, outcome, plugin] = JSON.parse(field) as [number, string, string, string, string, string, UsageOutcome, string];
      const [calls, errors, bytes, durationMs, maxDurationMs, firstAt, lastAt] = value.split(',').map(Number) as [number, number, number, number, number, number, number];
      rows.push({ minute, jti, plugin, task, server, audience, method, route, outcome, calls, errors, bytes, durationMs, maxDurationMs, firstAt, lastAt });
    }
    // The same order as SQLite's: minute, jti, route, outcome.
    rows.sort((a, b) => a.minute - b.minute || cmp(a.jti, b.jti) || cmp(a.route, b.route) || cmp(a.outcome, b.outcome));
    return rows.slice(0, limit);
  }

  async usageEvidence(filter: { readonly plugin?: string; readonly now: number; readonly retentionMs: number }): Promise<EvidenceRow[]> {
    const after = filter.now - filter.retentionMs;
    return this.#call('usageEvidence', async () => {
      const plugins = filter.plugin !== undefined ? [filter.plugin] : (await this.#client.smembers(this.#key('ev-plugins'))).sort();
      const rows: EvidenceRow[] = [];
      for (const plugin of plugins) {
        const h = await this.#client.hgetall(this.#key('ev', plugin));
        for (const [field, value] of Object.entries(h)) {
          const [audience, kind, name] = JSON.parse(field) as [string, EvidenceKind, string];
          const [firstAt, lastAt, calls] = value.split(',').map(Number) as [number, number, number];
          if (lastAt > after) rows.push({ plugin, audience, kind, name, firstAt, lastAt, calls });
        }
      }
      return rows.sort((a, b) => cmp(a.plugin, b.plugin) || cmp(a.audience, b.audience) || cmp(a.kind, b.kind) || cmp(a.name, b.name));
    });
  }

  async indexTaskEvents(refs: readonly TaskEventRef[], keepUntil: number): Promise<void> {
    const ttl = this.#ttl(keepUntil);
    await this.#call('indexTaskEvents', async () => {
      if (refs.length === 0) return;
      const p = this.#client.pipeline();
      for (const r of refs) {
        const k = this.#key('te', r.task);
        p.zadd(k, r.seq, `${r.seq}${SEP}${r.ts}${SEP}${r.type}`);
        p.pexpire(k, ttl, 'GT');
        p.pexpire(k, ttl, 'NX');
        p.zadd(this.#keepIndex, 'GT', keepUntil, k);
      }
      for (const [err] of (await p.exec()) ?? []) if (err) throw err;
    });
  }

  async listTaskEvents(task: string, limit: number): Promise<TaskEventRef[]> {
    const members = await this.#call('listTaskEvents', () => this.#client.zrange(this.#key('te', task), '0', String(limit - 1)));
    return members.map((m) => {
      const [seq, ts, type] = m.split(SEP) as [string, string, string];
      return { task, seq: Number(seq), ts: Number(ts), type };
    });
  }

  async recordDownstream(events: readonly DownstreamEvent[], keepUntil: number): Promise<number> {
    const ttl = this.#ttl(keepUntil);
    return this.#call('recordDownstream', async () => {
      if (events.length === 0) return 0;
      const p = this.#client.pipeline();
      for (const e of events) {
        p.set(this.#key('ds', e.id), JSON.stringify(e), 'PX', ttl, 'NX');
        p.zadd(this.#keepIndex, 'GT', keepUntil, this.#key('ds', e.id));
      }
      const replies = ((await p.exec()) ?? []).filter((_, i) => i % 2 === 0);
      const q = this.#client.pipeline();
      let added = 0;
      replies.forEach(([err, reply], i) => {
        if (err) throw err;
        if (reply !== 'OK') return;
        added += 1;
        const e = events[i]!;
        for (const k of [this.#key('ds-task', e.task), this.#key('ds-plugin', e.plugin)]) {
          q.zadd(k, e.at, e.id);
          q.pexpire(k, ttl, 'GT');
          q.pexpire(k, ttl, 'NX');
          q.zadd(this.#keepIndex, 'GT', keepUntil, k);
        }
      });
      if (added > 0) for (const [err] of (await q.exec()) ?? []) if (err) throw err;
      return added;
    });
  }

  async listTaskDownstream(task: string, limit: number): Promise<DownstreamEvent[]> {
    return this.#call('listTaskDownstream', async () => this.#events(await this.#client.zrange(this.#key('ds-task', task), '0', '-1'), limit, 'asc'));
  }

  async listPluginDownstream(plugin: string, since: number, limit: number): Promise<DownstreamEvent[]> {
    return this.#call('listPluginDownstream', async () => this.#events(await this.#client.zrangebyscore(this.#key('ds-plugin', plugin), since, '+inf'), limit, 'desc'));
  }

  /** Index entries whose event has expired are skipped; ordered as SQLite orders them. */
  async #events(ids: string[], limit: number, order: 'asc' | 'desc'): Promise<DownstreamEvent[]> {
    if (ids.length === 0) return [];
    const raws = await this.#client.mget(...ids.map((id) => this.#key('ds', id)));
    const events = raws.filter((r): r is string => r !== null).map((r) => JSON.parse(r) as DownstreamEvent);
    events.sort((a, b) => (order === 'asc' ? a.at - b.at : b.at - a.at) || cmp(a.id, b.id));
    return events.slice(0, limit);
  }

  async linkCredentials(links: readonly CredentialLink[], keepUntil: number): Promise<void> {
    const ttl = this.#ttl(keepUntil);
    await this.#call('linkCredentials', async () => {
      if (links.length === 0) return;
      const p = this.#client.pipeline();
      for (const l of links) {
        const k = this.#key('link', l.kind, l.id);
        p.set(k, JSON.stringify({ kind: l.kind, id: l.id, jti: l.jti, plugin: l.plugin, task: l.task }), 'PX', ttl, 'NX');
        p.zadd(this.#keepIndex, 'GT', keepUntil, k);
      }
      for (const [err] of (await p.exec()) ?? []) if (err) throw err;
    });
  }

  async resolveCredentialLinks(kind: CredentialLinkKind, ids: readonly string[]): Promise<CredentialLink[]> {
    return this.#call('resolveCredentialLinks', async () => {
      if (ids.length === 0) return [];
      const raws = await this.#client.mget(...ids.map((id) => this.#key('link', kind, id)));
      return raws
        .filter((r): r is string => r !== null)
        .map((r) => JSON.parse(r) as CredentialLink)
        .sort((a, b) => cmp(a.id, b.id));
    });
  }

  async purgeUsage(now: number, retentionMs: number): Promise<number> {
    // Redis TTLs collect garbage in real time; the keep indexes make the purge follow the
    // injected clock like SQLite's. Evidence is pruned entry by entry.
    return this.#call('purgeUsage', async () => {
      let removed = 0;
      for (const [index, until] of [
        [this.#keepIndex, now],
        [this.#minuteIndex, now - retentionMs - 1],
      ] as const) {
        for (;;) {
          const keys = await this.#client.zrangebyscore(index, '-inf', until, 'LIMIT', 0, 500);
          if (keys.length === 0) break;
          // One transaction: the keys, their index entries and, for token rows, a move of the
          // sources version (so no process trusts its memory of a row that is gone).
          const tokens = keys.some((k) => k.startsWith(this.#key('tok', '')));
          const tx = this.#client
            .multi()
            .del(...keys)
            .zrem(index, ...keys);
          if (tokens) tx.incr(this.#sourcesVersion);
          const res = await tx.exec();
          const err = res?.find(([e]) => e !== null)?.[0];
          if (err) throw err;
          removed += Number(res?.[0]?.[1] ?? 0);
          if (tokens) this.#known.forget();
          if (keys.length < 500) break;
        }
      }
      const setKey = this.#key('ev-plugins');
      for (const plugin of await this.#client.smembers(setKey)) {
        const k = this.#key('ev', plugin);
        const h = await this.#client.hgetall(k);
        const stale = Object.entries(h)
          .filter(([, v]) => Number(v.split(',')[1]) <= now - retentionMs)
          .map(([f]) => f);
        if (stale.length > 0) removed += await this.#client.hdel(k, ...stale);
        if (stale.length === Object.keys(h).length) await this.#client.srem(setKey, plugin);
      }
      return removed;
    });
  }
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function taskOfKey(key: string, stem: string): string {
  return key.slice(stem.length);
}
