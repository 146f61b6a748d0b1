import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createPublicKey, createHmac, randomUUID } from 'node:crypto';
import { SignJWT, exportJWK, generateKeyPair } from 'jose';
import { createDpopKey, type DpopKey } from '../../src/client/index.js';
import { ManualClock } from '../../src/time/clock.js';
import { CLUSTER_ISSUER } from '../support/cluster.js';
import { CRM_API, EXCHANGE, JWT_TYPE, TICKETS_API, startTestBroker, type TestBroker } from '../support/broker.js';

/**
 * The "must be denied" suite: one row per attack or mistake, each asserting the exact
 * OAuth error and status, and that no token came back.
 */

interface Ctx {
  tb: TestBroker;
  clock: ManualClock;
  task: string;
  endedTask: string;
  expiredTask: string;
  ticketTask: string;
  devTask: string;
  prodTask: string;
  good: string;
  nowS: () => number;
  dpop: DpopKey;
}

interface Row {
  name: string;
  params?: (c: Ctx) => Promise<Record<string, string | string[]>>;
  raw?: (c: Ctx) => Promise<Response>;
  headers?: (c: Ctx) => Promise<Record<string, string>>;
  status: number;
  error: string;
}

const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
const ACCESS_TYPE = 'urn:ietf:params:oauth:token-type:access_token';

/** A genuine Leash token of crm-reader for the main task (the upstream of a delegation). */
async function leashToken(c: Ctx): Promise<string> {
  const res = await c.tb.exchange(base(c, c.good));
  if (res.status !== 200) throw new Error(`baseline exchange failed: ${res.status}`);
  return res.body.access_token as string;
}

function base(c: Ctx, subject: string, extra: Record<string, string | string[]> = {}): Record<string, string | string[]> {
  return { grant_type: EXCHANGE, client_id: 'crm-reader', subject_token: subject, subject_token_type: JWT_TYPE, resource: CRM_API, task: c.task, ...extra };
}

async function attackerToken(c: Ctx, header: Record<string, unknown>, claims: Record<string, unknown> = {}): Promise<string> {
  const { privateKey, publicKey } = await generateKeyPair('RS256');
  const now = c.nowS();
  return new SignJWT({
    sub: 'system:serviceaccount:plugins:crm-reader',
    'kubernetes.io': { namespace: 'plugins', serviceaccount: { name: 'crm-reader', uid: randomUUID() } },
    ...claims,
  })
    .setProtectedHeader({ alg: 'RS256', ...header, ...(header.jwk === true ? { jwk: await exportJWK(publicKey) } : {}) })
    .setIssuer(CLUSTER_ISSUER)
    .setAudience('leash')
    .setIssuedAt(now)
    .setExpirationTime(now + 300)
    .sign(privateKey);
}

