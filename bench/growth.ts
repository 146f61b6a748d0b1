/**
 * `npm run bench -- --suite growth`: does an exchange cost the same when the policy and the
 * history are large? Each point is its own Leash child (bench/growth-server.ts) started with
 * that history already on record; warm exchanges spread over the policy, CPU per exchange
 * from /proc of the child, compared with the series' small case (issue 18, goal 6: within
 * 10 %). Start and reload times are the child's own (config compile + Broker.create + listen).
 *
 * For working on one series: LEASH_GROWTH_SERIES=plugins,revocations (names as in the table)
 * runs only those points; LEASH_GROWTH_PROFILE=<dir> runs the Leash children under
 * --cpu-prof into <dir> (startup included).
 */
import { randomBytes } from 'node:crypto';
import { loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { BENCH_AUDIENCE, BENCH_CLUSTER_ISSUER, BenchCluster } from './cluster.js';
import { diffCpu, startServer, threadCpu, type ServerChild } from './child.js';
import { basicAuthorization, exchangeBody, introspectionBody, runLoad, type LoadResult } from './load.js';
import type { BenchOptions } from './options.js';
import { pairedRatio, type PairedRatio } from './paired.js';
import { BENCH_RESOURCE_SERVER, type ServerInput } from './protocol.js';
import { GROWTH_ENV, growthPluginId, growthServiceAccount, spreadSample, type GrowthReadyExtra, type GrowthSpec } from './growth-policy.js';

const SCRIPT = join(fileURLToPath(new URL('.', import.meta.url)), 'growth-server.ts');
/** Issue 18, goal 6: CPU per exchange within 10 % of the small case. */
export const GROWTH_BAR = 1.1;
/** Issue 18, goal 6: start and reload of the large policy, and start with 100,000 revocations. */
export const START_BAR_MS = 5000;
/** Plugins series: plugins the load exchanges as, spread over the policy, and distinct bodies (attestation + task) at every size. */
const SAMPLE = 64;
/**
 * Measured rounds per point (LEASH_GROWTH_ROUNDS, default 6), alternating between a series'
 * points and reversing their order every other round; each point's ratio to the small case
 * is taken round by round (the two measured back to back, on the same machine speed), with
 * a 95 % interval over the rounds.
 */
const ROUNDS = Number(process.env.LEASH_GROWTH_ROUNDS ?? 6);

type Series = 'plugins' | 'revocations' | 'task tokens (quota)' | 'store tokens';

interface Point {
  readonly series: Series;
  /** The growing quantity at this point. */
  readonly size: number;
  readonly spec: GrowthSpec;
  readonly workloads: readonly ('warm' | 'introspect')[];
}

export interface GrowthRecord extends LoadResult {
  readonly series: Series;
  readonly size: number;
  readonly workload: 'warm' | 'introspect';
  readonly cpuMicrosPerRequest: number;
  /** Each round's CPU per request (the spread says how noisy the machine was). */
  readonly roundCpuMicros: readonly number[];
  readonly serverCpu: Record<string, number>;
  /** 1-minute load average of the machine just before the measured rounds, averaged (it is shared). */
  readonly loadAvg: number;
  readonly startMs: number;
  readonly reloadMs: number;
  readonly prefillMs: number;
  /** The retention pass timed before the load (store tokens series). */
  readonly sweep?: GrowthReadyExtra['sweep'];
  /** CPU per request over the series' small case, same workload: the mean of the per-round ratios. */
  ratio?: number;
  /** That ratio's 95 % interval over the rounds. */
  ratioInterval?: PairedRatio;
}

const none = { plugins: 1, bodies: 1, revocations: 0, storeTokens: 0, expiredShare: 0, sweepTokens: 0, taskTokens: 0, taskQuota: false } as const;

function points(): Point[] {
  const out: Point[] = [];
  for (const n of [1, 100, 1000, 10_000]) out.push({ series: 'plugins', size: n, spec: { ...none, plugins: n, sample: spreadSample(n, SAMPLE), bodies: SAMPLE }, workloads: ['warm'] });
  for (const n of [0, 10_000, 100_000]) out.push({ series: 'revocations', size: n, spec: { ...none, sample: [0], revocations: n }, workloads: ['warm', 'introspect'] });
  for (const n of [0, 1000, 10_000]) out.push({ series: 'task tokens (quota)', size: n, spec: { ...none, sample: [0], taskTokens: n, taskQuota: true }, workloads: ['warm'] });
  out.push({ series: 'store tokens', size: 0, spec: { ...none, sample: [0] }, workloads: ['warm'] });
  out.push({ series: 'store tokens', size: 1_000_000, spec: { ...none, sample: [0], storeTokens: 1_000_000, expiredShare: 0.9, sweepTokens: 200_000 }, workloads: ['warm'] });
  return out;
}

async function exchangeOnce(server: ServerChild, body: string): Promise<string> {
  const res = await fetch(`${server.ready.url}/token`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body });
  const json = (await res.json().catch(() => ({}))) as Record<string, unknown>;
  if (res.status !== 200 || typeof json.access_token !== 'string') {
    const { access_token: _omit, ...shown } = json;
    throw new Error(`${server.name}: a single exchange failed: ${res.status} ${JSON.stringify(shown)}\n${server.stderrTail()}`);
  }
  return json.access_token;
}

