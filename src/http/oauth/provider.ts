import type { EventEmitter } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';
import Provider, { type Configuration, type KoaContextWithOIDC } from 'oidc-provider';
import { toOAuthError } from '../../errors/oauth-error.js';
import { RETRY_AFTER_SECONDS } from '../retry-after.js';
import type { Settings } from '../../config/schema.js';
import type { KeyManager } from '../../keys/key-manager.js';
import type { CompiledPolicy } from '../../policy/types.js';
import { TOKEN_EXCHANGE_GRANT } from '../../formats/token-types.js';
import { SigningKeyAdapter } from './signing-key-adapter.js';
import { StatelessAdapter } from './stateless-adapter.js';
import { withSafeErrorDescription } from '../../client/error-description.js';
import { ATTESTED_CLIENT_ID } from './token-client.js';
import { holdOidcContextWithoutClosure } from './oidc-context-holder.js';

/** RFC 8693 §2.1 parameters the grant accepts (besides `grant_type` and `client_id`); `resource` and `audience` may repeat. */
export const EXCHANGE_PARAMS = [
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
  'authorization_details',
];
const REPEATABLE = ['resource', 'audience'];

export type GrantHandler = (ctx: KoaContextWithOIDC) => Promise<void>;

/** Where the protocol layer's own faults go: the broker's JSON log (one object per line). */
export type ProviderLog = (level: 'warn' | 'error', msg: string, fields: Record<string, unknown>) => void;

/**
 * oidc-provider serves one route, `POST /token` (express hands it nothing else): client
 * lookup, parameter parsing (duplicates, content types) and error rendering. Every plugin
 * is a public client (`token_endpoint_auth_method: none`): its attestation, not a secret,
 * proves who it is. Nothing but the token-exchange grant is enabled; discovery is Leash's
 * own document (discovery.ts), not oidc-provider's.
 * The provider is rebuilt when policy or keys change (its clients and keys are fixed at
 * construction) and swapped atomically by the caller.
 */
export function buildProvider(opts: { settings: Settings; policy: CompiledPolicy; keys: KeyManager; grant: GrantHandler; log: ProviderLog }): Provider {
  const { settings, policy, keys } = opts;
  // ATTESTED_CLIENT_ID stands for "no client_id sent": the attestation names the plugin.
  const clients = [...policy.plugins.keys(), ATTESTED_CLIENT_ID].map((id) => ({
    client_id: id,
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
      // On by default in oidc-provider, offered by Leash nowhere (/session/end, /request).
      rpInitiatedLogout: { enabled: false },
      pushedAuthorizationRequests: { enabled: false },
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
    // Plugins are public clients: the attestation, not a client secret, proves who they are.
    clientAuthMethods: ['none'],
    pkce: { required: () => false },
    // Plugins are servers, not browsers: no cross-origin calls to the token endpoint
    // (and protocolSurface below removes what oidc-provider sets before a client is known).
    clientBasedCORS: () => false,
    renderError(ctx, out) {
      // No HTML pages: every error is the RFC 6749 JSON shape.
      ctx.type = 'application/json';
      ctx.body = out;
    },
  } as Configuration;
  const provider = new Provider(settings.issuer, configuration);
  // URLs are built from the request's origin; pinIssuerOrigin (below) makes that origin
  // always the configured issuer's, so koa must read the forwarded headers.
  provider.proxy = true;
  holdOidcContextWithoutClosure(provider);
  provider.use(protocolSurface(opts.log));
  // Koa prints errors it sees after a response started (a client resetting the connection
  // mid-exchange) as multi-line text on stderr; they go to the JSON log instead.
  // (Koa's own event; the oidc-provider typings list only the provider's events.)
  (provider as unknown as EventEmitter).on('error', (err: Error & { code?: string; status?: number }) => {
    opts.log('warn', 'oauth protocol layer error', { error: err.message.slice(0, 200), code: err.code, status: err.status });
  });
  provider.registerGrantType(TOKEN_EXCHANGE_GRANT, opts.grant, EXCHANGE_PARAMS, REPEATABLE);
  // oidc-provider's own errors echo request values (parameter names, the Origin header):
  // every error body leaves through RFC 6749's description character set.
  provider.use(async (ctx, next) => {
    await next();
    const safe = withSafeErrorDescription<unknown>(ctx.body);
    if (safe !== ctx.body) ctx.body = safe;
  });
  return provider;
}

/** CORS response headers and the `Vary: Origin` that goes with them. */
const CORS_HEADER = /^access-control-/i;

/**
 * Koa middleware around everything oidc-provider does, so its answers follow Leash's rules:
 *  - no CORS: oidc-provider sets `Access-Control-Allow-Origin` (echoing any Origin) before
 *    it knows the client, so `clientBasedCORS` alone leaves it on early errors;
 *  - no 500: its `server_error` (an internal fault) becomes `503 temporarily_unavailable`,
 *    as everywhere in Leash (fail closed), and every 503 carries `Retry-After`;
 *  - an error that escapes it is logged as JSON and answered as that same 503, never
 *    Koa's text/plain page.
 */
function protocolSurface(log: ProviderLog) {
  return async (ctx: KoaContextWithOIDC, next: () => Promise<unknown>): Promise<void> => {
    try {
      await next();
    } catch (err) {
      const e = err as { expose?: unknown; statusCode?: unknown; message?: unknown };
      const status = typeof e.statusCode === 'number' ? e.statusCode : 500;
      if (e.expose === true && status >= 400 && status < 500) {
        // Bad input that got past the route's own error handler: still a 4xx in the OAuth shape.
        ctx.status = status;
        ctx.body = { error: 'invalid_request', error_description: 'malformed request' };
      } else {
        log('error', 'oauth protocol layer fault', { error: typeof e.message === 'string' ? e.message.slice(0, 200) : String(err), path: ctx.path });
        ctx.status = 500;
      }
      ctx.set('Cache-Control', 'no-store');
    }
    if (ctx.status === 500) {
      const { status, body } = toOAuthError(undefined);
      ctx.status = status;
      ctx.body = body;
    }
    if (ctx.status === 503) ctx.set('Retry-After', String(RETRY_AFTER_SECONDS));
    for (const name of Object.keys(ctx.response.headers)) if (CORS_HEADER.test(name)) ctx.remove(name);
    if (ctx.response.get('Vary') === 'Origin') ctx.remove('Vary');
  };
}

/**
 * Every URL oidc-provider builds (the DPoP `htu` it expects, ...) must be under the
 * configured issuer, whatever Host or X-Forwarded-* a request carries: behind a
 * TLS-terminating ingress the request arrives as http://<internal host>, and a client could
 * send any Host. So the origin the provider sees is set from `settings.issuer` on every
 * request, overriding what the client sent.
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