const rows: Row[] = [
  // ---- attestation forgeries
  {
    name: 'alg none',
    params: async (c) => {
      const now = c.nowS();
      return base(c, `${b64({ alg: 'none', typ: 'JWT' })}.${b64({ iss: CLUSTER_ISSUER, sub: 'system:serviceaccount:plugins:crm-reader', aud: 'leash', iat: now, exp: now + 60 })}.`);
    },
    status: 400,
    error: 'invalid_grant',
  },
  {
    name: 'HS256 signed with the issuer public key bytes',
    params: async (c) => {
      const pem = createPublicKey({ key: c.tb.cluster.rsa.publicJwk as never, format: 'jwk' }).export({ type: 'spki', format: 'pem' });
      const now = c.nowS();
      const input = `${b64({ alg: 'HS256', kid: 'rsa-1' })}.${b64({ iss: CLUSTER_ISSUER, sub: 'system:serviceaccount:plugins:crm-reader', aud: 'leash', iat: now, exp: now + 60 })}`;
      return base(c, `${input}.${createHmac('sha256', pem).update(input).digest('base64url')}`);
    },
    status: 400,
    error: 'invalid_grant',
  },
  { name: 'unknown kid', params: async (c) => base(c, await attackerToken(c, { kid: 'no-such-kid' })), status: 400, error: 'invalid_grant' },
  { name: 'foreign key under a known kid', params: async (c) => base(c, await attackerToken(c, { kid: 'rsa-1' })), status: 400, error: 'invalid_grant' },
  { name: 'jku header', params: async (c) => base(c, await attackerToken(c, { kid: 'rsa-1', jku: 'https://attacker.example/jwks' })), status: 400, error: 'invalid_grant' },
  { name: 'embedded jwk header', params: async (c) => base(c, await attackerToken(c, { jwk: true })), status: 400, error: 'invalid_grant' },
  { name: 'x5u header', params: async (c) => base(c, await attackerToken(c, { kid: 'rsa-1', x5u: 'https://attacker.example/cert.pem' })), status: 400, error: 'invalid_grant' },
  { name: 'x5c header', params: async (c) => base(c, await attackerToken(c, { kid: 'rsa-1', x5c: ['MIIBfake'] })), status: 400, error: 'invalid_grant' },
  {
    name: 'x5c header on a genuinely signed token',
    params: async (c) => base(c, await c.tb.cluster.saToken({ nowSeconds: c.nowS(), header: { x5c: ['MIIBfake'] } })),
    status: 400,
    error: 'invalid_grant',
  },
  { name: 'expired attestation', params: async (c) => base(c, await c.tb.cluster.saToken({ nowSeconds: c.nowS() - 1200 })), status: 400, error: 'invalid_grant' },
  { name: 'nbf in the future', params: async (c) => base(c, await c.tb.cluster.saToken({ nowSeconds: c.nowS(), claims: { nbf: c.nowS() + 600 } })), status: 400, error: 'invalid_grant' },
  { name: 'iat in the future', params: async (c) => base(c, await c.tb.cluster.saToken({ nowSeconds: c.nowS(), claims: { iat: c.nowS() + 600, nbf: undefined } })), status: 400, error: 'invalid_grant' },
  { name: 'missing exp', params: async (c) => base(c, await c.tb.cluster.saToken({ nowSeconds: c.nowS(), claims: { exp: undefined } })), status: 400, error: 'invalid_grant' },
  {
    name: 'too old (iat beyond max_token_age)',
    params: async (c) => base(c, await c.tb.cluster.saToken({ nowSeconds: c.nowS(), claims: { iat: c.nowS() - 7200, nbf: c.nowS() - 7200 } })),
    status: 400,
    error: 'invalid_grant',
  },
  { name: 'wrong issuer', params: async (c) => base(c, await c.tb.cluster.saToken({ nowSeconds: c.nowS(), claims: { iss: 'https://evil.example' } })), status: 400, error: 'invalid_grant' },
  { name: 'wrong audience', params: async (c) => base(c, await c.tb.cluster.saToken({ nowSeconds: c.nowS(), claims: { aud: ['vault'] } })), status: 400, error: 'invalid_grant' },
  { name: 'unknown workload', params: async (c) => base(c, await c.tb.cluster.saToken({ nowSeconds: c.nowS(), sa: 'crm-reader-evil' })), status: 400, error: 'invalid_grant' },
  {
    name: 'sub disagrees with kubernetes.io claims',
    params: async (c) => base(c, await c.tb.cluster.saToken({ nowSeconds: c.nowS(), sa: 'other', claims: { sub: 'system:serviceaccount:plugins:crm-reader' } })),
    status: 400,
    error: 'invalid_grant',
  },
  { name: 'malformed JWT', params: async (c) => base(c, 'not-a-jwt'), status: 400, error: 'invalid_grant' },
  { name: 'JWT with garbage segments', params: async (c) => base(c, 'aGVsbG8.d29ybGQ.c2ln'), status: 400, error: 'invalid_grant' },
  { name: 'huge subject_token', params: async (c) => base(c, `${'a'.repeat(10000)}.b.c`), status: 400, error: 'invalid_grant' },

  // ---- request shape
  { name: 'missing subject_token', params: async (c) => { const p = base(c, ''); delete p.subject_token; return p; }, status: 400, error: 'invalid_request' },
  { name: 'empty subject_token', params: async (c) => base(c, ''), status: 400, error: 'invalid_request' },
  { name: 'missing subject_token_type', params: async (c) => { const p = base(c, c.good); delete p.subject_token_type; return p; }, status: 400, error: 'invalid_request' },
  { name: 'unsupported subject_token_type', params: async (c) => base(c, c.good, { subject_token_type: 'urn:ietf:params:oauth:token-type:saml2' }), status: 400, error: 'invalid_request' },
  { name: 'unsupported requested_token_type', params: async (c) => base(c, c.good, { requested_token_type: 'urn:ietf:params:oauth:token-type:saml2' }), status: 400, error: 'invalid_request' },
  { name: 'duplicate subject_token', params: async (c) => base(c, c.good, { subject_token: [c.good, c.good] }), status: 400, error: 'invalid_request' },
  { name: 'duplicate scope', params: async (c) => base(c, c.good, { scope: ['contacts:read', 'contacts:search'] }), status: 400, error: 'invalid_request' },
  { name: 'duplicate task', params: async (c) => base(c, c.good, { task: [c.task, c.task] }), status: 400, error: 'invalid_request' },
  // ---- delegation (actor_token): subject_token must be a live Leash token of a plugin that lists the actor
  { name: 'actor_token_type without actor_token', params: async (c) => base(c, c.good, { actor_token_type: JWT_TYPE }), status: 400, error: 'invalid_request' },
  { name: 'actor_token_type not jwt', params: async (c) => base(c, await leashToken(c), { subject_token_type: ACCESS_TYPE, actor_token: c.good, actor_token_type: 'urn:ietf:params:oauth:token-type:saml2' }), status: 400, error: 'invalid_request' },
  { name: 'actor_token with an attestation as subject_token', params: async (c) => base(c, c.good, { actor_token: c.good, actor_token_type: JWT_TYPE }), status: 400, error: 'invalid_grant' },
  {
    name: 'upstream token forged with a foreign key under the broker kid',
    params: async (c) => {
      const real = await leashToken(c);
      const { privateKey } = await generateKeyPair('ES256');
      const forged = await new SignJWT(JSON.parse(Buffer.from(real.split('.')[1]!, 'base64url').toString('utf8')) as Record<string, unknown>)
        .setProtectedHeader({ alg: 'ES256', kid: JSON.parse(Buffer.from(real.split('.')[0]!, 'base64url').toString('utf8')).kid as string, typ: 'at+jwt' })
        .sign(privateKey);
      return base(c, forged, { client_id: 'ticket-writer', subject_token_type: ACCESS_TYPE, actor_token: await c.tb.cluster.saToken({ sa: 'ticket-writer-1', nowSeconds: c.nowS() }), actor_token_type: JWT_TYPE, resource: TICKETS_API, task: c.ticketTask });
    },
    status: 400,
    error: 'invalid_grant',
  },
  {
    name: 'delegation to a plugin the upstream does not list',
    params: async (c) =>
      base(c, await leashToken(c), { client_id: 'ticket-writer', subject_token_type: ACCESS_TYPE, actor_token: await c.tb.cluster.saToken({ sa: 'ticket-writer-1', nowSeconds: c.nowS() }), actor_token_type: JWT_TYPE, resource: TICKETS_API }),
    status: 400,
    error: 'access_denied',
  },
  {
    name: 'JSON body instead of a form',
    raw: async (c) =>
      fetch(`${c.tb.url}/token`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(base(c, c.good)) }),
    status: 400,
    error: 'invalid_request',
  },
  {
    name: 'text/plain body',
    raw: async (c) =>
      fetch(`${c.tb.url}/token`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: new URLSearchParams(base(c, c.good) as Record<string, string>).toString() }),
    status: 400,
    error: 'invalid_request',
  },
  {
    name: 'oversized body',
    raw: async (c) =>
      fetch(`${c.tb.url}/token`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: `${new URLSearchParams(base(c, c.good) as Record<string, string>).toString()}&pad=${'x'.repeat(40000)}` }),
    status: 413,
    error: 'invalid_request',
  },
  { name: 'unknown client_id', params: async (c) => base(c, c.good, { client_id: 'nobody' }), status: 401, error: 'invalid_client' },
  { name: 'missing client_id', params: async (c) => { const p = base(c, c.good); delete p.client_id; return p; }, status: 400, error: 'invalid_request' },
  { name: 'client_id of another plugin', params: async (c) => base(c, c.good, { client_id: 'ticket-writer' }), status: 400, error: 'unauthorized_client' },
  { name: 'other grant type', params: async (c) => base(c, c.good, { grant_type: 'client_credentials' }), status: 400, error: 'unsupported_grant_type' },

  // ---- audience, scope, ttl
  { name: 'no audience', params: async (c) => { const p = base(c, c.good); delete p.resource; return p; }, status: 400, error: 'invalid_target' },
  { name: 'audience widening: two targets', params: async (c) => base(c, c.good, { audience: TICKETS_API }), status: 400, error: 'invalid_target' },
  { name: 'audience widening: two resources', params: async (c) => base(c, c.good, { resource: [CRM_API, TICKETS_API] }), status: 400, error: 'invalid_target' },
  { name: 'audience not granted', params: async (c) => base(c, c.good, { resource: 'https://evil.example.com' }), status: 400, error: 'invalid_target' },
  { name: 'audience prefix extension', params: async (c) => base(c, c.good, { resource: `${CRM_API}/admin` }), status: 400, error: 'invalid_target' },
  { name: 'audience trailing slash', params: async (c) => base(c, c.good, { resource: `${CRM_API}/` }), status: 400, error: 'invalid_target' },
  { name: 'relative resource', params: async (c) => base(c, c.good, { resource: 'crm' }), status: 400, error: 'invalid_target' },
  { name: 'resource with fragment', params: async (c) => base(c, c.good, { resource: `${CRM_API}#x` }), status: 400, error: 'invalid_target' },
  { name: 'scope escalation', params: async (c) => base(c, c.good, { scope: 'contacts:delete' }), status: 400, error: 'invalid_scope' },
  { name: 'scope escalation mixed with granted', params: async (c) => base(c, c.good, { scope: 'contacts:read contacts:admin' }), status: 400, error: 'invalid_scope' },
  { name: 'scope of another plugin', params: async (c) => base(c, c.good, { scope: 'tickets:write' }), status: 400, error: 'invalid_scope' },
  { name: 'TTL beyond grant max', params: async (c) => base(c, c.good, { expires_in: '3600' }), status: 400, error: 'invalid_request' },
  { name: 'TTL not a number', params: async (c) => base(c, c.good, { expires_in: '5m' }), status: 400, error: 'invalid_request' },
  { name: 'TTL zero', params: async (c) => base(c, c.good, { expires_in: '0' }), status: 400, error: 'invalid_request' },

  // ---- tasks
  { name: 'no task', params: async (c) => { const p = base(c, c.good); delete p.task; return p; }, status: 400, error: 'invalid_request' },
  { name: 'unknown task', params: async (c) => base(c, c.good, { task: 'tsk_doesnotexist0000' }), status: 400, error: 'invalid_grant' },
  { name: 'malformed task id', params: async (c) => base(c, c.good, { task: '../../etc/passwd' }), status: 400, error: 'invalid_grant' },
  { name: 'ended task', params: async (c) => base(c, c.good, { task: c.endedTask }), status: 400, error: 'invalid_grant' },
  { name: 'expired task', params: async (c) => base(c, c.good, { task: c.expiredTask }), status: 400, error: 'invalid_grant' },
  { name: 'foreign task (plugin not in it)', params: async (c) => base(c, c.good, { task: c.ticketTask }), status: 400, error: 'access_denied' },

  // ---- policy
  {
    name: 'grant condition fails (task.env != prod)',
    params: async (c) => ({ ...base(c, await c.tb.cluster.saToken({ nowSeconds: c.nowS(), sa: 'prod-only' }), { resource: 'https://deploy.example.com', task: c.devTask }), client_id: 'prod-only' }),
    status: 400,
    error: 'access_denied',
  },
  {
    name: 'grant needing human approval (pending, no token yet)',
    params: async (c) => ({ ...base(c, await c.tb.cluster.saToken({ nowSeconds: c.nowS(), sa: 'prod-only' }), { resource: 'https://audit.example.com', task: c.prodTask }), client_id: 'prod-only' }),
    status: 400,
    error: 'authorization_pending',
  },
  {
    name: 'unknown approval_id',
    params: async (c) => ({
      ...base(c, await c.tb.cluster.saToken({ nowSeconds: c.nowS(), sa: 'prod-only' }), { resource: 'https://audit.example.com', task: c.prodTask }),
      client_id: 'prod-only',
      approval_id: 'AAAAAAAAAAAAAAAAAAAAAA',
    }),
    status: 400,
    error: 'invalid_grant',
  },
  {
    name: 'malformed approval_id',
    params: async (c) => ({
      ...base(c, await c.tb.cluster.saToken({ nowSeconds: c.nowS(), sa: 'prod-only' }), { resource: 'https://audit.example.com', task: c.prodTask }),
      client_id: 'prod-only',
      approval_id: 'short!',
    }),
    status: 400,
    error: 'invalid_grant',
  },
  {
    name: 'disabled plugin',
    params: async (c) => ({ ...base(c, await c.tb.cluster.saToken({ nowSeconds: c.nowS(), sa: 'retired-plugin' }), { resource: CRM_API }), client_id: 'retired-plugin' }),
    status: 400,
    error: 'unauthorized_client',
  },

  // ---- DPoP
  {
    name: 'DPoP required by risk tier, no proof',
    params: async (c) => ({ ...base(c, await c.tb.cluster.saToken({ nowSeconds: c.nowS(), sa: 'ticket-writer-1' }), { resource: TICKETS_API, task: c.ticketTask }), client_id: 'ticket-writer' }),
    status: 400,
    error: 'invalid_dpop_proof',
  },
  {
    name: 'DPoP proof for another endpoint',
    params: async (c) => ({ ...base(c, await c.tb.cluster.saToken({ nowSeconds: c.nowS(), sa: 'ticket-writer-1' }), { resource: TICKETS_API, task: c.ticketTask }), client_id: 'ticket-writer' }),
    headers: async (c) => ({ dpop: await c.dpop.proof({ method: 'POST', url: `${c.tb.url}/introspect` }) }),
    status: 400,
    error: 'invalid_dpop_proof',
  },
  {
    name: 'DPoP proof with the wrong method',
    params: async (c) => ({ ...base(c, await c.tb.cluster.saToken({ nowSeconds: c.nowS(), sa: 'ticket-writer-1' }), { resource: TICKETS_API, task: c.ticketTask }), client_id: 'ticket-writer' }),
    headers: async (c) => ({ dpop: await c.dpop.proof({ method: 'GET', url: `${c.tb.url}/token` }) }),
    status: 400,
    error: 'invalid_dpop_proof',
  },
  {
    name: 'DPoP proof that is not a JWT',
    params: async (c) => ({ ...base(c, await c.tb.cluster.saToken({ nowSeconds: c.nowS(), sa: 'ticket-writer-1' }), { resource: TICKETS_API, task: c.ticketTask }), client_id: 'ticket-writer' }),
    headers: async () => ({ dpop: 'garbage' }),
    status: 400,
    error: 'invalid_dpop_proof',
  },
];

