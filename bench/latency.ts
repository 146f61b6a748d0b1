/**
 * `npm run bench -- --suite latency` (issue 18, goal 5): latency at a comfortable load.
 *
 * 1. The ceiling's capacity per workload (warm, cold), closed loop as the throughput suite
 *    measures it (autocannon, --connections, --workers); then, per --store, Leash's.
 * 2. At --fraction (default 0.4) of Leash's own capacity, then at --fraction of the
 *    ceiling's: an open-loop (fixed-rate) load, latency from each request's scheduled send
 *    time, on the ceiling and on Leash in alternating slices (same rate, same drift of a
 *    shared machine's load). When Leash cannot sustain the ceiling-based rate (it runs at
 *    ~0.2-0.4x the ceiling), the point at its own capacity still says how its tail compares
 *    at a load it can carry.
 *
 * The goal: Leash's p99 ≤ 2× the ceiling's p99 at the same rate, every request answered 200.
 */
import { startServer, type ServerChild } from './child.js';
import { BenchCluster, BENCH_AUDIENCE, BENCH_CLUSTER_ISSUER } from './cluster.js';
import { exchangeBody, runLoad } from './load.js';
import { openLoop, percentile, round1, round2, sumMetric, type OpenLoopResult } from './open-loop.js';
import type { BenchOptions, WorkloadName } from './options.js';
import type { ServerInput } from './protocol.js';
import { startRedis, type BenchRedis } from './redis.js';

/** Issue 18, goal 5: Leash's p99 at most this many times the ceiling's at the same rate. */
export const LATENCY_GOAL = 2;
/** Closed-loop seconds for a capacity measurement. */
const CAPACITY_SECONDS = 5;
/**
 * Distinct attestations for the cold workload, cycled: more than Leash's identity cache holds
 * (10,000 LRU), so a token comes round again only after it was evicted and every exchange misses.
 */
const COLD_POOL = 12_000;
/** Alternating slices per server at each rate (see pair()). */
const ROUNDS = 2;

type LatencyWorkload = Extract<WorkloadName, 'warm' | 'cold'>;

export interface LatencyPoint {
  /** The ceiling's and a Leash's points measured in alternation share it. */
  readonly pair: string;
  readonly workload: LatencyWorkload;
  /** `ceiling` or `leash/<store>`. */
  readonly server: string;
  /** What the rate is a fraction of: the ceiling's capacity or this Leash's. */
  readonly basis: 'ceiling' | 'leash';
  readonly basisCapacity: number;
  readonly offeredPerSec: number;
  readonly okPerSec: number;
  readonly sent: number;
  readonly ok: number;
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly max: number;
  readonly rejected503: number;
  readonly clientTimeouts: number;
  readonly otherErrors: number;
  readonly senderLagP99: number;
  readonly generatorCpuMicrosPerRequest: number;
  readonly loadavg1: number;
}

export interface LatencyResult {
  readonly fraction: number;
  readonly seconds: number;
  readonly clientTimeoutMs: number;
  readonly capacities: Array<{ server: string; workload: LatencyWorkload; reqPerSec: number; p99: number }>;
  readonly points: LatencyPoint[];
}

function point(r: OpenLoopResult, workload: LatencyWorkload, server: string, basis: 'ceiling' | 'leash', basisCapacity: number, pair: string): LatencyPoint {
  const lat = r.okLatencies;
  return {
    pair,
    workload,
    server,
    basis,
    basisCapacity,
    offeredPerSec: r.offeredPerSec,
    okPerSec: round1(r.ok / r.seconds),
    sent: r.sent,
    ok: r.ok,
    p50: round2(percentile(lat, 50)),
    p90: round2(percentile(lat, 90)),
    p99: round2(percentile(lat, 99)),
    max: round2(lat.at(-1) ?? 0),
    rejected503: r.rejected503,
    clientTimeouts: r.clientTimeouts,
    otherErrors: r.errors + Object.values(r.otherStatus).reduce((a, b) => a + b, 0),
    senderLagP99: r.senderLagP99,
    generatorCpuMicrosPerRequest: r.generatorCpuMicrosPerRequest,
    loadavg1: r.loadavg1,
  };
}

