/**
 * `npm run bench -- --suite overload` (also `npm run bench:overload`), issue 18 goal 4:
 * Leash under an open-loop (fixed-rate) load of warm exchanges at 80 % of its measured
 * capacity and at `--overload` times it (default 3), with `settings.admission` at its
 * defaults, with the public port on one listening socket instead of `accept_sockets` (8), with
 * the event-loop rule at 200 ms instead of 1 s, and unbounded (what Leash did
 * before admission control). Clients give up
 * after `--client-timeout` ms, as real ones do. Per phase it reports what the goal asks:
 *
 * - the accepted requests' p50/p99 (and the 3×/0.8× p99 ratio, bar ≤ 5×);
 * - waits past the admission queue deadline (bar: none), as the server sees them
 *   (`leash_admission_wait_seconds`: the loop's lag when a request was read plus its queue
 *   time) and as an upper bound from the client (which also holds the kernel's and the
 *   generator's own delays: its loop delay is printed beside);
 * - health probes (`/healthz`, `/readyz`) on the management listener, one each every
 *   100 ms, a fresh connection and a 1 s time-out each as a kubelet's (bar: always answer);
 * - tokens issued to clients that had already given up (`leash_tokens_issued_total` minus
 *   200s received) next to the client time-outs and `exchange.abandoned` refusals.
 *
 * The load generator runs in the bench process, on the same machine: on a small or busy box
 * it competes with the server, so every phase is printed with the load average and the
 * generator's own sending lag.
 */
import { get } from 'node:http';
import { loadavg } from 'node:os';
import { startServer, type ServerChild } from './child.js';
import { BENCH_AUDIENCE, BENCH_CLUSTER_ISSUER, BenchCluster } from './cluster.js';
import { exchangeBody, runLoad } from './load.js';
import { openLoop, percentile, round1, round2, sumMetric } from './open-loop.js';
import type { BenchOptions } from './options.js';
import { BENCH_RESOURCE_SERVER, type ServerInput } from './protocol.js';

/** Goal 4's bar: accepted p99 at the overloaded rate at most this many times the p99 at 0.8×. */
export const OVERLOAD_P99_GOAL = 5;
const CAPACITY_SECONDS = 5;
const PROBE_INTERVAL_MS = 100;
/** A kubelet's default probe `timeoutSeconds`. */
const PROBE_TIMEOUT_MS = 1000;
/** `settings.admission.queue_timeout_ms` default (src/config/schema.ts): the deadline the defaults config runs with. */
const DEFAULT_QUEUE_TIMEOUT_MS = 200;

export interface ProbeStats {
  readonly sent: number;
  /** 200 within the time-out. */
  readonly ok: number;
  readonly p99: number;
  readonly max: number;
}

export interface OverloadPhase {
  readonly label: string;
  readonly factor: number;
  readonly offeredPerSec: number;
  readonly sent: number;
  readonly ok: number;
  readonly okPerSec: number;
  readonly okP50: number;
  readonly okP99: number;
  readonly okMax: number;
  readonly rejected503: number;
  readonly rejectedP99: number;
  readonly rejectedMax: number;
  readonly clientTimeouts: number;
  readonly otherStatus: Record<string, number>;
  readonly errors: number;
  /** Server side, from /metrics deltas. */
  readonly tokensIssued: number;
  readonly tokensToGoneClients: number;
  readonly abandonedExchanges: number;
  /** Requests the server saw (decided exchanges plus admission refusals): below `sent` when the generator could not deliver. */
  readonly serverSaw: number;
  readonly admissionRejected: Record<string, number>;
  readonly healthz: ProbeStats;
  readonly readyz: ProbeStats;
  readonly senderLagP99: number;
  /** The generator's own loop delay, max (ms): answers read that late count in the client's latencies. */
  readonly generatorLoopDelayMax: number;
  /** Longest answer on a connection's first request (it also waited in the kernel's accept queue) and on a reused one; connections opened. */
  readonly freshMax: number;
  readonly reusedMax: number;
  readonly connections: number;
  /**
   * Server view (`leash_admission_wait_seconds`): requests whose wait before admission or
   * refusal (the loop's lag when read, plus the queue) passed the deadline bucket, and the
   * upper bound of the longest wait (the smallest bucket holding every one, ms).
   */
  readonly serverPastDeadline?: number;
  readonly serverWaitMaxBucketMs?: number;
  readonly loadavg1: number;
}

