import type { Request, RequestHandler, Response } from 'express';

/** RFC 9728 §3: the well-known suffix a protected resource's metadata is served under. */
export const PROTECTED_RESOURCE_WELL_KNOWN = '/.well-known/oauth-protected-resource';

export interface ProtectedResourceMetadataOptions {
  /**
   * The resource identifier (RFC 9728 §1.2, RFC 8707): the URL clients name as `resource`
   * at Leash and that Leash puts in `aud`. https (http only on loopback), no fragment.
   */
  readonly resource: string;
  /** Leash's issuer URL: the one authorization server of this resource. */
  readonly authorizationServer: string;
  /** Scopes a client may ask for at this resource (optional in RFC 9728: say only what is true). */
  readonly scopesSupported?: readonly string[];
  /** DPoP proof algorithms the verifier accepts (RFC 9728 §2 `dpop_signing_alg_values_supported`). */
  readonly dpopAlgorithms?: readonly string[];
  /** Whether every token must be DPoP-bound (`dpop_bound_access_tokens_required`). */
  readonly dpopRequired?: boolean;
  /** RFC 9396 types this resource understands in a token's `authorization_details`. */
  readonly authorizationDetailsTypes?: readonly string[];
  /** Human-readable name (`resource_name`). */
  readonly resourceName?: string;
  /** A page for developers (`resource_documentation`). */
  readonly resourceDocumentation?: string;
}

function checkResource(resource: string): URL {
  let url: URL;
  try {
    url = new URL(resource);
  } catch {
    throw new TypeError(`protected resource: '${resource}' is not an absolute URL`);
  }
  if (resource.includes('#')) throw new TypeError('protected resource: the resource identifier has no fragment (RFC 9728 §1.2)');
  const loopback = url.hostname === '127.0.0.1' || url.hostname === 'localhost' || url.hostname === '[::1]';
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && loopback)) {
    throw new TypeError('protected resource: the resource identifier must be an https URL (http only on loopback)');
  }
  return url;
}

/**
 * Where the metadata of `resource` lives: the well-known suffix inserted between the
 * host and the path (RFC 9728 §3.1), e.g. `https://mcp.example.com/mcp` →
 * `https://mcp.example.com/.well-known/oauth-protected-resource/mcp`.
 */
export function resourceMetadataUrl(resource: string): string {
  const url = checkResource(resource);
  const path = url.pathname === '/' ? '' : url.pathname;
  return `${url.origin}${PROTECTED_RESOURCE_WELL_KNOWN}${path}${url.search}`;
}

/** The path (and query) that document is served at on this resource's own host. */
export function resourceMetadataPath(resource: string): string {
  const url = new URL(resourceMetadataUrl(resource));
  return url.pathname;
}

/**
 * The RFC 9728 §2 document naming Leash as the authorization server. `resource` is the
 * identifier exactly as given (§3.3: a client compares it with the URL it derived the
 * metadata location from); members are present only when they are true of this resource.
 */
export function protectedResourceMetadata(opts: ProtectedResourceMetadataOptions): Record<string, unknown> {
  checkResource(opts.resource);
  new URL(opts.authorizationServer);
  const doc: Record<string, unknown> = {
    resource: opts.resource,
    authorization_servers: [opts.authorizationServer],
    // Leash tokens are accepted in the Authorization header only (no form body, no query).
    bearer_methods_supported: ['header'],
  };
  if (opts.scopesSupported && opts.scopesSupported.length > 0) doc.scopes_supported = [...opts.scopesSupported];
  if (opts.dpopAlgorithms && opts.dpopAlgorithms.length > 0) doc.dpop_signing_alg_values_supported = [...opts.dpopAlgorithms];
  if (opts.dpopRequired) doc.dpop_bound_access_tokens_required = true;
  if (opts.authorizationDetailsTypes && opts.authorizationDetailsTypes.length > 0) doc.authorization_details_types_supported = [...opts.authorizationDetailsTypes];
  if (opts.resourceName !== undefined) doc.resource_name = opts.resourceName;
  if (opts.resourceDocumentation !== undefined) doc.resource_documentation = opts.resourceDocumentation;
  return doc;
}

/**
 * Express handler serving the document at its well-known path (mount it at the app's
 * root: `app.use(protectedResourceHandler(...))`). GET and HEAD only; anything else
 * passes through to the app's own routing.
 */
export function protectedResourceHandler(opts: ProtectedResourceMetadataOptions): RequestHandler {
  const body = JSON.stringify(protectedResourceMetadata(opts));
  const path = resourceMetadataPath(opts.resource);
  return function protectedResourceMetadataRoute(req: Request, res: Response, next) {
    if (req.path !== path) return next();
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.status(405).set('allow', 'GET, HEAD').json({ error: 'invalid_request', error_description: 'use GET' });
      return;
    }
    // Public and cacheable, like the issuer's own discovery document.
    res.status(200).set('cache-control', 'public, max-age=60').type('application/json').send(body);
  };
}
