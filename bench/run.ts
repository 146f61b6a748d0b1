/**
 * Leash's token-exchange benchmark against a bare-crypto baseline, in the same run, on
 * loopback. See docs/performance.md for what it measures and the numbers it gave.
 *
 *   npm run bench -- [--duration 10] [--connections 32] [--workers 0] [--profile]
 */
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { availableParallelism, cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import { BENCH_AUDIENCE, BENCH_CLUSTER_ISSUER, BenchCluster } from './cluster.js';
import { diffCpu, killAllChildren, startServer, threadCpu, type ServerChild } from './child.js';
import { exchangeBody, runLoad } from './load.js';
import { USAGE, parseOptions, type BenchOptions, type ServerName, type WorkloadName } from './options.js';
import { formatProfile, formatTable, ratios, type RunRecord } from './report.js';
import { readProfile, summariseProfile, type ProfileSummary } from './profile.js';
import type { ServerInput, ServerReady } from './protocol.js';

const BENCH_DIR = fileURLToPath(new URL('.', import.meta.url));
const ROOT = join(BENCH_DIR, '..');
const RESULTS_DIR = join(BENCH_DIR, 'results');
const SCRIPTS: Record<ServerName, string> = { baseline: join(BENCH_DIR, 'baseline-server.ts'), leash: join(BENCH_DIR, 'leash-server.ts') };
/** Distinct attestations used only to warm up the cold workload, so the measured pool is still unseen. */
const WARMUP_POOL = 4000;
/** The issue's goal: Leash at 60% of the bare-crypto baseline's throughput. */
const GOAL = 0.6;

const log = (msg: string) => process.stderr.write(`${msg}\n`);

interface Tokens {
  readonly pool: readonly string[];
  readonly warmupPool: readonly string[];
  readonly warm: string;
}

/** Bodies per workload for one server (its task id is part of every request). */
function bodiesFor(ready: ServerReady, tokens: Tokens, workload: WorkloadName, phase: 'warmup' | 'measure'): string[] {
  if (workload === 'warm') return [exchangeBody(ready, tokens.warm)];
  return (phase === 'warmup' ? tokens.warmupPool : tokens.pool).map((t) => exchangeBody(ready, t));
}

/** One real exchange before any load: a benchmark of error answers would be meaningless. */
async function sanityCheck(server: ServerChild, body: string): Promise<void> {
  const res = await fetch(`${server.ready.url}/token`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body });
  const json = (await res.json().catch(() => ({}))) as Record<string, unknown>;
  if (res.status !== 200 || typeof json.access_token !== 'string' || json.token_type !== 'Bearer') {
    const { access_token: _omit, ...shown } = json;
    throw new Error(`${server.name}: a single exchange failed before the run: ${res.status} ${JSON.stringify(shown)}\n${server.stderrTail()}`);
  }
}

async function measure(server: ServerChild, name: ServerName, workload: WorkloadName, tokens: Tokens, opts: BenchOptions): Promise<RunRecord> {
  const { ready } = server;
  if (opts.warmup > 0) {
    await runLoad({ url: ready.url, bodies: bodiesFor(ready, tokens, workload, 'warmup'), seconds: opts.warmup, connections: opts.connections, workers: opts.workers });
  }
  const bodies = bodiesFor(ready, tokens, workload, 'measure');
  const before = threadCpu(server.pid);
  const result = await runLoad({ url: ready.url, bodies, seconds: opts.duration, connections: opts.connections, workers: opts.workers });
  const serverCpu = diffCpu(threadCpu(server.pid), before);
  const cpuTotal = Object.values(serverCpu).reduce((a, b) => a + b, 0);
  const record: RunRecord = {
    ...result,
    workload,
    server: name,
    serverCpu,
    cpuMicrosPerRequest: result.requests > 0 ? Math.round((cpuTotal / result.requests) * 1e6) : 0,
  };
  if (workload === 'cold' && result.requests > bodies.length) {
    log(`  note: ${result.requests} requests cycled the ${bodies.length}-token pool ${(result.requests / bodies.length).toFixed(1)}x (Leash's identity cache holds 10,000 entries LRU, so a cycle over more than that still misses every time)`);
  }
  return record;
}

function checkLeash(record: RunRecord, server: ServerChild): void {
  if (record.server !== 'leash') return;
  if (record.non2xx > 0 || record.errors > 0 || record.timeouts > 0) {
    throw new Error(
      `LEASH ANSWERED ERRORS under the ${record.workload} workload: non-2xx ${record.non2xx}, socket errors ${record.errors}, timeouts ${record.timeouts}, ` +
        `status codes ${JSON.stringify(record.statusCodes)}. Throughput of failed requests is not a result.\n${server.stderrTail()}`,
    );
  }
}

async function benchServer(name: ServerName, input: ServerInput, tokens: Tokens, opts: BenchOptions, runs: RunRecord[]): Promise<void> {
  log(`starting ${name} server...`);
  const server = await startServer(name, SCRIPTS[name], input);
  try {
    await sanityCheck(server, exchangeBody(server.ready, tokens.warm));
    for (const workload of opts.workloads) {
      log(`  ${name} / ${workload}: ${opts.warmup}s warmup + ${opts.duration}s measured, ${opts.connections} connections`);
      const record = await measure(server, name, workload, tokens, opts);
      runs.push(record);
      log(`  ${name} / ${workload}: ${record.reqPerSec.toFixed(0)} req/s, p50 ${record.p50} ms, p99 ${record.p99} ms, non-2xx ${record.non2xx}`);
      checkLeash(record, server);
    }
  } finally {
    await server.stop();
  }
}

