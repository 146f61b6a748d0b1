import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createHash, createPublicKey } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeJwt } from 'jose';
import { CRM_API, EXCHANGE, JWT_TYPE, startTestBroker, type TestBroker } from '../support/broker.js';
import { EKU_CLIENT_AUTH, EKU_SERVER_AUTH, issueCertificate, testTls, type IssuedCert } from '../support/x509.js';
import { keepAliveAgent, tlsRequest, type TlsClient } from '../support/mtls.js';

/**
 * RFC 8705 §2 client authentication of plugins over real mutual TLS on loopback, with
 * certificates made per run: `tls_client_auth` (a certificate of the client CA carrying the
 * registered subject DN or SAN) and `self_signed_tls_client_auth` (a certificate registered
 * as the `x5c` of a key of the plugin's JWKS). Every certificate that is presented and does
 * not verify is `invalid_client`.
 */

const CLIENT_TYPE = 'urn:leash:params:oauth:token-type:client';
const DN = [
  ['2.5.4.10', 'Example Corp'],
  ['2.5.4.11', 'Plugins'],
  ['2.5.4.3', 'dn-client'],
] as const;
const CRM_URI = 'spiffe://example.org/ns/plugins/sa/crm-reader';
const DNS_NAME = 'dns-client.plugins.example.com';
const x5t = (cert: IssuedCert) => createHash('sha256').update(cert.der).digest('base64url');

interface World {
  tb: TestBroker;
  url: string;
  dir: string;
  server: ReturnType<typeof testTls>;
  /** settings.tls.client_ca_file */
  ca: IssuedCert;
  /** dns-client's own ca_file */
  dnsCa: IssuedCert;
  otherCa: IssuedCert;
  dnCert: IssuedCert;
  dnsCert: IssuedCert;
  crmCert: IssuedCert;
  selfSigned: IssuedCert;
}
const w = {} as World;

const client = (cert?: IssuedCert): TlsClient => ({ ca: w.server.ca, ...(cert ? { cert: cert.pem, key: cert.keyPem } : {}) });

/** The plugin exchanging with its client authentication alone (RFC 8705 needs client_id; the subject_token names it too). */
const asClient = (id: string, extra: Record<string, string> = {}) => ({ grant_type: EXCHANGE, client_id: id, subject_token: id, subject_token_type: CLIENT_TYPE, resource: CRM_API, ...extra });

async function exchange(cert: IssuedCert | undefined, form: Record<string, string>) {
  return tlsRequest(w.url, client(cert), { path: '/token', form });
}

async function lastEvent(type: string): Promise<Record<string, any> | undefined> {
  const events = await w.tb.broker.testing.store.read(1, 1_000_000);
  return events.filter((e) => e.type === type).pop()?.event as Record<string, any> | undefined;
}

/** `invalid_client` (401) for ERR_CLIENT_AUTH_FAILED, audited with the method and why. */
async function expectInvalidClient(res: Awaited<ReturnType<typeof exchange>>, method: string, reason: string): Promise<void> {
  expect({ status: res.status, error: res.body.error }).toEqual({ status: 401, error: 'invalid_client' });
  expect(String(res.body.error_description)).toMatch(/\(ERR_CLIENT_AUTH_FAILED\)$/);
  expect(res.body.access_token).toBeUndefined();
  expect(await lastEvent('exchange.denied')).toMatchObject({ reason: 'ERR_CLIENT_AUTH_FAILED', detail: { method, reason } });
}

const grants = [{ audience: CRM_API, scopes: ['contacts:read'], kind: 'jwt', effect: 'read', max_ttl: 300, task_required: false }];

