import { introspectionMetadata } from './introspection.js';
import { revocationMetadata } from './revocation-endpoint.js';
import type { IncomingMessage, ServerResponse } from 'node:http';
import Provider, { type Configuration, type KoaContextWithOIDC } from 'oidc-provider';
import type { Settings } from '../../config/schema.js';
import type { KeyManager } from '../../keys/key-manager.js';
import type { CompiledPolicy } from '../../policy/types.js';
import { TOKEN_EXCHANGE_GRANT } from '../../issuance/token-types.js';
import { SigningKeyAdapter } from './signing-key-adapter.js';
import { StatelessAdapter } from './stateless-adapter.js';

/** RFC 8693 §2.1 parameters the grant accepts; `resource` and `audience` may repeat. */
const EXCHANGE_PARAMS = [
  'subject_token',
  'subject_token_type',
  'actor_token',
  'actor_token_type',
  'requested_token_type',
  'resource',
  'audience',
  'scope',
  'task',
  'expires_in',
  'justification',
  'approval_id',
];
const REPEATABLE = ['resource', 'audience'];

export type GrantHandler = (ctx: KoaContextWithOIDC) => Promise<void>;

/**
 * oidc-provider is the OAuth/OIDC protocol surface: routing, client authentication,
 * parameter parsing (duplicates, content types, size), discovery and error rendering.
 * Every plugin is a public client (`token_endpoint_auth_method: none`): its attestation,
 * not a secret, proves who it is. Nothing but the token-exchange grant is enabled.
 * The provider is rebuilt when policy or keys change (its clients and keys are fixed at
 * construction) and swapped atomically by the caller.
 */
export function buildProvider(opts: {
  settings: Settings;
  policy: CompiledPolicy;
  keys: KeyManager;
  grant: GrantHandler;
}): Provider {
  const { settings, policy, keys } = opts;
  const clients = [...policy.plugins.values()].map((p) => ({
    client_id: p.id,
    token_endpoint_auth_method: 'none' as const,
    grant_types: [TOKEN_EXCHANGE_GRANT],
    response_types: [],
    redirect_uris: [],
  }));
  const configuration: Configuration = {
    adapter: StatelessAdapter,
    clients,
    jwks: { keys: [new SigningKeyAdapter(keys.current())] },
    features: {
      devInteractions: { enabled: false },
      externalSigningSupport: { enabled: true, ack: 'experimental-01' },
      introspection: { enabled: false },
      revocation: { enabled: false },
      userinfo: { enabled: false },
      clientCredentials: { enabled: false },
    },
    responseTypes: ['none'],
    grantTypes: [],
    scopes: [],
    claims: {},
    clientDefaults: {
      grant_types: [TOKEN_EXCHANGE_GRANT],
      response_types: [],
      token_endpoint_auth_method: 'none',
      id_token_signed_response_alg: keys.current().alg,
    },
    enabledJWA: {
      idTokenSigningAlgValues: ['ES256', 'EdDSA'],
      dPoPSigningAlgValues: [...settings.dpop.algorithms],
    },
    discovery: {
      service_documentation: 'https://github.com/leash/leash/tree/main/docs',
      dpop_signing_alg_values_supported: [...settings.dpop.algorithms],
      ...introspectionMetadata(settings.issuer),
      ...revocationMetadata(settings.issuer),
    },
    // Plugins are public clients: the attestation, not a client secret, proves who they are.
    clientAuthMethods: ['none'],
    pkce: { required: () => false },
    // Plugins are servers, not browsers: no cross-origin calls to the token endpoint.
    clientBasedCORS: () => false,
    renderError(ctx, out) {
      // No HTML pages: every error is the RFC 6749 JSON shape.
      ctx.type = 'application/json';
      ctx.body = out;
    },
  } as Configuration;
  const provider = new Provider(settings.issuer, configuration);
  // URLs in discovery are built from the request's origin; pinIssuerOrigin (below) makes
  // that origin always the configured issuer's, so koa must read the forwarded headers.
  provider.proxy = true;
  provider.registerGrantType(TOKEN_EXCHANGE_GRANT, opts.grant, EXCHANGE_PARAMS, REPEATABLE);
  return provider;
}

/**
 * Every URL Leash publishes (discovery's token_endpoint, jwks_uri, ...) must be under the
 * configured issuer, whatever Host or X-Forwarded-* a request carries: behind a
 * TLS-terminating ingress the request arrives as http://<internal host>, and a client could
 * send any Host to poison a cached discovery document. So the origin the provider sees is
 * set from `settings.issuer` on every request, overriding what the client sent.
 */
export function pinIssuerOrigin(handler: (req: IncomingMessage, res: ServerResponse) => void, issuer: string): (req: IncomingMessage, res: ServerResponse) => void {
  const url = new URL(issuer);
  const proto = url.protocol.slice(0, -1);
  return (req, res) => {
    req.headers['x-forwarded-proto'] = proto;
    req.headers['x-forwarded-host'] = url.host;
    delete req.headers['x-forwarded-port'];
    handler(req, res);
  };
}
