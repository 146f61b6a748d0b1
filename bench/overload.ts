/**
 * Overload benchmark (issue 18, goal 4): Leash under an open-loop (fixed-rate) load of warm
 * exchanges at 80 % of its measured capacity and at `--overload` times it, once with
 * `settings.admission` at its defaults and once unbounded (what Leash did before admission
 * control). Clients give up after `--client-timeout` ms, as real ones do. It reports the
 * accepted requests' p50/p99, the 503s (and how fast they came), client time-outs, and the
 * tokens the server issued that no client received (issued to clients that had given up).
 *
 *   npm run bench:overload -- [--overload 3] [--duration 10] [--client-timeout 1000]
 *
 * Latency is measured from each request's scheduled send time, so a client-side backlog
 * counts against the server (no coordinated omission). The load generator runs in this
 * process, on the same machine: on a small or busy box it competes with the server, so
 * numbers are printed with the load average and are only comparable within one run.
 */
import { Agent, request } from 'node:http';
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BENCH_AUDIENCE, BENCH_CLUSTER_ISSUER, BenchCluster } from './cluster.js';
import { killAllChildren, startServer, type ServerChild } from './child.js';
import { exchangeBody, runLoad } from './load.js';
import { BENCH_RESOURCE_SERVER, type ServerInput } from './protocol.js';

const BENCH_DIR = fileURLToPath(new URL('.', import.meta.url));
const LEASH = join(BENCH_DIR, 'leash-server.ts');
const log = (msg: string) => process.stderr.write(`${msg}\n`);

interface Options {
  readonly overload: number;
  readonly seconds: number;
  readonly clientTimeoutMs: number;
  readonly capacitySeconds: number;
}

function parseArgs(argv: readonly string[]): Options {
  const opts = { overload: 3, seconds: 10, clientTimeoutMs: 1000, capacitySeconds: 5 };
  for (let i = 0; i < argv.length; i++) {
    const [flag, value] = [argv[i], argv[i + 1]];
    const num = Number(value);
    if (flag === '--overload' && num > 1) opts.overload = num;
    else if (flag === '--duration' && num >= 1) opts.seconds = num;
    else if (flag === '--client-timeout' && num >= 10) opts.clientTimeoutMs = num;
    else if (flag === '--capacity-duration' && num >= 1) opts.capacitySeconds = num;
    else throw new Error(`unknown or bad option ${flag} ${value ?? ''}\nusage: npm run bench:overload -- [--overload 3] [--duration 10] [--client-timeout 1000] [--capacity-duration 5]`);
    i++;
  }
  return opts;
}

interface PhaseResult {
  readonly label: string;
  readonly offeredPerSec: number;
  readonly sent: number;
  readonly ok: number;
  readonly okPerSec: number;
  readonly okP50: number;
  readonly okP99: number;
  readonly okMax: number;
  readonly rejected503: number;
  readonly rejectedP99: number;
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
  readonly loadavg1: number;
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] as number;
}

/** Sum of every series of `name` (optionally only those whose labels contain `filter`) in a Prometheus exposition. */
function sumMetric(text: string, name: string, filter = ''): number {
  let total = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name) || (line[name.length] !== '{' && line[name.length] !== ' ')) continue;
    if (filter && !line.includes(filter)) continue;
    total += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return total;
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