/** A point's server, up and warm, with what the load sends it. */
interface Running {
  readonly point: Point;
  readonly server: ServerChild;
  readonly extra: GrowthReadyExtra;
  readonly plans: Map<'warm' | 'introspect', { path: string; bodies: string[]; headers?: Record<string, string> }>;
  /** Per workload: requests, CPU seconds, and each round's result. */
  readonly totals: Map<'warm' | 'introspect', { requests: number; cpu: number; cpuMain: number; cpuOther: number; rounds: LoadResult[]; loadAvg: number[]; roundCpu: number[] }>;
}

async function startPoint(point: Point, cluster: BenchCluster, input: ServerInput, log: (m: string) => void): Promise<Running> {
  const label = `${point.series} ${point.size.toLocaleString('en-US')}`;
  log(`growth: ${label}: starting leash with that history...`);
  process.env[GROWTH_ENV] = JSON.stringify(point.spec);
  const profileDir = process.env.LEASH_GROWTH_PROFILE;
  const server = await startServer(`leash (${label})`, SCRIPT, input, profileDir ? ['--cpu-prof', '--cpu-prof-dir', profileDir] : [], 900_000);
  const extra = server.ready as unknown as GrowthReadyExtra;
  log(`  start ${Math.round(extra.startMs)} ms, reload ${Math.round(extra.reloadMs)} ms (history written in ${Math.round(extra.prefillMs)} ms)`);
  if (extra.sweep) log(`  retention pass: ${extra.sweep.purged} rows in ${Math.round(extra.sweep.ms)} ms, longest event-loop delay ${extra.sweep.maxEventLoopDelayMs.toFixed(1)} ms`);
  // One attestation per sampled plugin; each body names its plugin as client_id and its own task.
  const bodies: string[] = [];
  for (let k = 0; k < point.spec.bodies; k++) {
    const i = point.spec.sample[k % point.spec.sample.length] as number;
    const [token] = await cluster.mint(1, 3600, growthServiceAccount(i));
    bodies.push(exchangeBody({ ...server.ready, clientId: growthPluginId(i), task: extra.tasks[k] as string }, token as string));
  }
  for (const b of bodies) await exchangeOnce(server, b);
  const plans: Running['plans'] = new Map();
  for (const workload of point.workloads) {
    if (workload === 'warm') plans.set(workload, { path: '/token', bodies });
    else {
      const accessToken = await exchangeOnce(server, bodies[0] as string);
      plans.set(workload, { path: '/introspect', bodies: [introspectionBody(accessToken)], headers: { authorization: basicAuthorization(input.resourceServer.id, input.resourceServer.secret) } });
    }
  }
  return { point, server, extra, plans, totals: new Map() };
}

