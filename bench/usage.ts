/**
 * The usage benchmark (issue 13's load bar), against a real Leash child on loopback:
 *
 *   A  exchanges (warm workload) while the usage sender sends at C's rate into a sink that
 *      does not parse (`--no-sender-control`: exchanges alone)
 *   B  POST /usage alone, batches of 100 records, closed loop: the ingestion ceiling
 *   C  exchanges while usage is ingested at a paced 20,000 records/s: the slowdown
 *   D  a resource server (express + requireLeashToken) with and without the usage reporter:
 *      its CPU per call, the difference being what reporting costs: reporting to a sink
 *      that only parses the batches (the resource server's own cost, the bar) and to Leash
 *      (which ingests on the same cores); each reporting server is loaded at the same time
 *      as the one without (a pair sees the same machine speed), --rounds times each
 *
 *   npm run bench:usage -- [--duration 10] [--connections 16] [--rate 20000] [--tokens 20] [--rounds 2] [--commit-window MS] [--store sqlite|redis] [--usage-worker] [--rs-rate 2000]
 *                          [--only rs | --skip rs] [--rs-transport node|fetch] [--rs-control] [--no-sender-control]
 *
 * `--only rs`: D alone; `--skip rs`: A, B, C without D. `--rs-transport fetch`: the reporter sends with fetch (undici), as
 * it did before 2026-12-06, instead of its node:http default. `--rs-control`: the "sink"
 * server reports nothing either, so D's difference measures the method's own bias (A/A).
 *
 * The sender control: A runs the usage sender too, into a sink that answers without
 * parsing, so the sender's own CPU on the shared cores is in both A and C (the slowdown is
 * then what Leash's ingestion costs the exchanges, not what the bench's sender does).
 *
 * `--usage-worker`: Leash as `leash serve` runs it with `settings.usage.listen.workers: 1`:
 * a primary, one worker for the public port and one that serves only the usage port, to
 * which the reports go. Without it, one process serves both on one event loop.
 *
 * `--tokens N`: how many distinct tokens the records name (cycled); more tokens, fewer
 * records share an aggregate row within a commit window.
 */
import { randomBytes } from 'node:crypto';
import { connect, createServer as createNetServer, type AddressInfo, type Socket } from 'node:net';
import { createServer } from 'node:http';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { cpus } from 'node:os';
import { readdir } from 'node:fs/promises';
import autocannon from 'autocannon';
import { readProfile, summariseProfile } from './profile.js';
import { BENCH_AUDIENCE, BENCH_CLUSTER_ISSUER, BenchCluster } from './cluster.js';
import { killAllChildren, startServer, threadCpu } from './child.js';
import { killAllRedis, startRedis } from './redis.js';
import { basicAuthorization, exchangeBody, runLoad, type LoadResult } from './load.js';
import { BENCH_RESOURCE, BENCH_RESOURCE_SERVER, READY_PREFIX, type ServerInput, type ServerReady } from './protocol.js';

