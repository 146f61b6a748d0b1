import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createPublicKey, X509Certificate } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError } from '../../src/config/config-error.js';
import type { PluginConfig } from '../../src/config/schema.js';
import { certificateAuthMethods, createCertificateClientAuth, type CertificateSources } from '../../src/mtls/certificate-client-auth.js';
import { parseDistinguishedName, subjectMatcher } from '../../src/mtls/certificate-subject.js';
import { systemClock } from '../../src/time/clock.js';
import { issueCertificate, type IssuedCert } from '../support/x509.js';

/** The parts of RFC 8705 §2 client authentication that need no connection: subject matching and what config is refused. */

const x509 = (c: IssuedCert) => new X509Certificate(c.der);

describe('certificate subjects (tls_client_auth_*)', () => {
  let ca: IssuedCert;
  beforeAll(() => {
    ca = issueCertificate({ name: 'CA', ca: true });
  });

  it('RFC 4514 strings: order reversed, escapes, multi-valued RDNs, OIDs', () => {
    expect(parseDistinguishedName('CN=a,O=b')).toEqual([[{ oid: '2.5.4.10', value: 'b' }], [{ oid: '2.5.4.3', value: 'a' }]]);
    expect(parseDistinguishedName('CN=Smith\\, John+UID=jsmith,2.5.4.10=Acme\\2C Inc')).toEqual([
      [{ oid: '2.5.4.10', value: 'Acme, Inc' }],
      [
        { oid: '2.5.4.3', value: 'Smith, John' },
        { oid: '0.9.2342.19200300.100.1.1', value: 'jsmith' },
      ],
    ]);
    expect(parseDistinguishedName('CN=caf\\C3\\A9')).toEqual([[{ oid: '2.5.4.3', value: 'café' }]]);
    for (const bad of ['', 'CN', 'XX=a', 'CN=#04024869', 'CN=a\\']) expect(() => parseDistinguishedName(bad)).toThrow();
  });

  it('subject DN: attribute by attribute, case- and space-insensitive, no prefix or suffix match', () => {
    const cert = x509(
      issueCertificate({
        name: 'x',
        issuer: ca,
        subject: [
          ['2.5.4.10', 'Example  Corp'],
          ['2.5.4.3', 'Plugin A'],
        ],
      }),
    );
    expect(subjectMatcher('tls_client_auth_subject_dn', 'CN=plugin a,O=Example Corp').matches(cert)).toBe(true);
    expect(subjectMatcher('tls_client_auth_subject_dn', 'CN=Plugin A').matches(cert)).toBe(false);
    expect(subjectMatcher('tls_client_auth_subject_dn', 'CN=Plugin A,O=Example Corp,C=US').matches(cert)).toBe(false);
    expect(subjectMatcher('tls_client_auth_subject_dn', 'O=Example Corp,CN=Plugin A').matches(cert)).toBe(false);
    expect(subjectMatcher('tls_client_auth_subject_dn', 'CN=Plugin A+OU=x,O=Example Corp').matches(cert)).toBe(false);
  });

  it('SANs: any entry of the type; DNS case-insensitive, IP by its bytes, e-mail domain case-insensitive, URI exact', () => {
    const cert = x509(
      issueCertificate({
        name: 'x',
        issuer: ca,
        dns: ['a.example.com', 'B.example.com'],
        uris: ['spiffe://example.org/a'],
        emails: ['Plugin@Example.com'],
        ips: [Buffer.from([10, 0, 0, 7]), Buffer.from('20010db8000000000000000000000001', 'hex')],
      }),
    );
    const m = (param: Parameters<typeof subjectMatcher>[0], value: string) => subjectMatcher(param, value).matches(cert);
    expect([m('tls_client_auth_san_dns', 'b.example.com'), m('tls_client_auth_san_dns', 'example.com'), m('tls_client_auth_san_dns', '*.example.com')]).toEqual([true, false, false]);
    expect([m('tls_client_auth_san_uri', 'spiffe://example.org/a'), m('tls_client_auth_san_uri', 'spiffe://example.org/A'), m('tls_client_auth_san_uri', 'spiffe://example.org')]).toEqual([
      true,
      false,
      false,
    ]);
    expect([m('tls_client_auth_san_ip', '10.0.0.7'), m('tls_client_auth_san_ip', '2001:db8::1'), m('tls_client_auth_san_ip', '10.0.0.8'), m('tls_client_auth_san_ip', '::ffff:10.0.0.7')]).toEqual([
      true,
      true,
      false,
      false,
    ]);
    expect([m('tls_client_auth_san_email', 'Plugin@example.COM'), m('tls_client_auth_san_email', 'plugin@example.com')]).toEqual([true, false]);
    // The DN holds no SAN and a SAN matcher never reads the DN.
    expect(m('tls_client_auth_san_dns', 'x')).toBe(false);
    expect(() => subjectMatcher('tls_client_auth_san_ip', '10.0.0')).toThrow();
    expect(() => subjectMatcher('tls_client_auth_san_email', 'nobody')).toThrow();
  });
});

