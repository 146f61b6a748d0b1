import { X509Certificate } from 'node:crypto';
import { ConfigError, type ConfigProblem } from '../../config/config-error.js';
import type { TrustedIssuerConfig } from '../../config/schema.js';
import type { ErrorCode } from '../../errors/codes.js';
import { LeashError } from '../../errors/leash-error.js';
import { KEY_USAGE, readExtensions } from '../../mtls/certificate-extensions.js';
import type { PresentedCertificate } from '../../mtls/client-certificate.js';
import { readCertificateBundle } from '../../mtls/tls-material.js';
import { verifyChain, type ChainFailure } from '../../mtls/verify-chain.js';
import type { Clock } from '../../time/clock.js';
import type { WorkloadIdentity } from '../attestor.js';
import { parseSpiffeId, trustDomainError } from '../spiffe/spiffe-id.js';

/** RFC 5280 id-kp-clientAuth: a leaf that lists extended key usages must allow TLS client use. */
const CLIENT_AUTH_EKU = '1.3.6.1.5.5.7.3.2';

export interface X509SvidAttestation {
  /** Whether any `x509-svid` issuer is configured. */
  readonly configured: boolean;
  /**
   * The presented certificate as an X.509-SVID: its one URI SAN is a SPIFFE ID of a
   * configured trust domain, and it chains to that trust domain's bundle (and only that
   * one's). Throws LeashError (`ERR_ATTESTATION_*`).
   */
  verify(cert: PresentedCertificate): WorkloadIdentity;
}

interface TrustDomain {
  readonly cfg: TrustedIssuerConfig;
  readonly anchors: readonly X509Certificate[];
}

const CHAIN_CODES: Readonly<Record<ChainFailure, ErrorCode>> = {
  malformed: 'ERR_ATTESTATION_MALFORMED',
  expired: 'ERR_ATTESTATION_EXPIRED',
  not_yet_valid: 'ERR_ATTESTATION_NOT_YET_VALID',
  untrusted: 'ERR_ATTESTATION_SIGNATURE',
  constraints: 'ERR_ATTESTATION_CLAIM_INVALID',
};

/**
 * The `x509-svid` trusted issuers, compiled once per generation: each trust domain's
 * bundle is read now (a reload re-reads it, so a CA removed from the bundle stops
 * verifying at once, on open connections too: the check runs per request, not per
 * handshake). Leaf rules follow the X.509-SVID specification §4-5: exactly one URI SAN
 * (the SPIFFE ID, with a path), not a CA, `digitalSignature` and neither `keyCertSign`
 * nor `cRLSign`; an extended key usage, when listed, that includes `clientAuth`.
 */
