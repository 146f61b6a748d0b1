/**
 * What mutual TLS costs: a TLS handshake with a client certificate alone, an X.509-SVID
 * exchange on a new connection each time, the same exchange on one kept-alive connection,
 * and, for reference, a JWT-attestation exchange on a kept-alive plain HTTP connection to
 * a second broker. Sequential requests (one in flight), in-process broker on loopback:
 * latency, not throughput. ECDSA P-256 everywhere (server, CA, SVIDs). Run: npm run bench:mtls
 */
import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { Agent as HttpAgent, request as httpRequest } from 'node:http';
import { Agent, request } from 'node:https';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'node:tls';
import { SignJWT, exportJWK, generateKeyPair } from 'jose';
import { Broker } from '../src/broker.js';
import { parseConfig } from '../src/config/load.js';
import { EKU_CLIENT_AUTH, issueCertificate, testTls } from '../test/support/x509.js';

const N_NEW = Number(process.env.MTLS_BENCH_NEW ?? 300);
const N_KEPT = Number(process.env.MTLS_BENCH_KEPT ?? 2000);
const WORKLOAD = 'spiffe://bench.example/ns/plugins/sa/reader';
const API = 'https://api.bench.example';
const ORCH = 'bench-orchestrator-key-0123456789';

const sha = (s: string) => createHash('sha256').update(s).digest('hex');

function summary(ms: number[]): { n: number; mean: number; p50: number; p90: number; p99: number } {
  const s = [...ms].sort((a, b) => a - b);
  const at = (q: number) => s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
  return { n: s.length, mean: s.reduce((a, b) => a + b, 0) / s.length, p50: at(0.5), p90: at(0.9), p99: at(0.99) };
}

const fmt = (x: ReturnType<typeof summary>, cpuMs: number | undefined) =>
  `n=${x.n} p50=${x.p50.toFixed(2)} p90=${x.p90.toFixed(2)} p99=${x.p99.toFixed(2)} mean=${x.mean.toFixed(2)} ms; CPU ${cpuMs?.toFixed(2)} ms/op`;