/** Open-loop load: `rate` POSTs a second for `seconds`, each abandoned by its client after `timeoutMs`. */
async function openLoop(server: ServerChild, body: string, rate: number, seconds: number, timeoutMs: number, label: string): Promise<PhaseResult> {
  const url = new URL('/token', server.ready.url);
  const agent = new Agent({ keepAlive: true, maxSockets: Infinity });
  const okLatencies: number[] = [];
  const rejectedLatencies: number[] = [];
  const otherStatus: Record<string, number> = {};
  let sent = 0;
  let timeouts = 0;
  let errors = 0;
  const before = await scrape(server);
  const inflight = new Set<Promise<void>>();
  const fire = (scheduled: number) => {
    const p = new Promise<void>((resolve) => {
      let done = false;
      const finish = () => {
        if (!done) {
          done = true;
          resolve();
        }
      };
      const req = request(
        { host: url.hostname, port: url.port, path: url.pathname, method: 'POST', agent, headers: { 'content-type': 'application/x-www-form-urlencoded', 'content-length': Buffer.byteLength(body) } },
        (res) => {
          res.resume();
          res.on('end', () => {
            clearTimeout(timer);
            const ms = performance.now() - scheduled;
            if (res.statusCode === 200) okLatencies.push(ms);
            else if (res.statusCode === 503) rejectedLatencies.push(ms);
            else otherStatus[String(res.statusCode)] = (otherStatus[String(res.statusCode)] ?? 0) + 1;
            finish();
          });
        },
      );
      // The client gives up: its connection closes, as a real client's would. Decided after
      // this turn's I/O (setImmediate): on a starved generator the timer phase runs before the
      // poll phase that would read an answer which had in fact arrived in time.
      const timer = setTimeout(
        () =>
          setImmediate(() => {
            if (done) return;
            timeouts++;
            req.destroy();
            finish();
          }),
        Math.max(1, timeoutMs - (performance.now() - scheduled)),
      );
      req.on('error', () => {
        clearTimeout(timer);
        if (!done) errors++;
        finish();
      });
      req.end(body);
    });
    inflight.add(p);
    void p.then(() => inflight.delete(p));
  };
  const start = performance.now();
  const end = start + seconds * 1000;
  const interval = 1000 / rate;
  while (performance.now() < end) {
    // Send everything that is due (a late tick sends its backlog, each stamped with its own schedule).
    const now = performance.now();
    while (start + sent * interval <= now) fire(start + sent++ * interval);
    await new Promise((r) => setTimeout(r, 2));
  }
  await Promise.all(inflight);
  agent.destroy();
  await settle(server);
  const after = await scrape(server);
  const tokensIssued = sumMetric(after, 'leash_tokens_issued_total') - sumMetric(before, 'leash_tokens_issued_total');
  const admissionRejected: Record<string, number> = {};
  for (const reason of ['queue_full', 'queue_timeout', 'event_loop_delay', 'client_gone']) {
    const filter = `reason="${reason}"`;
    admissionRejected[reason] = sumMetric(after, 'leash_admission_rejected_total', filter) - sumMetric(before, 'leash_admission_rejected_total', filter);
  }
  okLatencies.sort((a, b) => a - b);
  rejectedLatencies.sort((a, b) => a - b);
  const r = (n: number) => Math.round(n * 10) / 10;
  return {
    label,
    offeredPerSec: Math.round(rate),
    sent,
    ok: okLatencies.length,
    okPerSec: Math.round(okLatencies.length / seconds),
    okP50: r(percentile(okLatencies, 50)),
    okP99: r(percentile(okLatencies, 99)),
    okMax: r(okLatencies.at(-1) ?? 0),
    rejected503: rejectedLatencies.length,
    rejectedP99: r(percentile(rejectedLatencies, 99)),
    clientTimeouts: timeouts,
    otherStatus,
    errors,
    tokensIssued,
    tokensToGoneClients: tokensIssued - okLatencies.length,
    abandonedExchanges: sumMetric(after, 'leash_exchanges_total', 'outcome="abandoned"') - sumMetric(before, 'leash_exchanges_total', 'outcome="abandoned"'),
    serverSaw: sumMetric(after, 'leash_exchanges_total') - sumMetric(before, 'leash_exchanges_total') + Object.values(admissionRejected).reduce((a, b) => a + b, 0),
    admissionRejected,
    loadavg1: Math.round(loadavg()[0]! * 100) / 100,
  };
}

