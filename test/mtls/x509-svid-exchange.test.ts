import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createHash, X509Certificate } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EXCHANGE, CRM_API, ORCHESTRATOR_KEY, loadedFrom, startTestBroker, type TestBroker } from '../support/broker.js';
import { EKU_CLIENT_AUTH, EKU_SERVER_AUTH, KU, issueCertificate, testTls, type IssuedCert } from '../support/x509.js';
import { keepAliveAgent, tlsRequest, type TlsClient } from '../support/mtls.js';
import { createLeashVerifier } from '../../src/client/verifier.js';

/**
 * X.509-SVID attestation over real TLS on loopback: certificates made here (a CA per run),
 * presented in the handshake, verified by Leash against the trust domain's bundle; the
 * issued token is bound to the certificate (RFC 8705 `cnf.x5t#S256`).
 */

const CERT_TYPE = 'urn:leash:params:oauth:token-type:tls-client-certificate';
const TD = 'example.org';
const WORKLOAD = `spiffe://${TD}/ns/plugins/sa/svid-reader`;
const b64url = (der: Buffer) => der.toString('base64url');
const x5t = (der: Buffer) => createHash('sha256').update(der).digest('base64url');

interface World {
  tb: TestBroker;
  url: string;
  server: ReturnType<typeof testTls>;
  ca: IssuedCert;
  otherCa: IssuedCert;
  svid: IssuedCert;
  bundleFile: string;
  task: string;
  input: Record<string, any>;
}

const w = {} as World;

function svid(spec: Partial<Parameters<typeof issueCertificate>[0]> = {}): IssuedCert {
  return issueCertificate({ name: 'svid', issuer: w.ca, uris: [WORKLOAD], eku: [EKU_CLIENT_AUTH], ...spec });
}

function client(cert?: IssuedCert, chain: IssuedCert[] = []): TlsClient {
  return { ca: w.server.ca, ...(cert ? { cert: [cert, ...chain].map((c) => c.pem).join(''), key: cert.keyPem } : {}) };
}

const form = (subject: string, extra: Record<string, string> = {}) => ({ grant_type: EXCHANGE, subject_token: subject, subject_token_type: CERT_TYPE, resource: CRM_API, task: w.task, ...extra });

async function exchange(c: TlsClient, subject: string, extra: Record<string, string> = {}) {
  return tlsRequest(w.url, c, { path: '/token', form: form(subject, extra) });
}

async function lastDenial(): Promise<string | undefined> {
  const events = await w.tb.broker.testing.store.read(1, 1_000_000);
  const denied = events.filter((e) => e.type === 'exchange.denied');
  return (denied[denied.length - 1]?.event as { reason?: string } | undefined)?.reason;
}

beforeAll(async () => {
  w.server = testTls();
  w.ca = issueCertificate({ name: 'Example Org SPIFFE CA', ca: true });
  w.otherCa = issueCertificate({ name: 'Example Org SPIFFE CA', ca: true });
  w.svid = svid();
  w.tb = await startTestBroker({
    patch: (cfg) => {
      const dir = cfg.settings.keys.dir.replace(/\/keys$/, '');
      w.bundleFile = join(dir, 'bundle.pem');
      cfg.settings.issuer = cfg.settings.issuer.replace('http:', 'https:');
      cfg.settings.tls = { cert_file: join(dir, 'tls.crt'), key_file: join(dir, 'tls.key'), client_auth: 'optional' };
      cfg.trusted_issuers.push({ name: 'example-x509', kind: 'x509-svid', issuer: `spiffe://${TD}`, trust_domain: TD, bundle_file: w.bundleFile });
      cfg.plugins.push({
        id: 'svid-reader',
        owner: 'team-crm@example.com',
        risk: 'low',
        bindings: [{ issuer: 'example-x509', subject: WORKLOAD }],
        grants: [{ audience: CRM_API, scopes: ['contacts:read'], kind: 'jwt', effect: 'read', max_ttl: 300 }],
      });
      cfg.resource_servers = [{ id: 'crm-api', audiences: [CRM_API], client_secret_sha256: createHash('sha256').update('crm-secret').digest('hex') }];
      w.input = cfg;
    },
    dir: await (async () => {
      const d = await mkdtemp(join(tmpdir(), 'leash-mtls-'));
      await writeFile(join(d, 'tls.crt'), w.server.cert);
      await writeFile(join(d, 'tls.key'), w.server.key);
      await writeFile(join(d, 'bundle.pem'), w.ca.pem);
      return d;
    })(),
  });
  w.url = w.tb.url.replace('http:', 'https:');
  w.task = await openTask(['svid-reader', 'crm-reader']);
});

