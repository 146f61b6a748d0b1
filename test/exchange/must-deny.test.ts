import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createHash, createPublicKey, createHmac, randomUUID } from 'node:crypto';
import { SignJWT, decodeJwt, exportJWK, generateKeyPair } from 'jose';
import { createDpopKey, type DpopKey } from '../../src/client/index.js';
import { ManualClock } from '../../src/time/clock.js';
import { CLUSTER_ISSUER } from '../support/cluster.js';
import { CRM_API, EXCHANGE, JWT_TYPE, OPS_KEY, TICKETS_API, freePort, startTestBroker, type TestBroker } from '../support/broker.js';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CryptoKey, JWK } from 'jose';
import { EKU_CLIENT_AUTH, issueCertificate, type IssuedCert } from '../support/x509.js';
import { AWS_FOREIGN_KEY, CLOUD_API, CloudIssuers } from '../support/cloud-issuers.js';
import { decodeAwsRequest, encodeAwsRequest } from '../support/aws-sign.js';

/**
 * The "must be denied" suite: one row per attack or mistake, each asserting the exact
 * OAuth error and status, the Leash code behind it (in the description and the audit
 * event), and that no token came back. RFC 8693 §2.2.2: a subject_token or actor_token
 * that is invalid, or unacceptable by policy, is `invalid_request`; `access_denied` is
 * only a person's denial of an approval.
 */

interface Ctx {
  tb: TestBroker;
  clock: ManualClock;
  task: string;
  endedTask: string;
  expiredTask: string;
  ticketTask: string;
  /** A task open to crm-reader and ticket-writer (a delegation between them). */
  sharedTask: string;
  devTask: string;
  prodTask: string;
  good: string;
  nowS: () => number;
  dpop: DpopKey;
  /** A task open to the keyed and certificate plugins. */
  keyTask: string;
  /** The key keyed-vendor and keyed-attested registered (private_key_jwt). */
  pluginKey: { privateKey: CryptoKey; publicJwk: JWK };
  ca: IssuedCert;
  otherCa: IssuedCert;
  svid: IssuedCert;
  /** tls-plugin's certificate (tls_client_auth, dNSName TLS_PLUGIN_DNS, issued by `ca`). */
  tlsCert: IssuedCert;
  /** self-plugin's registered self-signed certificate (self_signed_tls_client_auth). */
  selfCert: IssuedCert;
  certDir: string;
  cloud: CloudIssuers;
}

interface Row {
  name: string;
  params?: (c: Ctx) => Promise<Record<string, string | string[]>>;
  raw?: (c: Ctx) => Promise<Response>;
  /** Runs before `params` (so a row can make a certificate here and name it there). */
  headers?: (c: Ctx) => Promise<Record<string, string>>;
  status: number;
  error: string;
  /**
   * The Leash code (ERR_*) behind the wire error: named in error_description and audited
   * as the event's reason. Absent for requests oidc-provider refuses before the pipeline.
   */
  code?: string;
}

const UNREACHABLE_ISSUER = 'https://unreachable-idp.example.com';
const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
const ACCESS_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
const AWS_TYPE = 'urn:leash:params:oauth:token-type:aws-sigv4-get-caller-identity';

/** A request of one of the cloud/CI plugins (their grants need no task). */
function cloud(clientId: string, subject: string, type = JWT_TYPE): Record<string, string> {
  return { grant_type: EXCHANGE, client_id: clientId, subject_token: subject, subject_token_type: type, resource: CLOUD_API, scope: 'deploy:read' };
}

/** A genuine Leash token of crm-reader (the upstream of a delegation), for the main task by default. */
async function leashToken(c: Ctx, task = c.task): Promise<string> {
  const res = await c.tb.exchange(base(c, c.good, { task }));
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
    .setIssuer((claims.iss as string | undefined) ?? CLUSTER_ISSUER)
    .setAudience('leash')
    .setIssuedAt(now)
    .setExpirationTime(now + 300)
    .sign(privateKey);
}

const CERT_TYPE = 'urn:leash:params:oauth:token-type:tls-client-certificate';
const CLIENT_TYPE = 'urn:leash:params:oauth:token-type:client';
const ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
const WORKLOAD = 'spiffe://example.org/ns/plugins/sa/svid-plugin';

/** A client assertion (RFC 7523) of `iss`, signed with the plugin's registered key unless told otherwise. */
async function assertion(c: Ctx, over: { iss?: string; sub?: string; aud?: string; exp?: number; iat?: number; jti?: string; key?: CryptoKey } = {}): Promise<string> {
  const now = c.nowS();
  const iss = over.iss ?? 'keyed-vendor';
  return new SignJWT({ jti: over.jti ?? randomUUID() })
    .setProtectedHeader({ alg: 'ES256' })
    .setIssuer(iss)
    .setSubject(over.sub ?? iss)
    .setAudience(over.aud ?? `${c.tb.url}/token`)
    .setIssuedAt(over.iat ?? now)
    .setExpirationTime(over.exp ?? now + 60)
    .sign(over.key ?? c.pluginKey.privateKey);
}

/** The keyed-vendor plugin exchanging with its key alone. */
async function keyOnly(c: Ctx, extra: Record<string, string> = {}): Promise<Record<string, string>> {
  return {
    grant_type: EXCHANGE,
    subject_token: 'keyed-vendor',
    subject_token_type: CLIENT_TYPE,
    resource: CRM_API,
    task: c.keyTask,
    client_assertion_type: ASSERTION_TYPE,
    client_assertion: await assertion(c),
    ...extra,
  };
}

/** An X.509-SVID presented through the trusted proxy's header (Envoy XFCC). */
const xfcc = (...certs: IssuedCert[]) => certs.map((cert) => `Hash=00;Cert="${encodeURIComponent(cert.pem)}";URI=${WORKLOAD}`).join(',');
/** A client certificate (no SPIFFE ID) through the trusted proxy's header. */
const xfccCert = (cert: IssuedCert) => `Hash=00;Cert="${encodeURIComponent(cert.pem)}"`;
const TLS_PLUGIN_DNS = 'tls-plugin.plugins.example.com';
const tlsCertOf = (issuer: IssuedCert, over: Partial<Parameters<typeof issueCertificate>[0]> = {}) =>
  issueCertificate({ name: 'tls-plugin', issuer, dns: [TLS_PLUGIN_DNS], eku: [EKU_CLIENT_AUTH], ...over });
/** A plugin authenticating with its certificate alone (RFC 8705 §2: client_id names it). */
const certClient = (c: Ctx, id: string): Record<string, string> => ({ grant_type: EXCHANGE, client_id: id, subject_token: id, subject_token_type: CLIENT_TYPE, resource: CRM_API, task: c.keyTask });
const svidOf = (issuer: IssuedCert, over: Partial<Parameters<typeof issueCertificate>[0]> = {}) => issueCertificate({ name: 'svid', issuer, uris: [WORKLOAD], eku: [EKU_CLIENT_AUTH], ...over });
const certParams = (c: Ctx, cert: IssuedCert): Record<string, string> => ({
  grant_type: EXCHANGE,
  subject_token: cert.der.toString('base64url'),
  subject_token_type: CERT_TYPE,
  resource: CRM_API,
  task: c.keyTask,
});