export interface OverloadConfigResult {
  readonly config: string;
  /** The queue deadline in force (ms); undefined: no queue (unbounded). */
  readonly queueTimeoutMs?: number;
  readonly phases: OverloadPhase[];
  /** Upper bound of the longest wait past the queue deadline at the overloaded rate (client view, see pastDeadline). */
  readonly pastDeadlineMs?: number;
}

export interface OverloadResult {
  readonly timestamp: string;
  readonly capacity: number;
  readonly capacityP99: number;
  readonly overload: number;
  readonly seconds: number;
  readonly clientTimeoutMs: number;
  readonly loadavg: { readonly start: number[]; readonly end: number[] };
  readonly results: OverloadConfigResult[];
}

const scrape = async (server: ServerChild) => (await fetch(server.ready.metricsUrl!)).text();

/** Wait until the server has nothing in flight or queued (abandoned work included), then a little more. */
async function settle(server: ServerChild): Promise<void> {
  const deadline = performance.now() + 30_000;
  while (performance.now() < deadline) {
    const text = await scrape(server);
    if (sumMetric(text, 'leash_admission_in_flight') === 0 && sumMetric(text, 'leash_admission_queued') === 0) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  await new Promise((r) => setTimeout(r, 500));
}

/** One GET on a fresh connection (as a kubelet probes), ms to a 200, or undefined (other status, error, time-out). */
function probeOnce(url: string): Promise<number | undefined> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    const req = get(url, { agent: false, timeout: PROBE_TIMEOUT_MS }, (res) => {
      res.resume();
      res.on('end', () => {
        const ms = performance.now() - t0;
        resolve(res.statusCode === 200 && ms <= PROBE_TIMEOUT_MS ? ms : undefined);
      });
    });
    req.on('timeout', () => req.destroy(new Error('probe time-out')));
    req.on('error', () => resolve(undefined));
  });
}

/** Probes `url` every PROBE_INTERVAL_MS until stopped. */
function prober(url: string): { stop(): Promise<ProbeStats> } {
  const latencies: number[] = [];
  const pending: Array<Promise<void>> = [];
  let sent = 0;
  const timer = setInterval(() => {
    sent++;
    pending.push(probeOnce(url).then((ms) => void (ms !== undefined && latencies.push(ms))));
  }, PROBE_INTERVAL_MS);
  return {
    async stop() {
      clearInterval(timer);
      await Promise.all(pending);
      latencies.sort((a, b) => a - b);
      return { sent, ok: latencies.length, p99: round1(percentile(latencies, 99)), max: round1(latencies.at(-1) ?? 0) };
    },
  };
}

const WAIT_METRIC = 'leash_admission_wait_seconds';

/** The server's own view of admission waits over a phase, from the histogram's deltas (undefined without a queue deadline). */
export function serverWaits(before: string, after: string, queueTimeoutMs: number | undefined): Pick<OverloadPhase, 'serverPastDeadline' | 'serverWaitMaxBucketMs'> {
  if (queueTimeoutMs === undefined) return {};
  const delta = (le: string) => sumMetric(after, `${WAIT_METRIC}_bucket`, `le="${le}"`) - sumMetric(before, `${WAIT_METRIC}_bucket`, `le="${le}"`);
  const total = delta('+Inf');
  const bounds = new Set<string>();
  for (const line of after.split('\n')) {
    const m = line.match(new RegExp(`^${WAIT_METRIC}_bucket\\{.*le="([^"]+)"`));
    if (m && m[1] !== '+Inf') bounds.add(m[1]!);
  }
  const sorted = [...bounds].map(Number).sort((a, b) => a - b);
  const atDeadline = sorted.find((b) => Math.abs(b * 1000 - queueTimeoutMs) < 1e-6);
  // The smallest bucket that holds every wait of the phase: an upper bound of the longest.
  const maxBucket = sorted.find((b) => delta(String(b)) === total);
  return {
    serverPastDeadline: atDeadline === undefined ? undefined : total - delta(String(atDeadline)),
    serverWaitMaxBucketMs: maxBucket === undefined ? Infinity : Math.round(maxBucket * 1000),
  };
}