beforeAll(async () => {
  w.server = testTls();
  w.ca = issueCertificate({ name: 'Example Client CA', ca: true });
  w.dnsCa = issueCertificate({ name: 'Example DNS Client CA', ca: true });
  // Same name as the client CA, another key: only the signature tells them apart.
  w.otherCa = issueCertificate({ name: 'Example Client CA', ca: true });
  w.dnCert = issueCertificate({ name: 'dn-client', subject: DN, issuer: w.ca, eku: [EKU_CLIENT_AUTH] });
  w.dnsCert = issueCertificate({ name: 'dns-client', issuer: w.dnsCa, dns: ['other.example.com', DNS_NAME] });
  w.crmCert = issueCertificate({ name: 'crm-reader', issuer: w.ca, uris: [CRM_URI], eku: [EKU_CLIENT_AUTH] });
  w.selfSigned = issueCertificate({ name: 'self-client' });
  w.dir = await mkdtemp(join(tmpdir(), 'leash-tls-client-auth-'));
  await writeFile(join(w.dir, 'tls.crt'), w.server.cert);
  await writeFile(join(w.dir, 'tls.key'), w.server.key);
  await writeFile(join(w.dir, 'client-ca.pem'), w.ca.pem);
  await writeFile(join(w.dir, 'dns-ca.pem'), w.dnsCa.pem);
  const selfJwk = { ...createPublicKey(w.selfSigned.key).export({ format: 'jwk' }), kid: 'self-1', x5c: [w.selfSigned.der.toString('base64')] };
  w.tb = await startTestBroker({
    dir: w.dir,
    patch: (cfg) => {
      cfg.settings.issuer = cfg.settings.issuer.replace('http:', 'https:');
      cfg.settings.tls = { cert_file: join(w.dir, 'tls.crt'), key_file: join(w.dir, 'tls.key'), client_auth: 'optional', client_ca_file: join(w.dir, 'client-ca.pem') };
      cfg.plugins.push(
        {
          id: 'dn-client',
          owner: 'team-crm@example.com',
          risk: 'low',
          // RFC 4514 order (least significant first), spaces after the commas as people write them.
          client_auth: { method: 'tls_client_auth', tls_client_auth_subject_dn: 'CN=dn-client, OU=plugins, O=Example Corp', attestation: 'optional' },
          grants,
        },
        {
          id: 'dns-client',
          owner: 'team-crm@example.com',
          risk: 'low',
          client_auth: { method: 'tls_client_auth', tls_client_auth_san_dns: DNS_NAME, ca_file: 'dns-ca.pem', attestation: 'optional' },
          grants,
        },
        {
          id: 'self-client',
          owner: 'vendor@example.com',
          risk: 'low',
          client_auth: { method: 'self_signed_tls_client_auth', jwks: { inline: { keys: [selfJwk] } }, attestation: 'optional' },
          grants,
        },
      );
      // An attested plugin that must also authenticate with its certificate (a second factor).
      const crm = cfg.plugins.find((p: { id: string }) => p.id === 'crm-reader');
      crm.client_auth = { method: 'tls_client_auth', tls_client_auth_san_uri: CRM_URI };
      crm.grants[0].task_required = false;
    },
  });
  w.url = w.tb.url.replace('http:', 'https:');
});

afterAll(async () => {
  await w.tb.close();
  await rm(w.dir, { recursive: true, force: true });
});

