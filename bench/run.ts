/**
 * Leash's token-exchange and introspection benchmark against a bare-crypto baseline, in the
 * same run, on loopback. See docs/performance.md for what it measures and the numbers it gave.
 *
 *   npm run bench -- [--suite throughput|propagation|latency|overload|full] [--duration 10] [--connections 32] [--workers 0] [--store sqlite,redis] [--keys local,vault-kv,vault-transit] [--profile]
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { availableParallelism, cpus, loadavg, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import { BENCH_AUDIENCE, BENCH_CLUSTER_ISSUER, BenchCluster } from './cluster.js';
import { diffCpu, killAllChildren, startServer, threadCpu, type ServerChild } from './child.js';
import { basicAuthorization, exchangeBody, introspectionBody, runLoad } from './load.js';
import { FULL_SUITES, USAGE, fullSuiteDuration, parseOptions, type BenchOptions, type ServerName, type SuiteName, type WorkloadName } from './options.js';
import { formatProfile, formatTable, ratioLabel, ratios, workerScaling, type RunRecord } from './report.js';
import { readProfile, summariseProfile, type ProfileSummary } from './profile.js';
import { BASELINE_STATS_PATH, BENCH_RESOURCE_SERVER, type ServerInput } from './protocol.js';
import { killAllRedis, startRedis, type BenchRedis } from './redis.js';
// The Vault contract server (Vault's HTTP API shapes, real Transit signing): no real Vault can run here.
import { startVaultContract } from '../test/support/vault-contract.js';
import { measureTransitSign, type SignLatency } from './transit-latency.js';
import { formatPropagation, runPropagation } from './propagation.js';
import { formatLatency, runLatency } from './latency.js';
import { formatOverload, runOverload } from './overload.js';
import { compileBench, compiledRoot } from './compiled.js';
import { formatGrowth, runGrowth } from './growth.js';
import { renderFullRun, replaceSection } from './docs-section.js';

const BENCH_DIR = fileURLToPath(new URL('.', import.meta.url));
const ROOT = join(BENCH_DIR, '..');
const RESULTS_DIR = join(BENCH_DIR, 'results');
// The ceiling is the baseline's script told to do the minimum an exchange must do besides the crypto.
const SCRIPTS: Record<ServerName, string> = { baseline: join(BENCH_DIR, 'baseline-server.ts'), ceiling: join(BENCH_DIR, 'baseline-server.ts'), leash: join(BENCH_DIR, 'leash-server.ts') };
/** Distinct attestations used only to warm up the cold workload, so the measured pool is still unseen. */
const WARMUP_POOL = 4000;
/** Issue 18's goal: Leash at 60% of the ceiling's throughput (per process). */
const GOAL = 0.6;

const log = (msg: string) => process.stderr.write(`${msg}\n`);

interface Tokens {
  readonly pool: readonly string[];
  readonly warmupPool: readonly string[];
  readonly warm: string;
}

/** The resource server's credentials for `/introspect`, made up per run (never printed or saved). */
interface Credentials {
  readonly id: string;
  readonly secret: string;
}

/** What one workload sends to one server. */
interface Plan {
  readonly path: string;
  readonly headers?: Readonly<Record<string, string>>;
  readonly warmup: readonly string[];
  readonly measure: readonly string[];
}

/** What a benchServer run knows about the Leash child's store (nothing for the baseline). */
interface StoreContext {
  /** `sqlite`, `redis`, or either with `+vault-kv` / `+vault-transit`. */
  readonly store?: string;
  readonly redis?: BenchRedis;
}

/** One real exchange: a benchmark of error answers would be meaningless. Returns the access token (never printed). */
async function exchangeOnce(server: ServerChild, body: string): Promise<string> {
  const res = await fetch(`${server.ready.url}/token`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body });
  const json = (await res.json().catch(() => ({}))) as Record<string, unknown>;
  if (res.status !== 200 || typeof json.access_token !== 'string' || json.token_type !== 'Bearer') {
    const { access_token: _omit, ...shown } = json;
    throw new Error(`${server.name}: a single exchange failed: ${res.status} ${JSON.stringify(shown)}\n${server.stderrTail()}`);
  }
  return json.access_token;
}