async function phase(server: ServerChild, body: string, factor: number, capacity: number, opts: BenchOptions, queueTimeoutMs: number | undefined): Promise<OverloadPhase> {
  const before = await scrape(server);
  const management = server.ready.metricsUrl!.replace(/\/metrics$/, '');
  const probes = { healthz: prober(`${management}/healthz`), readyz: prober(`${management}/readyz`) };
  const r = await openLoop({ url: server.ready.url, path: '/token', bodies: [body], rate: capacity * factor, seconds: opts.duration, timeoutMs: opts.clientTimeoutMs });
  const healthz = await probes.healthz.stop();
  const readyz = await probes.readyz.stop();
  await settle(server);
  const after = await scrape(server);
  const delta = (name: string, filter = '') => sumMetric(after, name, filter) - sumMetric(before, name, filter);
  const tokensIssued = delta('leash_tokens_issued_total');
  const admissionRejected: Record<string, number> = {};
  for (const reason of ['queue_full', 'queue_timeout', 'event_loop_delay', 'client_gone']) admissionRejected[reason] = delta('leash_admission_rejected_total', `reason="${reason}"`);
  return {
    label: `${factor}×`,
    factor,
    offeredPerSec: Math.round(r.offeredPerSec),
    sent: r.sent,
    ok: r.ok,
    okPerSec: Math.round(r.ok / opts.duration),
    okP50: round1(percentile(r.okLatencies, 50)),
    okP99: round1(percentile(r.okLatencies, 99)),
    okMax: round1(r.okLatencies.at(-1) ?? 0),
    rejected503: r.rejected503,
    rejectedP99: round1(percentile(r.rejectedLatencies, 99)),
    rejectedMax: round1(r.rejectedLatencies.at(-1) ?? 0),
    clientTimeouts: r.clientTimeouts,
    otherStatus: r.otherStatus,
    errors: r.errors,
    tokensIssued,
    tokensToGoneClients: tokensIssued - r.ok,
    abandonedExchanges: delta('leash_exchanges_total', 'outcome="abandoned"'),
    serverSaw: delta('leash_exchanges_total') + Object.values(admissionRejected).reduce((a, b) => a + b, 0),
    admissionRejected,
    healthz,
    readyz,
    senderLagP99: r.senderLagP99,
    generatorLoopDelayMax: r.generatorLoopDelayMax,
    freshMax: r.freshMax,
    reusedMax: r.reusedMax,
    connections: r.connections,
    ...serverWaits(before, after, queueTimeoutMs),
    loadavg1: r.loadavg1,
  };
}

/**
 * Upper bound of the longest wait past the queue deadline, from the client: a 503 costs next
 * to nothing to produce, so one answered D ms after it was sent waited about D (in the socket
 * or the queue); a 200 also carries its own processing, estimated by the p50 at 0.8× (a low
 * estimate under overload, where 32 exchanges share the CPU: so this overstates the wait).
 * A client time-out is not counted: the client's give-up, not Leash's answer, ended it.
 */
function pastDeadline(queueTimeoutMs: number, low: OverloadPhase, high: OverloadPhase): number {
  return round1(Math.max(0, high.rejectedMax - queueTimeoutMs, high.okMax - low.okP50 - queueTimeoutMs));
}

export interface OverloadConfig {
  readonly name: string;
  readonly admission?: ServerInput['admission'];
  readonly acceptSockets?: number;
  readonly queueTimeoutMs?: number;
  /** Run by `--suite full` too (the goal's config and its reference); the others only by `--suite overload`. */
  readonly inFull?: boolean;
}

const OVERLOAD_CONFIGS: readonly OverloadConfig[] = [
  { name: 'admission defaults', queueTimeoutMs: DEFAULT_QUEUE_TIMEOUT_MS, inFull: true },
  // The defaults with the public port on one listening socket (what Leash did before
  // settings.listen.accept_sockets): libuv accepts one connection per socket per turn.
  { name: 'one accept socket', acceptSockets: 1, queueTimeoutMs: DEFAULT_QUEUE_TIMEOUT_MS },
  // The defaults but with the event-loop rule at 200 ms, the queue deadline, instead of 1 s:
  // whether refusing earlier sheds what the default rule leaves to wait.
  { name: 'loop delay 200 ms', admission: { max_event_loop_delay_ms: 200 }, queueTimeoutMs: DEFAULT_QUEUE_TIMEOUT_MS },
  // As good as no admission control: every request is let in, as before.
  { name: 'unbounded', admission: { max_in_flight: 10000, max_queue: 0, max_event_loop_delay_ms: 0 }, inFull: true },
];

/**
 * The configs a run compares. `--suite full` keeps the goal's (the defaults) and its
 * reference (unbounded): the other two answered questions of their own (accept sockets,
 * the loop-delay rule) and stay in `--suite overload`; without them `full` keeps a margin
 * under its 15 minutes.
 */
