/**
 * The bare-crypto references: node:http and synchronous node:crypto doing exactly the
 * crypto of one exchange (verify one RS256 attestation, sign one ES256 JWT) or of one
 * introspection (SHA-256 of the client secret, verify one ES256 JWT), with the same
 * request and response shape as Leash.
 *
 * - `baseline`: that and nothing else: no policy, no audit, no store, no revocation check.
 * - `ceiling` (input `ceiling: true`): what an exchange minimally must do besides the crypto,
 *   done as cheaply as it can be done in one process: the plugin and its grant looked up
 *   in an in-memory policy table, one audit event per decision appended to a buffered file,
 *   the issued token recorded in a Map (the revocation record), and introspection checking
 *   that Map. Leash is measured against this: whatever Leash spends beyond it is what its
 *   layers cost (issue 18). With `workers: N` (`--leash-workers`) the ceiling runs as N
 *   node:cluster workers, each with its own tables (so only the exchange workloads), to
 *   show what N processes get from this machine.
 */
import { createHash, createPublicKey, generateKeyPairSync, randomBytes, sign, timingSafeEqual, verify, type KeyObject } from 'node:crypto';
import { createWriteStream, mkdtempSync, type WriteStream } from 'node:fs';
import cluster from 'node:cluster';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { derToP1363, p1363ToDer } from '../src/keys/ecdsa-signature.js';
import { BENCH_NAMESPACE, BENCH_SERVICE_ACCOUNT } from './cluster.js';
import { BASELINE_STATS_PATH, BENCH_CLIENT_ID, BENCH_RESOURCE, BENCH_SCOPE, announceReady, onShutdown, readServerInput } from './protocol.js';

const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
const MAX_BODY = 16384;
const TTL = 300;