/** Leash again, under --cpu-prof, for the cold workload only; the measured runs stay unprofiled. */
async function profileLeash(input: ServerInput, tokens: Tokens, opts: BenchOptions, stamp: string): Promise<ProfileSummary & { file: string }> {
  const dir = join(RESULTS_DIR, 'profile', stamp);
  await mkdir(dir, { recursive: true });
  log(`profiling leash (cold) into ${dir} ...`);
  const server = await startServer('leash (profiled)', SCRIPTS.leash, input, ['--cpu-prof', '--cpu-prof-dir', dir]);
  let record: RunRecord;
  try {
    await sanityCheck(server, exchangeBody(server.ready, tokens.warm));
    record = await measure(server, 'leash', 'cold', tokens, { ...opts, warmup: 0 });
    checkLeash(record, server);
  } finally {
    await server.stop();
  }
  log(`  profiled run: ${record.reqPerSec.toFixed(0)} req/s (profiler overhead included)`);
  // One file per thread, named CPU.<date>.<time>.<pid>.<thread>.<seq>: tsx's module-loader
  // thread writes one too; the server runs on thread 0.
  const files = (await readdir(dir)).filter((f) => f.endsWith('.cpuprofile') && f.includes(`.${server.pid}.0.`));
  if (files.length === 0) throw new Error(`no main-thread .cpuprofile for pid ${server.pid} in ${dir}`);
  const file = join(dir, files.sort().at(-1) as string);
  const summary = summariseProfile(await readProfile(file), { root: ROOT, fromMicros: server.ready.readyAtMicros, top: 15 });
  return { ...summary, file };
}

function machine() {
  const require = createRequire(import.meta.url);
  const autocannonVersion = (require('autocannon/package.json') as { version: string }).version;
  return {
    nproc: availableParallelism(),
    cpu: cpus()[0]?.model ?? 'unknown',
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    platform: `${process.platform} ${process.arch}`,
    autocannon: autocannonVersion,
  };
}

async function main(): Promise<number> {
  const opts = parseOptions(process.argv.slice(2));
  if (opts === 'help') {
    log(USAGE);
    return 0;
  }
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  await mkdir(RESULTS_DIR, { recursive: true });

  const cluster = new BenchCluster();
  const needCold = opts.workloads.includes('cold');
  const mintCount = needCold ? opts.pool + (opts.warmup > 0 ? WARMUP_POOL : 0) : 0;
  log(`minting ${mintCount + 1} RS256 service-account tokens...`);
  const t0 = performance.now();
  const minted = await cluster.mint(mintCount + 1);
  log(`  minted in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  const tokens: Tokens = { warm: minted[0] as string, pool: minted.slice(1, 1 + (needCold ? opts.pool : 0)), warmupPool: minted.slice(1 + (needCold ? opts.pool : 0)) };
  const input: ServerInput = { jwks: cluster.jwks, clusterIssuer: BENCH_CLUSTER_ISSUER, audience: BENCH_AUDIENCE };

  const runs: RunRecord[] = [];
  let failure: Error | undefined;
  let profile: (ProfileSummary & { file: string }) | undefined;
  try {
    for (const name of opts.servers) await benchServer(name, input, tokens, opts, runs);
    if (opts.profile && opts.servers.includes('leash')) profile = await profileLeash(input, tokens, opts, stamp);
  } catch (err) {
    failure = err instanceof Error ? err : new Error(String(err));
  }

  const summary = ratios(runs);
  const out = [
    '',
    `Leash token exchange vs bare node:http + node:crypto baseline (${opts.duration}s per run, ${opts.connections} connections, ${opts.workers === 0 ? 'autocannon in-process' : `${opts.workers} autocannon workers`}, ${machine().nproc} CPUs, node ${process.version})`,
    formatTable(runs),
    ...summary.map((r) => `${r.workload}: leash/baseline = ${r.leashOverBaseline.toFixed(3)} (goal ${GOAL}: ${r.leashOverBaseline >= GOAL ? 'met' : 'NOT met'})`),
    ...(profile ? ['', formatProfile(profile), `profile: ${profile.file}`] : []),
  ];
  process.stdout.write(`${out.join('\n')}\n`);

  const file = join(RESULTS_DIR, `${stamp}.json`);
  // Counts only: the results file never holds a token.
  const tokenCounts = { poolSize: tokens.pool.length, warmupPoolSize: tokens.warmupPool.length };
  await writeFile(
    file,
    `${JSON.stringify({ timestamp: new Date().toISOString(), machine: machine(), options: opts, tokens: tokenCounts, runs, ratios: summary, goal: GOAL, profile, failure: failure?.message }, null, 2)}\n`,
  );
  log(`results: ${file}`);
  if (failure) {
    log(`\nBENCHMARK FAILED: ${failure.message}`);
    return 1;
  }
  return 0;
}

// Children never outlive the parent, whatever way it ends.
process.on('exit', killAllChildren);
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    killAllChildren();
    process.exit(130);
  });
}
main().then(
  (code) => {
    killAllChildren();
    process.exit(code);
  },
  (err: unknown) => {
    killAllChildren();
    log(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    process.exit(1);
  },
);