function post(
  port: number,
  path: string,
  body: string,
  headers: Record<string, string>,
  opts: { tls?: Record<string, unknown>; agent?: Agent | HttpAgent | false },
): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const fn = opts.tls ? request : httpRequest;
    const r = fn(
      { host: '127.0.0.1', port, method: 'POST', path, headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) }, agent: opts.agent ?? false, ...(opts.tls ?? {}) } as never,
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
      },
    );
    r.on('error', reject);
    r.end(body);
  });
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'leash-bench-mtls-'));
  const server = testTls();
  const ca = issueCertificate({ name: 'Bench SPIFFE CA', ca: true });
  const svid = issueCertificate({ name: 'reader', issuer: ca, uris: [WORKLOAD], eku: [EKU_CLIENT_AUTH] });
  await writeFile(join(dir, 'tls.crt'), server.cert);
  await writeFile(join(dir, 'tls.key'), server.key);
  await writeFile(join(dir, 'bundle.pem'), ca.pem);
  const cluster = await generateKeyPair('ES256', { extractable: true });
  const clusterJwk = { ...(await exportJWK(cluster.publicKey)), kid: 'c1', alg: 'ES256' };

  const config = (tls: boolean, sub: string) => ({
    version: 1,
    settings: {
      issuer: `${tls ? 'https' : 'http'}://127.0.0.1`,
      listen: { host: '127.0.0.1', port: 0 },
      management: { listen: { host: '127.0.0.1', port: 0 } },
      store: { path: join(dir, `${sub}.db`) },
      keys: { dir: join(dir, `${sub}-keys`) },
      audit: { stdout: false },
      ...(tls ? { tls: { cert_file: join(dir, 'tls.crt'), key_file: join(dir, 'tls.key'), client_auth: 'optional' } } : {}),
    },
    admin: { api_keys: [{ id: 'orch', sha256: sha(ORCH), roles: ['orchestrator'] }] },
    trusted_issuers: [
      { name: 'cluster', kind: 'kubernetes', issuer: 'https://k8s.bench', audience: 'leash', jwks: { inline: { keys: [clusterJwk] } } },
      { name: 'spiffe', kind: 'x509-svid', issuer: 'spiffe://bench.example', trust_domain: 'bench.example', bundle_file: join(dir, 'bundle.pem') },
    ],
    plugins: [
      {
        id: 'reader',
        owner: 'o@example.com',
        risk: 'low',
        bindings: [
          { issuer: 'spiffe', subject: WORKLOAD },
          { issuer: 'cluster', subject: 'system:serviceaccount:plugins:reader' },
        ],
        grants: [{ audience: API, scopes: ['read'], effect: 'read', max_ttl: 300, task_required: false }],
      },
    ],
  });

  const mtlsBroker = await Broker.create(
    { config: parseConfig(config(true, 'mtls'), { baseDir: dir }), path: join(dir, 'a.yaml'), baseDir: dir, digest: 'a' },
    { defaultMetrics: false, write: () => undefined },
  );
  const mtlsPort = Number(new URL(await mtlsBroker.listen(0, '127.0.0.1')).port);
  const plainBroker = await Broker.create(
    { config: parseConfig(config(false, 'plain'), { baseDir: dir }), path: join(dir, 'b.yaml'), baseDir: dir, digest: 'b' },
    { defaultMetrics: false, write: () => undefined },
  );
  const plainPort = Number(new URL(await plainBroker.listen(0, '127.0.0.1')).port);

  const clientTls = { ca: server.ca, cert: svid.pem, key: svid.keyPem };
  const form = new URLSearchParams({
    grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange',
    subject_token: svid.der.toString('base64url'),
    subject_token_type: 'urn:leash:params:oauth:token-type:tls-client-certificate',
    resource: API,
  }).toString();
  const formHeaders = { 'content-type': 'application/x-www-form-urlencoded' };
  void ORCH;

  // Warm up both brokers (JIT, first key use, SQLite pages).
  const kept = new Agent({ keepAlive: true, maxSockets: 1, ...clientTls });
  for (let i = 0; i < 100; i++) {
    const r = await post(mtlsPort, '/token', form, formHeaders, { tls: clientTls, agent: kept });
    if (r.status !== 200) throw new Error(`warm-up exchange failed: ${r.status} ${r.text}`);
  }

  // CPU of the whole process (client and broker together) per operation: steadier than latency on a busy machine.
  const cpu: Record<string, number> = {};
  let mark = process.cpuUsage();
  const cpuPer = (name: string, n: number) => {
    const d = process.cpuUsage(mark);
    cpu[name] = (d.user + d.system) / 1000 / n;
    mark = process.cpuUsage();
  };

  // 1. A TLS handshake with a client certificate, nothing else.
  const handshakes: number[] = [];
  for (let i = 0; i < N_NEW; i++) {
    const t0 = process.hrtime.bigint();
    await new Promise<void>((resolve, reject) => {
      const s = connect({ host: '127.0.0.1', port: mtlsPort, servername: 'localhost', ...clientTls }, () => {
        handshakes.push(Number(process.hrtime.bigint() - t0) / 1e6);
        s.end();
        resolve();
      });
      s.on('error', reject);
    });
  }

  cpuPer('handshake', N_NEW);

  // 2. An X.509-SVID exchange on a new connection each time.
  const fresh: number[] = [];
  for (let i = 0; i < N_NEW; i++) {
    const t0 = process.hrtime.bigint();
    const r = await post(mtlsPort, '/token', form, formHeaders, { tls: clientTls, agent: false });
    fresh.push(Number(process.hrtime.bigint() - t0) / 1e6);
    if (r.status !== 200) throw new Error(`exchange failed: ${r.status}`);
  }

  cpuPer('fresh', N_NEW);

  // 3. The same exchange on one kept-alive connection.
  const keptMs: number[] = [];
  for (let i = 0; i < N_KEPT; i++) {
    const t0 = process.hrtime.bigint();
    const r = await post(mtlsPort, '/token', form, formHeaders, { tls: clientTls, agent: kept });
    keptMs.push(Number(process.hrtime.bigint() - t0) / 1e6);
    if (r.status !== 200) throw new Error(`exchange failed: ${r.status}`);
  }
  cpuPer('kept', N_KEPT);
  kept.destroy();

  // 4. Reference: a JWT attestation (ES256) over kept-alive plain HTTP.
  const plainAgent = new HttpAgent({ keepAlive: true, maxSockets: 1 });
  const jwtMs: number[] = [];
  const now = Math.floor(Date.now() / 1000);
  for (let i = 0; i < N_KEPT + 100; i++) {
    // A new attestation each time (no identity-cache hit), as the X.509 path verifies every time.
    const token = await new SignJWT({ sub: 'system:serviceaccount:plugins:reader', 'kubernetes.io': { namespace: 'plugins', serviceaccount: { name: 'reader', uid: 'u' } } })
      .setProtectedHeader({ alg: 'ES256', kid: 'c1' })
      .setIssuer('https://k8s.bench')
      .setAudience('leash')
      .setIssuedAt(now)
      .setExpirationTime(now + 600)
      .setJti(String(i))
      .sign(cluster.privateKey);
    const body = new URLSearchParams({
      grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange',
      subject_token: token,
      subject_token_type: 'urn:ietf:params:oauth:token-type:jwt',
      resource: API,
    }).toString();
    const t0 = process.hrtime.bigint();
    const r = await post(plainPort, '/token', body, formHeaders, { agent: plainAgent });
    if (i >= 100) jwtMs.push(Number(process.hrtime.bigint() - t0) / 1e6);
    if (r.status !== 200) throw new Error(`jwt exchange failed: ${r.status} ${r.text}`);
  }
  cpuPer('jwt', N_KEPT + 100);
  plainAgent.destroy();

  await mtlsBroker.close({ graceMs: 0 });
  await plainBroker.close({ graceMs: 0 });
  await rm(dir, { recursive: true, force: true });

  const h = summary(handshakes);
  const f = summary(fresh);
  const k = summary(keptMs);
  const j = summary(jwtMs);
  process.stdout.write(
    [
      `node ${process.version}, loopback, sequential (one request in flight), ECDSA P-256`,
      `load average at the end: ${loadavg()
        .map((l) => l.toFixed(1))
        .join(' ')} on ${availableParallelism()} cores`,
      `TLS handshake with client certificate:          ${fmt(h, cpu.handshake)}`,
      `X.509-SVID exchange, new connection each time:  ${fmt(f, cpu.fresh)}`,
      `X.509-SVID exchange, kept-alive connection:     ${fmt(k, cpu.kept)}`,
      `JWT (ES256, new token) exchange, kept-alive plain HTTP (incl. signing the JWT client-side): ${fmt(j, cpu.jwt)}`,
      `=> a new connection adds ~${(f.p50 - k.p50).toFixed(2)} ms p50 latency and ~${((cpu.fresh ?? 0) - (cpu.kept ?? 0)).toFixed(2)} ms CPU (client + server) over an exchange on a kept-alive connection`,
      '',
    ].join('\n'),
  );
}

await main();