const DIR = fileURLToPath(new URL('.', import.meta.url));
const log = (msg: string) => process.stderr.write(`${msg}\n`);
const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
};
const DURATION = arg('duration', 10);
const CONNECTIONS = arg('connections', 16);
const RATE = arg('rate', 20_000);
const TOKENS = arg('tokens', 20);
/** A and C alternate this many times; the slowdown compares their means. */
const ROUNDS = arg('rounds', 2);
/** `--commit-window MS`: settings.usage.commit_window_ms for the Leash child; absent: its default. */
const COMMIT_WINDOW = process.argv.includes('--commit-window') ? arg('commit-window', 20) : undefined;
const BATCH = 100;
/** `--store redis`: Leash on a redis-server the bench starts (appendfsync everysec); default SQLite. */
const STORE = process.argv.includes('--store') ? process.argv[process.argv.indexOf('--store') + 1] : 'sqlite';
if (STORE !== 'sqlite' && STORE !== 'redis') throw new Error('--store sqlite|redis');
/** `--profile DIR`: run phase B only with the Leash child under --cpu-prof, and print where its time went. */
const PROFILE = (() => {
  const i = process.argv.indexOf('--profile');
  return i >= 0 ? process.argv[i + 1] : undefined;
})();
/** `--rs-rate N`: calls per second to the resource server in D (default 2000). */
const RS_RATE = arg('rs-rate', 2000);
/** `--usage-worker`: reports go to a usage port served by a process of its own (settings.usage.listen). */
const USAGE_WORKER = process.argv.includes('--usage-worker');
/** `--only rs`: run D alone (the resource server's own reporting cost), not A, B, C. */
const ONLY_RS = process.argv.includes('--only') && process.argv[process.argv.indexOf('--only') + 1] === 'rs';
/** `--skip rs`: A, B, C without D. */
const SKIP_RS = process.argv.includes('--skip') && process.argv[process.argv.indexOf('--skip') + 1] === 'rs';
/** `--rs-transport fetch`: the reporter sends with globalThis.fetch instead of its node:http default (to compare). */
const RS_TRANSPORT = process.argv.includes('--rs-transport') ? process.argv[process.argv.indexOf('--rs-transport') + 1] : 'node';
if (RS_TRANSPORT !== 'node' && RS_TRANSPORT !== 'fetch') throw new Error('--rs-transport node|fetch');
/**
 * In A the usage sender runs too (the default since 2026-12-07), at the same rate, into a
 * sink that reads each request and answers without parsing it; so A and C both carry the
 * sender's CPU (the bench's, not Leash's, on the same two cores) and differ only in where
 * the records go. `--no-sender-control`: A is exchanges alone, as before.
 */
const SENDER_CONTROL = !process.argv.includes('--no-sender-control');
/** `--rs-control`: D's "sink" server reports nothing either (an A/A check of the side-by-side method: its cost should come out near 0). */
const RS_CONTROL = process.argv.includes('--rs-control');
const cpuOf = (pid: number) => [...threadCpu(pid).values()].reduce((a, b) => a + b, 0);

/** Where the next batch starts in the token list: batches walk all of it, not its first `n`. */
let nextToken = 0;
/** Batch bodies by where they start, split around their `at` (one per batch): the sender builds none per request. */
const templates = new Map<number, string[]>();
const AT = 'AT_PLACEHOLDER';

function records(jtis: readonly string[], n: number, at: number): string {
  const routes = ['/contacts/:id', '/contacts', '/contacts/:id/notes', '/search'];
  const first = nextToken;
  nextToken = (nextToken + n) % jtis.length;
  let parts = templates.get(first);
  if (!parts) {
    const recs = Array.from({ length: n }, (_, i) => ({
      at: AT,
      jti: jtis[(first + i) % jtis.length],
      audience: BENCH_RESOURCE,
      method: 'GET',
      route: routes[i % routes.length],
      status: 200,
      duration_ms: 3,
      bytes: 512,
      // One address per token (a second one would be a shared-token anomaly).
      source: `10.0.0.${((first + i) % jtis.length) % 4}`,
    }));
    templates.set(first, (parts = JSON.stringify({ records: recs }).split(`"${AT}"`)));
  }
  return parts.join(String(at));
}

/**
 * The usage sender speaks HTTP/1.1 on raw keep-alive sockets and writes request bytes built
 * once per batch shape and round: node:http's client cost ~0.4 s of CPU per 5 s round at
 * 200 batches a second, on the same 2 cores as Leash, and that contention was counted as
 * ingestion's slowdown. A batch's `at` is the round's start (seconds old, as a reporter's
 * queued records are).
 */
const requests = new Map<string, Buffer>();

function requestBytes(url: URL, auth: string, jtis: readonly string[], at: number): Buffer {
  const first = nextToken;
  const key = `${first}:${at}`;
  let bytes = requests.get(key);
  if (bytes) {
    nextToken = (nextToken + BATCH) % jtis.length;
    return bytes;
  }
  const body = records(jtis, BATCH, at);
  const head = `POST /usage HTTP/1.1\r\nHost: ${url.host}\r\nAuthorization: ${auth}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n`;
  bytes = Buffer.concat([Buffer.from(head), Buffer.from(body)]);
  requests.set(key, bytes);
  return bytes;
}

/** One keep-alive connection: one request at a time, the answer read by its Content-Length. */
class RawConnection {
  readonly #socket: Socket;
  #buf: Buffer = Buffer.alloc(0);
  #waiting: { resolve: (r: { status: number; body: string }) => void; reject: (e: Error) => void } | undefined;