async function main(): Promise<void> {
  const opts = parseArgs(process.argv.slice(2));
  const cluster = new BenchCluster();
  const [warm] = await cluster.mint(1);
  const creds = { id: BENCH_RESOURCE_SERVER, secret: randomBytes(32).toString('base64url') };
  const base: ServerInput = { jwks: cluster.jwks, clusterIssuer: BENCH_CLUSTER_ISSUER, audience: BENCH_AUDIENCE, store: { kind: 'sqlite' }, resourceServer: creds };
  const configs: ReadonlyArray<{ name: string; admission?: ServerInput['admission'] }> = [
    { name: 'admission defaults' },
    // As good as no admission control: every request is let in, as before.
    { name: 'unbounded', admission: { max_in_flight: 10000, max_queue: 0, max_event_loop_delay_ms: 0 } },
  ];
  const loadStart = loadavg().map((n) => Math.round(n * 100) / 100);
  log(`machine: ${cpus().length} cores (${cpus()[0]?.model ?? '?'}), load average ${loadStart.join(' ')}`);
  const results: Array<{ config: string; capacity: number; phases: PhaseResult[] }> = [];
  let capacity: number | undefined;
  for (const config of configs) {
    const server = await startServer(`leash (${config.name})`, LEASH, { ...base, admission: config.admission });
    try {
      const body = exchangeBody(server.ready, warm!);
      // Warm up (JIT, caches), then measure capacity once, closed-loop (32 connections, as the main bench).
      await runLoad({ url: server.ready.url, path: '/token', bodies: [body], seconds: 2, connections: 32, workers: 0 });
      if (capacity === undefined) {
        const cap = await runLoad({ url: server.ready.url, path: '/token', bodies: [body], seconds: opts.capacitySeconds, connections: 32, workers: 0 });
        capacity = Math.round((cap.statusCodes['200'] ?? 0) / cap.seconds);
        log(`capacity (closed loop, 32 connections): ${capacity} exchanges/s, p99 ${cap.p99} ms`);
        if (capacity < 10) throw new Error(`capacity measured at ${capacity}/s: too low to mean anything`);
      }
      await settle(server);
      const phases: PhaseResult[] = [];
      for (const factor of [0.8, opts.overload]) {
        log(`${config.name}: ${factor}x capacity (${Math.round(capacity * factor)}/s) for ${opts.seconds} s...`);
        phases.push(await openLoop(server, body, capacity * factor, opts.seconds, opts.clientTimeoutMs, `${factor}x`));
      }
      results.push({ config: config.name, capacity, phases });
    } finally {
      await server.stop();
    }
  }
  const loadEnd = loadavg().map((n) => Math.round(n * 100) / 100);

  const lines = [
    `Overload bench, ${new Date().toISOString()}, ${cpus().length} cores, load average ${loadStart.join(' ')} at start, ${loadEnd.join(' ')} at end; capacity ${capacity}/s (closed loop); client time-out ${opts.clientTimeoutMs} ms; ${opts.seconds} s per phase`,
    '',
    '| config | load | offered/s | server saw/s | 200/s | 200 p50 ms | 200 p99 ms | 503 | 503 p99 ms | client time-outs | tokens issued | to gone clients | abandoned (refused) | rejected full/timeout/loop delay/gone | load avg |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const r of results) {
    for (const p of r.phases) {
      const a = p.admissionRejected;
      lines.push(
        `| ${r.config} | ${p.label} | ${p.offeredPerSec} | ${Math.round(p.serverSaw / opts.seconds)} | ${p.okPerSec} | ${p.okP50} | ${p.okP99} | ${p.rejected503} | ${p.rejectedP99} | ${p.clientTimeouts} | ${p.tokensIssued} | ${p.tokensToGoneClients} | ${p.abandonedExchanges} | ${a.queue_full}/${a.queue_timeout}/${a.event_loop_delay}/${a.client_gone} | ${p.loadavg1} |`,
      );
    }
    const [low, high] = r.phases;
    if (low && high && low.okP99 > 0) lines.push(`| ${r.config} | p99 ratio | | | | **${(high.okP99 / low.okP99).toFixed(1)}x** (goal ≤ 5x) | | | | | | | | | |`);
  }
  process.stdout.write(`${lines.join('\n')}\n`);
  const dir = join(BENCH_DIR, 'results');
  await mkdir(dir, { recursive: true });
  const file = join(dir, `overload-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  await writeFile(file, JSON.stringify({ options: opts, loadavg: { start: loadStart, end: loadEnd }, results }, null, 2));
  log(`wrote ${file}`);
}

main().catch((err: unknown) => {
  killAllChildren();
  log(`overload bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  process.exit(1);
});