describe('tls_client_auth over mutual TLS', () => {
  it('discovery lists both RFC 8705 methods on a listener that asks for client certificates (optional)', async () => {
    const res = await tlsRequest(w.url, client(), { path: '/.well-known/oauth-authorization-server' });
    expect(res.body.token_endpoint_auth_methods_supported).toEqual(['none', 'private_key_jwt', 'tls_client_auth', 'self_signed_tls_client_auth']);
  });

  it('the right certificate (subject DN) authenticates the client, and the token is bound to it', async () => {
    const res = await exchange(w.dnCert, asClient('dn-client'));
    expect(res.status).toBe(200);
    const claims = decodeJwt(res.body.access_token as string);
    expect(claims).toMatchObject({ plugin: 'dn-client', cnf: { 'x5t#S256': x5t(w.dnCert) }, workload: { issuer: 'tls_client_auth', sub: 'dn-client' } });
    // Never longer than the certificate it was decided on.
    expect(claims.exp!).toBeLessThanOrEqual(Math.floor(Date.now() / 1000) + 300);
    expect(await lastEvent('exchange.issued')).toMatchObject({
      client_id: 'dn-client',
      client_auth: 'tls_client_auth',
      x5t_s256: x5t(w.dnCert),
      workload: { issuer: 'tls_client_auth', subject: 'dn-client' },
    });
  });

  it('without client_id the subject_token names the client', async () => {
    const { client_id: _omit, ...form } = asClient('dn-client');
    expect((await exchange(w.dnCert, form)).status).toBe(200);
  });

  it('a DNS SAN, against the plugin’s own ca_file', async () => {
    const res = await exchange(w.dnsCert, asClient('dns-client'));
    expect(res.status).toBe(200);
    expect(decodeJwt(res.body.access_token as string)).toMatchObject({ plugin: 'dns-client', cnf: { 'x5t#S256': x5t(w.dnsCert) } });
  });

  it('an attested plugin with tls_client_auth: attestation and certificate together, the plugin named by its attestation', async () => {
    const form = { grant_type: EXCHANGE, subject_token: await w.tb.cluster.saToken(), subject_token_type: JWT_TYPE, resource: CRM_API };
    const ok = await exchange(w.crmCert, form);
    expect(ok.status).toBe(200);
    expect(decodeJwt(ok.body.access_token as string)).toMatchObject({ plugin: 'crm-reader', workload: { issuer: 'test-cluster' }, cnf: { 'x5t#S256': x5t(w.crmCert) } });
    // The attestation alone is not enough any more.
    await expectInvalidClient(await exchange(undefined, form), 'tls_client_auth', 'no_certificate');
    // Nor the attestation with another client's good certificate.
    await expectInvalidClient(await exchange(w.dnCert, form), 'tls_client_auth', 'subject_mismatch');
    // And the certificate alone is not an attestation for it.
    const alone = await exchange(w.crmCert, asClient('crm-reader'));
    expect({ status: alone.status, error: alone.body.error }).toEqual({ status: 400, error: 'invalid_request' });
    expect(String(alone.body.error_description)).toMatch(/\(ERR_ATTESTATION_REQUIRED\)$/);
  });

  it('no certificate → invalid_client', async () => {
    await expectInvalidClient(await exchange(undefined, asClient('dn-client')), 'tls_client_auth', 'no_certificate');
  });

  it('wrong subject DN (same CA) → invalid_client', async () => {
    const other = issueCertificate({ name: 'dn-client', subject: [DN[0], ['2.5.4.11', 'Vendors'], DN[2]], issuer: w.ca, eku: [EKU_CLIENT_AUTH] });
    await expectInvalidClient(await exchange(other, asClient('dn-client')), 'tls_client_auth', 'subject_mismatch');
    // An extra RDN is another name too.
    const longer = issueCertificate({ name: 'dn-client', subject: [['2.5.4.6', 'US'], ...DN], issuer: w.ca, eku: [EKU_CLIENT_AUTH] });
    await expectInvalidClient(await exchange(longer, asClient('dn-client')), 'tls_client_auth', 'subject_mismatch');
  });

  it('wrong SAN → invalid_client', async () => {
    const other = issueCertificate({ name: 'dns-client', issuer: w.dnsCa, dns: ['dns-client.plugins.example.com.evil.example'] });
    await expectInvalidClient(await exchange(other, asClient('dns-client')), 'tls_client_auth', 'subject_mismatch');
  });

  it('wrong CA (the right DN from another CA with the same name; another plugin’s CA) → invalid_client', async () => {
    const forged = issueCertificate({ name: 'dn-client', subject: DN, issuer: w.otherCa, eku: [EKU_CLIENT_AUTH] });
    await expectInvalidClient(await exchange(forged, asClient('dn-client')), 'tls_client_auth', 'untrusted');
    // dns-client's CA does not vouch for dn-client, and the client CA does not vouch for dns-client.
    const viaDnsCa = issueCertificate({ name: 'dn-client', subject: DN, issuer: w.dnsCa, eku: [EKU_CLIENT_AUTH] });
    await expectInvalidClient(await exchange(viaDnsCa, asClient('dn-client')), 'tls_client_auth', 'untrusted');
    const viaClientCa = issueCertificate({ name: 'dns-client', issuer: w.ca, dns: [DNS_NAME] });
    await expectInvalidClient(await exchange(viaClientCa, asClient('dns-client')), 'tls_client_auth', 'untrusted');
  });

  it('expired, or not yet valid → invalid_client', async () => {
    const expired = issueCertificate({ name: 'dn-client', subject: DN, issuer: w.ca, eku: [EKU_CLIENT_AUTH], notBefore: Date.now() - 7200_000, notAfter: Date.now() - 60_000 });
    await expectInvalidClient(await exchange(expired, asClient('dn-client')), 'tls_client_auth', 'expired');
    const early = issueCertificate({ name: 'dn-client', subject: DN, issuer: w.ca, eku: [EKU_CLIENT_AUTH], notBefore: Date.now() + 3600_000, notAfter: Date.now() + 7200_000 });
    await expectInvalidClient(await exchange(early, asClient('dn-client')), 'tls_client_auth', 'not_yet_valid');
  });

  it('a server-only certificate (extendedKeyUsage without clientAuth) → invalid_client', async () => {
    const server = issueCertificate({ name: 'dn-client', subject: DN, issuer: w.ca, eku: [EKU_SERVER_AUTH] });
    await expectInvalidClient(await exchange(server, asClient('dn-client')), 'tls_client_auth', 'constraints');
  });

  it('a client assertion for a certificate client is refused, not preferred', async () => {
    const res = await exchange(w.dnCert, asClient('dn-client', { client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer', client_assertion: 'a.b.c' }));
    expect({ status: res.status, error: res.body.error }).toEqual({ status: 401, error: 'invalid_client' });
  });

  it('on a kept-alive connection each request is checked against its own client', async () => {
    const agent = keepAliveAgent({ ca: w.server.ca, cert: w.dnCert.pem, key: w.dnCert.keyPem });
    try {
      const first = await tlsRequest(w.url, { ca: w.server.ca, agent }, { path: '/token', form: asClient('dn-client') });
      expect(first.status).toBe(200);
      const second = await tlsRequest(w.url, { ca: w.server.ca, agent }, { path: '/token', form: asClient('dns-client') });
      expect(second.reused).toBe(true);
      expect({ status: second.status, error: second.body.error }).toEqual({ status: 401, error: 'invalid_client' });
    } finally {
      agent.destroy();
    }
  });
});

describe('self_signed_tls_client_auth over mutual TLS', () => {
  it('the registered self-signed certificate authenticates the client (matched by its x5t#S256)', async () => {
    const res = await exchange(w.selfSigned, asClient('self-client'));
    expect(res.status).toBe(200);
    expect(decodeJwt(res.body.access_token as string)).toMatchObject({ plugin: 'self-client', cnf: { 'x5t#S256': x5t(w.selfSigned) }, workload: { issuer: 'self_signed_tls_client_auth' } });
  });

  it('another self-signed certificate, even for the same name → invalid_client', async () => {
    const other = issueCertificate({ name: 'self-client' });
    await expectInvalidClient(await exchange(other, asClient('self-client')), 'self_signed_tls_client_auth', 'unregistered_certificate');
  });

  it('a CA-issued certificate is not the registered one → invalid_client', async () => {
    await expectInvalidClient(await exchange(w.dnCert, asClient('self-client')), 'self_signed_tls_client_auth', 'unregistered_certificate');
  });

  it('the registered self-signed certificate does not pass as a tls_client_auth certificate', async () => {
    await expectInvalidClient(await exchange(w.selfSigned, asClient('dn-client')), 'tls_client_auth', 'untrusted');
  });

  it('no certificate → invalid_client', async () => {
    await expectInvalidClient(await exchange(undefined, asClient('self-client')), 'self_signed_tls_client_auth', 'no_certificate');
  });
});