export function overloadConfigs(suite: BenchOptions['suite']): readonly OverloadConfig[] {
  return suite === 'full' ? OVERLOAD_CONFIGS.filter((c) => c.inFull === true) : OVERLOAD_CONFIGS;
}

export async function runOverload(opts: BenchOptions, leashScript: string, log: (msg: string) => void): Promise<OverloadResult> {
  const cluster = new BenchCluster();
  const [warm] = await cluster.mint(1);
  const creds = { id: BENCH_RESOURCE_SERVER, secret: 'overload-suite-introspection-unused' };
  const base: ServerInput = { jwks: cluster.jwks, clusterIssuer: BENCH_CLUSTER_ISSUER, audience: BENCH_AUDIENCE, store: { kind: 'sqlite' }, resourceServer: creds };
  const configs = overloadConfigs(opts.suite);
  const loadStart = loadavg().map(round2);
  log(`overload: load average ${loadStart.join(' ')}`);
  const results: OverloadConfigResult[] = [];
  let capacity: number | undefined;
  let capacityP99 = 0;
  for (const config of configs) {
    const server = await startServer(`leash (${config.name})`, leashScript, {
      ...base,
      admission: config.admission,
      ...(config.acceptSockets !== undefined ? { acceptSockets: config.acceptSockets } : {}),
    });
    try {
      const body = exchangeBody(server.ready, warm!);
      // Warm up (JIT, caches), then measure capacity once, closed loop, as the throughput suite does.
      const load = { url: server.ready.url, path: '/token', bodies: [body], connections: opts.connections, workers: opts.workers };
      if (opts.warmup > 0) await runLoad({ ...load, seconds: opts.warmup });
      if (capacity === undefined) {
        const cap = await runLoad({ ...load, seconds: CAPACITY_SECONDS });
        capacity = Math.round((cap.statusCodes['200'] ?? 0) / cap.seconds);
        capacityP99 = cap.p99;
        log(`  capacity (closed loop, ${opts.connections} connections): ${capacity} exchanges/s, p99 ${cap.p99} ms`);
        if (capacity < 10) throw new Error(`capacity measured at ${capacity}/s: too low to mean anything\n${server.stderrTail()}`);
      }
      // One unmeasured second open loop at 0.8×: the generator's own HTTP client code gets compiled too.
      await openLoop({ url: server.ready.url, path: '/token', bodies: [body], rate: capacity * 0.8, seconds: 1, timeoutMs: opts.clientTimeoutMs });
      await settle(server);
      const phases: OverloadPhase[] = [];
      for (const factor of [0.8, opts.overload]) {
        log(`  ${config.name}: ${factor}× capacity (${Math.round(capacity * factor)}/s) for ${opts.duration} s...`);
        const p = await phase(server, body, factor, capacity, opts, config.queueTimeoutMs);
        log(
          `    200 ${p.okPerSec}/s p50 ${p.okP50} p99 ${p.okP99} max ${p.okMax} ms; 503 ${p.rejected503} (max ${p.rejectedMax} ms); time-outs ${p.clientTimeouts}; tokens to gone clients ${p.tokensToGoneClients}; healthz ${p.healthz.ok}/${p.healthz.sent}; load ${p.loadavg1}`,
        );
        phases.push(p);
      }
      const [low, high] = phases as [OverloadPhase, OverloadPhase];
      results.push({
        config: config.name,
        queueTimeoutMs: config.queueTimeoutMs,
        phases,
        pastDeadlineMs: config.queueTimeoutMs === undefined ? undefined : pastDeadline(config.queueTimeoutMs, low, high),
      });
    } finally {
      await server.stop();
    }
  }
  return {
    timestamp: new Date().toISOString(),
    capacity: capacity!,
    capacityP99,
    overload: opts.overload,
    seconds: opts.duration,
    clientTimeoutMs: opts.clientTimeoutMs,
    loadavg: { start: loadStart, end: loadavg().map(round2) },
    results,
  };
}

const probe = (s: ProbeStats) => `${s.ok}/${s.sent}, p99 ${s.p99}, max ${s.max}`;
const serverWaitCell = (p: OverloadPhase) => (p.serverPastDeadline === undefined ? '-' : `${p.serverPastDeadline}, ≤ ${p.serverWaitMaxBucketMs}`);

