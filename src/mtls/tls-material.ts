import { readFileSync } from 'node:fs';
import { createSecureContext, type SecureContextOptions } from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { ConfigError, type ConfigProblem } from '../config/config-error.js';
import type { LeashConfig } from '../config/schema.js';

/** What the public listener needs to speak TLS: the context (re-read on reload) and the per-connection options (restart only). */
export interface TlsServerOptions {
  readonly context: SecureContextOptions;
  readonly requestCert: boolean;
  readonly rejectUnauthorized: boolean;
  readonly minVersion: 'TLSv1.2' | 'TLSv1.3';
}

function read(path: string, at: string, problems: ConfigProblem[]): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    problems.push({ path: at, message: `cannot read '${path}': ${(e as NodeJS.ErrnoException).code ?? 'error'}` });
    return undefined;
  }
}

/** The PEM certificates in a file, each parsed (a bundle of nothing is a problem: it would verify nothing). */
export function readCertificateBundle(path: string, at: string, problems: ConfigProblem[]): X509Certificate[] {
  const text = read(path, at, problems);
  if (text === undefined) return [];
  const out: X509Certificate[] = [];
  for (const m of text.matchAll(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)) {
    try {
      out.push(new X509Certificate(m[0]));
    } catch {
      problems.push({ path: at, message: `'${path}' holds a PEM block that is not a valid certificate` });
      return [];
    }
  }
  if (out.length === 0) problems.push({ path: at, message: `'${path}' holds no PEM certificate` });
  return out;
}

/**
 * The public listener's TLS options from `settings.tls`, files read now: certificate and
 * key (checked to belong together), and the CAs the handshake asks client certificates
 * from: `client_ca_file`, or else every `x509-svid` issuer's bundle. Throws ConfigError
 * (every problem, with its config path) so a bad file stops a start or rejects a reload.
 * Undefined when `settings.tls` is not set.
 */
export function tlsServerOptions(config: Pick<LeashConfig, 'settings' | 'trusted_issuers'>): TlsServerOptions | undefined {
  const tls = config.settings.tls;
  if (!tls) return undefined;
  const problems: ConfigProblem[] = [];
  const cert = read(tls.cert_file, '/settings/tls/cert_file', problems);
  const key = read(tls.key_file, '/settings/tls/key_file', problems);
  const cas: string[] = [];
  if (tls.client_auth !== 'none') {
    if (tls.client_ca_file !== undefined) {
      cas.push(...readCertificateBundle(tls.client_ca_file, '/settings/tls/client_ca_file', problems).map((c) => c.toString()));
    } else {
      config.trusted_issuers.forEach((t, i) => {
        if (t.kind === 'x509-svid' && t.bundle_file !== undefined) cas.push(...readCertificateBundle(t.bundle_file, `/trusted_issuers/${i}/bundle_file`, problems).map((c) => c.toString()));
      });
    }
    if (tls.client_auth === 'required' && cas.length === 0 && problems.length === 0) {
      problems.push({ path: '/settings/tls/client_auth', message: "'required' needs CAs to verify client certificates against: set client_ca_file or add an x509-svid trusted issuer" });
    }
  }
  if (problems.length > 0) throw new ConfigError(problems);
  const context: SecureContextOptions = { cert: cert!, key: key!, ...(cas.length > 0 ? { ca: cas } : {}) };
  try {
    createSecureContext({ ...context, minVersion: tls.min_version });
  } catch (e) {
    throw new ConfigError([{ path: '/settings/tls', message: `the certificate, key or CA files are not usable together: ${(e as Error).message.slice(0, 200)}` }]);
  }
  return Object.freeze({ context, requestCert: tls.client_auth !== 'none', rejectUnauthorized: tls.client_auth === 'required', minVersion: tls.min_version });
}
