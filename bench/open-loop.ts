/**
 * Open-loop (fixed-rate) load: requests leave on a schedule (`rate` a second), whether or not
 * earlier ones were answered, as independent clients would send them. Each latency is
 * measured from the request's scheduled send time, so a backlog in the load generator or in
 * the server counts against the answer (no coordinated omission). Used by the latency and
 * overload suites (issue 18, goals 4 and 5).
 */
import { loadavg } from 'node:os';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { RawClient } from './raw-client.js';

export interface OpenLoopOptions {
  readonly url: string;
  /** POST target (/token). */
  readonly path: string;
  /** Bodies sent in turn (one: the warm exchange; a pool of distinct attestations: the cold one). */
  readonly bodies: readonly string[];
  readonly rate: number;
  readonly seconds: number;
  /** A client gives up after this long (from its scheduled send time) and closes its connection. */
  readonly timeoutMs: number;
}

export interface OpenLoopResult {
  readonly offeredPerSec: number;
  readonly seconds: number;
  readonly sent: number;
  /** 200 answers and their latencies (ms, ascending) from the scheduled send time. */
  readonly ok: number;
  readonly okLatencies: readonly number[];
  /** 503 answers (admission control) and their latencies. */
  readonly rejected503: number;
  readonly rejectedLatencies: readonly number[];
  readonly otherStatus: Record<string, number>;
  readonly clientTimeouts: number;
  /** Socket errors (refused, reset) before an answer. */
  readonly errors: number;
  /** How late the generator itself sent (actual minus scheduled send time, ms): large values mean the numbers describe the generator, not the server. */
  readonly senderLagP99: number;
  readonly senderLagMax: number;
  /**
   * The generator's own event-loop delay, p99 and max (ms): an answer that arrived while its
   * loop was stuck is read late, so its latency includes up to this much of the generator's time.
   */
  readonly generatorLoopDelayP99: number;
  readonly generatorLoopDelayMax: number;
  /**
   * Longest answer (any status, ms) on a connection's first request and on a reused one, and
   * how many connections were opened: a first request also waited for the server to accept
   * its connection (the kernel's accept queue), which the server's own clocks cannot see.
   */
  readonly freshMax: number;
  readonly reusedMax: number;
  readonly connections: number;
  /** CPU the whole bench process (the generator) spent per request sent, µs: it shares the machine with the server. */
  readonly generatorCpuMicrosPerRequest: number;
  /** One-minute load average at the end of the phase. */
  readonly loadavg1: number;
}