async function measureRound(run: Running, workload: 'warm' | 'introspect', seconds: number, warmup: number, opts: BenchOptions): Promise<void> {
  const plan = run.plans.get(workload)!;
  const load = { url: run.server.ready.url, path: plan.path, headers: plan.headers, bodies: plan.bodies, connections: opts.connections, workers: opts.workers };
  if (warmup > 0) await runLoad({ ...load, seconds: warmup });
  const loadAvg = loadavg()[0] as number;
  const before = threadCpu(run.server.pid);
  const result = await runLoad({ ...load, seconds });
  const cpu = diffCpu(threadCpu(run.server.pid), before);
  if (result.non2xx > 0 || result.errors > 0 || result.timeouts > 0) {
    throw new Error(
      `growth ${run.point.series} ${run.point.size} ${workload}: non-2xx ${result.non2xx}, errors ${result.errors}, timeouts ${result.timeouts} ${JSON.stringify(result.statusCodes)}\n${run.server.stderrTail()}`,
    );
  }
  const t = run.totals.get(workload) ?? { requests: 0, cpu: 0, cpuMain: 0, cpuOther: 0, rounds: [], loadAvg: [], roundCpu: [] };
  t.requests += result.requests;
  t.cpuMain += cpu.main ?? 0;
  t.cpuOther += cpu.other ?? 0;
  t.cpu += (cpu.main ?? 0) + (cpu.other ?? 0);
  t.rounds.push(result);
  t.roundCpu.push(result.requests > 0 ? Math.round((((cpu.main ?? 0) + (cpu.other ?? 0)) / result.requests) * 1e6) : 0);
  t.loadAvg.push(loadAvg);
  run.totals.set(workload, t);
}

function record(run: Running, workload: 'warm' | 'introspect'): GrowthRecord {
  const t = run.totals.get(workload)!;
  const seconds = t.rounds.reduce((a, r) => a + r.seconds, 0);
  const worst = (f: (r: LoadResult) => number) => Math.max(...t.rounds.map(f));
  return {
    requests: t.requests,
    seconds,
    reqPerSec: seconds > 0 ? t.requests / seconds : 0,
    // The rounds' worst: a percentile cannot be merged from percentiles.
    p50: worst((r) => r.p50),
    p99: worst((r) => r.p99),
    non2xx: 0,
    errors: 0,
    timeouts: 0,
    statusCodes: {},
    series: run.point.series,
    size: run.point.size,
    workload,
    cpuMicrosPerRequest: t.requests > 0 ? Math.round((t.cpu / t.requests) * 1e6) : 0,
    roundCpuMicros: t.roundCpu,
    serverCpu: { main: Math.round(t.cpuMain * 100) / 100, other: Math.round(t.cpuOther * 100) / 100 },
    loadAvg: Math.round((t.loadAvg.reduce((a, b) => a + b, 0) / t.loadAvg.length) * 100) / 100,
    startMs: Math.round(run.extra.startMs),
    reloadMs: Math.round(run.extra.reloadMs),
    prefillMs: Math.round(run.extra.prefillMs),
    ...(run.extra.sweep ? { sweep: run.extra.sweep } : {}),
  };
}

/**
 * One series: every point's Leash up at once, then ROUNDS rounds that each measure every
 * point in turn, so drift in the machine's load (it is shared) spreads over all points
 * rather than landing on one. CPU per request is the rounds' total CPU over their requests.
 */
async function measureSeries(points: readonly Point[], cluster: BenchCluster, input: ServerInput, opts: BenchOptions, log: (m: string) => void): Promise<GrowthRecord[]> {
  const running: Running[] = [];
  try {
    for (const p of points) running.push(await startPoint(p, cluster, input, log));
    if (!Number.isInteger(ROUNDS) || ROUNDS < 2) throw new Error(`LEASH_GROWTH_ROUNDS must be an integer >= 2 (got ${process.env.LEASH_GROWTH_ROUNDS})`);
    // At most the measured time of three rounds of half the duration, in more, shorter pairs.
    const seconds = Math.max(2, Math.floor((opts.duration * 3) / (2 * ROUNDS)));
    for (let round = 0; round < ROUNDS; round++) {
      // ABBA order: a point measured last in one round is measured first in the next.
      for (const run of round % 2 === 0 ? running : [...running].reverse()) {
        for (const workload of run.point.workloads) await measureRound(run, workload, seconds, round === 0 ? opts.warmup : 0, opts);
      }
    }
    const out = running.flatMap((run) => run.point.workloads.map((w) => record(run, w)));
    for (const r of out)
      log(`  ${r.series} ${r.size.toLocaleString('en-US')} ${r.workload}: ${r.reqPerSec.toFixed(0)} req/s, ${r.cpuMicrosPerRequest} µs CPU/req, p99 ${r.p99} ms (load avg ${r.loadAvg})`);
    return out;
  } finally {
    for (const run of running) await run.server.stop();
  }
}

