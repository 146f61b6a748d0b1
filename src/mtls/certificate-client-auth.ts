import { createPublicKey, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { ConfigError, type ConfigProblem } from '../config/config-error.js';
import type { PluginConfig, Settings } from '../config/schema.js';
import { LeashError } from '../errors/leash-error.js';
import type { Clock } from '../time/clock.js';
import { KEY_USAGE } from './certificate-extensions.js';
import { subjectMatcher, TLS_CLIENT_AUTH_SUBJECT_PARAMS, type SubjectMatcher } from './certificate-subject.js';
import { certificateThumbprint, type PresentedCertificate } from './client-certificate.js';
import { readCertificateBundle } from './tls-material.js';
import { verifyChain } from './verify-chain.js';

/** RFC 8705 §2: the two ways a client authenticates with the certificate of its mutual-TLS connection. */
export const CERTIFICATE_AUTH_METHODS = ['tls_client_auth', 'self_signed_tls_client_auth'] as const;
export type CertificateAuthMethod = (typeof CERTIFICATE_AUTH_METHODS)[number];

/** How client certificates reach Leash: the listener's `settings.tls.client_auth`, and whether a trusted proxy forwards them in a header. */
export interface CertificateSources {
  readonly listener: 'none' | 'optional' | 'required' | undefined;
  readonly header: boolean;
}

export function certificateSources(settings: Pick<Settings, 'tls' | 'client_certificate_header'>): CertificateSources {
  return { listener: settings.tls?.client_auth, header: settings.client_certificate_header !== undefined };
}

/**
 * The RFC 8705 §2 methods a client can really use here, for the discovery document: none
 * unless a certificate can reach Leash (the listener asks for one, or a trusted proxy
 * forwards it); `self_signed_tls_client_auth` not when the handshake itself verifies
 * certificates (`client_auth: required` refuses a self-signed one before Leash sees it).
 */
export function certificateAuthMethods(sources: CertificateSources | undefined): CertificateAuthMethod[] {
  if (!sources) return [];
  const asked = sources.header || sources.listener === 'optional' || sources.listener === 'required';
  if (!asked) return [];
  return sources.header || sources.listener === 'optional' ? ['tls_client_auth', 'self_signed_tls_client_auth'] : ['tls_client_auth'];
}

export const isCertificateAuthMethod = (method: string | undefined): method is CertificateAuthMethod => (CERTIFICATE_AUTH_METHODS as readonly string[]).includes(method ?? '');

/** RFC 5280 id-kp-clientAuth. */
const CLIENT_AUTH_EKU = '1.3.6.1.5.5.7.3.2';

/** A plugin that proved, with its TLS client certificate, that it is the client it registered as. */
export interface CertificateAuthenticated {
  readonly clientId: string;
  readonly method: CertificateAuthMethod;
  /** The certificate's notBefore and notAfter, seconds. */
  readonly issuedAt: number;
  readonly expiresAt: number;
  /** RFC 8705 `x5t#S256` of the certificate. */
  readonly digest: string;
}

export interface CertificateClientAuth {
  /** Whether this plugin registered a certificate method. */
  registers(clientId: string): boolean;
  /**
   * The plugin's registered certificate method against the request's certificate: none,
   * or one that does not verify, is ERR_CLIENT_AUTH_FAILED (`invalid_client`) with the
   * reason in its detail.
   */
  authenticate(clientId: string, certificate: PresentedCertificate | undefined): CertificateAuthenticated;
}

type Registered =
  | { readonly method: 'tls_client_auth'; readonly anchors: readonly X509Certificate[]; readonly subject: SubjectMatcher }
  | { readonly method: 'self_signed_tls_client_auth'; readonly thumbprints: ReadonlySet<string> };

export interface CertificateClientAuthDeps {
  readonly clock: Clock;
  /** Folder a relative `jwks.file` is resolved against. */
  readonly baseDir: string;
  /** `settings.tls.client_ca_file`: the default CA bundle of `tls_client_auth`. */
  readonly defaultCaFile: string | undefined;
  /** Where certificates come from: a method no certificate can reach is a config problem. */
  readonly sources: CertificateSources;
}

const failed = (method: CertificateAuthMethod, reason: string, description: string) => new LeashError('ERR_CLIENT_AUTH_FAILED', description, { method, reason });

/** The JWKS keys of a `self_signed_tls_client_auth` plugin, read now (inline or file). */
function localKeys(auth: NonNullable<PluginConfig['client_auth']>, at: string, baseDir: string, problems: ConfigProblem[]): unknown[] {
  const jwks = auth.jwks;
  if (!jwks) {
    problems.push({ path: `${at}/jwks`, message: 'self_signed_tls_client_auth needs jwks: the keys whose x5c holds the certificate' });
    return [];
  }
  if (jwks.uri !== undefined || jwks.discovery) {
    // Not built: the thumbprints are computed at load from keys Leash holds, not fetched per request.
    problems.push({ path: `${at}/jwks`, message: 'self_signed_tls_client_auth reads its certificates from an inline or file JWKS (not uri)' });
    return [];
  }
  let set: unknown = jwks.inline;
  if (jwks.file !== undefined) {
    const path = isAbsolute(jwks.file) ? jwks.file : resolve(baseDir, jwks.file);
    try {
      set = JSON.parse(readFileSync(path, 'utf8'));
    } catch (e) {
      problems.push({ path: `${at}/jwks/file`, message: `cannot read JWKS file '${path}': ${(e as Error).message.slice(0, 200)}` });
      return [];
    }
  }
  const keys = (set as { keys?: unknown }).keys;
  if (!Array.isArray(keys) || keys.length === 0) {
    problems.push({ path: `${at}/jwks`, message: 'must be a JWKS: an object with a non-empty "keys" array' });
    return [];
  }
  return keys;
}

/**
 * The thumbprints of the certificates a `self_signed_tls_client_auth` plugin registered:
 * the first `x5c` certificate of each JWKS key (as oidc-provider computes `x5t#S256`),
 * whose public key must be the JWK's own (a key that names someone else's certificate is
 * a config error, not a silent match).
 */
function selfSignedThumbprints(keys: unknown[], at: string, problems: ConfigProblem[]): Set<string> {
  const out = new Set<string>();
  keys.forEach((raw, k) => {
    const key = raw as Record<string, unknown>;
    const x5c = key.x5c;
    if (x5c === undefined) return;
    const kat = `${at}/keys/${k}/x5c`;
    if (!Array.isArray(x5c) || x5c.length === 0 || typeof x5c[0] !== 'string') {
      problems.push({ path: kat, message: 'x5c must be a non-empty array of base64 DER certificates' });
      return;
    }
    let cert: X509Certificate;
    try {
      cert = new X509Certificate(Buffer.from(x5c[0], 'base64'));
    } catch {
      problems.push({ path: kat, message: 'x5c[0] is not a base64 DER certificate' });
      return;
    }
    try {
      const { x5c: _x5c, ...jwk } = key;
      const mine = createPublicKey({ key: jwk as never, format: 'jwk' }).export({ type: 'spki', format: 'der' });
      if (!mine.equals(cert.publicKey.export({ type: 'spki', format: 'der' }))) {
        problems.push({ path: kat, message: "x5c[0] certifies another key than this JWK's" });
        return;
      }
    } catch {
      problems.push({ path: `${at}/keys/${k}`, message: 'is not a usable public JWK' });
      return;
    }
    out.add(certificateThumbprint(cert.raw));
  });
  if (out.size === 0 && problems.length === 0) problems.push({ path: at, message: 'no key carries x5c: register the self-signed certificate as the x5c of its key' });
  return out;
}

/**
 * RFC 8705 §2 client authentication of plugins, compiled once per policy generation, with
 * the metadata names and semantics oidc-provider gives them (`features.mTLS`):
 *  - `tls_client_auth`: the certificate chains to the client CA (`ca_file`, default
 *    `settings.tls.client_ca_file`; verified by Leash per request, so a CA removed on
 *    reload stops at once), is within its validity, is not a CA, allows `clientAuth` when
 *    it lists extended key usages, and carries the one registered `tls_client_auth_*`
 *    value (oidc-provider's `certificateAuthorized` and `certificateSubjectMatches`);
 *  - `self_signed_tls_client_auth`: the certificate's SHA-256 thumbprint is that of the
 *    `x5c` of a key of the plugin's JWKS, and it is within its validity (Leash refuses an
 *    expired registered certificate; oidc-provider does not look).
 * Config problems (no CA, not exactly one subject, a DN it cannot read, a JWKS without
 * `x5c`) are a ConfigError with their paths.
 */
export function createCertificateClientAuth(plugins: readonly PluginConfig[], deps: CertificateClientAuthDeps): CertificateClientAuth {
  const registered = new Map<string, Registered>();
  const problems: ConfigProblem[] = [];
  const bundles = new Map<string, X509Certificate[]>();
  plugins.forEach((plugin, i) => {
    const auth = plugin.client_auth;
    const at = `/plugins/${i}/client_auth`;
    if (!auth) return;
    const subjects = TLS_CLIENT_AUTH_SUBJECT_PARAMS.filter((p) => auth[p] !== undefined);
    if (!isCertificateAuthMethod(auth.method)) {
      for (const p of subjects) problems.push({ path: `${at}/${p}`, message: `only applies to tls_client_auth (method is ${auth.method})` });
      if (auth.ca_file !== undefined) problems.push({ path: `${at}/ca_file`, message: `only applies to tls_client_auth (method is ${auth.method})` });
      return;
    }
    const offered = certificateAuthMethods(deps.sources);
    if (!offered.includes(auth.method)) {
      problems.push({
        path: `${at}/method`,
        message:
          offered.length === 0
            ? `${auth.method} needs client certificates to reach Leash: set settings.tls.client_auth (optional or required) or settings.client_certificate_header`
            : `${auth.method} needs settings.tls.client_auth optional (required makes the handshake refuse a self-signed certificate) or settings.client_certificate_header`,
      });
      return;
    }
    if (auth.method === 'self_signed_tls_client_auth') {
      for (const p of subjects) problems.push({ path: `${at}/${p}`, message: 'only applies to tls_client_auth: a self-signed certificate is matched by its thumbprint' });
      if (auth.ca_file !== undefined) problems.push({ path: `${at}/ca_file`, message: 'only applies to tls_client_auth: a self-signed certificate has no CA' });
      const before = problems.length;
      const thumbprints = selfSignedThumbprints(localKeys(auth, at, deps.baseDir, problems), `${at}/jwks`, problems);
      if (problems.length === before) registered.set(plugin.id, { method: auth.method, thumbprints });
      return;
    }
    if (auth.jwks !== undefined) problems.push({ path: `${at}/jwks`, message: 'tls_client_auth takes no jwks: the CA and the registered subject identify the certificate' });
    if (subjects.length !== 1) {
      problems.push({ path: at, message: `tls_client_auth needs exactly one of ${TLS_CLIENT_AUTH_SUBJECT_PARAMS.join(', ')} (found ${subjects.length === 0 ? 'none' : subjects.join(', ')})` });
      return;
    }
    const param = subjects[0]!;
    let subject: SubjectMatcher;
    try {
      subject = subjectMatcher(param, auth[param]!);
    } catch (e) {
      problems.push({ path: `${at}/${param}`, message: (e as Error).message });
      return;
    }
    const named = auth.ca_file ?? deps.defaultCaFile;
    const caFile = named === undefined || isAbsolute(named) ? named : resolve(deps.baseDir, named);
    if (caFile === undefined) {
      problems.push({ path: `${at}/ca_file`, message: 'tls_client_auth needs the CA its certificates chain to: set ca_file or settings.tls.client_ca_file' });
      return;
    }
    let anchors = bundles.get(caFile);
    if (!anchors) {
      anchors = readCertificateBundle(caFile, auth.ca_file !== undefined ? `${at}/ca_file` : '/settings/tls/client_ca_file', problems);
      bundles.set(caFile, anchors);
    }
    registered.set(plugin.id, { method: 'tls_client_auth', anchors, subject });
  });
  if (problems.length > 0) throw new ConfigError(problems);

  return {
    registers: (clientId) => registered.has(clientId),
    authenticate(clientId, certificate) {
      const entry = registered.get(clientId);
      if (!entry) throw new TypeError(`plugin '${clientId}' registered no certificate method`);
      const method = entry.method;
      if (!certificate) throw failed(method, 'no_certificate', `this client authenticates with ${method}: connect with its client certificate (mutual TLS)`);
      const { leaf } = certificate;
      const now = deps.clock.now();
      if (entry.method === 'self_signed_tls_client_auth') {
        if (!entry.thumbprints.has(certificate.thumbprint)) throw failed(method, 'unregistered_certificate', 'the client certificate is not one this client registered (x5c of its JWKS)');
        if (now < leaf.validFromDate.getTime()) throw failed(method, 'not_yet_valid', 'the client certificate is not valid yet');
        if (now > leaf.validToDate.getTime()) throw failed(method, 'expired', 'the client certificate has expired: register a new one');
      } else {
        const chain = verifyChain(leaf, certificate.intermediates, entry.anchors, now);
        if (!chain.ok) throw failed(method, chain.failure, `the client certificate does not verify against the client CA: ${chain.reason}`);
        const ext = chain.leafExtensions;
        if (leaf.ca || ext.keyUsage?.has(KEY_USAGE.keyCertSign)) throw failed(method, 'constraints', 'a CA certificate is not a client certificate');
        const eku = leaf.keyUsage;
        if (eku !== undefined && eku.length > 0 && !eku.includes(CLIENT_AUTH_EKU))
          throw failed(method, 'constraints', 'the certificate is not for TLS client authentication (extendedKeyUsage lacks clientAuth)');
        if (!entry.subject.matches(leaf)) throw failed(method, 'subject_mismatch', `the client certificate does not carry the registered ${entry.subject.param}`);
      }
      return Object.freeze({
        clientId,
        method,
        issuedAt: Math.floor(leaf.validFromDate.getTime() / 1000),
        expiresAt: Math.floor(leaf.validToDate.getTime() / 1000),
        digest: certificate.thumbprint,
      });
    },
  };
}