/** Nearest-rank percentile of an ascending array. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] as number;
}

export const round1 = (n: number) => Math.round(n * 10) / 10;
export const round2 = (n: number) => Math.round(n * 100) / 100;

/** Send `rate` POSTs a second for `seconds`; resolves once every request has an outcome (answer, time-out or error). */
export async function openLoop(opts: OpenLoopOptions): Promise<OpenLoopResult> {
  if (!opts.url.startsWith('http://127.0.0.1:')) throw new Error(`refusing to load ${opts.url}: loopback only`);
  if (opts.bodies.length === 0 || !(opts.rate > 0)) throw new TypeError('openLoop: no bodies or no rate');
  const url = new URL(opts.path, opts.url);
  const client = new RawClient(url.hostname, Number(url.port));
  const requests = opts.bodies.map((b) => RawClient.formPost(url.pathname, url.host, b));
  const okLatencies: number[] = [];
  const rejectedLatencies: number[] = [];
  const otherStatus: Record<string, number> = {};
  const lags: number[] = [];
  let sent = 0;
  let timeouts = 0;
  let errors = 0;
  let pending = 0;
  let freshMax = 0;
  let reusedMax = 0;
  let connections = 0;
  let allDone: (() => void) | undefined;
  interface Flight {
    readonly scheduled: number;
    abandon: () => void;
  }
  // In send order, so in order of scheduled time: the time-out sweep stops at the first that may still wait.
  const inFlight = new Set<Flight>();
  const finish = (f: Flight) => {
    inFlight.delete(f);
    if (--pending === 0 && allDone) allDone();
  };
  const fire = (scheduled: number, request: Buffer) => {
    pending++;
    const f: Flight = { scheduled, abandon: () => undefined };
    inFlight.add(f);
    f.abandon = client.send(request, (answer) => {
      if (!inFlight.has(f)) return;
      if (answer instanceof Error) errors++;
      else {
        const ms = performance.now() - scheduled;
        if (answer.fresh) {
          connections++;
          freshMax = Math.max(freshMax, ms);
        } else reusedMax = Math.max(reusedMax, ms);
        if (answer.status === 200) okLatencies.push(ms);
        else if (answer.status === 503) rejectedLatencies.push(ms);
        else otherStatus[String(answer.status)] = (otherStatus[String(answer.status)] ?? 0) + 1;
      }
      finish(f);
    });
    lags.push(performance.now() - scheduled);
  };
  // The client gives up: its connection closes, as a real client's would. Decided after this
  // turn's I/O (setImmediate): on a starved generator the timer phase runs before the poll
  // phase that would read an answer which had in fact arrived in time.
  const sweep = () => {
    const t = performance.now();
    for (const f of inFlight) {
      if (t - f.scheduled < opts.timeoutMs) break;
      timeouts++;
      f.abandon();
      finish(f);
    }
  };
  const sweeper = setInterval(() => setImmediate(sweep), 5);
  const cpuBefore = process.cpuUsage();
  const loopDelay = monitorEventLoopDelay({ resolution: 10 });
  loopDelay.enable();
  const start = performance.now();
  const end = start + opts.seconds * 1000;
  const interval = 1000 / opts.rate;
  const total = Math.floor(opts.seconds * opts.rate);
  while (sent < total) {
    // Send everything that is due (a late tick sends its backlog, each stamped with its own schedule).
    const now = performance.now();
    while (sent < total && start + sent * interval <= now) {
      fire(start + sent * interval, requests[sent % requests.length] as Buffer);
      sent++;
    }
    if (performance.now() >= end) break;
    // Sleep until the next send is due; setTimeout is clamped to 1 ms, the finest pacing a
    // timer gives without spinning a core the server needs. (Not a fixed 1 ms tick: at low
    // rates the wake-ups would cost the generator more than its requests.)
    const wait = Math.max(0, start + sent * interval - performance.now());
    await new Promise((r) => setTimeout(r, wait));
  }
  if (pending > 0) await new Promise<void>((r) => (allDone = r));
  loopDelay.disable();
  clearInterval(sweeper);
  client.close();
  const cpu = process.cpuUsage(cpuBefore);
  okLatencies.sort((a, b) => a - b);
  rejectedLatencies.sort((a, b) => a - b);
  lags.sort((a, b) => a - b);
  return {
    offeredPerSec: round1(opts.rate),
    seconds: opts.seconds,
    sent,
    ok: okLatencies.length,
    okLatencies,
    rejected503: rejectedLatencies.length,
    rejectedLatencies,
    otherStatus,
    clientTimeouts: timeouts,
    errors,
    senderLagP99: round2(percentile(lags, 99)),
    senderLagMax: round2(lags.at(-1) ?? 0),
    // The histogram is in ns and includes the 10 ms resolution's own period.
    generatorLoopDelayP99: round2(Math.max(0, loopDelay.percentile(99) / 1e6 - 10)),
    generatorLoopDelayMax: round2(Math.max(0, loopDelay.max / 1e6 - 10)),
    freshMax: round1(freshMax),
    reusedMax: round1(reusedMax),
    connections,
    generatorCpuMicrosPerRequest: sent > 0 ? Math.round((cpu.user + cpu.system) / sent) : 0,
    loadavg1: round2(loadavg()[0] ?? 0),
  };
}

/** Sum of every series of `name` (optionally only those whose labels contain `filter`) in a Prometheus exposition. */
export function sumMetric(text: string, name: string, filter = ''): number {
  let total = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name) || (line[name.length] !== '{' && line[name.length] !== ' ')) continue;
    if (filter && !line.includes(filter)) continue;
    total += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return total;
}