export function createX509SvidAttestation(
  issuers: readonly TrustedIssuerConfig[],
  deps: { readonly clock: Clock; readonly onFailure?: ((issuer: string | undefined, code: ErrorCode) => void) | undefined },
): X509SvidAttestation {
  const domains = new Map<string, TrustDomain>();
  const problems: ConfigProblem[] = [];
  issuers.forEach((cfg, i) => {
    if (cfg.kind !== 'x509-svid') return;
    const at = `/trusted_issuers/${i}`;
    const td = (cfg.trust_domain ?? '').replace(/^spiffe:\/\//, '');
    const tdProblem = cfg.trust_domain === undefined ? 'is required for the x509-svid kind' : trustDomainError(td);
    if (tdProblem) problems.push({ path: `${at}/trust_domain`, message: `trust_domain ${tdProblem}` });
    if (cfg.bundle_file === undefined) {
      problems.push({ path: `${at}/bundle_file`, message: 'is required for the x509-svid kind' });
      return;
    }
    if (domains.has(td)) problems.push({ path: `${at}/trust_domain`, message: `trust domain '${td}' already has an x509-svid issuer` });
    domains.set(td, { cfg, anchors: readCertificateBundle(cfg.bundle_file, `${at}/bundle_file`, problems) });
  });
  if (problems.length > 0) throw new ConfigError(problems);

  const refuse = (issuer: string | undefined, code: ErrorCode, description: string, detail?: Record<string, unknown>): never => {
    const err = new LeashError(code, description, detail);
    try {
      deps.onFailure?.(issuer, code);
    } catch {
      // metrics must never change the decision
    }
    throw err;
  };

  return {
    configured: domains.size > 0,
    verify(cert) {
      const { leaf } = cert;
      const now = deps.clock.now();
      // The SPIFFE ID decides the trust domain, hence the bundle: read it first, then verify the chain against that bundle only.
      let uris: readonly string[];
      try {
        uris = readExtensions(leaf.raw).uris;
      } catch {
        return refuse(undefined, 'ERR_ATTESTATION_MALFORMED', 'the client certificate cannot be read');
      }
      if (uris.length !== 1) return refuse(undefined, 'ERR_ATTESTATION_CLAIM_INVALID', `an X.509-SVID has exactly one URI SAN (its SPIFFE ID); this certificate has ${uris.length}`, { claim: 'san' });
      const id = parseSpiffeId(uris[0]!);
      if ('error' in id) return refuse(undefined, 'ERR_ATTESTATION_CLAIM_INVALID', `the certificate's URI SAN is not a valid SPIFFE ID: it ${id.error}`, { claim: 'san' });
      if (id.path === '') return refuse(undefined, 'ERR_ATTESTATION_CLAIM_INVALID', "the certificate's SPIFFE ID names a trust domain, not a workload (no path)", { claim: 'san' });
      const domain = domains.get(id.trustDomain);
      if (!domain) return refuse(undefined, 'ERR_ATTESTATION_ISSUER_UNKNOWN', "the certificate's trust domain is not a trusted x509-svid issuer", { trust_domain: id.trustDomain });
      const name = domain.cfg.name;
      const chain = verifyChain(leaf, cert.intermediates, domain.anchors, now);
      if (!chain.ok) return refuse(name, CHAIN_CODES[chain.failure], `the X.509-SVID does not verify against the bundle of trust domain ${id.trustDomain}: ${chain.reason}`, { reason: chain.failure });
      const ext = chain.leafExtensions;
      if (leaf.ca) return refuse(name, 'ERR_ATTESTATION_CLAIM_INVALID', 'an X.509-SVID leaf must not be a CA certificate', { claim: 'basicConstraints' });
      if (!ext.keyUsage || !ext.keyUsage.has(KEY_USAGE.digitalSignature) || ext.keyUsage.has(KEY_USAGE.keyCertSign) || ext.keyUsage.has(KEY_USAGE.cRLSign)) {
        return refuse(name, 'ERR_ATTESTATION_CLAIM_INVALID', 'an X.509-SVID leaf has keyUsage digitalSignature and neither keyCertSign nor cRLSign', { claim: 'keyUsage' });
      }
      const eku = leaf.keyUsage;
      if (eku !== undefined && eku.length > 0 && !eku.includes(CLIENT_AUTH_EKU)) {
        return refuse(name, 'ERR_ATTESTATION_CLAIM_INVALID', 'the certificate is not for TLS client authentication (extendedKeyUsage lacks clientAuth)', { claim: 'extKeyUsage' });
      }
      const issuedAt = Math.floor(leaf.validFromDate.getTime() / 1000);
      if (issuedAt + domain.cfg.max_token_age + domain.cfg.clock_skew < Math.floor(now / 1000)) {
        return refuse(name, 'ERR_ATTESTATION_TOO_OLD', `the X.509-SVID was issued more than ${domain.cfg.max_token_age} s ago (max_token_age): present a fresh one`);
      }
      return Object.freeze({
        issuer: name,
        kind: 'x509-svid' as const,
        subject: uris[0]!,
        attributes: Object.freeze({ trust_domain: id.trustDomain, path: id.path }),
        issuedAt,
        expiresAt: Math.floor(leaf.validToDate.getTime() / 1000),
        tokenDigest: cert.thumbprint,
      });
    },
  };
}

/** Intermediates a subject_token may carry after the leaf. */
const MAX_SUBJECT_INTERMEDIATES = 4;

const decodeDer = (part: string): Buffer => Buffer.from(part.replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, ''), 'base64url');

/**
 * Step "attest" for `subject_token_type` TOKEN_TYPE_TLS_CLIENT_CERTIFICATE: the request
 * must come with a client certificate, and the `subject_token` must be that very
 * certificate, base64url (or base64) DER (a certificate is public, so naming one proves
 * nothing; the handshake, or the trusted proxy, proved possession of its key), optionally
 * followed by `.` and the intermediate CA certificates that lead to the bundle, in the same
 * encoding: Node's TLS server does not hand the chain the client sent to the application,
 * so a chain longer than leaf + bundle CA travels here. Then it must verify as an X.509-SVID.
 */
export function attestPresentedCertificate(x509: X509SvidAttestation, cert: PresentedCertificate | undefined, subjectToken: string): WorkloadIdentity {
  if (!x509.configured) throw new LeashError('ERR_ATTESTATION_ISSUER_UNKNOWN', 'no x509-svid trusted issuer is configured: this broker does not accept certificates as attestation');
  if (!cert) throw new LeashError('ERR_CLIENT_CERT_REQUIRED', 'subject_token_type names the TLS client certificate, but the request came with none: connect with your X.509-SVID (mutual TLS)');
  const [leaf = '', ...rest] = subjectToken.split('.');
  const named = decodeDer(leaf);
  if (named.length === 0 || !named.equals(cert.leaf.raw)) {
    throw new LeashError('ERR_CLIENT_CERT_MISMATCH', 'subject_token must be the client certificate presented on this connection (base64url DER)', { source: cert.source });
  }
  if (rest.length > MAX_SUBJECT_INTERMEDIATES) throw new LeashError('ERR_CLIENT_CERT_MALFORMED', `subject_token carries more than ${MAX_SUBJECT_INTERMEDIATES} intermediate certificates`);
  const intermediates = rest.map((part) => {
    try {
      return new X509Certificate(decodeDer(part));
    } catch {
      throw new LeashError('ERR_CLIENT_CERT_MALFORMED', 'an intermediate certificate in subject_token is not base64url DER');
    }
  });
  return x509.verify(intermediates.length === 0 ? cert : { ...cert, intermediates: [...cert.intermediates, ...intermediates] });
}