/** One real introspection that must say `active: true` before any load. */
async function introspectOnce(server: ServerChild, accessToken: string, authorization: string): Promise<void> {
  const res = await fetch(`${server.ready.url}/introspect`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization },
    body: introspectionBody(accessToken),
  });
  const json = (await res.json().catch(() => ({}))) as Record<string, unknown>;
  if (res.status !== 200 || json.active !== true) {
    throw new Error(`${server.name}: a single introspection of a fresh token did not answer active: true: ${res.status} ${JSON.stringify(json)}\n${server.stderrTail()}`);
  }
}

/**
 * Introspection answers a server has given so far, `active` and everything else. autocannon
 * cannot read bodies (least of all in worker threads), so a 200 `{"active":false}` would pass
 * as a success; these counters, read before and after a run, catch it. Leash: its
 * `leash_introspections_total` metric; the baseline: its stats route.
 */
async function introspectionCounts(server: ServerChild, name: ServerName): Promise<{ active: number; other: number }> {
  if (name !== 'leash') {
    const stats = (await (await fetch(`${server.ready.url}${BASELINE_STATS_PATH}`)).json()) as { active: number; inactive: number };
    return { active: stats.active, other: stats.inactive };
  }
  if (!server.ready.metricsUrl) throw new Error(`${server.name}: announced no metrics URL`);
  // With --leash-workers N the scrape is answered for all workers at once (the primary aggregates them).
  const text = await (await fetch(server.ready.metricsUrl)).text();
  const counts = { active: 0, other: 0 };
  for (const m of text.matchAll(/^leash_introspections_total\{outcome="([a-z_]+)"\} ([0-9.e+]+)$/gm)) {
    if (m[1] === 'active') counts.active += Number(m[2]);
    else counts.other += Number(m[2]);
  }
  return counts;
}

/** Bodies, path and headers per workload for one server (its task id is part of every exchange). */
async function planFor(server: ServerChild, tokens: Tokens, workload: WorkloadName, creds: Credentials): Promise<Plan> {
  const { ready } = server;
  if (workload === 'warm') {
    const body = [exchangeBody(ready, tokens.warm)];
    return { path: '/token', warmup: body, measure: body };
  }
  if (workload === 'cold') {
    return { path: '/token', warmup: tokens.warmupPool.map((t) => exchangeBody(ready, t)), measure: tokens.pool.map((t) => exchangeBody(ready, t)) };
  }
  // introspect: one real token from this server, introspected over and over by one resource server.
  const accessToken = await exchangeOnce(server, exchangeBody(ready, tokens.warm));
  const authorization = basicAuthorization(creds.id, creds.secret);
  await introspectOnce(server, accessToken, authorization);
  const body = [introspectionBody(accessToken)];
  return { path: '/introspect', headers: { authorization }, warmup: body, measure: body };
}

async function measure(server: ServerChild, name: ServerName, workload: WorkloadName, tokens: Tokens, opts: BenchOptions, creds: Credentials, ctx: StoreContext): Promise<RunRecord> {
  const { ready } = server;
  const plan = await planFor(server, tokens, workload, creds);
  const load = { url: ready.url, path: plan.path, headers: plan.headers, connections: opts.connections, workers: opts.workers };
  const countsBefore = workload === 'introspect' ? await introspectionCounts(server, name) : undefined;
  if (opts.warmup > 0) await runLoad({ ...load, bodies: plan.warmup, seconds: opts.warmup });
  const bodies = plan.measure;
  const before = threadCpu(server.pid);
  const redisBefore = ctx.redis ? threadCpu(ctx.redis.pid) : undefined;
  const result = await runLoad({ ...load, bodies, seconds: opts.duration });
  const serverCpu = diffCpu(threadCpu(server.pid), before);
  const cpuTotal = Object.values(serverCpu).reduce((a, b) => a + b, 0);
  const perRequest = (cpuSeconds: number) => (result.requests > 0 ? Math.round((cpuSeconds / result.requests) * 1e6) : 0);
  const redisCpu = ctx.redis && redisBefore ? Object.values(diffCpu(threadCpu(ctx.redis.pid), redisBefore)).reduce((a, b) => a + b, 0) : undefined;
  const record: RunRecord = {
    ...result,
    workload,
    server: name,
    ...(ctx.store ? { store: ctx.store } : {}),
    serverCpu,
    cpuMicrosPerRequest: perRequest(cpuTotal),
    ...(redisCpu !== undefined ? { storeCpuMicrosPerRequest: perRequest(redisCpu) } : {}),
  };
  if (countsBefore) {
    const after = await introspectionCounts(server, name);
    const inactive = after.other - countsBefore.other;
    const ok = result.statusCodes['200'] ?? 0;
    if (inactive > 0 || after.active - countsBefore.active < ok) {
      throw new Error(
        `${server.name.toUpperCase()} DID NOT ANSWER active: true to every introspection: ${inactive} answers other than active (active: false or an error), ` +
          `${after.active - countsBefore.active} active for ${ok} 200s. Throughput of refusals is not a result.\n${server.stderrTail()}`,
      );
    }
  }
  if (workload === 'cold' && result.requests > bodies.length) {
    log(
      `  note: ${result.requests} requests cycled the ${bodies.length}-token pool ${(result.requests / bodies.length).toFixed(1)}x (Leash's identity cache holds 10,000 entries LRU, so a cycle over more than that still misses every time)`,
    );
  }
  return record;
}

