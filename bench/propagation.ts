/**
 * Revocation propagation between replicas, measured from outside: two real Leash replicas
 * (separate processes) on one real redis-server, sharing signing keys. Per revocation:
 *
 *   1. exchange a token at replica A, and check replica B's /introspect says active;
 *   2. t0 = now; send the RFC 7009 revoke to A (not awaited) and, at the same time, poll B's
 *      /introspect back to back on one keep-alive connection;
 *   3. propagation = time from t0 until the first B answer `active: false` arrived;
 *      revoke call = time from t0 until A answered the revoke.
 *
 * The resolution is one introspection round trip (reported too). Revocations run one after
 * another, never overlapping; nothing else loads the replicas.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, request } from 'node:http';
import { BenchCluster, BENCH_AUDIENCE, BENCH_CLUSTER_ISSUER } from './cluster.js';
import { startServer, type ServerChild } from './child.js';
import { basicAuthorization, exchangeBody, introspectionBody } from './load.js';
import type { BenchOptions } from './options.js';
import { BENCH_RESOURCE_SERVER, type ServerInput } from './protocol.js';
import { startRedis } from './redis.js';

export interface PropagationResult {
  readonly revocations: number;
  readonly appendfsync: string;
  /** ms from the revoke call being sent to A until B first answered `active: false`. */
  readonly propagation: Percentiles;
  /** ms from the revoke call being sent to A until A answered it. */
  readonly revokeCall: Percentiles;
  /** B's introspection round trip while polling (the measurement's resolution). */
  readonly introspectRtt: Percentiles;
  /** Revocations B refused before A had even answered the revoke call. */
  readonly beforeRevokeAnswered: number;
  readonly pollIntervalMs: number;
  readonly method: string;
}

export interface Percentiles {
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly max: number;
  readonly mean: number;
}

export const PROPAGATION_METHOD =
  'two Leash replicas (separate processes) on one redis-server; per revocation: RFC 7009 revoke sent to replica A at t0 (not awaited) while replica B is polled with back-to-back RFC 7662 introspections on one keep-alive connection; propagation = t0 to the first `active: false` from B; revocations one at a time';

function percentiles(values: readonly number[]): Percentiles {
  const s = [...values].sort((a, b) => a - b);
  const at = (q: number) => s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))] ?? 0;
  const round = (v: number) => Math.round(v * 100) / 100;
  return { p50: round(at(0.5)), p90: round(at(0.9)), p99: round(at(0.99)), max: round(s.at(-1) ?? 0), mean: round(s.reduce((a, b) => a + b, 0) / Math.max(1, s.length)) };
}

/** One form POST on a keep-alive agent (node:http: no client library between us and the socket). */
function post(agent: Agent, url: string, body: string, headers: Record<string, string> = {}): Promise<{ status: number; json: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'POST', agent, headers: { 'content-type': 'application/x-www-form-urlencoded', 'content-length': Buffer.byteLength(body), ...headers } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        try {
          const text = Buffer.concat(chunks).toString('utf8');
          // RFC 7009: a successful revocation answers 200 with an empty body.
          resolve({ status: res.statusCode ?? 0, json: (text === '' ? {} : JSON.parse(text)) as Record<string, unknown> });
        } catch (err) {
          reject(err instanceof Error ? err : new Error(String(err)));
        }
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.setNoDelay(true);
    req.end(body);
  });
}