/** Leash only: wait until nothing is in flight or queued (an overloaded phase leaves a backlog), then a pause. */
async function settle(server: ServerChild): Promise<void> {
  const metrics = server.ready.metricsUrl;
  const deadline = performance.now() + 30_000;
  while (metrics && performance.now() < deadline) {
    const text = await (await fetch(metrics)).text();
    if (sumMetric(text, 'leash_admission_in_flight') === 0 && sumMetric(text, 'leash_admission_queued') === 0) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  await new Promise((r) => setTimeout(r, 500));
}

export async function runLatency(opts: BenchOptions, scripts: { ceiling: string; leash: string }, log: (msg: string) => void): Promise<LatencyResult> {
  const workloads = opts.workloads.filter((w): w is LatencyWorkload => w === 'warm' || w === 'cold');
  if (workloads.length === 0) throw new Error('--suite latency measures the warm and cold exchanges: --workload must name at least one of them');
  const cluster = new BenchCluster();
  const needCold = workloads.includes('cold');
  log(`minting ${needCold ? COLD_POOL + 1 : 1} RS256 service-account tokens...`);
  const minted = await cluster.mint(needCold ? COLD_POOL + 1 : 1);
  const warm = minted[0] as string;
  const pool = minted.slice(1);
  const creds = { id: 'bench-api', secret: 'latency-suite-introspection-unused' };
  const input: ServerInput = { jwks: cluster.jwks, clusterIssuer: BENCH_CLUSTER_ISSUER, audience: BENCH_AUDIENCE, store: { kind: 'sqlite' }, resourceServer: creds };
  // Cold: each server walks the pool from where it left off (every load run starts at its first
  // body), so a token comes back to a Leash only after all 12,000 others have been to it.
  const cursors = new Map<ServerChild, number>();
  const bodiesFor = (server: ServerChild, w: LatencyWorkload) => {
    if (w === 'warm') return [exchangeBody(server.ready, warm)];
    const at = cursors.get(server) ?? 0;
    return [...pool.slice(at), ...pool.slice(0, at)].map((t) => exchangeBody(server.ready, t));
  };
  const advance = (server: ServerChild, w: LatencyWorkload, requests: number) => {
    if (w === 'cold') cursors.set(server, ((cursors.get(server) ?? 0) + requests) % pool.length);
  };

  const capacities: LatencyResult['capacities'] = [];
  const points: LatencyPoint[] = [];
  const capacity = async (server: ServerChild, label: string, w: LatencyWorkload): Promise<number> => {
    const load = { url: server.ready.url, path: '/token', bodies: bodiesFor(server, w), connections: opts.connections, workers: opts.workers };
    if (opts.warmup > 0) advance(server, w, (await runLoad({ ...load, seconds: opts.warmup })).requests);
    const r = await runLoad({ ...load, bodies: bodiesFor(server, w), seconds: CAPACITY_SECONDS });
    advance(server, w, r.requests);
    const ok = r.statusCodes['200'] ?? 0;
    const reqPerSec = Math.round(ok / r.seconds);
    capacities.push({ server: label, workload: w, reqPerSec, p99: r.p99 });
    log(`  ${label} / ${w}: capacity ${reqPerSec} req/s closed loop (${opts.connections} connections, p99 ${r.p99} ms, non-2xx ${r.non2xx})`);
    if (reqPerSec < 10) throw new Error(`${label}: capacity measured at ${reqPerSec}/s: too low to mean anything\n${server.stderrTail()}`);
    return reqPerSec;
  };
  /**
   * The ceiling and one Leash at the same rate, in ROUNDS alternating slices (ceiling, Leash,
   * ceiling, Leash...), each slice's latencies merged per server: on a machine shared with
   * other work the load drifts within seconds, and alternating exposes both servers to the
   * same drift (the issue's own runs alternated servers too).
   */
  const pair = async (ceiling: ServerChild, leash: ServerChild, label: string, w: LatencyWorkload, basis: 'ceiling' | 'leash', basisCapacity: number): Promise<void> => {
    const rate = basisCapacity * opts.fraction;
    const slice = opts.duration / ROUNDS;
    log(
      `  ${w}: ceiling and ${label} alternating, open loop at ${Math.round(rate)}/s (${opts.fraction} of ${basis === 'ceiling' ? "the ceiling's" : `${label}'s`} ${basisCapacity}/s), ${ROUNDS} x ${slice} s each...`,
    );
    const servers = [
      { server: ceiling, label: 'ceiling', slices: [] as OpenLoopResult[] },
      { server: leash, label, slices: [] as OpenLoopResult[] },
    ];
    const loop = (server: ServerChild) => ({ url: server.ready.url, path: '/token', bodies: bodiesFor(server, w), rate, timeoutMs: opts.clientTimeoutMs });
    // One unmeasured second at the rate first: the generator's own HTTP client code gets compiled too.
    if (opts.warmup > 0) {
      for (const s of servers) {
        advance(s.server, w, (await openLoop({ ...loop(s.server), seconds: 1 })).sent);
        await settle(s.server);
      }
    }
    for (let round = 0; round < ROUNDS; round++) {
      for (const s of servers) {
        const r = await openLoop({ ...loop(s.server), seconds: slice });
        advance(s.server, w, r.sent);
        s.slices.push(r);
        // A slice that overloaded Leash leaves a backlog: it drains before the other server's slice.
        await settle(s.server);
      }
    }
    const id = `${label}/${w}/${basis}`;
    for (const s of servers) {
      const p = point(merge(s.slices), w, s.label, basis, basisCapacity, id);
      log(
        `    ${s.label}: ${p.okPerSec} ok/s, p50 ${p.p50} p90 ${p.p90} p99 ${p.p99} max ${p.max} ms, 503 ${p.rejected503}, time-outs ${p.clientTimeouts}, errors ${p.otherErrors}, sender lag p99 ${p.senderLagP99} ms, generator ${p.generatorCpuMicrosPerRequest} µs CPU/req, load ${p.loadavg1}`,
      );
      points.push(p);
    }
  };

  log('starting the ceiling...');
  const ceiling = await startServer('ceiling', scripts.ceiling, { ...input, ceiling: true });
  try {
    const ceilingCapacity = new Map<LatencyWorkload, number>();
    for (const w of workloads) ceilingCapacity.set(w, await capacity(ceiling, 'ceiling', w));
    for (const store of opts.stores) {
      const label = `leash/${store}`;
      let redis: BenchRedis | undefined;
      if (store === 'redis') {
        log(`starting redis-server (appendonly yes, appendfsync ${opts.appendfsync})...`);
        redis = await startRedis(opts.appendfsync);
      }
      try {
        log(`starting ${label}...`);
        const leash = await startServer(label, scripts.leash, redis ? { ...input, store: { kind: 'redis', url: redis.url, keyPrefix: 'leash-bench:' } } : input);
        try {
          for (const w of workloads) {
            const own = await capacity(leash, label, w);
            await settle(leash);
            // The comfortable point first: the ceiling-based rate may overload Leash and leave a backlog behind.
            await pair(ceiling, leash, label, w, 'leash', own);
            await pair(ceiling, leash, label, w, 'ceiling', ceilingCapacity.get(w)!);
          }
        } finally {
          await leash.stop();
        }
      } finally {
        await redis?.stop();
      }
    }
  } finally {
    await ceiling.stop();
  }
  return { fraction: opts.fraction, seconds: opts.duration, clientTimeoutMs: opts.clientTimeoutMs, capacities, points };
}

/** One result from a server's slices: counts added, latencies merged, the worst sender lag, the last load average. */
function merge(slices: readonly OpenLoopResult[]): OpenLoopResult {
  const all = (f: (r: OpenLoopResult) => readonly number[]) => slices.flatMap(f).sort((a, b) => a - b);
  const sum = (f: (r: OpenLoopResult) => number) => slices.reduce((a, r) => a + f(r), 0);
  const otherStatus: Record<string, number> = {};
  for (const r of slices) for (const [k, v] of Object.entries(r.otherStatus)) otherStatus[k] = (otherStatus[k] ?? 0) + v;
  const sent = sum((r) => r.sent);
  return {
    offeredPerSec: slices[0]!.offeredPerSec,
    seconds: sum((r) => r.seconds),
    sent,
    ok: sum((r) => r.ok),
    okLatencies: all((r) => r.okLatencies),
    rejected503: sum((r) => r.rejected503),
    rejectedLatencies: all((r) => r.rejectedLatencies),
    otherStatus,
    clientTimeouts: sum((r) => r.clientTimeouts),
    errors: sum((r) => r.errors),
    senderLagP99: Math.max(...slices.map((r) => r.senderLagP99)),
    senderLagMax: Math.max(...slices.map((r) => r.senderLagMax)),
    generatorLoopDelayP99: Math.max(...slices.map((r) => r.generatorLoopDelayP99)),
    generatorLoopDelayMax: Math.max(...slices.map((r) => r.generatorLoopDelayMax)),
    freshMax: Math.max(...slices.map((r) => r.freshMax)),
    reusedMax: Math.max(...slices.map((r) => r.reusedMax)),
    connections: sum((r) => r.connections),
    generatorCpuMicrosPerRequest: sent > 0 ? Math.round(sum((r) => r.generatorCpuMicrosPerRequest * r.sent) / sent) : 0,
    loadavg1: slices.at(-1)!.loadavg1,
  };
}

/** The ceiling's slices alternated with `p`'s. */
function ceilingFor(result: LatencyResult, p: LatencyPoint): LatencyPoint | undefined {
  return result.points.find((c) => c.server === 'ceiling' && c.pair === p.pair);
}

/** Met: every request answered 200 in time, the offered rate carried, and p99 within the goal of the ceiling's. */
export function verdict(result: LatencyResult, p: LatencyPoint): { ratio?: number; met: boolean; why: string } {
  const c = ceilingFor(result, p);
  if (!c || c.p99 <= 0) return { met: false, why: 'no ceiling point at that rate' };
  const ratio = p.p99 / c.p99;
  const failed = p.sent - p.ok;
  if (failed > 0)
    return { ratio, met: false, why: `${failed} of ${p.sent} requests not answered 200 (503 ${p.rejected503}, time-outs ${p.clientTimeouts}, errors ${p.otherErrors}): the rate is not sustained` };
  return { ratio, met: ratio <= LATENCY_GOAL, why: ratio <= LATENCY_GOAL ? 'met' : `p99 ${ratio.toFixed(1)}x the ceiling's` };
}

export function formatLatency(result: LatencyResult): string {
  const head = `Open-loop latency (issue 18, goal 5): ${result.seconds} s per point at ${result.fraction} of a closed-loop capacity, latency from the scheduled send time, client time-out ${result.clientTimeoutMs} ms`;
  const lines = [
    head,
    '',
    '| workload | rate basis | server | offered/s | 200/s | p50 ms | p90 ms | p99 ms | max ms | 503 | time-outs | errors | p99 / ceiling p99 | goal ≤ 2× | sender lag p99 ms | generator µs CPU/req | load avg |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const p of result.points) {
    const v = p.server === 'ceiling' ? undefined : verdict(result, p);
    lines.push(
      `| ${p.workload} | ${result.fraction} × ${p.basis} (${p.basisCapacity}/s) | ${p.server} | ${Math.round(p.offeredPerSec)} | ${Math.round(p.okPerSec)} | ${p.p50} | ${p.p90} | ${p.p99} | ${p.max} | ${p.rejected503} | ${p.clientTimeouts} | ${p.otherErrors} | ${v?.ratio === undefined ? '' : `${v.ratio.toFixed(2)}×`} | ${v ? (v.met ? 'met' : `**NOT met**: ${v.why}`) : ''} | ${p.senderLagP99} | ${p.generatorCpuMicrosPerRequest} | ${p.loadavg1} |`,
    );
  }
  lines.push('', `capacities (closed loop): ${result.capacities.map((c) => `${c.server} ${c.workload} ${c.reqPerSec}/s`).join(', ')}`);
  return lines.join('\n');
}