/** Any non-2xx, socket error or timeout fails the bench, for either server. */
function checkAnswers(record: RunRecord, server: ServerChild): void {
  if (record.non2xx > 0 || record.errors > 0 || record.timeouts > 0) {
    throw new Error(
      `${server.name.toUpperCase()} ANSWERED ERRORS under the ${record.workload} workload: non-2xx ${record.non2xx}, socket errors ${record.errors}, timeouts ${record.timeouts}, ` +
        `status codes ${JSON.stringify(record.statusCodes)}. Throughput of failed requests is not a result.\n${server.stderrTail()}`,
    );
  }
}

async function benchServer(name: ServerName, input: ServerInput, tokens: Tokens, opts: BenchOptions, creds: Credentials, runs: RunRecord[], ctx: StoreContext = {}): Promise<void> {
  const label = ctx.store ? `${name}/${ctx.store}` : name;
  log(`starting ${label} server...`);
  const server = await startServer(label, SCRIPTS[name], input);
  try {
    await exchangeOnce(server, exchangeBody(server.ready, tokens.warm));
    for (const workload of opts.workloads) {
      log(`  ${label} / ${workload}: ${opts.warmup}s warmup + ${opts.duration}s measured, ${opts.connections} connections`);
      const record = await measure(server, name, workload, tokens, opts, creds, ctx);
      runs.push(record);
      log(`  ${label} / ${workload}: ${record.reqPerSec.toFixed(0)} req/s, p50 ${record.p50} ms, p99 ${record.p99} ms, non-2xx ${record.non2xx}`);
      checkAnswers(record, server);
    }
  } finally {
    await server.stop();
  }
}