export async function runPropagation(opts: BenchOptions, creds: { id: string; secret: string }, log: (msg: string) => void): Promise<PropagationResult> {
  const cluster = new BenchCluster();
  const [attestation] = await cluster.mint(1);
  const keysDir = await mkdtemp(join(tmpdir(), 'leash-bench-keys-'));
  log(`starting redis-server (appendonly yes, appendfsync ${opts.appendfsync})...`);
  const redis = await startRedis(opts.appendfsync);
  const input: ServerInput = {
    jwks: cluster.jwks,
    clusterIssuer: BENCH_CLUSTER_ISSUER,
    audience: BENCH_AUDIENCE,
    store: { kind: 'redis', url: redis.url, keyPrefix: 'leash-bench-propagation:' },
    resourceServer: creds,
    keysDir,
  };
  const children: ServerChild[] = [];
  // Separate agents: A's revoke and B's polls never queue behind each other on a socket.
  const toA = new Agent({ keepAlive: true, maxSockets: 4 });
  const toB = new Agent({ keepAlive: true, maxSockets: 1 });
  try {
    // One after the other: B loads the keys A generated.
    const A = await startServer('leash/A', join(import.meta.dirname, 'leash-server.ts'), input);
    const shared = { ...input, issuer: A.ready.url };
    children.push(A);
    // Replicas of one Leash: one issuer (A's URL stands for the load balancer's).
    const B = await startServer('leash/B', join(import.meta.dirname, 'leash-server.ts'), shared);
    children.push(B);
    const authorization = basicAuthorization(BENCH_RESOURCE_SERVER, creds.secret);
    const introspectB = async (token: string) => {
      const t = performance.now();
      const r = await post(toB, `${B.ready.url}/introspect`, introspectionBody(token), { authorization });
      if (r.status !== 200) throw new Error(`B answered introspection ${r.status} ${JSON.stringify(r.json)}\n${B.stderrTail()}`);
      return { active: r.json.active === true, rtt: performance.now() - t, at: performance.now() };
    };

    const propagation: number[] = [];
    const revokeCall: number[] = [];
    const rtts: number[] = [];
    let early = 0;
    const total = opts.revocations + 10;
    log(`measuring ${opts.revocations} revocations A -> B (10 more first, unmeasured)...`);
    for (let i = 0; i < total; i++) {
      const issued = await post(toA, `${A.ready.url}/token`, exchangeBody(A.ready, attestation as string));
      const token = issued.json.access_token;
      if (issued.status !== 200 || typeof token !== 'string') throw new Error(`exchange at A failed: ${issued.status} ${JSON.stringify(issued.json.error)}\n${A.stderrTail()}`);
      if (!(await introspectB(token)).active) throw new Error(`B did not see a fresh token as active\n${B.stderrTail()}`);

      const t0 = performance.now();
      let answeredAt = Number.POSITIVE_INFINITY;
      const revoked = post(toA, `${A.ready.url}/revoke`, new URLSearchParams({ token, client_id: A.ready.clientId }).toString()).then((r) => {
        answeredAt = performance.now();
        if (r.status !== 200) throw new Error(`revoke at A answered ${r.status}`);
      });
      let inactiveAt: number | undefined;
      const deadline = t0 + 5000;
      while (inactiveAt === undefined) {
        const r = await introspectB(token);
        rtts.push(r.rtt);
        if (!r.active) inactiveAt = r.at;
        else if (r.at > deadline) throw new Error('B still said active 5 s after the revoke');
        else if (opts.pollIntervalMs > 0) await new Promise((res) => setTimeout(res, opts.pollIntervalMs));
      }
      await revoked;
      if (i < 10) continue;
      propagation.push(inactiveAt - t0);
      revokeCall.push(answeredAt - t0);
      if (inactiveAt < answeredAt) early++;
    }
    return {
      revocations: propagation.length,
      appendfsync: opts.appendfsync,
      propagation: percentiles(propagation),
      revokeCall: percentiles(revokeCall),
      introspectRtt: percentiles(rtts),
      beforeRevokeAnswered: early,
      pollIntervalMs: opts.pollIntervalMs,
      method: PROPAGATION_METHOD,
    };
  } finally {
    for (const c of children) await c.stop();
    toA.destroy();
    toB.destroy();
    await redis.stop();
    await rm(keysDir, { recursive: true, force: true });
  }
}

export function formatPropagation(r: PropagationResult): string {
  const row = (name: string, p: Percentiles) => `${name.padEnd(34)} p50 ${p.p50.toFixed(1)} ms   p90 ${p.p90.toFixed(1)} ms   p99 ${p.p99.toFixed(1)} ms   max ${p.max.toFixed(1)} ms`;
  return [
    `Revocation propagation between two replicas on one Redis (appendfsync ${r.appendfsync}, ${r.revocations} revocations)`,
    row('revoke call at A -> B inactive', r.propagation),
    row('revoke call at A answered', r.revokeCall),
    row('introspection at B (resolution)', r.introspectRtt),
    `B refused the token before A answered the revoke: ${r.beforeRevokeAnswered} of ${r.revocations}`,
    ...(r.pollIntervalMs > 0 ? [`B polled every ${r.pollIntervalMs} ms (plus its round trip), not back to back`] : []),
    `method: ${r.method}`,
  ].join('\n');
}
