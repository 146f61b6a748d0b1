import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeJwt } from 'jose';
import { CRM_API, EXCHANGE, startTestBroker, type TestBroker } from '../support/broker.js';
import { EKU_CLIENT_AUTH, issueCertificate, testTls, type IssuedCert } from '../support/x509.js';
import { tlsRequest } from '../support/mtls.js';

/**
 * The client certificate behind a TLS-terminating proxy (an explicit header, only from
 * configured addresses), and `client_auth: required` (the handshake itself refuses).
 */

const CERT_TYPE = 'urn:leash:params:oauth:token-type:tls-client-certificate';
const WORKLOAD = 'spiffe://example.org/ns/plugins/sa/svid';

async function brokerWith(dir: string, ca: IssuedCert, patch: (cfg: Record<string, any>) => void): Promise<TestBroker> {
  await writeFile(join(dir, 'bundle.pem'), ca.pem);
  return startTestBroker({
    dir,
    patch: (cfg) => {
      cfg.trusted_issuers.push({ name: 'example-x509', kind: 'x509-svid', issuer: 'spiffe://example.org', trust_domain: 'example.org', bundle_file: join(dir, 'bundle.pem') });
      cfg.plugins.push({
        id: 'svid',
        owner: 'o@example.com',
        risk: 'low',
        bindings: [{ issuer: 'example-x509', subject: WORKLOAD }],
        grants: [{ audience: CRM_API, scopes: ['contacts:read'], kind: 'jwt', effect: 'read', max_ttl: 300, task_required: false }],
      });
      patch(cfg);
    },
  });
}

const params = (cert: IssuedCert) => ({ grant_type: EXCHANGE, subject_token: cert.der.toString('base64url'), subject_token_type: CERT_TYPE, resource: CRM_API });

describe('client certificate from a trusted proxy header', () => {
  const dirs: string[] = [];
  const brokers: TestBroker[] = [];
  let ca: IssuedCert;
  let svid: IssuedCert;
  const start = async (header: Record<string, unknown>) => {
    const dir = await mkdtemp(join(tmpdir(), 'leash-xfcc-'));
    dirs.push(dir);
    const tb = await brokerWith(dir, ca, (cfg) => {
      cfg.settings.client_certificate_header = header;
    });
    brokers.push(tb);
    return tb;
  };
  beforeAll(() => {
    ca = issueCertificate({ name: 'CA', ca: true });
    svid = issueCertificate({ name: 'svid', issuer: ca, uris: [WORKLOAD], eku: [EKU_CLIENT_AUTH] });
  });
  afterAll(async () => {
    for (const tb of brokers) await tb.close();
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  it('XFCC from a trusted proxy: the certificate and the chain it forwards are the attestation', async () => {
    const tb = await start({ trusted_proxies: ['127.0.0.0/8', '::1'] });
    const mid = issueCertificate({ name: 'Mid', issuer: ca, ca: true });
    const leaf = issueCertificate({ name: 'svid', issuer: mid, uris: [WORKLOAD], eku: [EKU_CLIENT_AUTH] });
    const header = `By=spiffe://example.org/proxy;Hash=ab;Subject="CN=svid, O=x";Cert="${encodeURIComponent(leaf.pem)}";Chain="${encodeURIComponent(leaf.pem + mid.pem)}";URI=${WORKLOAD}`;
    const res = await tb.exchange(params(leaf), { 'x-forwarded-client-cert': header });
    expect(res.status).toBe(200);
    expect(decodeJwt(res.body.access_token as string)).toMatchObject({ plugin: 'svid', cnf: { 'x5t#S256': expect.any(String) } });
    // A connection the proxy accepted without a certificate: the element has no Cert.
    const none = await tb.exchange(params(svid), { 'x-forwarded-client-cert': 'By=spiffe://example.org/proxy;Hash=ab' });
    expect(String(none.body.error_description)).toMatch(/\(ERR_CLIENT_CERT_REQUIRED\)$/);
  });

  it('the same header from an address that is not a trusted proxy is refused', async () => {
    const tb = await start({ trusted_proxies: ['192.0.2.10'] });
    const res = await tb.exchange(params(svid), { 'x-forwarded-client-cert': `Cert="${encodeURIComponent(svid.pem)}"` });
    expect({ status: res.status, error: res.body.error }).toEqual({ status: 400, error: 'invalid_request' });
    expect(String(res.body.error_description)).toMatch(/\(ERR_CLIENT_CERT_HEADER_UNTRUSTED\)$/);
    const events = await tb.broker.testing.store.read(1, 100_000);
    expect(events.filter((e) => e.type === 'exchange.denied').pop()?.event).toMatchObject({ reason: 'ERR_CLIENT_CERT_HEADER_UNTRUSTED' });
  });

  it('the pem format (nginx $ssl_client_escaped_cert) under another header name', async () => {
    const tb = await start({ name: 'x-ssl-client-cert', format: 'pem', trusted_proxies: ['127.0.0.1', '::1'] });
    expect((await tb.exchange(params(svid), { 'x-ssl-client-cert': encodeURIComponent(svid.pem) })).status).toBe(200);
    const junk = await tb.exchange(params(svid), { 'x-ssl-client-cert': 'not%20a%20certificate' });
    expect(String(junk.body.error_description)).toMatch(/\(ERR_CLIENT_CERT_MALFORMED\)$/);
  });

  it('without client_certificate_header a forwarded certificate is ignored', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'leash-xfcc-'));
    dirs.push(dir);
    const tb = await brokerWith(dir, ca, () => undefined);
    brokers.push(tb);
    const res = await tb.exchange(params(svid), { 'x-forwarded-client-cert': `Cert="${encodeURIComponent(svid.pem)}"` });
    expect(String(res.body.error_description)).toMatch(/\(ERR_CLIENT_CERT_REQUIRED\)$/);
  });
});