/** Leash again, under --cpu-prof, for one workload (cold if asked for, else the first asked); the measured runs stay unprofiled. */
async function profileLeash(input: ServerInput, tokens: Tokens, opts: BenchOptions, creds: Credentials, stamp: string): Promise<ProfileSummary & { file: string }> {
  const dir = join(RESULTS_DIR, 'profile', stamp);
  await mkdir(dir, { recursive: true });
  const workload = opts.workloads.includes('cold') ? 'cold' : (opts.workloads[0] ?? 'cold');
  log(`profiling leash (${workload}) into ${dir} ...`);
  const server = await startServer('leash (profiled)', SCRIPTS.leash, input, ['--cpu-prof', '--cpu-prof-dir', dir]);
  let record: RunRecord;
  try {
    await exchangeOnce(server, exchangeBody(server.ready, tokens.warm));
    record = await measure(server, 'leash', workload, tokens, { ...opts, warmup: 0 }, creds, {});
    checkAnswers(record, server);
  } finally {
    await server.stop();
  }
  log(`  profiled run: ${record.reqPerSec.toFixed(0)} req/s (profiler overhead included)`);
  // One file per thread, named CPU.<date>.<time>.<pid>.<thread>.<seq>: tsx's module-loader
  // thread writes one too; the server runs on thread 0.
  const files = (await readdir(dir)).filter((f) => f.endsWith('.cpuprofile') && f.includes(`.${server.pid}.0.`));
  if (files.length === 0) throw new Error(`no main-thread .cpuprofile for pid ${server.pid} in ${dir}`);
  const file = join(dir, files.sort().at(-1) as string);
  const summary = summariseProfile(await readProfile(file), { root: compiledRoot() ?? ROOT, fromMicros: server.ready.readyAtMicros, top: 15 });
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
  await mkdir(RESULTS_DIR, { recursive: true });
  // A document without the markers is found now, not after a quarter of an hour of runs.
  if (opts.suite === 'full' && opts.docs) replaceSection(await readFile(opts.docs, 'utf8'), '');
  // The full run's time includes the compile.
  const started = performance.now();
  if (opts.runtime === 'node') await compileBench(log);
  if (opts.suite !== 'full') return (await runSuite(opts.suite, opts)).code;
  const loadStart = loadavg();
  const results: Array<{ suite: SuiteName; code: number; text: string; minutes: number }> = [];
  for (const suite of FULL_SUITES) {
    log(
      `\n=== suite ${suite} (load average ${loadavg()
        .map((n) => n.toFixed(2))
        .join(' ')}) ===`,
    );
    const suiteStarted = performance.now();
    results.push({ suite, ...(await runSuite(suite, { ...opts, duration: fullSuiteDuration(opts, suite) })), minutes: (performance.now() - suiteStarted) / 60_000 });
  }
  const minutes = (performance.now() - started) / 60_000;
  log(`\nfull: ${results.map((r) => `${r.suite} ${r.code === 0 ? 'ok' : 'FAILED'} (${r.minutes.toFixed(1)} min)`).join(', ')} in ${minutes.toFixed(1)} min`);
  if (opts.docs) {
    const body = renderFullRun({
      date: new Date(),
      machine: machine(),
      loadAverage: { start: loadStart, end: loadavg() },
      minutes,
      command: `npm run bench -- ${process.argv.slice(2).join(' ')}`,
      suites: results.map((r) => ({ suite: r.suite, ok: r.code === 0, text: r.text, minutes: r.minutes })),
    });
    await writeFile(opts.docs, replaceSection(await readFile(opts.docs, 'utf8'), body));
    log(`wrote the run into ${opts.docs}`);
  }
  return results.some((r) => r.code !== 0) ? 1 : 0;
}

/** What a suite printed on stdout (the report `full` writes into the docs), and its exit code. */
interface SuiteResult {
  readonly code: number;
  readonly text: string;
}

function report(text: string): string {
  process.stdout.write(text);
  return text;
}

async function runSuite(suite: Exclude<SuiteName, 'full'>, opts: BenchOptions): Promise<SuiteResult> {
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  // Each suite is self-contained: a failure in one does not stop `full` from running the next.
  try {
    if (suite === 'propagation') return await propagationSuite(opts, stamp);
    if (suite === 'latency') return await latencySuite(opts, stamp);
    if (suite === 'overload') return await overloadSuite(opts, stamp);
    if (suite === 'growth') return await growthSuite(opts, stamp);
    return await throughputSuite(opts, stamp);
  } catch (err) {
    const message = `SUITE ${suite.toUpperCase()} FAILED: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`;
    log(`\n${message}`);
    return { code: 1, text: message };
  } finally {
    killAllChildren();
    killAllRedis();
  }
}

