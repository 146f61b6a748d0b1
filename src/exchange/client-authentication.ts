import type { JWTVerifyGetKey } from 'jose';
import type { WorkloadIdentity } from '../attestation/attestor.js';
import { createKeySource } from '../attestation/key-source.js';
import type { FetchLike } from '../attestation/fetch-json.js';
import { tokenDigest } from '../attestation/registry.js';
import { ConfigError, type ConfigProblem } from '../config/config-error.js';
import type { PluginConfig } from '../config/schema.js';
import { LeashError } from '../errors/leash-error.js';
import { createClientAssertionVerifier } from '../attestation/client-assertion.js';
import type { ReplayCache } from '../store/store.js';
import { TOKEN_TYPE_CLIENT } from '../formats/token-types.js';
import type { Clock } from '../time/clock.js';
import { createCertificateClientAuth, isCertificateAuthMethod, type CertificateAuthMethod, type CertificateSources } from '../mtls/certificate-client-auth.js';
import type { PresentedCertificate } from '../mtls/client-certificate.js';

/** The client credentials a token request carried (read from the form by the OAuth layer, verified here). */
export interface ClientCredentials {
  readonly assertion: string | undefined;
  readonly assertionType: string | undefined;
}

/**
 * Client credentials Leash cannot verify: plugins authenticate with their attestation and,
 * when they registered a key, a client assertion. oidc-provider drops parameters of
 * methods it does not offer, so without this check a `client_secret` would be silently
 * ignored and a token issued anyway.
 */
const UNVERIFIABLE_CLIENT_PARAMS = ['client_secret'] as const;
/** private_key_jwt (RFC 7523 §2.2): taken off the form and verified by the exchange pipeline, not by oidc-provider. */
const ASSERTION_PARAMS = ['client_assertion', 'client_assertion_type'] as const;

/**
 * A token request's form split into its client credentials (a client assertion, for the
 * pipeline to verify) and the rest. Throws ERR_CLIENT_AUTH_UNSUPPORTED for a client secret
 * and ERR_REQUEST_MALFORMED for an assertion parameter sent twice. The token endpoint's gate
 * and explain both read a form through it.
 */
export function splitClientCredentials<P extends Readonly<Record<string, unknown>>>(
  params: P,
): { credentials: ClientCredentials | undefined; params: Omit<P, 'client_assertion' | 'client_assertion_type'> } {
  const sent = UNVERIFIABLE_CLIENT_PARAMS.filter((name) => params[name] !== undefined);
  if (sent.length > 0) {
    throw new LeashError(
      'ERR_CLIENT_AUTH_UNSUPPORTED',
      `${sent.join(', ')} cannot be verified here: plugins authenticate with their attestation and, with a registered key, private_key_jwt; send no client secret`,
      { params: sent },
    );
  }
  const { client_assertion: assertion, client_assertion_type: assertionType, ...rest } = params;
  if (assertion === undefined && assertionType === undefined) return { credentials: undefined, params: rest };
  const repeated = ASSERTION_PARAMS.find((name) => params[name] !== undefined && typeof params[name] !== 'string');
  if (repeated) throw new LeashError('ERR_REQUEST_MALFORMED', `parameter '${repeated}' must be sent once`);
  return { credentials: { assertion: assertion as string | undefined, assertionType: assertionType as string | undefined }, params: rest };
}

/** A plugin that proved, by private_key_jwt or its TLS client certificate (RFC 8705 §2), that it is the client it registered as. */
export interface AuthenticatedClient {
  readonly clientId: string;
  readonly method: 'private_key_jwt' | CertificateAuthMethod;
  /** The assertion's `iat` (when sent) and `exp`, or the certificate's notBefore and notAfter; seconds. */
  readonly issuedAt: number | undefined;
  readonly expiresAt: number;
  /** base64url SHA-256 of the assertion (never the assertion), or the certificate's `x5t#S256`: what the audit event names. */
  readonly digest: string;
}

export interface PluginAuthenticator {
  /**
   * Verifies the request's client credentials, if it sent any: undefined when it sent
   * none. A credential that is sent and cannot be verified is `invalid_client`
   * (ERR_CLIENT_AUTH_FAILED), never ignored.
   */
  authenticate(credentials: ClientCredentials | undefined, clientId: string | undefined, replay?: ReplayCache): Promise<AuthenticatedClient | undefined>;
  /** Whether the plugin registered `tls_client_auth` or `self_signed_tls_client_auth`. */
  usesCertificate(pluginId: string): boolean;
  /**
   * RFC 8705 §2: the plugin's registered certificate method against the request's client
   * certificate. None, or one that does not verify, is `invalid_client` (ERR_CLIENT_AUTH_FAILED).
   */
  authenticateCertificate(pluginId: string, certificate: PresentedCertificate | undefined): AuthenticatedClient;
}

/** The issuer name a key-only plugin's identity carries (not a valid trusted-issuer name, so never a binding's). */
export const PRIVATE_KEY_JWT_ISSUER = 'private_key_jwt';

export interface PluginAuthenticatorDeps {
  /** Leash's issuer and its token endpoint: the assertion's `aud` must be one of them. */
  readonly issuer: string;
  /** `settings.tls.client_ca_file`: the CA bundle `tls_client_auth` certificates chain to unless a plugin names its own. */
  readonly clientCaFile?: string | undefined;
  /** How client certificates reach Leash (`settings.tls`, `settings.client_certificate_header`). */
  readonly certificateSources?: CertificateSources | undefined;
  readonly tokenEndpoint: string;
  readonly clock: Clock;
  readonly replay: ReplayCache;
  readonly baseDir: string;
  readonly clockSkewSeconds: number;
  readonly fetch?: FetchLike;
}