describe('RFC 8705 methods offered and configured', () => {
  const sources = (listener: CertificateSources['listener'], header = false): CertificateSources => ({ listener, header });
  let dir: string;
  let selfSigned: IssuedCert;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'leash-cert-auth-'));
    await writeFile(join(dir, 'ca.pem'), issueCertificate({ name: 'CA', ca: true }).pem);
    selfSigned = issueCertificate({ name: 'self' });
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('only what a certificate can reach: nothing without a listener asking or a proxy forwarding; no self-signed when the handshake verifies', () => {
    expect(certificateAuthMethods(undefined)).toEqual([]);
    expect(certificateAuthMethods(sources(undefined))).toEqual([]);
    expect(certificateAuthMethods(sources('none'))).toEqual([]);
    expect(certificateAuthMethods(sources('required'))).toEqual(['tls_client_auth']);
    expect(certificateAuthMethods(sources('optional'))).toEqual(['tls_client_auth', 'self_signed_tls_client_auth']);
    expect(certificateAuthMethods(sources(undefined, true))).toEqual(['tls_client_auth', 'self_signed_tls_client_auth']);
  });

  const plugin = (client_auth: Record<string, unknown>) => ({ id: 'p', client_auth: { attestation: 'optional', algorithms: ['ES256'], ...client_auth } }) as unknown as PluginConfig;
  const problems = (client_auth: Record<string, unknown>, opts: { listener?: CertificateSources['listener']; defaultCaFile?: string } = {}) => {
    try {
      createCertificateClientAuth([plugin(client_auth)], { clock: systemClock, baseDir: dir, defaultCaFile: opts.defaultCaFile, sources: sources(opts.listener ?? 'optional') });
      return [];
    } catch (e) {
      if (!(e instanceof ConfigError)) throw e;
      return e.problems.map((p) => `${p.path}: ${p.message}`);
    }
  };
  const selfJwk = () => ({ ...createPublicKey(selfSigned.key).export({ format: 'jwk' }), x5c: [selfSigned.der.toString('base64')] });

  it('refuses what cannot work, with its path', () => {
    const at = '/plugins/0/client_auth';
    expect(problems({ method: 'tls_client_auth', tls_client_auth_san_dns: 'a' }, { defaultCaFile: join(dir, 'ca.pem') })).toEqual([]);
    expect(problems({ method: 'tls_client_auth', tls_client_auth_san_dns: 'a', ca_file: 'ca.pem' })).toEqual([]);
    expect(problems({ method: 'tls_client_auth', tls_client_auth_san_dns: 'a' })).toEqual([expect.stringMatching(new RegExp(`^${at}/ca_file: tls_client_auth needs the CA`))]);
    expect(problems({ method: 'tls_client_auth', ca_file: 'ca.pem' })[0]).toMatch(/needs exactly one of .* \(found none\)/);
    expect(problems({ method: 'tls_client_auth', ca_file: 'ca.pem', tls_client_auth_san_dns: 'a', tls_client_auth_subject_dn: 'CN=a' })[0]).toMatch(
      /found tls_client_auth_subject_dn, tls_client_auth_san_dns/,
    );
    expect(problems({ method: 'tls_client_auth', ca_file: 'ca.pem', tls_client_auth_subject_dn: 'CN=#0401' })[0]).toMatch(new RegExp(`^${at}/tls_client_auth_subject_dn: hex-encoded`));
    expect(problems({ method: 'tls_client_auth', ca_file: 'missing.pem', tls_client_auth_san_dns: 'a' })[0]).toMatch(new RegExp(`^${at}/ca_file: cannot read`));
    expect(problems({ method: 'tls_client_auth', ca_file: 'ca.pem', tls_client_auth_san_dns: 'a', jwks: { inline: { keys: [selfJwk()] } } })[0]).toMatch(/takes no jwks/);
    expect(problems({ method: 'tls_client_auth', ca_file: 'ca.pem', tls_client_auth_san_dns: 'a' }, { listener: 'none' })[0]).toMatch(
      new RegExp(`^${at}/method: tls_client_auth needs client certificates to reach Leash`),
    );
    expect(problems({ method: 'private_key_jwt', tls_client_auth_san_dns: 'a', ca_file: 'ca.pem' })).toHaveLength(2);

    expect(problems({ method: 'self_signed_tls_client_auth', jwks: { inline: { keys: [selfJwk()] } } })).toEqual([]);
    expect(problems({ method: 'self_signed_tls_client_auth', jwks: { inline: { keys: [selfJwk()] } } }, { listener: 'required' })[0]).toMatch(
      /required makes the handshake refuse a self-signed certificate/,
    );
    expect(problems({ method: 'self_signed_tls_client_auth' })[0]).toMatch(/needs jwks/);
    expect(problems({ method: 'self_signed_tls_client_auth', jwks: { uri: 'https://vendor.example/jwks' } })[0]).toMatch(/inline or file JWKS \(not uri\)/);
    const { x5c: _x5c, ...bare } = selfJwk();
    expect(problems({ method: 'self_signed_tls_client_auth', jwks: { inline: { keys: [bare] } } })[0]).toMatch(/no key carries x5c/);
    // A key that names someone else's certificate.
    const stranger = issueCertificate({ name: 'stranger' });
    expect(problems({ method: 'self_signed_tls_client_auth', jwks: { inline: { keys: [{ ...bare, x5c: [stranger.der.toString('base64')] }] } } })[0]).toMatch(/certifies another key/);
    expect(problems({ method: 'self_signed_tls_client_auth', jwks: { inline: { keys: [{ ...bare, x5c: ['bm90IGEgY2VydA=='] }] } } })[0]).toMatch(/not a base64 DER certificate/);
  });
});