async function throughputSuite(opts: BenchOptions, stamp: string): Promise<SuiteResult> {
  const cluster = new BenchCluster();
  const needCold = opts.workloads.includes('cold');
  const mintCount = needCold ? opts.pool + (opts.warmup > 0 ? WARMUP_POOL : 0) : 0;
  log(`minting ${mintCount + 1} RS256 service-account tokens...`);
  const t0 = performance.now();
  const minted = await cluster.mint(mintCount + 1);
  log(`  minted in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  const tokens: Tokens = { warm: minted[0] as string, pool: minted.slice(1, 1 + (needCold ? opts.pool : 0)), warmupPool: minted.slice(1 + (needCold ? opts.pool : 0)) };
  const creds: Credentials = { id: BENCH_RESOURCE_SERVER, secret: randomBytes(32).toString('base64url') };
  const input: ServerInput = { jwks: cluster.jwks, clusterIssuer: BENCH_CLUSTER_ISSUER, audience: BENCH_AUDIENCE, store: { kind: 'sqlite' }, resourceServer: creds };

  const runs: RunRecord[] = [];
  let failure: Error | undefined;
  let profile: (ProfileSummary & { file: string }) | undefined;
  let transitSign: SignLatency | undefined;
  try {
    for (const name of opts.servers) {
      if (name === 'baseline') {
        await benchServer(name, input, tokens, opts, creds, runs);
        continue;
      }
      if (name === 'ceiling') {
        // With --leash-workers the ceiling runs with each count too: what N processes get from this machine.
        for (const workers of opts.leashWorkers) {
          if (workers === 1) await benchServer(name, { ...input, ceiling: true }, tokens, opts, creds, runs);
          // Each worker keeps its own issued-token table, so a token is introspected only where it was issued: exchanges only.
          else await benchServer(name, { ...input, ceiling: true, workers }, tokens, { ...opts, workloads: opts.workloads.filter((w) => w !== 'introspect') }, creds, runs, { store: `×${workers}w` });
        }
        continue;
      }
      for (const store of opts.stores) {
        for (const [keys, workers] of opts.keys.flatMap((k) => opts.leashWorkers.map((w) => [k, w] as const))) {
          const variant = `${keys === 'local' ? store : `${store}+${keys}`}${workers > 1 ? `×${workers}w` : ''}`;
          const vault = keys === 'local' ? undefined : await startVaultContract();
          try {
            if (vault && keys === 'vault-transit' && !transitSign) {
              log('measuring Transit sign latency (1000 sequential signs through node-vault, contract server)...');
              transitSign = await measureTransitSign(vault);
            }
            const withKeys: ServerInput = { ...(vault ? { ...input, keys: { backend: keys, vaultAddress: vault.url, vaultToken: vault.rootToken } } : input), ...(workers > 1 ? { workers } : {}) };
            if (store === 'sqlite') {
              await benchServer(name, withKeys, tokens, opts, creds, runs, { store: variant });
              continue;
            }
            log(`starting redis-server (appendonly yes, appendfsync ${opts.appendfsync})...`);
            const redis = await startRedis(opts.appendfsync);
            try {
              await benchServer(name, { ...withKeys, store: { kind: 'redis', url: redis.url, keyPrefix: 'leash-bench:' } }, tokens, opts, creds, runs, { store: variant, redis });
            } finally {
              await redis.stop();
            }
          } finally {
            await vault?.close();
          }
        }
      }
    }
    if (opts.profile && opts.servers.includes('leash')) profile = await profileLeash(input, tokens, opts, creds, stamp);
  } catch (err) {
    failure = err instanceof Error ? err : new Error(String(err));
  }

  const summary = ratios(runs);
  const out = [
    '',
    `Leash token exchange and introspection vs the bare node:http + node:crypto baseline and the ceiling (${opts.duration}s per run, ${opts.connections} connections, ${opts.workers === 0 ? 'autocannon in-process' : `${opts.workers} autocannon workers`}, ${machine().nproc} CPUs, node ${process.version}, servers ${opts.runtime === 'node' ? 'compiled, on plain node' : 'through tsx'}${opts.stores.includes('redis') ? `, redis appendfsync ${opts.appendfsync}` : ''})`,
    formatTable(runs),
    // The issue's goal is about the exchange; introspection's ratio is reported next to it, not judged by it.
    ...summary.map((r) => {
      const parts = [
        r.leashOverBaseline === undefined ? undefined : `leash/baseline = ${r.leashOverBaseline.toFixed(3)}`,
        r.leashOverCeiling === undefined
          ? undefined
          : `leash/ceiling = ${r.leashOverCeiling.toFixed(3)} by req/s, ${r.cpuLeashOverCeiling!.toFixed(3)} by CPU per request (goal ${GOAL}: ${Math.min(r.leashOverCeiling, r.cpuLeashOverCeiling!) >= GOAL ? 'met' : 'NOT met'})`,
      ].filter((p) => p !== undefined);
      return `${ratioLabel(r)}: ${parts.join('; ')}`;
    }),
    // Goal 3 next to what the same machine gives the ceiling: the load generator shares the cores.
    ...workerScaling(runs).map((w, _, all) => {
      const hw = all.find((c) => c.variant.startsWith('ceiling/') && c.workload === w.workload && c.workers === w.workers);
      const ref = w.variant.startsWith('ceiling/') ? ' (what this machine gives N processes)' : hw ? ` (the ceiling's: ${hw.ratio.toFixed(2)}×)` : '';
      return `${w.variant} / one process, ${w.workload}: ${w.ratio.toFixed(2)}×${ref}; issue 18 goal 3: ≥ 1.6× with 2 workers`;
    }),
    ...(transitSign ? [`transit sign (contract server, sequential, ${transitSign.signs} signs): p50 ${transitSign.p50Ms} ms, p99 ${transitSign.p99Ms} ms, mean ${transitSign.meanMs} ms`] : []),
    ...(profile ? ['', formatProfile(profile), `profile: ${profile.file}`] : []),
  ];
  const text = report(`${out.join('\n')}\n`);

  const file = join(RESULTS_DIR, `${stamp}.json`);
  // Counts only: the results file never holds a token.
  const tokenCounts = { poolSize: tokens.pool.length, warmupPoolSize: tokens.warmupPool.length };
  await writeFile(
    file,
    `${JSON.stringify({ timestamp: new Date().toISOString(), machine: machine(), options: opts, tokens: tokenCounts, runs, ratios: summary, workerScaling: workerScaling(runs), goal: GOAL, profile, transitSign, failure: failure?.message }, null, 2)}\n`,
  );
  log(`results: ${file}`);
  if (failure) {
    log(`\nBENCHMARK FAILED: ${failure.message}`);
    return { code: 1, text: `${text}\nBENCHMARK FAILED: ${failure.message}\n` };
  }
  return { code: 0, text };
}