/**
 * Plugins' `private_key_jwt` (RFC 7523 §2.2), compiled once per policy generation (bad
 * JWKS sources are ConfigErrors here), verified with the same implementation that
 * authenticates resource servers (`createClientAssertionVerifier`): single-use `jti`
 * (in a namespace of its own), `aud` the token endpoint or the issuer, `exp` at most five
 * minutes ahead, only the plugin's allowed asymmetric algorithms.
 */
export function createPluginAuthenticator(plugins: readonly PluginConfig[], deps: PluginAuthenticatorDeps): PluginAuthenticator {
  const keys = new Map<string, { keys: JWTVerifyGetKey; algorithms: readonly string[] }>();
  const problems: ConfigProblem[] = [];
  plugins.forEach((plugin, i) => {
    const auth = plugin.client_auth;
    if (!auth || auth.method !== 'private_key_jwt') return;
    if (!auth.jwks) {
      problems.push({ path: `/plugins/${i}/client_auth/jwks`, message: 'private_key_jwt needs jwks: the public keys its assertions are signed with' });
      return;
    }
    try {
      keys.set(plugin.id, {
        keys: createKeySource(auth.jwks, { issuer: plugin.id, baseDir: deps.baseDir, fetch: deps.fetch, configPath: `/plugins/${i}/client_auth/jwks` }),
        algorithms: auth.algorithms,
      });
    } catch (err) {
      if (err instanceof ConfigError) problems.push(...err.problems);
      else throw err;
    }
  });
  let certificates: ReturnType<typeof createCertificateClientAuth> | undefined;
  try {
    certificates = createCertificateClientAuth(plugins, {
      clock: deps.clock,
      baseDir: deps.baseDir,
      defaultCaFile: deps.clientCaFile,
      sources: deps.certificateSources ?? { listener: undefined, header: false },
    });
  } catch (err) {
    if (err instanceof ConfigError) problems.push(...err.problems);
    else throw err;
  }
  if (problems.length > 0 || !certificates) throw new ConfigError(problems);
  const byCertificate = certificates;
  const verifier = createClientAssertionVerifier({
    audiences: new Set([deps.issuer, deps.tokenEndpoint]),
    clock: deps.clock,
    replay: deps.replay,
    clockSkewSeconds: deps.clockSkewSeconds,
    replayPrefix: 'plugin-assertion',
    audienceHint: deps.tokenEndpoint,
  });
  return {
    usesCertificate: (pluginId) => byCertificate.registers(pluginId),
    authenticateCertificate: (pluginId, certificate) => byCertificate.authenticate(pluginId, certificate),
    async authenticate(credentials, clientId, replay) {
      if (!credentials || (credentials.assertion === undefined && credentials.assertionType === undefined)) return undefined;
      const { clientId: id, payload } = await verifier.verify({ type: credentials.assertionType, assertion: credentials.assertion, clientId, replay }, (candidate) => {
        const registered = keys.get(candidate);
        if (registered) return registered;
        // Same answer for an unknown plugin and one without a key: the answer does not confirm which ids exist.
        return undefined;
      });
      return Object.freeze({
        clientId: id,
        method: 'private_key_jwt' as const,
        issuedAt: typeof payload.iat === 'number' ? payload.iat : undefined,
        expiresAt: payload.exp as number,
        digest: tokenDigest(credentials.assertion as string),
      });
    },
  };
}

/** The issuer names of client-only identities: no trusted issuer can have them (underscores), so no binding ever matches. */
export const CLIENT_IDENTITY_ISSUERS: ReadonlySet<string> = new Set([PRIVATE_KEY_JWT_ISSUER, 'tls_client_auth', 'self_signed_tls_client_auth']);

/**
 * The workload identity of a plugin that exchanged with its client authentication alone
 * (`subject_token_type` TOKEN_TYPE_CLIENT): issuer and kind its method (`private_key_jwt`,
 * `tls_client_auth`, `self_signed_tls_client_auth`), subject its client id, living as long
 * as its assertion or certificate. Bindings never match it (no trusted issuer has such a
 * name); the pipeline resolves the plugin from the client id.
 */
export function clientIdentity(client: AuthenticatedClient | undefined, subjectToken: string): WorkloadIdentity {
  if (!client) {
    throw new LeashError('ERR_CLIENT_AUTH_FAILED', `subject_token_type ${TOKEN_TYPE_CLIENT} names the authenticated client: authenticate with private_key_jwt or your registered client certificate`, {
      method: 'none',
      reason: 'no_credentials',
    });
  }
  if (subjectToken !== client.clientId) throw new LeashError('ERR_CLIENT_PLUGIN_MISMATCH', `with subject_token_type ${TOKEN_TYPE_CLIENT}, subject_token is your client id (the assertion's iss)`);
  return Object.freeze({
    issuer: client.method,
    kind: client.method,
    subject: client.clientId,
    attributes: Object.freeze({ client_auth: client.method }),
    issuedAt: client.issuedAt,
    expiresAt: client.expiresAt,
    tokenDigest: client.digest,
  });
}

export { isCertificateAuthMethod };
