import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import type { ServerReady } from './protocol.js';
import { BODIES_ENV } from './load/bodies-env.js';

const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const JWT_TYPE = 'urn:ietf:params:oauth:token-type:jwt';

/** One full RFC 8693 form body, the same for both servers. */
export function exchangeBody(ready: ServerReady, subjectToken: string): string {
  return new URLSearchParams({
    grant_type: TOKEN_EXCHANGE,
    subject_token: subjectToken,
    subject_token_type: JWT_TYPE,
    resource: ready.resource,
    task: ready.task,
    client_id: ready.clientId,
  }).toString();
}

/** The `introspect` workload's body: one token, as a resource server sends it (RFC 7662 §2.1). */
export function introspectionBody(accessToken: string): string {
  return new URLSearchParams({ token: accessToken }).toString();
}

/** `Authorization: Basic` for client_secret_basic (RFC 6749 §2.3.1: each part form-urlencoded first). */
export function basicAuthorization(clientId: string, secret: string): string {
  const enc = (s: string) => encodeURIComponent(s).replace(/%20/g, '+');
  return `Basic ${Buffer.from(`${enc(clientId)}:${enc(secret)}`, 'utf8').toString('base64')}`;
}

export interface LoadResult {
  readonly requests: number;
  readonly reqPerSec: number;
  /** Latency in ms (in-process: every response, µs resolution; with workers: autocannon's 2xx histogram, 1 ms buckets). */
  readonly p50: number;
  readonly p99: number;
  readonly non2xx: number;
  readonly errors: number;
  readonly timeouts: number;
  readonly statusCodes: Record<string, number>;
  readonly seconds: number;
}

export interface LoadOptions {
  readonly url: string;
  /** POST target: /token or /introspect. */
  readonly path: string;
  /** Extra request headers (Authorization for introspection). */
  readonly headers?: Readonly<Record<string, string>>;
  readonly bodies: readonly string[];
  readonly seconds: number;
  readonly connections: number;
  readonly workers: number;
}

/** Percentile of a sorted array (nearest rank). */
function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return 0;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank] as number;
}

/**
 * Closed-loop load with autocannon: `connections` keep-alive connections, each sending the
 * next body of `bodies` (cycled in order) as a POST to `path` as soon as its previous answer
 * arrived. With one exchange body this is the warm workload; with a pool of distinct
 * attestations the cold one; with one `token=` body to /introspect the introspect one.
 */
export async function runLoad(opts: LoadOptions): Promise<LoadResult> {
  if (!opts.url.startsWith('http://127.0.0.1:')) throw new Error(`refusing to load ${opts.url}: loopback only`);
  if (opts.bodies.length === 0) throw new TypeError('runLoad: no bodies');
  return opts.workers > 0 ? runInWorkers(opts) : runInProcess(opts);
}

async function runInProcess(opts: LoadOptions): Promise<LoadResult> {
  const { bodies } = opts;
  let next = 0;
  let latencies = new Float64Array(1 << 16);
  let count = 0;
  let done!: (value: autocannon.Result) => void;
  let failed!: (err: unknown) => void;
  const finished = new Promise<autocannon.Result>((resolve, reject) => {
    done = resolve;
    failed = reject;
  });
  const instance = autocannon(
    {
      url: opts.url,
      connections: opts.connections,
      duration: opts.seconds,
      headers: { ...opts.headers, 'content-type': 'application/x-www-form-urlencoded' },
      requests: [
        {
          method: 'POST',
          path: opts.path,
          setupRequest: (req) => {
            const body = bodies[next] as string;
            next = next + 1 === bodies.length ? 0 : next + 1;
            return { ...req, body };
          },
        },
      ],
    },
    (err: unknown, result: autocannon.Result) => (err ? failed(err) : done(result)),
  );
  // autocannon's own histogram has 1 ms buckets; loopback latencies are a few ms, so keep µs.
  instance.on('response', (_client: unknown, _status: number, _bytes: number, ms: number) => {
    if (count === latencies.length) {
      const grown = new Float64Array(latencies.length * 2);
      grown.set(latencies);
      latencies = grown;
    }
    latencies[count++] = ms;
  });
  const result = await finished;
  const sorted = latencies.subarray(0, count).sort();
  return summarise(result, percentile(sorted, 50), percentile(sorted, 99));
}

/** Worker threads cannot take a function: the bodies go through a temp file to a small CommonJS module. */
async function runInWorkers(opts: LoadOptions): Promise<LoadResult> {
  const dir = await mkdtemp(join(tmpdir(), 'leash-bench-load-'));
  const file = join(dir, 'bodies.json');
  const previous = process.env[BODIES_ENV];
  try {
    await writeFile(file, JSON.stringify({ bodies: opts.bodies, workers: opts.workers }), { mode: 0o600 });
    process.env[BODIES_ENV] = file; // workers inherit the environment at creation
    const result = await autocannon({
      url: opts.url,
      connections: opts.connections,
      duration: opts.seconds,
      workers: opts.workers,
      headers: { ...opts.headers, 'content-type': 'application/x-www-form-urlencoded' },
      requests: [{ method: 'POST', path: opts.path, setupRequest: fileURLToPath(new URL('./load/next-body.cjs', import.meta.url)) }],
    });
    return summarise(result, result.latency.p50, result.latency.p99);
  } finally {
    if (previous === undefined) delete process.env[BODIES_ENV];
    else process.env[BODIES_ENV] = previous;
    await rm(dir, { recursive: true, force: true });
  }
}

function summarise(result: autocannon.Result, p50: number, p99: number): LoadResult {
  const statusCodes: Record<string, number> = {};
  for (const [code, stat] of Object.entries(result.statusCodeStats ?? {})) statusCodes[code] = (stat as { count: number }).count;
  const total = Object.values(statusCodes).reduce((a, b) => a + b, 0);
  return {
    requests: total,
    reqPerSec: total / result.duration,
    p50: round(p50),
    p99: round(p99),
    non2xx: result.non2xx,
    errors: result.errors,
    timeouts: result.timeouts,
    statusCodes,
    seconds: result.duration,
  };
}

const round = (ms: number) => Math.round(ms * 100) / 100;