async function latencySuite(opts: BenchOptions, stamp: string): Promise<SuiteResult> {
  const loadStart = loadavg().map((n) => n.toFixed(2));
  const result = await runLatency(opts, { ceiling: SCRIPTS.ceiling, leash: SCRIPTS.leash }, log);
  const loadEnd = loadavg().map((n) => n.toFixed(2));
  const text = report(`\n${formatLatency(result)}\nload average ${loadStart.join(' ')} at start, ${loadEnd.join(' ')} at end; ${machine().nproc} CPUs, node ${process.version}\n`);
  const file = join(RESULTS_DIR, `${stamp}-latency.json`);
  await writeFile(file, `${JSON.stringify({ timestamp: new Date().toISOString(), machine: machine(), loadavg: { start: loadStart, end: loadEnd }, options: opts, latency: result }, null, 2)}\n`);
  log(`results: ${file}`);
  return { code: 0, text };
}

async function overloadSuite(opts: BenchOptions, stamp: string): Promise<SuiteResult> {
  const result = await runOverload(opts, SCRIPTS.leash, log);
  const text = report(`\n${formatOverload(result)}\n`);
  const file = join(RESULTS_DIR, `${stamp}-overload.json`);
  await writeFile(file, `${JSON.stringify({ timestamp: new Date().toISOString(), machine: machine(), options: opts, overload: result }, null, 2)}\n`);
  log(`results: ${file}`);
  return { code: 0, text };
}

async function propagationSuite(opts: BenchOptions, stamp: string): Promise<SuiteResult> {
  const creds: Credentials = { id: BENCH_RESOURCE_SERVER, secret: randomBytes(32).toString('base64url') };
  const result = await runPropagation(opts, creds, log);
  const text = report(`\n${formatPropagation(result)}\n`);
  const file = join(RESULTS_DIR, `${stamp}-propagation.json`);
  await writeFile(file, `${JSON.stringify({ timestamp: new Date().toISOString(), machine: machine(), options: opts, propagation: result }, null, 2)}\n`);
  log(`results: ${file}`);
  return { code: 0, text };
}

async function growthSuite(opts: BenchOptions, stamp: string): Promise<SuiteResult> {
  const growth = await runGrowth(opts, log);
  const text = report(`\nCost as history grows (CPU per exchange from /proc of the Leash child)\n${formatGrowth(growth)}\n`);
  const file = join(RESULTS_DIR, `${stamp}-growth.json`);
  await writeFile(file, `${JSON.stringify({ timestamp: new Date().toISOString(), machine: machine(), options: opts, growth }, null, 2)}\n`);
  log(`results: ${file}`);
  return { code: 0, text };
}

// Children never outlive the parent, whatever way it ends.
process.on('exit', () => {
  killAllChildren();
  killAllRedis();
});
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    killAllChildren();
    killAllRedis();
    process.exit(130);
  });
}
main().then(
  (code) => {
    killAllChildren();
    killAllRedis();
    process.exit(code);
  },
  (err: unknown) => {
    killAllChildren();
    killAllRedis();
    log(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    process.exit(1);
  },
);