/** Goal 4's "no request waits past the deadline", server view (what Leash measures and bounds) and client view (an upper bound that holds the generator too). */
function deadlineVerdict(r: OverloadConfigResult, high: OverloadPhase): string {
  if (r.queueTimeoutMs === undefined) return `no queue deadline (n/a)`;
  const server = high.serverPastDeadline;
  const serverPart =
    server === undefined ? 'server view n/a' : `server view: ${server} of ${high.sent} waited past it, the longest ≤ ${high.serverWaitMaxBucketMs} ms (bar: none: ${server === 0 ? 'met' : 'NOT met'})`;
  const client = r.pastDeadlineMs;
  return (
    `waits past the ${r.queueTimeoutMs} ms queue deadline: ${serverPart}; client view ≤ ${client} ms past it (${client === 0 ? 'met' : 'NOT met'}; ` +
    `the generator's own loop was up to ${high.generatorLoopDelayMax} ms late; the longest answer on a reused connection took ${high.reusedMax} ms, on a new one ${high.freshMax} ms, which includes the kernel's accept queue)`
  );
}

export function formatOverload(o: OverloadResult): string {
  const lines = [
    `Overload (issue 18, goal 4), ${o.timestamp}: capacity ${o.capacity}/s closed loop (p99 ${o.capacityP99} ms); open loop of warm exchanges, ${o.seconds} s per phase; client time-out ${o.clientTimeoutMs} ms; load average ${o.loadavg.start.join(' ')} at start, ${o.loadavg.end.join(' ')} at end`,
    '',
    '| config | load | offered/s | server saw/s | 200/s | 200 p50 ms | 200 p99 ms | 200 max ms | 503 | 503 max ms | client time-outs | tokens issued | to gone clients | abandoned (refused) | rejected full/timeout/loop delay/gone | waits past deadline (server), longest ≤ ms | /healthz ok, p99, max ms | /readyz ok, p99, max ms | sender lag p99 ms | generator loop delay max ms | longest answer ms, new / reused connection (new connections) | load avg |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|',
  ];
  const verdicts: string[] = [];
  for (const r of o.results) {
    for (const p of r.phases) {
      const a = p.admissionRejected;
      lines.push(
        `| ${r.config} | ${p.label} | ${p.offeredPerSec} | ${Math.round(p.serverSaw / o.seconds)} | ${p.okPerSec} | ${p.okP50} | ${p.okP99} | ${p.okMax} | ${p.rejected503} | ${p.rejectedMax} | ${p.clientTimeouts} | ${p.tokensIssued} | ${p.tokensToGoneClients} | ${p.abandonedExchanges} | ${a.queue_full}/${a.queue_timeout}/${a.event_loop_delay}/${a.client_gone} | ${serverWaitCell(p)} | ${probe(p.healthz)} | ${probe(p.readyz)} | ${p.senderLagP99} | ${p.generatorLoopDelayMax} | ${p.freshMax} / ${p.reusedMax} (${p.connections}) | ${p.loadavg1} |`,
      );
    }
    const [low, high] = r.phases as [OverloadPhase, OverloadPhase];
    const ratio = low.okP99 > 0 ? high.okP99 / low.okP99 : undefined;
    const probesOk = r.phases.every((p) => p.healthz.ok === p.healthz.sent && p.readyz.ok === p.readyz.sent);
    const gone = high.tokensToGoneClients;
    // Every accepted latency is capped by the client time-out: a ratio near it says nothing.
    const capped = low.okP99 * 2 > o.clientTimeoutMs;
    const ratioVerdict =
      ratio === undefined
        ? 'NOT met'
        : capped
          ? `not measurable: the p99 at ${low.label} is already ${low.okP99} ms, near the ${o.clientTimeoutMs} ms client time-out that caps it`
          : ratio <= OVERLOAD_P99_GOAL
            ? 'met'
            : 'NOT met';
    verdicts.push(
      `${r.config}: shed, not queued at ${high.label}: ${high.rejected503} answered 503, ${high.clientTimeouts} clients gave up waiting (bar 0: ${high.clientTimeouts === 0 ? 'met' : 'NOT met'}); ` +
        `accepted p99 at ${high.label} / at ${low.label} = ${ratio === undefined ? 'n/a' : `${ratio.toFixed(1)}×`} (bar ≤ ${OVERLOAD_P99_GOAL}×: ${ratioVerdict}); ` +
        `${deadlineVerdict(r, high)}; ` +
        `health probes ${probesOk ? 'all answered (met)' : 'NOT all answered (NOT met)'}; ` +
        `tokens to clients gone at ${high.label}: ${gone} (client time-outs ${high.clientTimeouts}, abandoned ${high.abandonedExchanges}; bar 0: ${gone <= 0 ? 'met' : 'NOT met'})`,
    );
  }
  return [...lines, '', ...verdicts].join('\n');
}
