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

/** The client credentials a token request carried (read from the form by the OAuth layer, verified here). */
export interface ClientCredentials {
  readonly assertion: string | undefined;
  readonly assertionType: string | undefined;
}

/** A plugin that proved, by private_key_jwt, that it holds a key it registered. */
export interface AuthenticatedClient {
  readonly clientId: string;
  readonly method: 'private_key_jwt';
  /** The assertion's `iat` (when sent) and `exp`, seconds. */
  readonly issuedAt: number | undefined;
  readonly expiresAt: number;
  /** base64url SHA-256 of the assertion: what the audit event names, never the assertion. */
  readonly digest: string;
}

export interface PluginAuthenticator {
  /**
   * Verifies the request's client credentials, if it sent any: undefined when it sent
   * none. A credential that is sent and cannot be verified is `invalid_client`
   * (ERR_CLIENT_AUTH_FAILED), never ignored.
   */
  authenticate(credentials: ClientCredentials | undefined, clientId: string | undefined): Promise<AuthenticatedClient | undefined>;
}

/** The issuer name a key-only plugin's identity carries (not a valid trusted-issuer name, so never a binding's). */
export const PRIVATE_KEY_JWT_ISSUER = 'private_key_jwt';

export interface PluginAuthenticatorDeps {
  /** Leash's issuer and its token endpoint: the assertion's `aud` must be one of them. */
  readonly issuer: string;
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
    if (!auth) return;
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
  if (problems.length > 0) throw new ConfigError(problems);
  const verifier = createClientAssertionVerifier({
    audiences: new Set([deps.issuer, deps.tokenEndpoint]),
    clock: deps.clock,
    replay: deps.replay,
    clockSkewSeconds: deps.clockSkewSeconds,
    replayPrefix: 'plugin-assertion',
    audienceHint: deps.tokenEndpoint,
  });
  return {
    async authenticate(credentials, clientId) {
      if (!credentials || (credentials.assertion === undefined && credentials.assertionType === undefined)) return undefined;
      const { clientId: id, payload } = await verifier.verify({ type: credentials.assertionType, assertion: credentials.assertion, clientId }, (candidate) => {
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

/**
 * The workload identity of a plugin that exchanged with its key alone
 * (`subject_token_type` TOKEN_TYPE_CLIENT): issuer `private_key_jwt`, subject its client
 * id, living as long as its assertion. Bindings never match it (no trusted issuer has that
 * name); the pipeline resolves the plugin from the client id.
 */
export function clientIdentity(client: AuthenticatedClient | undefined, subjectToken: string): WorkloadIdentity {
  if (!client) {
    throw new LeashError('ERR_CLIENT_AUTH_FAILED', `subject_token_type ${TOKEN_TYPE_CLIENT} names the authenticated client: authenticate with private_key_jwt`, {
      method: 'none',
      reason: 'no_credentials',
    });
  }
  if (subjectToken !== client.clientId) throw new LeashError('ERR_CLIENT_PLUGIN_MISMATCH', `with subject_token_type ${TOKEN_TYPE_CLIENT}, subject_token is your client id (the assertion's iss)`);
  return Object.freeze({
    issuer: PRIVATE_KEY_JWT_ISSUER,
    kind: 'private_key_jwt' as const,
    subject: client.clientId,
    attributes: Object.freeze({ client_auth: client.method }),
    issuedAt: client.issuedAt,
    expiresAt: client.expiresAt,
    tokenDigest: client.digest,
  });
}