const rows: Row[] = [
  // ---- attestation forgeries
  {
    name: 'alg none',
    params: async (c) => {
      const now = c.nowS();
      return base(c, `${b64({ alg: 'none', typ: 'JWT' })}.${b64({ iss: CLUSTER_ISSUER, sub: 'system:serviceaccount:plugins:crm-reader', aud: 'leash', iat: now, exp: now + 60 })}.`);
    },
    status: 400,
    error: 'invalid_request',
    code: 'ERR_ATTESTATION_ALG_NOT_ALLOWED',
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
    error: 'invalid_request',
    code: 'ERR_ATTESTATION_ALG_NOT_ALLOWED',
  },
  { name: 'unknown kid', params: async (c) => base(c, await attackerToken(c, { kid: 'no-such-kid' })), status: 400, error: 'invalid_request', code: 'ERR_ATTESTATION_SIGNATURE' },
  { name: 'foreign key under a known kid', params: async (c) => base(c, await attackerToken(c, { kid: 'rsa-1' })), status: 400, error: 'invalid_request', code: 'ERR_ATTESTATION_SIGNATURE' },
  {
    name: 'jku header',
    params: async (c) => base(c, await attackerToken(c, { kid: 'rsa-1', jku: 'https://attacker.example/jwks' })),
    status: 400,
    error: 'invalid_request',
    code: 'ERR_ATTESTATION_HEADER_KEY',
  },
  { name: 'embedded jwk header', params: async (c) => base(c, await attackerToken(c, { jwk: true })), status: 400, error: 'invalid_request', code: 'ERR_ATTESTATION_HEADER_KEY' },
  {
    name: 'x5u header',
    params: async (c) => base(c, await attackerToken(c, { kid: 'rsa-1', x5u: 'https://attacker.example/cert.pem' })),
    status: 400,
    error: 'invalid_request',
    code: 'ERR_ATTESTATION_HEADER_KEY',
  },
  { name: 'x5c header', params: async (c) => base(c, await attackerToken(c, { kid: 'rsa-1', x5c: ['MIIBfake'] })), status: 400, error: 'invalid_request', code: 'ERR_ATTESTATION_HEADER_KEY' },
  {
    name: 'x5c header on a genuinely signed token',
    params: async (c) => base(c, await c.tb.cluster.saToken({ nowSeconds: c.nowS(), header: { x5c: ['MIIBfake'] } })),
    status: 400,
    error: 'invalid_request',
    code: 'ERR_ATTESTATION_HEADER_KEY',
  },
  { name: 'expired attestation', params: async (c) => base(c, await c.tb.cluster.saToken({ nowSeconds: c.nowS() - 1200 })), status: 400, error: 'invalid_request', code: 'ERR_ATTESTATION_EXPIRED' },
  {
    name: 'nbf in the future',
    params: async (c) => base(c, await c.tb.cluster.saToken({ nowSeconds: c.nowS(), claims: { nbf: c.nowS() + 600 } })),
    status: 400,
    error: 'invalid_request',
    code: 'ERR_ATTESTATION_NOT_YET_VALID',
  },
  {
    name: 'iat in the future',
    params: async (c) => base(c, await c.tb.cluster.saToken({ nowSeconds: c.nowS(), claims: { iat: c.nowS() + 600, nbf: undefined } })),
    status: 400,
    error: 'invalid_request',
    code: 'ERR_ATTESTATION_NOT_YET_VALID',
  },
  {
    name: 'missing exp',
    params: async (c) => base(c, await c.tb.cluster.saToken({ nowSeconds: c.nowS(), claims: { exp: undefined } })),
    status: 400,
    error: 'invalid_request',
    code: 'ERR_ATTESTATION_CLAIM_MISSING',
  },
  {
    name: 'too old (iat beyond max_token_age)',
    params: async (c) => base(c, await c.tb.cluster.saToken({ nowSeconds: c.nowS(), claims: { iat: c.nowS() - 7200, nbf: c.nowS() - 7200 } })),
    status: 400,
    error: 'invalid_request',
    code: 'ERR_ATTESTATION_TOO_OLD',
  },
  {
    name: 'wrong issuer',
    params: async (c) => base(c, await c.tb.cluster.saToken({ nowSeconds: c.nowS(), claims: { iss: 'https://evil.example' } })),
    status: 400,
    error: 'invalid_request',
    code: 'ERR_ATTESTATION_ISSUER_UNKNOWN',
  },
  {
    name: 'wrong audience',
    params: async (c) => base(c, await c.tb.cluster.saToken({ nowSeconds: c.nowS(), claims: { aud: ['vault'] } })),
    status: 400,
    error: 'invalid_request',
    code: 'ERR_ATTESTATION_AUDIENCE',
  },
  {
    name: 'unknown workload',
    params: async (c) => base(c, await c.tb.cluster.saToken({ nowSeconds: c.nowS(), sa: 'crm-reader-evil' })),
    status: 400,
    error: 'invalid_request',
    code: 'ERR_WORKLOAD_UNBOUND',
  },
  {
    name: 'sub disagrees with kubernetes.io claims',
    params: async (c) => base(c, await c.tb.cluster.saToken({ nowSeconds: c.nowS(), sa: 'other', claims: { sub: 'system:serviceaccount:plugins:crm-reader' } })),
    status: 400,
    error: 'invalid_request',
    code: 'ERR_ATTESTATION_CLAIM_INVALID',
  },
  { name: 'malformed JWT', params: async (c) => base(c, 'not-a-jwt'), status: 400, error: 'invalid_request', code: 'ERR_ATTESTATION_MALFORMED' },
  { name: 'JWT with garbage segments', params: async (c) => base(c, 'aGVsbG8.d29ybGQ.c2ln'), status: 400, error: 'invalid_request', code: 'ERR_ATTESTATION_MALFORMED' },
  {
    name: 'crit header on a genuinely signed token',
    params: async (c) => {
      const now = c.nowS();
      const token = await new SignJWT({ sub: 'system:serviceaccount:plugins:crm-reader', 'kubernetes.io': { namespace: 'plugins', serviceaccount: { name: 'crm-reader', uid: randomUUID() } } })
        .setProtectedHeader({ alg: 'RS256', kid: 'rsa-1', crit: ['x-test'], 'x-test': true })
        .setIssuer(CLUSTER_ISSUER)
        .setAudience('leash')
        .setIssuedAt(now)
        .setExpirationTime(now + 300)
        .sign(c.tb.cluster.rsa.privateKey, { crit: { 'x-test': true } });
      return base(c, token);
    },
    status: 400,
    error: 'invalid_request',
    code: 'ERR_ATTESTATION_MALFORMED',
  },
  {
    name: "issuer's keys cannot be fetched",
    params: async (c) => base(c, await attackerToken(c, { kid: 'k1' }, { iss: UNREACHABLE_ISSUER, sub: 'svc' })),
    status: 503,
    error: 'temporarily_unavailable',
    code: 'ERR_ATTESTATION_KEYS_UNAVAILABLE',
  },
  { name: 'huge subject_token', params: async (c) => base(c, `${'a'.repeat(10000)}.b.c`), status: 400, error: 'invalid_request', code: 'ERR_ATTESTATION_MALFORMED' },

  // ---- request shape
  {
    name: 'missing subject_token',
    params: async (c) => {
      const p = base(c, '');
      delete p.subject_token;
      return p;
    },
    status: 400,
    error: 'invalid_request',
    code: 'ERR_REQUEST_MALFORMED',
  },
  { name: 'empty subject_token', params: async (c) => base(c, ''), status: 400, error: 'invalid_request', code: 'ERR_REQUEST_MALFORMED' },
  {
    name: 'missing subject_token_type',
    params: async (c) => {
      const p = base(c, c.good);
      delete p.subject_token_type;
      return p;
    },
    status: 400,
    error: 'invalid_request',
    code: 'ERR_REQUEST_MALFORMED',
  },
  {
    name: 'unsupported subject_token_type',
    params: async (c) => base(c, c.good, { subject_token_type: 'urn:ietf:params:oauth:token-type:saml2' }),
    status: 400,
    error: 'invalid_request',
    code: 'ERR_SUBJECT_TOKEN_TYPE_UNSUPPORTED',
  },
  {
    name: 'unsupported requested_token_type',
    params: async (c) => base(c, c.good, { requested_token_type: 'urn:ietf:params:oauth:token-type:saml2' }),
    status: 400,
    error: 'invalid_request',
    code: 'ERR_REQUESTED_TOKEN_TYPE_UNSUPPORTED',
  },
  { name: 'duplicate subject_token', params: async (c) => base(c, c.good, { subject_token: [c.good, c.good] }), status: 400, error: 'invalid_request' },
  { name: 'duplicate scope', params: async (c) => base(c, c.good, { scope: ['contacts:read', 'contacts:search'] }), status: 400, error: 'invalid_request' },
  { name: 'duplicate task', params: async (c) => base(c, c.good, { task: [c.task, c.task] }), status: 400, error: 'invalid_request' },
  // ---- delegation (actor_token): subject_token must be a live Leash token of a plugin that lists the actor
  { name: 'actor_token_type without actor_token', params: async (c) => base(c, c.good, { actor_token_type: JWT_TYPE }), status: 400, error: 'invalid_request', code: 'ERR_REQUEST_MALFORMED' },
  {
    name: 'actor_token_type not jwt',
    params: async (c) => base(c, await leashToken(c), { subject_token_type: ACCESS_TYPE, actor_token: c.good, actor_token_type: 'urn:ietf:params:oauth:token-type:saml2' }),
    status: 400,
    error: 'invalid_request',
    code: 'ERR_ACTOR_TOKEN_TYPE_UNSUPPORTED',
  },
  {
    name: 'actor_token with an attestation as subject_token',
    params: async (c) => base(c, c.good, { actor_token: c.good, actor_token_type: JWT_TYPE }),
    status: 400,
    error: 'invalid_request',
    code: 'ERR_UPSTREAM_TOKEN_INVALID',
  },
  {
    name: 'upstream token forged with a foreign key under the broker kid',
    params: async (c) => {
      const real = await leashToken(c);
      const { privateKey } = await generateKeyPair('ES256');
      const forged = await new SignJWT(JSON.parse(Buffer.from(real.split('.')[1]!, 'base64url').toString('utf8')) as Record<string, unknown>)
        .setProtectedHeader({ alg: 'ES256', kid: JSON.parse(Buffer.from(real.split('.')[0]!, 'base64url').toString('utf8')).kid as string, typ: 'at+jwt' })
        .sign(privateKey);
      return base(c, forged, {
        client_id: 'ticket-writer',
        subject_token_type: ACCESS_TYPE,
        actor_token: await c.tb.cluster.saToken({ sa: 'ticket-writer-1', nowSeconds: c.nowS() }),
        actor_token_type: JWT_TYPE,
        resource: TICKETS_API,
        task: c.ticketTask,
      });
    },
    status: 400,
    error: 'invalid_request',
    code: 'ERR_UPSTREAM_TOKEN_INVALID',
  },
  {
    name: 'delegation to a plugin the upstream does not list',
    params: async (c) =>
      base(c, await leashToken(c), {
        client_id: 'prod-only',
        subject_token_type: ACCESS_TYPE,
        actor_token: await c.tb.cluster.saToken({ sa: 'prod-only', nowSeconds: c.nowS() }),
        actor_token_type: JWT_TYPE,
        resource: 'https://deploy.example.com',
      }),
    status: 400,
    error: 'invalid_request',
    code: 'ERR_DELEGATION_NOT_ALLOWED',
  },
  {
    // ticket-writer holds a grant for TICKETS_API, the chain's root (crm-reader) does not.
    name: 'delegation to an audience the root holds no grant for',
    params: async (c) =>
      base(c, await leashToken(c, c.sharedTask), {
        client_id: 'ticket-writer',
        subject_token_type: ACCESS_TYPE,
        actor_token: await c.tb.cluster.saToken({ sa: 'ticket-writer-1', nowSeconds: c.nowS() }),
        actor_token_type: JWT_TYPE,
        resource: TICKETS_API,
        task: c.sharedTask,
      }),
    status: 400,
    error: 'invalid_target',
    code: 'ERR_DELEGATION_AUDIENCE_ESCALATION',
  },
  {
    name: 'delegation with an expired actor_token',
    params: async (c) =>
      base(c, await leashToken(c, c.sharedTask), {
        client_id: 'ticket-writer',
        subject_token_type: ACCESS_TYPE,
        actor_token: await c.tb.cluster.saToken({ sa: 'ticket-writer-1', nowSeconds: c.nowS() - 1200 }),
        actor_token_type: JWT_TYPE,
        resource: TICKETS_API,
        task: c.sharedTask,
      }),
    status: 400,
    error: 'invalid_request',
    code: 'ERR_ATTESTATION_EXPIRED',
  },
  {
    name: 'delegation with a forged actor_token',
    params: async (c) =>
      base(c, await leashToken(c, c.sharedTask), {
        client_id: 'ticket-writer',
        subject_token_type: ACCESS_TYPE,
        actor_token: await attackerToken(c, { kid: 'rsa-1' }, { sub: 'system:serviceaccount:plugins:ticket-writer-1' }),
        actor_token_type: JWT_TYPE,
        resource: TICKETS_API,
        task: c.sharedTask,
      }),
    status: 400,
    error: 'invalid_request',
    code: 'ERR_ATTESTATION_SIGNATURE',
  },
  {
    name: 'JSON body instead of a form',
    raw: async (c) => fetch(`${c.tb.url}/token`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(base(c, c.good)) }),
    status: 400,
    error: 'invalid_request',
  },
  {
    name: 'text/plain body',
    raw: async (c) => fetch(`${c.tb.url}/token`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: new URLSearchParams(base(c, c.good) as Record<string, string>).toString() }),
    status: 400,
    error: 'invalid_request',
  },
  {
    name: 'oversized body',
    raw: async (c) =>
      fetch(`${c.tb.url}/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: `${new URLSearchParams(base(c, c.good) as Record<string, string>).toString()}&pad=${'x'.repeat(40000)}`,
      }),
    status: 413,
    error: 'invalid_request',
  },
  { name: 'unknown client_id', params: async (c) => base(c, c.good, { client_id: 'nobody' }), status: 401, error: 'invalid_client' },
  { name: 'empty client_id', params: async (c) => base(c, c.good, { client_id: '' }), status: 400, error: 'invalid_request' },
  {
    name: 'client_id without an attestation to match',
    params: async (c) => {
      const p = base(c, c.good);
      delete p.subject_token;
      return p;
    },
    status: 400,
    error: 'invalid_request',
    code: 'ERR_REQUEST_MALFORMED',
  },
  // Client credentials are verified (private_key_jwt) or refused, never let through.
  {
    name: 'garbage client_assertion',
    params: async (c) => base(c, c.good, { client_assertion: 'garbage', client_assertion_type: ASSERTION_TYPE }),
    status: 401,
    error: 'invalid_client',
    code: 'ERR_CLIENT_AUTH_FAILED',
  },
  {
    name: 'client_assertion of a plugin that registered no key',
    params: async (c) => base(c, c.good, { client_assertion: await attackerToken(c, { kid: 'x' }, { sub: 'crm-reader', iss: 'crm-reader' }), client_assertion_type: ASSERTION_TYPE }),
    status: 401,
    error: 'invalid_client',
    code: 'ERR_CLIENT_AUTH_FAILED',
  },
  {
    name: 'client_assertion without client_id',
    params: async (c) => {
      const p = base(c, c.good, { client_assertion: 'a.b.c', client_assertion_type: ASSERTION_TYPE });
      delete p.client_id;
      return p;
    },
    status: 401,
    error: 'invalid_client',
    code: 'ERR_CLIENT_AUTH_FAILED',
  },
  { name: 'client_assertion_type alone', params: async (c) => base(c, c.good, { client_assertion_type: ASSERTION_TYPE }), status: 400, error: 'invalid_request', code: 'ERR_REQUEST_MALFORMED' },
  {
    name: 'client_assertion sent twice',
    params: async (c) => base(c, c.good, { client_assertion: ['a.b.c', 'a.b.c'], client_assertion_type: ASSERTION_TYPE }),
    status: 400,
    error: 'invalid_request',
    code: 'ERR_REQUEST_MALFORMED',
  },

  // ---- plugins with a key pair (private_key_jwt, RFC 7523)
  {
    name: 'replayed client assertion',
    params: async (c) => {
      const p = await keyOnly(c);
      const first = await c.tb.exchange(p);
      if (first.status !== 200) throw new Error(`baseline key-only exchange failed: ${first.status} ${JSON.stringify(first.body)}`);
      return p;
    },
    status: 401,
    error: 'invalid_client',
    code: 'ERR_CLIENT_AUTH_FAILED',
  },
  {
    name: 'client assertion alg none',
    params: async (c) => {
      const now = c.nowS();
      return keyOnly(c, { client_assertion: `${b64({ alg: 'none' })}.${b64({ iss: 'keyed-vendor', sub: 'keyed-vendor', aud: `${c.tb.url}/token`, jti: randomUUID(), iat: now, exp: now + 60 })}.` });
    },
    status: 401,
    error: 'invalid_client',
    code: 'ERR_CLIENT_AUTH_FAILED',
  },
  {
    name: 'client assertion alg confusion: HS256 keyed with the public key',
    params: async (c) => {
      const now = c.nowS();
      const input = `${b64({ alg: 'HS256' })}.${b64({ iss: 'keyed-vendor', sub: 'keyed-vendor', aud: `${c.tb.url}/token`, jti: randomUUID(), iat: now, exp: now + 60 })}`;
      const pem = createPublicKey({ key: c.pluginKey.publicJwk as never, format: 'jwk' }).export({ type: 'spki', format: 'pem' });
      return keyOnly(c, { client_assertion: `${input}.${createHmac('sha256', pem).update(input).digest('base64url')}` });
    },
    status: 401,
    error: 'invalid_client',
    code: 'ERR_CLIENT_AUTH_FAILED',
  },
  {
    name: 'client assertion for another audience',
    params: async (c) => keyOnly(c, { client_assertion: await assertion(c, { aud: 'https://other-as.example.com/token' }) }),
    status: 401,
    error: 'invalid_client',
    code: 'ERR_CLIENT_AUTH_FAILED',
  },
  {
    name: 'expired client assertion',
    params: async (c) => keyOnly(c, { client_assertion: await assertion(c, { iat: c.nowS() - 600, exp: c.nowS() - 120 }) }),
    status: 401,
    error: 'invalid_client',
    code: 'ERR_CLIENT_AUTH_FAILED',
  },
  {
    name: 'client assertion living longer than five minutes',
    params: async (c) => keyOnly(c, { client_assertion: await assertion(c, { exp: c.nowS() + 3600 }) }),
    status: 401,
    error: 'invalid_client',
    code: 'ERR_CLIENT_AUTH_FAILED',
  },
  {
    name: 'client assertion signed by a key the plugin did not register',
    params: async (c) => keyOnly(c, { client_assertion: await assertion(c, { key: (await generateKeyPair('ES256')).privateKey }) }),
    status: 401,
    error: 'invalid_client',
    code: 'ERR_CLIENT_AUTH_FAILED',
  },
  {
    name: 'client assertion whose sub is another client',
    params: async (c) => keyOnly(c, { client_assertion: await assertion(c, { sub: 'crm-reader' }) }),
    status: 401,
    error: 'invalid_client',
    code: 'ERR_CLIENT_AUTH_FAILED',
  },
  { name: 'client assertion and a client_id that differ', params: async (c) => keyOnly(c, { client_id: 'keyed-attested' }), status: 401, error: 'invalid_client', code: 'ERR_CLIENT_AUTH_FAILED' },
  {
    name: 'key alone, no assertion',
    params: async (c) => {
      const p = await keyOnly(c);
      delete p.client_assertion;
      delete p.client_assertion_type;
      return p;
    },
    status: 401,
    error: 'invalid_client',
    code: 'ERR_CLIENT_AUTH_FAILED',
  },
  {
    name: 'key alone, naming another plugin as subject',
    params: async (c) => keyOnly(c, { subject_token: 'crm-reader' }),
    status: 400,
    error: 'unauthorized_client',
    code: 'ERR_CLIENT_PLUGIN_MISMATCH',
  },
  {
    name: 'key alone for a plugin that must also attest',
    params: async (c) => keyOnly(c, { subject_token: 'keyed-attested', client_assertion: await assertion(c, { iss: 'keyed-attested' }) }),
    status: 400,
    error: 'invalid_request',
    code: 'ERR_ATTESTATION_REQUIRED',
  },
  {
    name: 'attestation alone for a plugin with a registered key',
    params: async (c) => ({
      grant_type: EXCHANGE,
      subject_token: await c.tb.cluster.saToken({ nowSeconds: c.nowS(), sa: 'keyed-attested' }),
      subject_token_type: JWT_TYPE,
      resource: CRM_API,
      task: c.keyTask,
    }),
    status: 401,
    error: 'invalid_client',
    code: 'ERR_CLIENT_AUTH_REQUIRED',
  },
  {
    name: "another plugin's attestation with a keyed plugin's assertion",
    params: async (c) => ({
      grant_type: EXCHANGE,
      subject_token: c.good,
      subject_token_type: JWT_TYPE,
      resource: CRM_API,
      task: c.keyTask,
      client_assertion_type: ASSERTION_TYPE,
      client_assertion: await assertion(c, { iss: 'keyed-attested' }),
    }),
    status: 400,
    error: 'unauthorized_client',
    code: 'ERR_CLIENT_PLUGIN_MISMATCH',
  },

  // ---- client certificates (X.509-SVIDs through the trusted proxy's header; real TLS in test/mtls)
  {
    name: 'certificate of another CA',
    headers: async (c) => {
      const cert = ((c as unknown as { next: IssuedCert }).next = svidOf(c.otherCa));
      return { 'x-forwarded-client-cert': xfcc(cert) };
    },
    params: async (c) => certParams(c, (c as unknown as { next: IssuedCert }).next),
    status: 400,
    error: 'invalid_request',
    code: 'ERR_ATTESTATION_SIGNATURE',
  },
  {
    name: 'expired certificate',
    headers: async (c) => {
      const cert = ((c as unknown as { next: IssuedCert }).next = svidOf(c.ca, { notBefore: Date.now() - 7200_000, notAfter: Date.now() - 60_000 }));
      return { 'x-forwarded-client-cert': xfcc(cert) };
    },
    params: async (c) => certParams(c, (c as unknown as { next: IssuedCert }).next),
    status: 400,
    error: 'invalid_request',
    code: 'ERR_ATTESTATION_EXPIRED',
  },
  {
    name: 'certificate of another trust domain',
    headers: async (c) => {
      const cert = ((c as unknown as { next: IssuedCert }).next = svidOf(c.ca, { uris: ['spiffe://evil.example/ns/plugins/sa/svid-plugin'] }));
      return { 'x-forwarded-client-cert': xfcc(cert) };
    },
    params: async (c) => certParams(c, (c as unknown as { next: IssuedCert }).next),
    status: 400,
    error: 'invalid_request',
    code: 'ERR_ATTESTATION_ISSUER_UNKNOWN',
  },
  {
    name: 'certificate header with two elements (a proxy that appends)',
    params: async (c) => certParams(c, c.svid),
    headers: async (c) => ({ 'x-forwarded-client-cert': xfcc(svidOf(c.otherCa), c.svid) }),
    status: 400,
    error: 'invalid_request',
    code: 'ERR_CLIENT_CERT_MALFORMED',
  },
  { name: 'certificate token type without a certificate', params: async (c) => certParams(c, c.svid), status: 400, error: 'invalid_request', code: 'ERR_CLIENT_CERT_REQUIRED' },
  {
    name: 'subject_token names another certificate than the one presented',
    params: async (c) => certParams(c, svidOf(c.ca)),
    headers: async (c) => ({ 'x-forwarded-client-cert': xfcc(c.svid) }),
    status: 400,
    error: 'invalid_request',
    code: 'ERR_CLIENT_CERT_MISMATCH',
  },
  // ---- RFC 8705 §2 client authentication with a certificate (tls_client_auth, self_signed_tls_client_auth)
  {
    name: 'tls_client_auth: certificate of another CA',
    headers: async (c) => ({ 'x-forwarded-client-cert': xfccCert(tlsCertOf(c.otherCa)) }),
    params: async (c) => certClient(c, 'tls-plugin'),
    status: 401,
    error: 'invalid_client',
    code: 'ERR_CLIENT_AUTH_FAILED',
  },
  {
    name: 'tls_client_auth: expired certificate',
    headers: async (c) => ({ 'x-forwarded-client-cert': xfccCert(tlsCertOf(c.ca, { notBefore: Date.now() - 7200_000, notAfter: Date.now() - 60_000 })) }),
    params: async (c) => certClient(c, 'tls-plugin'),
    status: 401,
    error: 'invalid_client',
    code: 'ERR_CLIENT_AUTH_FAILED',
  },
  {
    name: 'tls_client_auth: wrong SAN (a good certificate of the CA, for another name)',
    headers: async (c) => ({ 'x-forwarded-client-cert': xfccCert(tlsCertOf(c.ca, { dns: ['tls-plugin.plugins.example.com.attacker.example'] })) }),
    params: async (c) => certClient(c, 'tls-plugin'),
    status: 401,
    error: 'invalid_client',
    code: 'ERR_CLIENT_AUTH_FAILED',
  },
  {
    name: 'tls_client_auth: another plugin’s good certificate (an X.509-SVID of the same CA)',
    headers: async (c) => ({ 'x-forwarded-client-cert': xfcc(c.svid) }),
    params: async (c) => certClient(c, 'tls-plugin'),
    status: 401,
    error: 'invalid_client',
    code: 'ERR_CLIENT_AUTH_FAILED',
  },
  {
    name: 'tls_client_auth: the CA certificate itself as client certificate',
    headers: async (c) => ({ 'x-forwarded-client-cert': xfccCert(c.ca) }),
    params: async (c) => certClient(c, 'tls-plugin'),
    status: 401,
    error: 'invalid_client',
    code: 'ERR_CLIENT_AUTH_FAILED',
  },
  { name: 'tls_client_auth: no certificate', params: async (c) => certClient(c, 'tls-plugin'), status: 401, error: 'invalid_client', code: 'ERR_CLIENT_AUTH_FAILED' },
  {
    name: 'tls_client_auth: the certificate with a client assertion of no key',
    headers: async (c) => ({ 'x-forwarded-client-cert': xfccCert(c.tlsCert) }),
    params: async (c) => ({ ...certClient(c, 'tls-plugin'), client_assertion_type: ASSERTION_TYPE, client_assertion: await assertion(c, { iss: 'tls-plugin' }) }),
    status: 401,
    error: 'invalid_client',
    code: 'ERR_CLIENT_AUTH_FAILED',
  },
  {
    name: 'self_signed_tls_client_auth: an unregistered self-signed certificate of the same name',
    headers: async () => ({ 'x-forwarded-client-cert': xfccCert(issueCertificate({ name: 'self-plugin' })) }),
    params: async (c) => certClient(c, 'self-plugin'),
    status: 401,
    error: 'invalid_client',
    code: 'ERR_CLIENT_AUTH_FAILED',
  },
  {
    name: 'self_signed_tls_client_auth: a CA-issued certificate instead of the registered one',
    headers: async (c) => ({ 'x-forwarded-client-cert': xfccCert(c.tlsCert) }),
    params: async (c) => certClient(c, 'self-plugin'),
    status: 401,
    error: 'invalid_client',
    code: 'ERR_CLIENT_AUTH_FAILED',
  },
  { name: 'self_signed_tls_client_auth: no certificate', params: async (c) => certClient(c, 'self-plugin'), status: 401, error: 'invalid_client', code: 'ERR_CLIENT_AUTH_FAILED' },
  {
    name: 'tls_client_auth: the registered self-signed certificate of another plugin',
    headers: async (c) => ({ 'x-forwarded-client-cert': xfccCert(c.selfCert) }),
    params: async (c) => certClient(c, 'tls-plugin'),
    status: 401,
    error: 'invalid_client',
    code: 'ERR_CLIENT_AUTH_FAILED',
  },
  { name: 'client_secret in the body', params: async (c) => base(c, c.good, { client_secret: 'hunter2' }), status: 400, error: 'invalid_client', code: 'ERR_CLIENT_AUTH_UNSUPPORTED' },
  {
    name: 'client_secret via HTTP Basic',
    params: async (c) => base(c, c.good),
    headers: async () => ({ authorization: `Basic ${Buffer.from('crm-reader:hunter2').toString('base64')}` }),
    status: 401,
    error: 'invalid_client',
  },
  { name: 'client_id of another plugin', params: async (c) => base(c, c.good, { client_id: 'ticket-writer' }), status: 400, error: 'unauthorized_client', code: 'ERR_CLIENT_PLUGIN_MISMATCH' },
  { name: 'other grant type', params: async (c) => base(c, c.good, { grant_type: 'client_credentials' }), status: 400, error: 'unsupported_grant_type' },

  // ---- audience, scope, ttl
  {
    name: 'no audience',
    params: async (c) => {
      const p = base(c, c.good);
      delete p.resource;
      return p;
    },
    status: 400,
    error: 'invalid_target',
    code: 'ERR_AUDIENCE_MISSING',
  },
  { name: 'audience widening: two targets', params: async (c) => base(c, c.good, { audience: TICKETS_API }), status: 400, error: 'invalid_target', code: 'ERR_AUDIENCE_MULTIPLE' },
  { name: 'audience widening: two resources', params: async (c) => base(c, c.good, { resource: [CRM_API, TICKETS_API] }), status: 400, error: 'invalid_target', code: 'ERR_AUDIENCE_MULTIPLE' },
  { name: 'audience not granted', params: async (c) => base(c, c.good, { resource: 'https://evil.example.com' }), status: 400, error: 'invalid_target', code: 'ERR_AUDIENCE_NOT_GRANTED' },
  { name: 'audience prefix extension', params: async (c) => base(c, c.good, { resource: `${CRM_API}/admin` }), status: 400, error: 'invalid_target', code: 'ERR_AUDIENCE_NOT_GRANTED' },
  { name: 'audience trailing slash', params: async (c) => base(c, c.good, { resource: `${CRM_API}/` }), status: 400, error: 'invalid_target', code: 'ERR_AUDIENCE_NOT_GRANTED' },
  { name: 'relative resource', params: async (c) => base(c, c.good, { resource: 'crm' }), status: 400, error: 'invalid_target', code: 'ERR_RESOURCE_INVALID' },
  { name: 'resource with fragment', params: async (c) => base(c, c.good, { resource: `${CRM_API}#x` }), status: 400, error: 'invalid_target', code: 'ERR_RESOURCE_INVALID' },
  { name: 'scope escalation', params: async (c) => base(c, c.good, { scope: 'contacts:delete' }), status: 400, error: 'invalid_scope', code: 'ERR_SCOPE_NOT_GRANTED' },
  { name: 'scope escalation mixed with granted', params: async (c) => base(c, c.good, { scope: 'contacts:read contacts:admin' }), status: 400, error: 'invalid_scope', code: 'ERR_SCOPE_NOT_GRANTED' },
  { name: 'scope of another plugin', params: async (c) => base(c, c.good, { scope: 'tickets:write' }), status: 400, error: 'invalid_scope', code: 'ERR_SCOPE_NOT_GRANTED' },
  { name: 'TTL beyond grant max', params: async (c) => base(c, c.good, { expires_in: '3600' }), status: 400, error: 'invalid_request', code: 'ERR_TTL_EXCEEDS_MAX' },
  { name: 'TTL not a number', params: async (c) => base(c, c.good, { expires_in: '5m' }), status: 400, error: 'invalid_request', code: 'ERR_TTL_INVALID' },
  { name: 'TTL zero', params: async (c) => base(c, c.good, { expires_in: '0' }), status: 400, error: 'invalid_request', code: 'ERR_TTL_INVALID' },

  // ---- tasks
  {
    name: 'no task',
    params: async (c) => {
      const p = base(c, c.good);
      delete p.task;
      return p;
    },
    status: 400,
    error: 'invalid_request',
    code: 'ERR_TASK_REQUIRED',
  },
  { name: 'unknown task', params: async (c) => base(c, c.good, { task: 'tsk_doesnotexist0000' }), status: 400, error: 'invalid_grant', code: 'ERR_TASK_UNKNOWN' },
  { name: 'malformed task id', params: async (c) => base(c, c.good, { task: '../../etc/passwd' }), status: 400, error: 'invalid_grant', code: 'ERR_TASK_UNKNOWN' },
  { name: 'ended task', params: async (c) => base(c, c.good, { task: c.endedTask }), status: 400, error: 'invalid_grant', code: 'ERR_TASK_ENDED' },
  // ERR_TASK_EXPIRED, or ERR_TASK_ENDED once the expiry sweeper has ended it: no code pinned.
  { name: 'expired task', params: async (c) => base(c, c.good, { task: c.expiredTask }), status: 400, error: 'invalid_grant' },
  { name: 'foreign task (plugin not in it)', params: async (c) => base(c, c.good, { task: c.ticketTask }), status: 400, error: 'invalid_grant', code: 'ERR_TASK_PLUGIN_NOT_ALLOWED' },

  // ---- policy
  {
    name: 'grant condition fails (task.env != prod)',
    params: async (c) => ({ ...base(c, await c.tb.cluster.saToken({ nowSeconds: c.nowS(), sa: 'prod-only' }), { resource: 'https://deploy.example.com', task: c.devTask }), client_id: 'prod-only' }),
    status: 400,
    error: 'invalid_request',
    code: 'ERR_CONDITION_FAILED',
  },
  {
    name: 'grant needing human approval (pending, no token yet)',
    params: async (c) => ({ ...base(c, await c.tb.cluster.saToken({ nowSeconds: c.nowS(), sa: 'prod-only' }), { resource: 'https://audit.example.com', task: c.prodTask }), client_id: 'prod-only' }),
    status: 400,
    error: 'authorization_pending',
    code: 'ERR_APPROVAL_PENDING',
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
    code: 'ERR_APPROVAL_UNKNOWN',
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
    code: 'ERR_APPROVAL_UNKNOWN',
  },
  {
    name: 'disabled plugin',
    params: async (c) => ({ ...base(c, await c.tb.cluster.saToken({ nowSeconds: c.nowS(), sa: 'retired-plugin' }), { resource: CRM_API }), client_id: 'retired-plugin' }),
    status: 400,
    error: 'unauthorized_client',
    code: 'ERR_PLUGIN_DISABLED',
  },

  // ---- DPoP
  {
    name: 'DPoP required by risk tier, no proof',
    params: async (c) => ({ ...base(c, await c.tb.cluster.saToken({ nowSeconds: c.nowS(), sa: 'ticket-writer-1' }), { resource: TICKETS_API, task: c.ticketTask }), client_id: 'ticket-writer' }),
    status: 400,
    error: 'invalid_dpop_proof',
    code: 'ERR_DPOP_REQUIRED',
  },
  {
    name: 'DPoP proof for another endpoint',
    params: async (c) => ({ ...base(c, await c.tb.cluster.saToken({ nowSeconds: c.nowS(), sa: 'ticket-writer-1' }), { resource: TICKETS_API, task: c.ticketTask }), client_id: 'ticket-writer' }),
    headers: async (c) => ({ dpop: await c.dpop.proof({ method: 'POST', url: `${c.tb.url}/introspect` }) }),
    status: 400,
    error: 'invalid_dpop_proof',
    code: 'ERR_DPOP_INVALID',
  },
  {
    name: 'DPoP proof with the wrong method',
    params: async (c) => ({ ...base(c, await c.tb.cluster.saToken({ nowSeconds: c.nowS(), sa: 'ticket-writer-1' }), { resource: TICKETS_API, task: c.ticketTask }), client_id: 'ticket-writer' }),
    headers: async (c) => ({ dpop: await c.dpop.proof({ method: 'GET', url: `${c.tb.url}/token` }) }),
    status: 400,
    error: 'invalid_dpop_proof',
    code: 'ERR_DPOP_INVALID',
  },
  {
    name: 'DPoP proof that is not a JWT',
    params: async (c) => ({ ...base(c, await c.tb.cluster.saToken({ nowSeconds: c.nowS(), sa: 'ticket-writer-1' }), { resource: TICKETS_API, task: c.ticketTask }), client_id: 'ticket-writer' }),
    headers: async () => ({ dpop: 'garbage' }),
    status: 400,
    error: 'invalid_dpop_proof',
    code: 'ERR_DPOP_INVALID',
  },

  // ---- cloud and CI workload identities (gitlab, gcp, azure, aws kinds)
  {
    name: 'gitlab: a job of another project',
    params: async (c) => cloud('gitlab-deployer', await c.cloud.gitlab({ project_path: 'platform/evil' })),
    status: 400,
    error: 'invalid_request',
    code: 'ERR_WORKLOAD_UNBOUND',
  },
  {
    name: 'gitlab: an unprotected branch',
    params: async (c) => cloud('gitlab-deployer', await c.cloud.gitlab({ ref: 'feature-x', ref_protected: 'false' })),
    status: 400,
    error: 'invalid_request',
    code: 'ERR_WORKLOAD_UNBOUND',
  },
  {
    name: 'gitlab: sub claims main, the job ran on another ref',
    params: async (c) => cloud('gitlab-deployer', await c.cloud.gitlab({ ref: 'dev', sub: 'project_path:platform/deployer:ref_type:branch:ref:main' })),
    status: 400,
    error: 'invalid_request',
    code: 'ERR_ATTESTATION_CLAIM_INVALID',
  },
  {
    name: 'gitlab: pipeline source the condition does not allow (CEL)',
    params: async (c) => cloud('gitlab-deployer', await c.cloud.gitlab({ pipeline_source: 'merge_request_event' })),
    status: 400,
    error: 'invalid_request',
    code: 'ERR_CONDITION_FAILED',
  },
  {
    name: "gcp: a person's Google account",
    params: async (c) => cloud('gcp-deployer', await c.cloud.gcp({ email: 'deployer@gmail.com' })),
    status: 400,
    error: 'invalid_request',
    code: 'ERR_ATTESTATION_CLAIM_INVALID',
  },
  {
    name: 'gcp: email not verified',
    params: async (c) => cloud('gcp-deployer', await c.cloud.gcp({ email_verified: false })),
    status: 400,
    error: 'invalid_request',
    code: 'ERR_ATTESTATION_CLAIM_INVALID',
  },
  {
    name: 'gcp: same account name in another project',
    params: async (c) => cloud('gcp-deployer', await c.cloud.gcp({ email: 'deployer@acme-dev.iam.gserviceaccount.com' })),
    status: 400,
    error: 'invalid_request',
    code: 'ERR_WORKLOAD_UNBOUND',
  },
  {
    name: 'azure: a token of another tenant (same signing keys)',
    params: async (c) =>
      cloud('azure-deployer', await c.cloud.azure({ iss: 'https://login.microsoftonline.com/00000000-0000-0000-0000-000000000000/v2.0', tid: '00000000-0000-0000-0000-000000000000' })),
    status: 400,
    error: 'invalid_request',
    code: 'ERR_ATTESTATION_ISSUER_UNKNOWN',
  },
  {
    name: 'azure: our issuer, another tenant id',
    params: async (c) => cloud('azure-deployer', await c.cloud.azure({ tid: '00000000-0000-0000-0000-000000000000' })),
    status: 400,
    error: 'invalid_request',
    code: 'ERR_ATTESTATION_CLAIM_INVALID',
  },
  {
    name: 'azure: a token acting for a user (scp)',
    params: async (c) => cloud('azure-deployer', await c.cloud.azure({ scp: 'user_impersonation' })),
    status: 400,
    error: 'invalid_request',
    code: 'ERR_ATTESTATION_CLAIM_INVALID',
  },
  {
    name: 'aws: signed for another Leash (server id)',
    params: async (c) => cloud('aws-deployer', await c.cloud.aws({ serverId: 'other-leash.example.com' }), AWS_TYPE),
    status: 400,
    error: 'invalid_request',
    code: 'ERR_ATTESTATION_AUDIENCE',
  },
  {
    name: 'aws: a signature older than 15 minutes',
    params: async (c) => cloud('aws-deployer', await c.cloud.aws({ date: new Date(c.clock.now() - 16 * 60_000) }), AWS_TYPE),
    status: 400,
    error: 'invalid_request',
    code: 'ERR_ATTESTATION_TOO_OLD',
  },
  {
    name: 'aws: a url that points elsewhere',
    params: async (c) => {
      const r = decodeAwsRequest(await c.cloud.aws());
      r.url = 'https://attacker.example/';
      return cloud('aws-deployer', encodeAwsRequest(r), AWS_TYPE);
    },
    status: 400,
    error: 'invalid_request',
    code: 'ERR_ATTESTATION_CLAIM_INVALID',
  },
  {
    name: 'aws: a signed AssumeRole instead of GetCallerIdentity',
    params: async (c) => cloud('aws-deployer', await c.cloud.aws({ body: 'Action=AssumeRole&Version=2011-06-15&RoleArn=arn:aws:iam::210987654321:role/admin&RoleSessionName=x' }), AWS_TYPE),
    status: 400,
    error: 'invalid_request',
    code: 'ERR_ATTESTATION_CLAIM_INVALID',
  },
  {
    name: 'aws: server id changed after signing',
    params: async (c) => {
      const r = decodeAwsRequest(await c.cloud.aws({ serverId: 'other-leash.example.com' }));
      r.headers['x-leash-server-id'] = 'leash.test.example.com';
      return cloud('aws-deployer', encodeAwsRequest(r), AWS_TYPE);
    },
    status: 400,
    error: 'invalid_request',
    code: 'ERR_ATTESTATION_REVIEW_REJECTED',
  },
  {
    name: 'aws: the same role name in another account',
    params: async (c) => cloud('aws-deployer', await c.cloud.aws({ credentials: AWS_FOREIGN_KEY }), AWS_TYPE),
    status: 400,
    error: 'invalid_request',
    code: 'ERR_WORKLOAD_UNBOUND',
  },
  { name: 'aws: a signed request labelled as a JWT', params: async (c) => cloud('aws-deployer', await c.cloud.aws()), status: 400, error: 'invalid_request', code: 'ERR_ATTESTATION_MALFORMED' },
  {
    name: 'aws: a JWT labelled as a signed request',
    params: async (c) => cloud('azure-deployer', await c.cloud.azure(), AWS_TYPE),
    status: 400,
    error: 'invalid_request',
    code: 'ERR_ATTESTATION_MALFORMED',
  },
];

describe('must be denied', () => {
  const ctx = {} as Ctx;

  beforeAll(async () => {
    ctx.clock = new ManualClock(Date.now());
    ctx.nowS = () => Math.floor(ctx.clock.now() / 1000);
    const closedPort = await freePort();
    const pair = await generateKeyPair('ES256', { extractable: true });
    ctx.pluginKey = { privateKey: pair.privateKey, publicJwk: { ...(await exportJWK(pair.publicKey)), alg: 'ES256' } };
    ctx.ca = issueCertificate({ name: 'Example SPIFFE CA', ca: true });
    ctx.otherCa = issueCertificate({ name: 'Example SPIFFE CA', ca: true });
    ctx.svid = svidOf(ctx.ca);
    ctx.tlsCert = tlsCertOf(ctx.ca);
    ctx.selfCert = issueCertificate({ name: 'self-plugin' });
    ctx.certDir = await mkdtemp(join(tmpdir(), 'leash-deny-'));
    await writeFile(join(ctx.certDir, 'bundle.pem'), ctx.ca.pem);
    ctx.cloud = await CloudIssuers.start(() => ctx.clock.now());
    ctx.tb = await startTestBroker({
      broker: { clock: ctx.clock },
      patch: (cfg) => {
        // Certificates arrive through a TLS-terminating proxy on loopback (the header), keys as assertions.
        cfg.settings.client_certificate_header = { trusted_proxies: ['127.0.0.1', '::1'] };
        cfg.trusted_issuers.push({ name: 'example-x509', kind: 'x509-svid', issuer: 'spiffe://example.org', trust_domain: 'example.org', bundle_file: join(ctx.certDir, 'bundle.pem') });
        const grants = [{ audience: CRM_API, scopes: ['contacts:read'], kind: 'jwt', effect: 'read', max_ttl: 300 }];
        const clientAuth = (attestation: string) => ({ method: 'private_key_jwt', jwks: { inline: { keys: [ctx.pluginKey.publicJwk] } }, attestation });
        cfg.plugins.push(
          { id: 'svid-plugin', owner: 'team-crm@example.com', risk: 'low', bindings: [{ issuer: 'example-x509', subject: WORKLOAD }], grants },
          { id: 'keyed-vendor', owner: 'vendor@example.com', risk: 'low', client_auth: clientAuth('optional'), grants },
          {
            id: 'tls-plugin',
            owner: 'team-crm@example.com',
            risk: 'low',
            client_auth: { method: 'tls_client_auth', tls_client_auth_san_dns: TLS_PLUGIN_DNS, ca_file: join(ctx.certDir, 'bundle.pem'), attestation: 'optional' },
            grants,
          },
          {
            id: 'self-plugin',
            owner: 'vendor@example.com',
            risk: 'low',
            client_auth: {
              method: 'self_signed_tls_client_auth',
              jwks: { inline: { keys: [{ ...createPublicKey(ctx.selfCert.key).export({ format: 'jwk' }), x5c: [ctx.selfCert.der.toString('base64')] }] } },
              attestation: 'optional',
            },
            grants,
          },
          {
            id: 'keyed-attested',
            owner: 'team-crm@example.com',
            risk: 'low',
            client_auth: clientAuth('required'),
            bindings: [{ issuer: 'test-cluster', subject: 'system:serviceaccount:plugins:keyed-attested' }],
            grants,
          },
        );
        cfg.plugins.find((p: { id: string }) => p.id === 'crm-reader').delegate_to = ['ticket-writer'];
        // An issuer whose keys cannot be fetched (nothing listens there).
        cfg.trusted_issuers.push({ name: 'unreachable', kind: 'oidc', issuer: UNREACHABLE_ISSUER, audience: 'leash', jwks: { uri: `http://127.0.0.1:${closedPort}/jwks`, timeout_ms: 500 } });
        ctx.cloud.patch(cfg);
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
    ctx.sharedTask = await ctx.tb.openTask({ plugins: ['crm-reader', 'ticket-writer'] });
    ctx.devTask = await ctx.tb.openTask({ plugins: ['prod-only'], attributes: { env: 'dev' } });
    ctx.prodTask = await ctx.tb.openTask({ plugins: ['prod-only'], attributes: { env: 'prod' } });
    ctx.keyTask = await ctx.tb.openTask({ plugins: ['keyed-vendor', 'keyed-attested', 'svid-plugin', 'tls-plugin', 'self-plugin'] });
    ctx.clock.advance(10); // the 5-second task is now expired, the others are live
    ctx.good = await ctx.tb.cluster.saToken({ nowSeconds: ctx.nowS() });
  });
  afterAll(async () => {
    await ctx.tb.close();
    await rm(ctx.certDir, { recursive: true, force: true });
    await ctx.cloud.close();
  });

  it('has at least 40 rows', () => {
    expect(rows.length).toBeGreaterThanOrEqual(40);
  });

  it('the baseline request is accepted (so every denial below is caused by its one change)', async () => {
    const res = await ctx.tb.exchange(base(ctx, ctx.good));
    expect(res.status).toBe(200);
    expect(typeof res.body.access_token).toBe('string');
  });

  it('the baselines of keys and certificates are accepted: a key alone, a key with an attestation, a certificate, a certificate as client authentication (CA-issued, self-signed)', async () => {
    const keyed = await ctx.tb.exchange(await keyOnly(ctx));
    expect(keyed.status).toBe(200);
    expect(decodeJwt(keyed.body.access_token as string)).toMatchObject({ plugin: 'keyed-vendor', workload: { issuer: 'private_key_jwt', sub: 'keyed-vendor' } });
    const both = await ctx.tb.exchange({
      grant_type: EXCHANGE,
      subject_token: await ctx.tb.cluster.saToken({ nowSeconds: ctx.nowS(), sa: 'keyed-attested' }),
      subject_token_type: JWT_TYPE,
      resource: CRM_API,
      task: ctx.keyTask,
      client_assertion_type: ASSERTION_TYPE,
      client_assertion: await assertion(ctx, { iss: 'keyed-attested' }),
    });
    expect(both.status).toBe(200);
    expect(decodeJwt(both.body.access_token as string)).toMatchObject({ plugin: 'keyed-attested', workload: { issuer: 'test-cluster' } });
    const cert = await ctx.tb.exchange(certParams(ctx, ctx.svid), { 'x-forwarded-client-cert': xfcc(ctx.svid) });
    expect(cert.status).toBe(200);
    expect(decodeJwt(cert.body.access_token as string)).toMatchObject({ plugin: 'svid-plugin', cnf: { 'x5t#S256': createHash('sha256').update(ctx.svid.der).digest('base64url') } });
    // RFC 8705 §2: the certificate as the client's authentication.
    const tls = await ctx.tb.exchange(certClient(ctx, 'tls-plugin'), { 'x-forwarded-client-cert': xfccCert(ctx.tlsCert) });
    expect(tls.status).toBe(200);
    expect(decodeJwt(tls.body.access_token as string)).toMatchObject({ plugin: 'tls-plugin', cnf: { 'x5t#S256': createHash('sha256').update(ctx.tlsCert.der).digest('base64url') } });
    const self = await ctx.tb.exchange(certClient(ctx, 'self-plugin'), { 'x-forwarded-client-cert': xfccCert(ctx.selfCert) });
    expect(self.status).toBe(200);
    expect(decodeJwt(self.body.access_token as string)).toMatchObject({ plugin: 'self-plugin', workload: { issuer: 'self_signed_tls_client_auth', sub: 'self-plugin' } });
  });

  /** The audit trail's length: what one request adds is read from here on. */
  const auditLength = async () => (await ctx.tb.broker.testing.store.read(1, 1_000_000)).length;

  it('the cloud and CI baselines are accepted (each row above changes one thing)', async () => {
    for (const params of [
      cloud('gitlab-deployer', await ctx.cloud.gitlab()),
      cloud('gcp-deployer', await ctx.cloud.gcp()),
      cloud('azure-deployer', await ctx.cloud.azure()),
      cloud('aws-deployer', await ctx.cloud.aws(), AWS_TYPE),
    ]) {
      const res = await ctx.tb.exchange(params);
      expect({ client: params.client_id, status: res.status }).toEqual({ client: params.client_id, status: 200 });
    }
  });

  it.each(rows.map((r) => [r.name, r] as const))('%s', async (_name, row) => {
    const headers = row.headers ? await row.headers(ctx) : {};
    let status: number;
    let seen = 0;
    let body: Record<string, unknown>;
    let cacheControl: string | null;
    if (row.raw) {
      const res = await row.raw(ctx);
      status = res.status;
      body = (await res.json()) as Record<string, unknown>;
      cacheControl = res.headers.get('cache-control');
    } else {
      const params = await row.params!(ctx);
      seen = await auditLength();
      const res = await ctx.tb.exchange(params, headers);
      status = res.status;
      body = res.body;
      cacheControl = res.headers.get('cache-control');
    }
    expect({ status, error: body.error }).toEqual({ status: row.status, error: row.error });
    expect(body.access_token).toBeUndefined();
    expect(typeof body.error_description).toBe('string');
    expect(String(body.error_description)).not.toMatch(/at .*\.(ts|js):\d+/); // no stack traces
    expect(String(body.error_description)).toMatch(/^[\x20\x21\x23-\x5B\x5D-\x7E]+$/); // RFC 6749 §5.2
    expect(cacheControl).toContain('no-store');
    if (row.code !== undefined) {
      // The specific check that failed is named to the caller and in the one audit event.
      expect(String(body.error_description)).toMatch(new RegExp(`\\(${row.code}\\)$`));
      // Exactly one exchange event for this request (the expiry sweeper may add its own events).
      const fresh = (await ctx.tb.broker.testing.store.read(seen + 1, 1000)).filter((e) => e.type.startsWith('exchange.'));
      expect(fresh.map((e) => [e.type, (e.event as { reason?: unknown }).reason])).toEqual([['exchange.denied', row.code]]);
    }
  });

  /**
   * Explain on the must-deny table: for every row the pipeline refuses (the rows with a
   * Leash code), `POST /admin/explain` given the same request, asked first (it consumes
   * nothing), names the reason the exchange then returns: the same code, wire error and
   * status, and the same description. Rows without a code are refused by the OAuth layer
   * before the pipeline (content type, body size, duplicate parameters, unknown client,
   * HTTP Basic): explain takes a parsed form, so those have nothing to explain.
   */
  const pipelineRows = rows.filter((r) => r.code !== undefined && r.params !== undefined);
  it('explain covers every pipeline row of the table', () => {
    expect(pipelineRows.length).toBeGreaterThanOrEqual(100);
    expect(rows.filter((r) => r.code !== undefined && r.params === undefined)).toEqual([]);
  });
  it.each(pipelineRows.map((r) => [r.name, r] as const))('explain names the same reason: %s', async (_name, row) => {
    const headers = row.headers ? await row.headers(ctx) : {};
    const params = await row.params!(ctx);
    const res = await fetch(`${ctx.tb.url}/admin/explain`, {
      method: 'POST',
      headers: { authorization: `Bearer ${OPS_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ request: params, dpop: headers.dpop, client_certificate_header: headers['x-forwarded-client-cert'] }),
    });
    expect(res.status).toBe(200);
    const explained = (await res.json()) as {
      decision: string;
      reason: string;
      issued: boolean;
      error?: { status: number; error: string; description: string };
      steps: { step: string; outcome: string; code?: string }[];
    };
    const seen = await auditLength();
    const live = await ctx.tb.exchange(params, headers);
    const recorded = (await ctx.tb.broker.testing.store.read(seen + 1, 1000)).find((e) => e.type === 'exchange.denied');
    expect(explained.reason).toBe(row.code);
    expect(explained.reason).toBe((recorded?.event as { reason?: string } | undefined)?.reason);
    expect(explained.issued).toBe(false);
    expect({ status: explained.error?.status, error: explained.error?.error }).toEqual({ status: live.status, error: live.body.error });
    // The one step that refused carries the code; nothing after it ran.
    expect(explained.steps.filter((s) => s.outcome === 'failed').map((s) => s.code)).toEqual([row.code]);
    if (row.code !== 'ERR_APPROVAL_PENDING') expect(explained.error?.description).toBe(live.body.error_description);
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