  constructor(url: URL) {
    this.#socket = connect(Number(url.port), url.hostname);
    this.#socket.setNoDelay(true);
    this.#socket.on('data', (d: Buffer) => {
      this.#buf = this.#buf.length === 0 ? d : Buffer.concat([this.#buf, d]);
      this.#parse();
    });
    const fail = (e: Error) => {
      this.#waiting?.reject(e);
      this.#waiting = undefined;
    };
    this.#socket.on('error', fail);
    this.#socket.on('close', () => fail(new Error('connection closed')));
  }

  #parse(): void {
    const end = this.#buf.indexOf('\r\n\r\n');
    if (end < 0 || !this.#waiting) return;
    const head = this.#buf.subarray(0, end).toString('latin1');
    const length = /\r\ncontent-length: *(\d+)/i.exec(head);
    if (!length) return this.#waiting.reject(new Error(`an answer without Content-Length: ${head.slice(0, 200)}`));
    const total = end + 4 + Number(length[1]);
    if (this.#buf.length < total) return;
    const status = Number(head.slice(9, 12));
    const body = this.#buf.subarray(end + 4, total).toString('utf8');
    this.#buf = this.#buf.subarray(total);
    const w = this.#waiting;
    this.#waiting = undefined;
    w.resolve({ status, body });
  }

  send(bytes: Buffer): Promise<{ status: number; body: string }> {
    return new Promise((resolve, reject) => {
      this.#waiting = { resolve, reject };
      this.#socket.write(bytes);
    });
  }

  close(): void {
    this.#socket.destroy();
  }
}

/** POSTs batches for `seconds`: closed loop with `concurrency` senders, or paced at `rate` records/s. */
async function ingest(url: string, auth: string, jtis: readonly string[], seconds: number, opts: { concurrency: number; rate?: number }): Promise<{ records: number; failed: number; perSec: number }> {
  const end = performance.now() + seconds * 1000;
  const target = new URL(url);
  const at = Date.now();
  let sent = 0;
  let failed = 0;
  const interval = opts.rate ? (1000 * BATCH) / opts.rate : 0;
  let nextAt = performance.now();
  const worker = async () => {
    const conn = new RawConnection(target);
    try {
      while (performance.now() < end) {
        if (interval > 0) {
          const wait = nextAt - performance.now();
          nextAt += interval;
          if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        }
        const res = await conn.send(requestBytes(target, auth, jtis, at));
        // `{"accepted":100,...`: read without parsing the whole answer.
        if (res.status === 200 && res.body.startsWith(`{"accepted":${BATCH},`)) sent += BATCH;
        else failed += BATCH;
      }
    } finally {
      conn.close();
    }
  };
  const t0 = performance.now();
  await Promise.all(Array.from({ length: opts.concurrency }, worker));
  return { records: sent, failed, perSec: Math.round(sent / ((performance.now() - t0) / 1000)) };
}

async function startRs(issuer: string, secret: string, usage: boolean, usageUrl?: string): Promise<{ pid: number; url: string; stop: () => Promise<void> }> {
  const child = spawn(process.execPath, ['--import', 'tsx', join(DIR, 'usage-rs.ts')], {
    env: {
      ...process.env,
      NODE_ENV: 'production',
      LEASH_BENCH_RS: JSON.stringify({ issuer, audience: BENCH_RESOURCE, usage, usageUrl, clientId: BENCH_RESOURCE_SERVER, secret, transport: RS_TRANSPORT }),
    },
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  });
  child.stderr!.on('data', (d: Buffer) => process.stderr.write(d));
  const ready = await new Promise<ServerReady>((resolve, reject) => {
    createInterface({ input: child.stdout! }).on('line', (l) => l.startsWith(READY_PREFIX) && resolve(JSON.parse(l.slice(READY_PREFIX.length)) as ServerReady));
    child.once('exit', () => reject(new Error('rs exited')));
  });
  return {
    pid: child.pid!,
    url: ready.url,
    stop: async () => {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    },
  };
}