/** Every point of the suite, each record's ratio to its series' small case filled in. */
export async function runGrowth(opts: BenchOptions, log: (m: string) => void): Promise<GrowthRecord[]> {
  const cluster = new BenchCluster();
  const input: ServerInput = {
    jwks: cluster.jwks,
    clusterIssuer: BENCH_CLUSTER_ISSUER,
    audience: BENCH_AUDIENCE,
    store: { kind: 'sqlite' },
    resourceServer: { id: BENCH_RESOURCE_SERVER, secret: randomBytes(32).toString('base64url') },
  };
  const records: GrowthRecord[] = [];
  const only = process.env.LEASH_GROWTH_SERIES?.split(',').map((x) => x.trim());
  const all = points().filter((p) => !only || only.includes(p.series));
  for (const series of [...new Set(all.map((p) => p.series))]) {
    records.push(
      ...(await measureSeries(
        all.filter((p) => p.series === series),
        cluster,
        input,
        opts,
        log,
      )),
    );
  }
  for (const r of records) {
    const small = records.find((s) => s.series === r.series && s.workload === r.workload && s.size === Math.min(...records.filter((x) => x.series === r.series).map((x) => x.size)));
    if (!small || small.cpuMicrosPerRequest <= 0) continue;
    if (r === small) {
      r.ratio = 1;
      continue;
    }
    const paired = pairedRatio(small.roundCpuMicros, r.roundCpuMicros);
    r.ratioInterval = { ...paired, mean: round2(paired.mean), low: round2(paired.low), high: round2(paired.high) };
    r.ratio = r.ratioInterval.mean;
  }
  return records;
}

const round2 = (x: number) => Math.round(x * 100) / 100;

const pad = (s: string, n: number, right = false) => (right ? s.padEnd(n) : s.padStart(n));

export function formatGrowth(records: readonly GrowthRecord[]): string {
  const head = ['what grows', 'size', 'workload', 'req/s', 'p99 ms', 'cpu µs/req', 'rounds µs', 'vs small', 'start ms', 'reload ms', 'load avg'];
  const widths = [20, 10, 10, 7, 8, 10, 16, 20, 9, 9, 8];
  const line = (cells: string[]) => cells.map((c, i) => pad(c, widths[i] as number, i < 1 || i === 2)).join('  ');
  const rows = records.map((r) =>
    line([
      r.series,
      r.size.toLocaleString('en-US'),
      r.workload,
      r.reqPerSec.toFixed(0),
      r.p99.toFixed(1),
      String(r.cpuMicrosPerRequest),
      r.roundCpuMicros.join('/'),
      r.ratio === undefined ? '' : `${r.ratio.toFixed(2)}${r.ratioInterval ? ` [${r.ratioInterval.low.toFixed(2)}, ${r.ratioInterval.high.toFixed(2)}]` : ''}${r.ratio > GROWTH_BAR ? ' !' : ''}`,
      String(r.startMs),
      String(r.reloadMs),
      r.loadAvg.toFixed(2),
    ]),
  );
  const worstRecord = records.reduce<GrowthRecord | undefined>((w, r) => ((r.ratio ?? 0) > (w?.ratio ?? 0) ? r : w), undefined);
  const worst = worstRecord?.ratio ?? 0;
  const wi = worstRecord?.ratioInterval;
  const verdict = worst <= GROWTH_BAR ? 'met' : wi && wi.low <= GROWTH_BAR ? 'NOT met, though the interval reaches the bar' : 'NOT met';
  const sweeps = records.flatMap((r) =>
    r.sweep
      ? [
          `retention pass at ${r.size.toLocaleString('en-US')} tokens: ${r.sweep.purged.toLocaleString('en-US')} expired rows deleted in ${Math.round(r.sweep.ms)} ms, longest event-loop delay ${r.sweep.maxEventLoopDelayMs.toFixed(1)} ms`,
        ]
      : [],
  );
  const slowStart = Math.max(...records.map((r) => Math.max(r.startMs, r.reloadMs)));
  return [
    line(head),
    line(widths.map((w) => '-'.repeat(w))),
    ...rows,
    ...sweeps,
    `growth: worst CPU/request vs the small case ${worst.toFixed(2)}${wi ? ` [${wi.low.toFixed(2)}, ${wi.high.toFixed(2)}] over ${wi.rounds} paired rounds` : ''} (bar ${GROWTH_BAR.toFixed(2)}: ${verdict}); slowest start or reload ${slowStart} ms (bar ${START_BAR_MS}: ${slowStart < START_BAR_MS ? 'met' : 'NOT met'})`,
  ].join('\n');
}