describe('must be denied', () => {
  const ctx = {} as Ctx;

  beforeAll(async () => {
    ctx.clock = new ManualClock(Date.now());
    ctx.nowS = () => Math.floor(ctx.clock.now() / 1000);
    ctx.tb = await startTestBroker({
      broker: { clock: ctx.clock },
      patch: (cfg) => {
        cfg.plugins.push({
          id: 'retired-plugin',
          owner: 'nobody@example.com',
          risk: 'low',
          disabled: true,
          bindings: [{ issuer: 'test-cluster', subject: 'system:serviceaccount:plugins:retired-plugin' }],
          grants: [{ audience: CRM_API, scopes: ['contacts:read'], kind: 'jwt', effect: 'read', task_required: false }],
        });
      },
    });
    ctx.dpop = await createDpopKey('ES256', { clock: ctx.clock });
    ctx.task = await ctx.tb.openTask({ plugins: ['crm-reader'] });
    ctx.endedTask = await ctx.tb.openTask({ plugins: ['crm-reader'] });
    await ctx.tb.broker.tasks.end(ctx.endedTask, 'test');
    ctx.expiredTask = await ctx.tb.openTask({ plugins: ['crm-reader'], ttl_seconds: 5 });
    ctx.ticketTask = await ctx.tb.openTask({ plugins: ['ticket-writer'] });
    ctx.devTask = await ctx.tb.openTask({ plugins: ['prod-only'], attributes: { env: 'dev' } });
    ctx.prodTask = await ctx.tb.openTask({ plugins: ['prod-only'], attributes: { env: 'prod' } });
    ctx.clock.advance(10); // the 5-second task is now expired, the others are live
    ctx.good = await ctx.tb.cluster.saToken({ nowSeconds: ctx.nowS() });
  });
  afterAll(async () => ctx.tb.close());

  it('has at least 40 rows', () => {
    expect(rows.length).toBeGreaterThanOrEqual(40);
  });

  it('the baseline request is accepted (so every denial below is caused by its one change)', async () => {
    const res = await ctx.tb.exchange(base(ctx, ctx.good));
    expect(res.status).toBe(200);
    expect(typeof res.body.access_token).toBe('string');
  });

  it.each(rows.map((r) => [r.name, r] as const))('%s', async (_name, row) => {
    const headers = row.headers ? await row.headers(ctx) : {};
    let status: number;
    let body: Record<string, unknown>;
    let cacheControl: string | null;
    if (row.raw) {
      const res = await row.raw(ctx);
      status = res.status;
      body = (await res.json()) as Record<string, unknown>;
      cacheControl = res.headers.get('cache-control');
    } else {
      const res = await ctx.tb.exchange(await row.params!(ctx), headers);
      status = res.status;
      body = res.body;
      cacheControl = res.headers.get('cache-control');
    }
    expect({ status, error: body.error }).toEqual({ status: row.status, error: row.error });
    expect(body.access_token).toBeUndefined();
    expect(typeof body.error_description).toBe('string');
    expect(String(body.error_description)).not.toMatch(/at .*\.(ts|js):\d+/); // no stack traces
    expect(cacheControl).toContain('no-store');
  });

  it('a replayed DPoP proof is refused', async () => {
    const params = { ...base(ctx, await ctx.tb.cluster.saToken({ nowSeconds: ctx.nowS(), sa: 'ticket-writer-1' }), { resource: TICKETS_API, task: ctx.ticketTask }), client_id: 'ticket-writer' };
    const proof = await ctx.dpop.proof({ method: 'POST', url: `${ctx.tb.url}/token` });
    const first = await ctx.tb.exchange(params, { dpop: proof });
    expect(first.status).toBe(200);
    const second = await ctx.tb.exchange(params, { dpop: proof });
    expect({ status: second.status, error: second.body.error }).toEqual({ status: 400, error: 'invalid_dpop_proof' });
  });
});