const input = readServerInput();
const CEILING = input.ceiling === true;
const attestationKeys = new Map<string, KeyObject>(input.jwks.keys.map((jwk) => [jwk.kid, createPublicKey({ key: jwk, format: 'jwk' })]));
const { privateKey: signingKey, publicKey: verifyKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const kid = createHash('sha256')
  .update(createPublicKey(signingKey).export({ format: 'der', type: 'spki' }))
  .digest('base64url')
  .slice(0, 16);
const task = `tsk_${randomBytes(12).toString('base64url')}`;
const ISSUER = 'http://127.0.0.1';
const sha256 = (s: string) => createHash('sha256').update(s, 'utf8').digest();
const resourceServerSecretHash = sha256(input.resourceServer.secret);
/** Ceiling only: the policy table (plugin -> its grant), the revocation records, the audit file. */
const policy = new Map<string, { readonly plugin: string; readonly audience: string; readonly scope: string }>();
const issued = new Map<string, { readonly plugin: string; readonly task: string; readonly exp: number; revoked: boolean }>();
let audit: WriteStream | undefined;
if (CEILING) {
  // The bench's one plugin, keyed by its exact binding (issuer + subject), as Leash binds it.
  policy.set(`${input.clusterIssuer}\u001fsystem:serviceaccount:${BENCH_NAMESPACE}:${BENCH_SERVICE_ACCOUNT}`, { plugin: BENCH_CLIENT_ID, audience: BENCH_RESOURCE, scope: BENCH_SCOPE });
  const dir = mkdtempSync(join(tmpdir(), 'leash-ceiling-'));
  // A buffered append stream: events reach the file in large writes, not one syscall each.
  audit = createWriteStream(join(dir, 'audit.jsonl'), { flags: 'a', highWaterMark: 1 << 20 });
}
let seq = 0;
function auditEvent(type: string, fields: Record<string, unknown>): void {
  audit?.write(`${JSON.stringify({ seq: ++seq, ts: new Date().toISOString(), type, ...fields })}\n`);
}
/** Introspection answers so far, for the bench's "no `active: false`" check. */
const stats = { active: 0, inactive: 0 };

const b64json = (v: unknown) => Buffer.from(JSON.stringify(v), 'utf8').toString('base64url');

function reply(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

const deny = (res: ServerResponse, error: string, description: string, status = 400) => reply(res, status, { error, error_description: description });

/** Verify an RS256 compact JWS and its iss/aud/exp; undefined when anything is off. */
function verifyAttestation(token: string, nowSeconds: number): Record<string, unknown> | undefined {
  const parts = token.split('.');
  if (parts.length !== 3) return undefined;
  const [h, p, s] = parts as [string, string, string];
  let header: Record<string, unknown>;
  let payload: Record<string, unknown>;
  try {
    header = JSON.parse(Buffer.from(h, 'base64url').toString('utf8')) as Record<string, unknown>;
    payload = JSON.parse(Buffer.from(p, 'base64url').toString('utf8')) as Record<string, unknown>;
  } catch {
    return undefined;
  }
  if (header.alg !== 'RS256' || typeof header.kid !== 'string') return undefined;
  const key = attestationKeys.get(header.kid);
  if (!key) return undefined;
  if (!verify('sha256', Buffer.from(`${h}.${p}`, 'ascii'), key, Buffer.from(s, 'base64url'))) return undefined;
  const aud = payload.aud;
  if (payload.iss !== input.clusterIssuer) return undefined;
  if (!(aud === input.audience || (Array.isArray(aud) && aud.includes(input.audience)))) return undefined;
  if (typeof payload.exp !== 'number' || payload.exp <= nowSeconds) return undefined;
  return payload;
}

function exchange(body: string, res: ServerResponse): void {
  const params = new URLSearchParams(body);
  if (params.get('grant_type') !== TOKEN_EXCHANGE) return deny(res, 'unsupported_grant_type', 'grant_type must be token-exchange');
  const subjectToken = params.get('subject_token');
  const resource = params.get('resource');
  const taskId = params.get('task');
  const clientId = params.get('client_id');
  if (!subjectToken || !resource || !taskId || clientId !== BENCH_CLIENT_ID) return deny(res, 'invalid_request', 'missing or wrong parameters');
  const now = Math.floor(Date.now() / 1000);
  const attested = verifyAttestation(subjectToken, now);
  if (!attested) {
    if (CEILING) auditEvent('exchange.denied', { client_id: clientId, reason: 'attestation' });
    return deny(res, 'invalid_grant', 'the attestation does not verify');
  }
  if (CEILING) {
    const grant = policy.get(`${String(attested.iss)}\u001f${String(attested.sub)}`);
    if (!grant || grant.plugin !== clientId || grant.audience !== resource) {
      auditEvent('exchange.denied', { client_id: clientId, reason: 'policy' });
      return deny(res, 'invalid_target', 'no grant for this audience');
    }
  }
  const payload = {
    iss: ISSUER,
    sub: clientId,
    aud: resource,
    exp: now + TTL,
    iat: now,
    nbf: now,
    jti: randomBytes(16).toString('base64url'),
    client_id: clientId,
    scope: BENCH_SCOPE,
    plugin: clientId,
    workload: { issuer: 'bench-cluster', sub: attested.sub },
    task: taskId,
  };
  const signingInput = `${b64json({ alg: 'ES256', kid, typ: 'at+jwt' })}.${b64json(payload)}`;
  // The bare key and DER, converted by hand: node's own conversion costs more than the signature (src/keys/ecdsa-signature.ts).
  const signature = derToP1363(sign('sha256', Buffer.from(signingInput, 'ascii'), signingKey), 32);
  if (CEILING) {
    issued.set(payload.jti, { plugin: clientId, task: taskId, exp: payload.exp, revoked: false });
    auditEvent('token.issued', { plugin: clientId, task: taskId, jti: payload.jti, aud: resource, exp: payload.exp });
  }
  reply(res, 200, {
    access_token: `${signingInput}.${signature.toString('base64url')}`,
    issued_token_type: ACCESS_TOKEN_TYPE,
    token_type: 'Bearer',
    expires_in: TTL,
    scope: BENCH_SCOPE,
  });
}

/** The resource server from `Authorization: Basic`, checked by SHA-256 of its secret; false when anything is off. */
function basicAuthenticated(header: string | undefined): boolean {
  const match = /^basic +([A-Za-z0-9+/]+={0,2}) *$/i.exec(header ?? '');
  if (!match) return false;
  const decoded = Buffer.from(match[1] as string, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return false;
  // RFC 6749 §2.3.1: id and secret are form-urlencoded before they are joined.
  const formDecode = (s: string) => decodeURIComponent(s.replace(/\+/g, ' '));
  try {
    const matches = timingSafeEqual(sha256(formDecode(decoded.slice(colon + 1))), resourceServerSecretHash);
    return matches && formDecode(decoded.slice(0, colon)) === input.resourceServer.id;
  } catch {
    return false;
  }
}

/** Verify an ES256 compact JWS this server signed, and its iss/exp/aud; undefined when anything is off. */
function verifyAccessToken(token: string, nowSeconds: number): Record<string, unknown> | undefined {
  const parts = token.split('.');
  if (parts.length !== 3) return undefined;
  const [h, p, s] = parts as [string, string, string];
  let header: Record<string, unknown>;
  let payload: Record<string, unknown>;
  try {
    header = JSON.parse(Buffer.from(h, 'base64url').toString('utf8')) as Record<string, unknown>;
    payload = JSON.parse(Buffer.from(p, 'base64url').toString('utf8')) as Record<string, unknown>;
  } catch {
    return undefined;
  }
  if (header.alg !== 'ES256' || header.typ !== 'at+jwt' || header.kid !== kid) return undefined;
  const signature = Buffer.from(s, 'base64url');
  if (signature.length !== 64 || !verify('sha256', Buffer.from(`${h}.${p}`, 'ascii'), verifyKey, p1363ToDer(signature, 32))) return undefined;
  if (payload.iss !== ISSUER || payload.aud !== BENCH_RESOURCE) return undefined;
  if (typeof payload.exp !== 'number' || payload.exp <= nowSeconds) return undefined;
  return payload;
}

function introspect(req: IncomingMessage, body: string, res: ServerResponse): void {
  if (!basicAuthenticated(req.headers.authorization)) return deny(res, 'invalid_client', 'client authentication failed', 401);
  const token = new URLSearchParams(body).get('token');
  if (!token) return deny(res, 'invalid_request', "the 'token' parameter is required");
  const claims = verifyAccessToken(token, Math.floor(Date.now() / 1000));
  const record = CEILING && claims ? issued.get(String(claims.jti)) : undefined;
  if (!claims || (CEILING && (!record || record.revoked))) {
    stats.inactive++;
    return reply(res, 200, { active: false });
  }
  stats.active++;
  reply(res, 200, { active: true, token_type: 'Bearer', ...claims });
}

function handle(req: IncomingMessage, res: ServerResponse): void {
  if (req.method === 'GET' && req.url === BASELINE_STATS_PATH) return reply(res, 200, stats);
  const route = req.method === 'POST' && (req.url === '/token' || req.url === '/introspect') ? req.url : undefined;
  if (!route) return deny(res, 'invalid_request', 'only POST /token and POST /introspect', 404);
  const chunks: Buffer[] = [];
  let size = 0;
  req.on('data', (chunk: Buffer) => {
    size += chunk.length;
    if (size <= MAX_BODY) chunks.push(chunk);
  });
  req.on('end', () => {
    if (size > MAX_BODY) return deny(res, 'invalid_request', 'body too large', 413);
    const body = Buffer.concat(chunks).toString('utf8');
    if (route === '/token') exchange(body, res);
    else introspect(req, body, res);
  });
}

/** `workers` (ceiling only, `--leash-workers`): node:cluster, as `leash serve --workers N`: the hardware's own 1 → N reference. */
const WORKERS = CEILING ? (input.workers ?? 1) : 1;
if (WORKERS > 1 && cluster.isPrimary) {
  // The primary serves nothing: it forks, and announces once every worker listens (one shared port).
  let listening = 0;
  cluster.on('listening', (_worker, address) => {
    if (++listening === WORKERS) announceReady({ url: `http://127.0.0.1:${address.port}`, task, clientId: BENCH_CLIENT_ID, resource: BENCH_RESOURCE });
  });
  for (let i = 0; i < WORKERS; i++) cluster.fork();
  onShutdown(async () => {
    const exits = Object.values(cluster.workers ?? {}).map((w) => new Promise((resolve) => (w?.isDead() ? resolve(undefined) : w?.once('exit', resolve))));
    for (const w of Object.values(cluster.workers ?? {})) w?.kill('SIGTERM');
    await Promise.all(exits);
  });
} else {
  const server = createServer(handle);
  server.keepAliveTimeout = 65_000;
  server.listen(0, '127.0.0.1', () => {
    if (cluster.isWorker) return;
    const { port } = server.address() as AddressInfo;
    announceReady({ url: `http://127.0.0.1:${port}`, task, clientId: BENCH_CLIENT_ID, resource: BENCH_RESOURCE });
  });
  onShutdown(async () => {
    await new Promise<void>((resolve) => (audit ? audit.end(resolve) : resolve()));
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
}