/**
 * A usage sink: answers `POST /usage` as Leash does (`{accepted, rejected, problems}`) after
 * only parsing the body. Reporting there measures what reporting costs the resource server
 * itself; reporting to Leash adds Leash's ingestion on the same two cores, which slows the
 * resource server too (less work per event-loop turn), and B prices that ingestion apart.
 */
async function startSink(): Promise<{ url: string; close: () => Promise<void> }> {
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const records = (JSON.parse(Buffer.concat(chunks).toString('utf8')) as { records: unknown[] }).records.length;
      res.writeHead(200, { 'content-type': 'application/json' }).end(`{"accepted":${records},"rejected":0,"problems":[]}`);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

/**
 * The sender control's sink: a raw TCP server that reads each request by its Content-Length
 * and answers `{"accepted":100,...}` without parsing the body: the sender's cost with none of
 * the receiver's (a few µs per batch, in this process).
 */
async function startDiscardSink(): Promise<{ url: string; close: () => Promise<void> }> {
  const body = `{"accepted":${BATCH},"rejected":0,"problems":[]}`;
  const answer = Buffer.from(`HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
  const server = createNetServer((socket) => {
    let buf: Buffer = Buffer.alloc(0);
    socket.on('data', (d: Buffer) => {
      buf = buf.length === 0 ? d : Buffer.concat([buf, d]);
      for (;;) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        const length = /\r\ncontent-length: *(\d+)/i.exec(buf.subarray(0, end).toString('latin1'));
        const total = end + 4 + Number(length?.[1] ?? 0);
        if (buf.length < total) return;
        buf = buf.subarray(total);
        socket.write(answer);
      }
    });
    socket.on('error', () => socket.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

async function rsRun(url: string, token: string): Promise<{ requests: number; perSec: number }> {
  // A fixed rate, well under what one resource server process serves here (~4,000-7,000/s):
  // at saturation its CPU per call also measures how busy the other core is (the load
  // generator, the sink, Leash), which moved the difference by tens of µs from run to run.
  const r = await autocannon({ url: `${url}/contacts/42`, connections: CONNECTIONS, duration: DURATION, overallRate: RS_RATE, headers: { authorization: `Bearer ${token}` } });
  if (r.non2xx > 0) throw new Error(`resource server answered ${r.non2xx} non-2xx`);
  return { requests: r.requests.total, perSec: Math.round(r.requests.average) };
}

async function main(): Promise<void> {
  const cluster = new BenchCluster();
  const [sa] = await cluster.mint(1);
  const secret = randomBytes(24).toString('base64url');
  const redis = STORE === 'redis' ? await startRedis('everysec') : undefined;
  const input: ServerInput = {
    jwks: cluster.jwks,
    clusterIssuer: BENCH_CLUSTER_ISSUER,
    audience: BENCH_AUDIENCE,
    store: redis ? { kind: 'redis', url: redis.url, keyPrefix: 'leash-bench:' } : { kind: 'sqlite' },
    resourceServer: { id: BENCH_RESOURCE_SERVER, secret },
    ...(COMMIT_WINDOW !== undefined ? { usageCommitWindowMs: COMMIT_WINDOW } : {}),
    ...(USAGE_WORKER ? { usageWorkers: 1 } : {}),
  };
  const leash = await startServer('leash', join(DIR, 'leash-server.ts'), input, PROFILE ? ['--cpu-prof', `--cpu-prof-dir=${PROFILE}`] : []);
  const auth = basicAuthorization(BENCH_RESOURCE_SERVER, secret);
  const usageUrl = leash.ready.usageUrl ?? leash.ready.url;
  const body = exchangeBody(leash.ready, sa!);
  const jtis: string[] = [];
  let access = '';
  for (let i = 0; i < TOKENS; i++) {
    const res = await fetch(`${leash.ready.url}/token`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body });
    const t = (await res.json()) as { access_token: string };
    access = t.access_token;
    jtis.push((JSON.parse(Buffer.from(access.split('.')[1]!, 'base64url').toString()) as { jti: string }).jti);
  }
  const results: string[] = [];
  if (ONLY_RS) {
    try {
      const d = await resourceServerCost(leash.ready.url, leash.ready.usageUrl, secret, access);
      process.stdout.write(
        `${[`usage benchmark, D only (${Math.max(ROUNDS, 2)} runs of ${DURATION}s per server, reporter transport ${RS_TRANSPORT}${RS_CONTROL ? ', CONTROL: the sink server reports nothing' : ''}, ${cpus().length} CPUs, node ${process.version})`, ...d].join('\n')}\n`,
      );
    } finally {
      await leash.stop();
      killAllChildren();
      await redis?.stop();
    }
    return;
  }
  if (PROFILE) {
    await ingest(usageUrl, auth, jtis, 2, { concurrency: 32 });
    const cpu0 = cpuOf(leash.pid);
    const b = await ingest(usageUrl, auth, jtis, DURATION, { concurrency: 32 });
    log(`B: ${b.perSec} records/s, Leash CPU ${(((cpuOf(leash.pid) - cpu0) / b.records) * 1e6).toFixed(1)} µs per record`);
    await leash.stop();
    await redis?.stop();
    const file = (await readdir(PROFILE))
      .filter((f) => f.endsWith('.cpuprofile'))
      .sort()
      .at(-1)!;
    const profile = await readProfile(join(PROFILE, file));
    // Only phase B: the profile ends when the child stops, right after it.
    const summary = summariseProfile(profile, { root: join(DIR, '..'), top: 30, fromMicros: profile.endTime - DURATION * 1e6 });
    for (const s of summary.byCallingPackage) log(`pkg ${s.share.toFixed(3)} ${s.name}`);
    for (const s of summary.byFunction) log(`fn  ${s.share.toFixed(3)} ${s.name}`);
    return;
  }
  try {
    // The exchange client runs in a worker thread, so the ingestion client (this thread)
    // does not slow it: what C loses is Leash's. A and C alternate, ROUNDS times each.
    const exchanges = (seconds: number) => runLoad({ url: leash.ready.url, path: '/token', bodies: [body], seconds, connections: CONNECTIONS, workers: 1 });
    await exchanges(2);
    const a: LoadResult[] = [];
    const c: LoadResult[] = [];
    const cIngest: Array<{ perSec: number; failed: number }> = [];
    let cCpu = 0;
    // The usage sender is this process's main thread (the exchange client is a worker thread):
    // what it burns on the same 2 cores is printed, since it competes with Leash too.
    const senderCpu = () => threadCpu(process.pid).get('main') ?? 0;
    let cSender = 0;
    const sink = SENDER_CONTROL ? await startDiscardSink() : undefined;
    let aSender = 0;
    // Exchanges while the sender sends RATE records/s to `url` (Leash in C, the sink in A).
    const withSender = async (url: string) => {
      const sender0 = senderCpu();
      const [exchanged, ingested] = await Promise.all([exchanges(DURATION), ingest(url, auth, jtis, DURATION, { concurrency: 16, rate: RATE })]);
      return { exchanged, ingested, senderCpu: senderCpu() - sender0 };
    };
    const alone = async (round: number) => {
      if (!sink) {
        log(`A${round}: exchanges alone (${DURATION}s, ${CONNECTIONS} connections)`);
        a.push(await exchanges(DURATION));
        return;
      }
      log(`A${round}: exchanges while the sender sends ${RATE} records/s to a sink that does not parse them`);
      const run = await withSender(sink.url);
      aSender += run.senderCpu;
      a.push(run.exchanged);
    };
    const loaded = async (round: number) => {
      log(`C${round}: exchanges while usage is ingested at ${RATE} records/s`);
      const cpu0 = cpuOf(leash.pid);
      const run = await withSender(usageUrl);
      cCpu += cpuOf(leash.pid) - cpu0;
      cSender += run.senderCpu;
      c.push(run.exchanged);
      cIngest.push(run.ingested);
    };
    // A C, C A, A C, ...: the exchange rate drifts within a run (the token table grows, WAL
    // checkpoints), and always measuring C after A would charge that drift to ingestion.
    for (let round = 1; round <= ROUNDS; round++) {
      if (round % 2 === 1) {
        await alone(round);
        await loaded(round);
      } else {
        await loaded(round);
        await alone(round);
      }
    }

    await sink?.close();
    log(`B: POST /usage alone, batches of ${BATCH}, closed loop`);
    const cpu0 = cpuOf(leash.pid);
    const redis0 = redis ? cpuOf(redis.pid) : 0;
    const b = await ingest(usageUrl, auth, jtis, DURATION, { concurrency: 32 });
    const bCpu = cpuOf(leash.pid) - cpu0;
    const bRedisCpu = redis ? cpuOf(redis.pid) - redis0 : 0;

    const d = SKIP_RS ? [] : await resourceServerCost(leash.ready.url, leash.ready.usageUrl, secret, access);
    const mean = (xs: readonly number[]) => xs.reduce((x, y) => x + y, 0) / xs.length;
    const aRate = mean(a.map((r) => r.reqPerSec));
    const cRate = mean(c.map((r) => r.reqPerSec));
    const slowdown = 1 - cRate / aRate;
    const rounds = a.map((r, i) => 1 - c[i]!.reqPerSec / r.reqPerSec);
    const perRound = rounds.map((x) => `${(x * 100).toFixed(1)} %`).join(', ');
    const interval = confidence95(rounds);
    results.push(
      '',
      `usage benchmark (${ROUNDS} rounds of ${DURATION}s, ${CONNECTIONS} connections, ${TOKENS} tokens, commit window ${COMMIT_WINDOW ?? 'default'} ms, ${USAGE_WORKER ? 'reports to a usage worker of their own (settings.usage.listen), exchanges to one public worker' : 'one process serves exchanges and reports'}, ${cpus().length} CPUs, node ${process.version}, ${redis ? 'Redis store (appendfsync everysec); Leash CPU does not include redis-server' : 'SQLite store'})`,
      `A exchanges ${sink ? `+ the sender into a sink:` : 'alone:                   '} ${aRate.toFixed(0)} req/s (${a.map((r) => r.reqPerSec.toFixed(0)).join(', ')}), p99 ${Math.max(...a.map((r) => r.p99)).toFixed(1)} ms${sink ? `; usage sender ${(aSender / ROUNDS).toFixed(2)} s per round` : ''}`,
      `B ingestion alone (closed loop):      ${b.perSec} records/s (${b.failed} failed), Leash CPU ${((bCpu / b.records) * 1e6).toFixed(1)} µs per record${redis ? `, redis-server ${((bRedisCpu / b.records) * 1e6).toFixed(1)} µs` : ''}`,
      `C exchanges + ingestion at ${RATE}/s: ${cRate.toFixed(0)} req/s (${c.map((r) => r.reqPerSec.toFixed(0)).join(', ')}), p99 ${Math.max(...c.map((r) => r.p99)).toFixed(1)} ms; ingested ${Math.round(mean(cIngest.map((i) => i.perSec)))} records/s (${cIngest.reduce((x, i) => x + i.failed, 0)} failed); Leash CPU ${(cCpu / ROUNDS).toFixed(1)} s per round, usage sender ${(cSender / ROUNDS).toFixed(2)} s`,
      `  exchange slowdown under ingestion${sink ? ' (the sender in A and C)' : ''}:  ${(slowdown * 100).toFixed(1)} % (rounds: ${perRound}) (bar: at most 10 %; ${slowdown <= 0.1 ? 'met' : 'NOT met'})`,
      `  per-round mean, 95 % interval:      ${interval ? `${(interval.mean * 100).toFixed(1)} % [${(interval.low * 100).toFixed(1)}, ${(interval.high * 100).toFixed(1)}]` : 'needs 2 rounds or more'}`,
      ...d,
    );
    process.stdout.write(`${results.join('\n')}\n`);
  } finally {
    await leash.stop();
    killAllChildren();
    await redis?.stop();
  }
}

/**
 * D: a resource server's CPU per call without reporting, reporting to a sink (its own cost)
 * and reporting to Leash (plus Leash ingesting on the same cores), at a fixed rate.
 */
async function resourceServerCost(leashUrl: string, usageUrl: string | undefined, secret: string, access: string): Promise<string[]> {
  log('D: resource server CPU per call, without and with the usage reporter');
  // The three resource servers run throughout; each reporting one is measured side by side
  // with the one without reporting (below).
  const sink = await startSink();
  const servers = {
    without: await startRs(leashUrl, secret, false),
    leash: await startRs(leashUrl, secret, true, usageUrl),
    sink: await startRs(leashUrl, secret, !RS_CONTROL, sink.url),
  };
  type Variant = keyof typeof servers;
  const perCall: Record<Variant, number[]> = { without: [], leash: [], sink: [] };
  const rsRates: Record<Variant, number[]> = { without: [], leash: [], sink: [] };
  /** Per pair: the reporting server's CPU per call minus its partner's in the same run. */
  const costs: Record<'sink' | 'leash', number[]> = { sink: [], leash: [] };
  try {
    for (const rs of Object.values(servers)) await rsRun(rs.url, access).catch(() => undefined); // warm-up (JIT, JWKS fetch)
    // Each reporting server runs at the same time as the one without, at the same rate: this
    // VM's speed drifts by tens of percent from one 5 s run to the next, and a pair measured
    // side by side sees the same machine. The two pairs alternate.
    for (let round = 0; round < Math.max(ROUNDS, 2); round++) {
      for (const which of round % 2 === 0 ? (['sink', 'leash'] as const) : (['leash', 'sink'] as const)) {
        const pair = [servers.without, servers[which]];
        const before = pair.map((rs) => cpuOf(rs.pid));
        const runs = await Promise.all(pair.map((rs) => rsRun(rs.url, access)));
        // Let the reporter send what it queued during the run: its CPU counts too.
        await new Promise((res) => setTimeout(res, 1500));
        const [base, reporting] = pair.map((rs, i) => ((cpuOf(rs.pid) - before[i]!) / runs[i]!.requests) * 1e6) as [number, number];
        perCall.without.push(base);
        perCall[which].push(reporting);
        costs[which].push(reporting - base);
        rsRates.without.push(runs[0]!.perSec);
        rsRates[which].push(runs[1]!.perSec);
      }
    }
  } finally {
    await Promise.all(Object.values(servers).map((rs) => rs.stop()));
    await sink.close();
  }
  const mean = (xs: readonly number[]) => xs.reduce((x, y) => x + y, 0) / xs.length;
  const costLine = (v: 'sink' | 'leash') => {
    const i = confidence95(costs[v]);
    return `${mean(costs[v]).toFixed(1)} µs (runs: ${costs[v].map((x) => x.toFixed(1)).join(', ')})${i ? `, 95 % interval [${i.low.toFixed(1)}, ${i.high.toFixed(1)}]` : ''}`;
  };
  const ownCost = mean(costs.sink);
  return [
    `D resource server CPU per call:       ${mean(perCall.without).toFixed(0)} µs without reporting, ${mean(perCall.sink).toFixed(0)} µs reporting to a sink, ${mean(perCall.leash).toFixed(0)} µs reporting to Leash (${['without', 'sink', 'leash'].map((v) => Math.round(mean(rsRates[v as Variant]))).join(' / ')} req/s at a fixed ${RS_RATE}/s; ${perCall.sink.length} runs of each pair, side by side)`,
    `  reporting cost per call (its own):  ${costLine('sink')} (bar: under 50 µs; ${ownCost < 50 ? 'met' : 'NOT met'})`,
    `  with Leash ingesting on the same cores: ${costLine('leash')}`,
  ];
}

/** Student's t, two-sided 95 %, by degrees of freedom (1-30; beyond, 1.96 is close enough). */
const T95 = [
  12.71, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.16, 2.145, 2.131, 2.12, 2.11, 2.101, 2.093, 2.086, 2.08, 2.074, 2.069, 2.064, 2.06, 2.056, 2.052, 2.048, 2.045,
  2.042,
];

/** The mean of per-round slowdowns and its 95 % confidence interval: how far the noise of this machine leaves the answer open. */
function confidence95(xs: readonly number[]): { mean: number; low: number; high: number } | undefined {
  if (xs.length < 2) return undefined;
  const mean = xs.reduce((x, y) => x + y, 0) / xs.length;
  const sd = Math.sqrt(xs.reduce((x, y) => x + (y - mean) ** 2, 0) / (xs.length - 1));
  const half = (T95[xs.length - 2] ?? 1.96) * (sd / Math.sqrt(xs.length));
  return { mean, low: mean - half, high: mean + half };
}

main().catch((err: unknown) => {
  log(err instanceof Error ? (err.stack ?? err.message) : String(err));
  killAllChildren();
  killAllRedis();
  process.exit(1);
});