describe('client_auth: required', () => {
  let tb: TestBroker;
  let dir: string;
  let server: ReturnType<typeof testTls>;
  let ca: IssuedCert;
  beforeAll(async () => {
    server = testTls();
    ca = issueCertificate({ name: 'CA', ca: true });
    dir = await mkdtemp(join(tmpdir(), 'leash-required-'));
    await writeFile(join(dir, 'tls.crt'), server.cert);
    await writeFile(join(dir, 'tls.key'), server.key);
    tb = await brokerWith(dir, ca, (cfg) => {
      cfg.settings.issuer = cfg.settings.issuer.replace('http:', 'https:');
      cfg.settings.tls = { cert_file: join(dir, 'tls.crt'), key_file: join(dir, 'tls.key'), client_auth: 'required' };
    });
  });
  afterAll(async () => {
    await tb.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('the handshake refuses a client without a certificate, or with one no bundle CA issued', async () => {
    const url = tb.url.replace('http:', 'https:');
    await expect(tlsRequest(url, { ca: server.ca }, { path: '/jwks' })).rejects.toThrow();
    const stranger = issueCertificate({ name: 'svid', uris: [WORKLOAD], eku: [EKU_CLIENT_AUTH] });
    await expect(tlsRequest(url, { ca: server.ca, cert: stranger.pem, key: stranger.keyPem }, { path: '/jwks' })).rejects.toThrow();
    const svid = issueCertificate({ name: 'svid', issuer: ca, uris: [WORKLOAD], eku: [EKU_CLIENT_AUTH] });
    const ok = await tlsRequest(url, { ca: server.ca, cert: svid.pem, key: svid.keyPem }, { path: '/token', form: params(svid) });
    expect(ok.status).toBe(200);
  });

  it('discovery offers tls_client_auth but not self_signed_tls_client_auth: the handshake refuses self-signed certificates', async () => {
    const svid = issueCertificate({ name: 'svid', issuer: ca, uris: [WORKLOAD], eku: [EKU_CLIENT_AUTH] });
    const res = await tlsRequest(tb.url.replace('http:', 'https:'), { ca: server.ca, cert: svid.pem, key: svid.keyPem }, { path: '/.well-known/openid-configuration' });
    expect(res.body.token_endpoint_auth_methods_supported).toEqual(['none', 'private_key_jwt', 'tls_client_auth']);
  });
});