afterAll(async () => {
  await w.tb.close();
  await rm(w.tb.dir, { recursive: true, force: true });
});

async function openTask(plugins: string[]): Promise<string> {
  const res = await tlsRequest(w.url, client(), { path: '/tasks', method: 'POST', headers: { authorization: `Bearer ${ORCHESTRATOR_KEY}` }, json: { plugins } });
  if (res.status !== 201) throw new Error(`open task failed: ${res.status}`);
  return res.body.id as string;
}

describe('X.509-SVID attestation over mutual TLS', () => {
  it('serves HTTPS with the configured certificate', async () => {
    const res = await tlsRequest(w.url, client(), { path: '/.well-known/openid-configuration' });
    expect(res.status).toBe(200);
    expect(res.serverFingerprint).toBe(new X509Certificate(w.server.cert).fingerprint256);
  });

  it('exchanges the presented SVID for a token bound to it (cnf.x5t#S256), which introspection reports', async () => {
    const res = await exchange(client(w.svid), b64url(w.svid.der));
    expect(res.status).toBe(200);
    expect(res.body.token_type).toBe('Bearer');
    const claims = JSON.parse(Buffer.from(String(res.body.access_token).split('.')[1]!, 'base64url').toString('utf8')) as Record<string, any>;
    expect(claims).toMatchObject({ plugin: 'svid-reader', sub: 'svid-reader', workload: { issuer: 'example-x509', sub: WORKLOAD }, cnf: { 'x5t#S256': x5t(w.svid.der) } });
    expect(claims.exp).toBeLessThanOrEqual(Math.floor(new X509Certificate(w.svid.der).validToDate.getTime() / 1000));
    const issued = (await w.tb.broker.testing.store.read(1, 1_000_000)).filter((e) => e.type === 'exchange.issued').pop()!.event as Record<string, unknown>;
    expect(issued).toMatchObject({ plugin: 'svid-reader', x5t_s256: x5t(w.svid.der), subject_token_sha256: expect.any(String), workload: { issuer: 'example-x509', subject: WORKLOAD } });

    // Introspection returns the binding; the token is still a Bearer token on the wire (RFC 8705 §3).
    const intro = await tlsRequest(w.url, client(), {
      path: '/introspect',
      headers: { authorization: `Basic ${Buffer.from('crm-api:crm-secret').toString('base64')}` },
      form: { token: String(res.body.access_token) },
    });
    expect(intro.body).toMatchObject({ active: true, token_type: 'Bearer', cnf: { 'x5t#S256': x5t(w.svid.der) }, plugin: 'svid-reader' });
  });

  it('takes the subject_token in standard base64 as well', async () => {
    const res = await exchange(client(w.svid), w.svid.der.toString('base64'));
    expect(res.status).toBe(200);
  });

  it('the SDK verifier accepts the bound token only with the same certificate', async () => {
    const res = await exchange(client(w.svid), b64url(w.svid.der));
    const token = String(res.body.access_token);
    const jwks = w.tb.broker.testing.keys.jwks();
    const verifier = createLeashVerifier({
      issuer: w.tb.config.settings.issuer,
      audience: CRM_API,
      jwksUri: 'https://leash.invalid/jwks',
      fetch: (async () => new Response(JSON.stringify(jwks), { headers: { 'content-type': 'application/json' } })) as typeof fetch,
    });
    const req = { authorization: `Bearer ${token}`, method: 'GET', url: `${CRM_API}/contacts` };
    await expect(verifier.verify({ ...req, clientCertificate: w.svid.der })).resolves.toMatchObject({ plugin: 'svid-reader', x5t: x5t(w.svid.der) });
    await expect(verifier.verify({ ...req, clientCertificate: w.svid.pem })).resolves.toMatchObject({ plugin: 'svid-reader' });
    await expect(verifier.verify(req)).rejects.toMatchObject({ error: 'invalid_token', error_description: expect.stringMatching(/bound to a client certificate/) });
    await expect(verifier.verify({ ...req, clientCertificate: svid().der })).rejects.toMatchObject({ error: 'invalid_token', error_description: expect.stringMatching(/another client certificate/) });
  });

  it('accepts an SVID issued by an intermediate CA the client sends along', async () => {
    const intermediate = issueCertificate({ name: 'Intermediate', issuer: w.ca, ca: true });
    const leaf = issueCertificate({ name: 'svid', issuer: intermediate, uris: [WORKLOAD], eku: [EKU_CLIENT_AUTH] });
    // The chain travels in subject_token after the leaf (Node's TLS server does not expose the one sent in the handshake).
    const res = await exchange(client(leaf, [intermediate]), `${b64url(leaf.der)}.${b64url(intermediate.der)}`);
    expect(res.status).toBe(200);
    // Without the intermediate the chain does not reach the bundle.
    const alone = await exchange(client(leaf, [intermediate]), b64url(leaf.der));
    expect({ status: alone.status, error: alone.body.error }).toEqual({ status: 400, error: 'invalid_request' });
    expect(await lastDenial()).toBe('ERR_ATTESTATION_SIGNATURE');
  });

  const refusals: Array<[string, () => { c: TlsClient; subject: string }, string]> = [
    ['no client certificate on the connection', () => ({ c: client(), subject: b64url(w.svid.der) }), 'ERR_CLIENT_CERT_REQUIRED'],
    ['subject_token names another certificate than the one presented', () => ({ c: client(w.svid), subject: b64url(svid().der) }), 'ERR_CLIENT_CERT_MISMATCH'],
    ['subject_token is not a certificate', () => ({ c: client(w.svid), subject: 'not-a-certificate' }), 'ERR_CLIENT_CERT_MISMATCH'],
    ['subject_token carries garbage after the leaf', () => ({ c: client(w.svid), subject: `${b64url(w.svid.der)}.bm90LWEtY2VydA` }), 'ERR_CLIENT_CERT_MALFORMED'],
    [
      'wrong CA: the right SPIFFE ID signed by another CA of the same name',
      () => {
        const c = issueCertificate({ name: 'svid', issuer: w.otherCa, uris: [WORKLOAD], eku: [EKU_CLIENT_AUTH] });
        return { c: client(c), subject: b64url(c.der) };
      },
      'ERR_ATTESTATION_SIGNATURE',
    ],
    [
      'self-signed SVID',
      () => {
        const c = issueCertificate({ name: 'svid', uris: [WORKLOAD], eku: [EKU_CLIENT_AUTH] });
        return { c: client(c), subject: b64url(c.der) };
      },
      'ERR_ATTESTATION_SIGNATURE',
    ],
    [
      'expired SVID',
      () => {
        const c = svid({ notBefore: Date.now() - 7200_000, notAfter: Date.now() - 60_000 });
        return { c: client(c), subject: b64url(c.der) };
      },
      'ERR_ATTESTATION_EXPIRED',
    ],
    [
      'SVID not valid yet',
      () => {
        const c = svid({ notBefore: Date.now() + 600_000, notAfter: Date.now() + 7200_000 });
        return { c: client(c), subject: b64url(c.der) };
      },
      'ERR_ATTESTATION_NOT_YET_VALID',
    ],
    [
      'SVID older than max_token_age',
      () => {
        const c = svid({ notBefore: Date.now() - 5 * 3600_000, notAfter: Date.now() + 3600_000 });
        return { c: client(c), subject: b64url(c.der) };
      },
      'ERR_ATTESTATION_TOO_OLD',
    ],
    [
      'wrong SAN: another trust domain',
      () => {
        const c = svid({ uris: ['spiffe://evil.example/ns/plugins/sa/svid-reader'] });
        return { c: client(c), subject: b64url(c.der) };
      },
      'ERR_ATTESTATION_ISSUER_UNKNOWN',
    ],
    [
      'wrong SAN: two URIs',
      () => {
        const c = svid({ uris: [WORKLOAD, `spiffe://${TD}/other`] });
        return { c: client(c), subject: b64url(c.der) };
      },
      'ERR_ATTESTATION_CLAIM_INVALID',
    ],
    [
      'wrong SAN: no URI at all',
      () => {
        const c = svid({ uris: [], dns: ['svid-reader.example.org'] });
        return { c: client(c), subject: b64url(c.der) };
      },
      'ERR_ATTESTATION_CLAIM_INVALID',
    ],
    [
      'wrong SAN: the trust domain itself',
      () => {
        const c = svid({ uris: [`spiffe://${TD}`] });
        return { c: client(c), subject: b64url(c.der) };
      },
      'ERR_ATTESTATION_CLAIM_INVALID',
    ],
    [
      'wrong SAN: a workload no plugin is bound to',
      () => {
        const c = svid({ uris: [`spiffe://${TD}/ns/plugins/sa/stranger`] });
        return { c: client(c), subject: b64url(c.der) };
      },
      'ERR_WORKLOAD_UNBOUND',
    ],
    [
      'a CA certificate as the leaf',
      () => {
        const c = issueCertificate({ name: 'svid', issuer: w.ca, ca: true, uris: [WORKLOAD] });
        return { c: client(c), subject: b64url(c.der) };
      },
      'ERR_ATTESTATION_CLAIM_INVALID',
    ],
    [
      'leaf that may sign certificates',
      () => {
        const c = svid({ keyUsage: [KU.digitalSignature, KU.keyCertSign] });
        return { c: client(c), subject: b64url(c.der) };
      },
      'ERR_ATTESTATION_CLAIM_INVALID',
    ],
    [
      'leaf without digitalSignature',
      () => {
        const c = svid({ keyUsage: [KU.keyEncipherment] });
        return { c: client(c), subject: b64url(c.der) };
      },
      'ERR_ATTESTATION_CLAIM_INVALID',
    ],
    [
      'server-only certificate (extendedKeyUsage without clientAuth)',
      () => {
        const c = svid({ eku: [EKU_SERVER_AUTH] });
        return { c: client(c), subject: b64url(c.der) };
      },
      'ERR_ATTESTATION_CLAIM_INVALID',
    ],
    [
      'intermediate that may not sign certificates (a leaf)',
      () => {
        const mid = issueCertificate({ name: 'Mid', issuer: w.ca });
        const c = issueCertificate({ name: 'svid', issuer: mid, uris: [WORKLOAD], eku: [EKU_CLIENT_AUTH] });
        return { c: client(c, [mid]), subject: `${b64url(c.der)}.${b64url(mid.der)}` };
      },
      'ERR_ATTESTATION_SIGNATURE',
    ],
    [
      'intermediate with keyCertSign but not a CA (basicConstraints)',
      () => {
        const mid = issueCertificate({ name: 'Mid', issuer: w.ca, keyUsage: [KU.keyCertSign] });
        const c = issueCertificate({ name: 'svid', issuer: mid, uris: [WORKLOAD], eku: [EKU_CLIENT_AUTH] });
        return { c: client(c, [mid]), subject: `${b64url(c.der)}.${b64url(mid.der)}` };
      },
      'ERR_ATTESTATION_CLAIM_INVALID',
    ],
    [
      'unknown critical extension on the leaf',
      () => {
        const c = svid({ critical: '1.3.6.1.4.1.99999.1' });
        return { c: client(c), subject: b64url(c.der) };
      },
      'ERR_ATTESTATION_CLAIM_INVALID',
    ],
    [
      'name constraints on an intermediate (refused, not ignored)',
      () => {
        const mid = issueCertificate({ name: 'Mid', issuer: w.ca, ca: true, critical: '2.5.29.30' });
        const c = issueCertificate({ name: 'svid', issuer: mid, uris: [WORKLOAD], eku: [EKU_CLIENT_AUTH] });
        return { c: client(c, [mid]), subject: `${b64url(c.der)}.${b64url(mid.der)}` };
      },
      'ERR_ATTESTATION_CLAIM_INVALID',
    ],
    [
      'path longer than an intermediate allows (pathLenConstraint)',
      () => {
        const mid = issueCertificate({ name: 'Mid', issuer: w.ca, ca: true, pathLen: 0 });
        const mid2 = issueCertificate({ name: 'Mid2', issuer: mid, ca: true });
        const c = issueCertificate({ name: 'svid', issuer: mid2, uris: [WORKLOAD], eku: [EKU_CLIENT_AUTH] });
        return { c: client(c, [mid, mid2]), subject: [c, mid2, mid].map((x) => b64url(x.der)).join('.') };
      },
      'ERR_ATTESTATION_CLAIM_INVALID',
    ],
  ];

  it.each(refusals)('refuses: %s', async (_name, make, code) => {
    const { c, subject } = make();
    const res = await exchange(c, subject);
    expect({ status: res.status, error: res.body.error }).toEqual({ status: 400, error: 'invalid_request' });
    expect(res.body.access_token).toBeUndefined();
    expect(String(res.body.error_description)).toMatch(new RegExp(`\\(${code}\\)$`));
    expect(await lastDenial()).toBe(code);
  });

  it('a JWT attestation over mutual TLS is not bound to the certificate it did not use', async () => {
    const res = await exchange(client(w.svid), await w.tb.cluster.saToken(), { subject_token_type: 'urn:ietf:params:oauth:token-type:jwt' });
    expect(res.status).toBe(200);
    const claims = JSON.parse(Buffer.from(String(res.body.access_token).split('.')[1]!, 'base64url').toString('utf8')) as Record<string, unknown>;
    expect(claims.plugin).toBe('crm-reader');
    expect(claims.cnf).toBeUndefined();
  });

  it('a CA removed from the bundle stops verifying at once, on a kept-alive connection too; a reload re-reads the bundle', async () => {
    const agent = keepAliveAgent({ ca: w.server.ca, cert: w.svid.pem, key: w.svid.keyPem });
    try {
      const c: TlsClient = { ca: w.server.ca, agent };
      expect((await exchange(c, b64url(w.svid.der))).status).toBe(200);
      // The trust domain rotates to a new CA: the old one leaves the bundle.
      await writeFile(w.bundleFile, w.otherCa.pem);
      const result = await w.tb.broker.reload({ ...loadedFrom(w.input, w.tb.dir), filesDigest: 'bundle-rotated' });
      expect(result.ok).toBe(true);
      const after = await exchange(c, b64url(w.svid.der));
      expect(after.reused).toBe(true);
      expect({ status: after.status, error: after.body.error }).toEqual({ status: 400, error: 'invalid_request' });
      expect(await lastDenial()).toBe('ERR_ATTESTATION_SIGNATURE');
      // A certificate of the new CA works.
      const fresh = issueCertificate({ name: 'svid', issuer: w.otherCa, uris: [WORKLOAD], eku: [EKU_CLIENT_AUTH] });
      expect((await exchange(client(fresh), b64url(fresh.der))).status).toBe(200);
    } finally {
      agent.destroy();
      await writeFile(w.bundleFile, w.ca.pem);
      await w.tb.broker.reload({ ...loadedFrom(w.input, w.tb.dir), filesDigest: 'bundle-restored' });
    }
  });

  it('a reload with an unreadable bundle is rejected and the running one stays', async () => {
    await writeFile(w.bundleFile, 'not a certificate');
    try {
      const result = await w.tb.broker.reload({ ...loadedFrom(w.input, w.tb.dir), filesDigest: 'bundle-broken' });
      expect(result.ok).toBe(false);
      expect((await exchange(client(w.svid), b64url(w.svid.der))).status).toBe(200);
    } finally {
      await writeFile(w.bundleFile, w.ca.pem);
      await w.tb.broker.reload({ ...loadedFrom(w.input, w.tb.dir), filesDigest: 'bundle-restored-2' });
    }
  });

  it('a reload swaps the server certificate for new connections', async () => {
    const next = testTls();
    const dir = w.tb.dir;
    await writeFile(join(dir, 'tls.crt'), next.cert);
    await writeFile(join(dir, 'tls.key'), next.key);
    try {
      expect((await w.tb.broker.reload({ ...loadedFrom(w.input, dir), filesDigest: 'tls-rotated' })).ok).toBe(true);
      const res = await tlsRequest(w.url, { ca: next.ca }, { path: '/jwks' });
      expect(res.serverFingerprint).toBe(new X509Certificate(next.cert).fingerprint256);
      // A client that only trusts the old CA no longer connects.
      await expect(tlsRequest(w.url, { ca: w.server.ca }, { path: '/jwks' })).rejects.toThrow();
    } finally {
      await writeFile(join(dir, 'tls.crt'), w.server.cert);
      await writeFile(join(dir, 'tls.key'), w.server.key);
      await w.tb.broker.reload({ ...loadedFrom(w.input, dir), filesDigest: 'tls-restored' });
    }
  });

  it('settings.tls changes only on restart', async () => {
    const changed = structuredClone(w.input);
    changed.settings.tls.client_auth = 'required';
    const result = await w.tb.broker.reload({ ...loadedFrom(changed, w.tb.dir), filesDigest: 'tls-mode' });
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.error.message).toMatch(/tls change only on restart/);
  });
});
