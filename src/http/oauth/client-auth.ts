import { createHash, timingSafeEqual } from 'node:crypto';
import { urlencoded, type ErrorRequestHandler, type Request, type RequestHandler, type Response } from 'express';
import type { JWTVerifyGetKey } from 'jose';
import { CLIENT_ASSERTION_ALGORITHMS, createClientAssertionVerifier } from '../../attestation/client-assertion.js';
import { createKeySource } from '../../attestation/key-source.js';
import type { FetchLike } from '../../attestation/fetch-json.js';
import { ConfigError, type ConfigProblem } from '../../config/config-error.js';
import type { ResourceServerConfig } from '../../config/schema.js';
import { LeashError } from '../../errors/leash-error.js';
import { toOAuthError } from '../../errors/oauth-error.js';
import { setRetryAfter } from '../retry-after.js';
import { sendNoStoreJson } from './no-store-json.js';
import type { ReplayCache } from '../../store/store.js';
import type { Clock } from '../../time/clock.js';

/** RFC 7591 names of the client authentication methods resource servers may use. */
export const CLIENT_AUTH_METHODS = ['client_secret_basic', 'client_secret_post', 'private_key_jwt'] as const;
export type ClientAuthMethod = (typeof CLIENT_AUTH_METHODS)[number];

export { CLIENT_ASSERTION_TYPE, CLIENT_ASSERTION_ALGORITHMS, MAX_ASSERTION_LIFETIME_SECONDS } from '../../attestation/client-assertion.js';
const MAX_SECRET_LENGTH = 1024;

export interface ResourceServerAuthenticator {
  /** The authenticated resource server, or throws LeashError (ERR_CLIENT_AUTH_FAILED, ERR_REQUEST_MALFORMED, ERR_BACKEND_UNAVAILABLE). */
  authenticate(req: Request): Promise<ResourceServerConfig>;
}

export interface ResourceServerAuthDeps {
  /** Leash's issuer: an acceptable `aud` of client assertions. */
  readonly issuer: string;
  /** The endpoints a client assertion may name as `aud` (e.g. `<issuer>/introspect`, `<issuer>/revoke`). */
  readonly endpointUrls: readonly string[];
  readonly clock: Clock;
  /** Remembers assertion `jti`s until they expire (single use, across replicas). */
  readonly replay: ReplayCache;
  /** Folder a relative `jwks.file` is resolved against. */
  readonly baseDir: string;
  /** Leeway on assertion `exp`/`nbf`/`iat`. Default 30. */
  readonly clockSkewSeconds?: number;
  readonly fetch?: FetchLike;
}

interface Registered {
  readonly config: ResourceServerConfig;
  readonly secretHash: Buffer | undefined;
  readonly keys: JWTVerifyGetKey | undefined;
}

/** Compared against when a client is unknown or has no secret, so the timing does not tell. */
const NO_SECRET = Buffer.alloc(32);

const sha256 = (value: string): Buffer => createHash('sha256').update(value, 'utf8').digest();

const failed = (method: ClientAuthMethod | 'none', reason: string, description: string) => new LeashError('ERR_CLIENT_AUTH_FAILED', description, { method, reason });

/** Which client authentication methods a request attempts (RFC 6749 §2.3: a client uses exactly one). */
export function attemptedClientAuth(req: Request): ClientAuthMethod[] {
  const body = formBody(req);
  const methods: ClientAuthMethod[] = [];
  if (/^basic(\s|$)/i.test(req.get('authorization') ?? '')) methods.push('client_secret_basic');
  if (body.client_secret !== undefined) methods.push('client_secret_post');
  if (body.client_assertion !== undefined || body.client_assertion_type !== undefined) methods.push('private_key_jwt');
  return methods;
}

/**
 * Authenticates the resource servers of `resource_servers[]` as OAuth clients:
 * `client_secret_basic` / `client_secret_post` against the SHA-256 of their secret (config
 * holds only the hash; compared in constant time), or `private_key_jwt` (RFC 7523) with a
 * single-use, short-lived assertion signed by a key of their JWKS. Built once per policy
 * generation: bad JWKS sources are ConfigErrors here, not at the first request.
 */
export function createResourceServerAuthenticator(servers: readonly ResourceServerConfig[], deps: ResourceServerAuthDeps): ResourceServerAuthenticator {
  const skew = deps.clockSkewSeconds ?? 30;
  const audiences: ReadonlySet<string> = new Set([deps.issuer, ...deps.endpointUrls]);
  const registered = new Map<string, Registered>();
  const problems: ConfigProblem[] = [];
  servers.forEach((config, i) => {
    const at = `/resource_servers/${i}`;
    if (registered.has(config.id)) problems.push({ path: `${at}/id`, message: `resource server '${config.id}' is listed twice` });
    if ((config.client_secret_sha256 === undefined) === (config.jwks === undefined)) {
      problems.push({ path: at, message: 'exactly one of client_secret_sha256 or jwks (private_key_jwt) is required' });
    }
    if (config.jwks?.discovery) problems.push({ path: `${at}/jwks/discovery`, message: 'a resource server has no discovery document here: give its JWKS as inline, file or uri' });
    let keys: JWTVerifyGetKey | undefined;
    if (config.jwks && !config.jwks.discovery) {
      try {
        keys = createKeySource(config.jwks, { issuer: config.id, baseDir: deps.baseDir, fetch: deps.fetch, configPath: `${at}/jwks` });
      } catch (err) {
        if (err instanceof ConfigError) problems.push(...err.problems);
        else throw err;
      }
    }
    registered.set(config.id, { config, secretHash: config.client_secret_sha256 ? Buffer.from(config.client_secret_sha256, 'hex') : undefined, keys });
  });
  if (problems.length > 0) throw new ConfigError(problems);

  function viaSecret(method: 'client_secret_basic' | 'client_secret_post', clientId: string, secret: string): ResourceServerConfig {
    const server = registered.get(clientId);
    const expected = server?.secretHash ?? NO_SECRET;
    // Hash first so the comparison is constant-time over equal lengths whatever was sent.
    const matches = timingSafeEqual(expected, sha256(secret));
    // Same words for an unknown id and a wrong secret: the answer does not confirm which ids exist.
    if (!server) throw failed(method, 'unknown_client', 'client authentication failed: unknown client or wrong secret');
    if (!server.secretHash) throw failed(method, 'method_not_allowed', 'this client authenticates with private_key_jwt, not a client secret');
    if (!matches) throw failed(method, 'bad_secret', 'client authentication failed: unknown client or wrong secret');
    return server.config;
  }

  function fromBasic(header: string, bodyClientId: string | undefined): ResourceServerConfig {
    const method = 'client_secret_basic';
    const match = /^basic +([A-Za-z0-9+/]+={0,2}) *$/i.exec(header);
    if (!match) throw failed(method, 'malformed_basic', 'malformed Basic credentials: send base64(client_id:client_secret)');
    const decoded = Buffer.from(match[1] as string, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon < 0) throw failed(method, 'malformed_basic', 'malformed Basic credentials: send base64(client_id:client_secret)');
    let clientId: string;
    let secret: string;
    try {
      // RFC 6749 §2.3.1: id and secret are form-urlencoded before they are joined.
      clientId = formDecode(decoded.slice(0, colon));
      secret = formDecode(decoded.slice(colon + 1));
    } catch {
      throw failed(method, 'malformed_basic', 'malformed Basic credentials: client_id and client_secret must be form-urlencoded');
    }
    if (clientId.length === 0 || secret.length === 0 || secret.length > MAX_SECRET_LENGTH) throw failed(method, 'malformed_basic', 'Basic credentials need a client_id and a client_secret');
    if (bodyClientId !== undefined && bodyClientId !== clientId) throw new LeashError('ERR_REQUEST_MALFORMED', 'client_id in the body does not match the Basic credentials');
    return viaSecret(method, clientId, secret);
  }

  function fromPost(body: FormBody): ResourceServerConfig {
    const method = 'client_secret_post';
    const clientId = single(body, 'client_id');
    const secret = single(body, 'client_secret');
    if (!clientId || !secret) throw failed(method, 'missing_credentials', 'client_secret_post needs both client_id and client_secret');
    if (secret.length > MAX_SECRET_LENGTH) throw failed(method, 'bad_secret', 'client authentication failed: unknown client or wrong secret');
    return viaSecret(method, clientId, secret);
  }

  const assertions = createClientAssertionVerifier({ audiences, clock: deps.clock, replay: deps.replay, clockSkewSeconds: skew, replayPrefix: 'rs-assertion', audienceHint: deps.issuer });

  async function fromAssertion(body: FormBody): Promise<ResourceServerConfig> {
    const { clientId } = await assertions.verify({ type: single(body, 'client_assertion_type'), assertion: single(body, 'client_assertion'), clientId: single(body, 'client_id') }, (id) => {
      const server = registered.get(id);
      if (!server) return undefined;
      return server.keys ? { keys: server.keys, algorithms: CLIENT_ASSERTION_ALGORITHMS } : { otherMethod: 'this client authenticates with a client secret, not private_key_jwt' };
    });
    return registered.get(clientId)!.config;
  }

  return {
    async authenticate(req) {
      const methods = attemptedClientAuth(req);
      if (methods.length > 1) throw new LeashError('ERR_REQUEST_MALFORMED', `use exactly one client authentication method (found ${methods.join(', ')})`);
      const body = formBody(req);
      switch (methods[0]) {
        case 'client_secret_basic':
          return fromBasic(req.get('authorization') as string, single(body, 'client_id'));
        case 'client_secret_post':
          return fromPost(body);
        case 'private_key_jwt':
          return fromAssertion(body);
        default:
          throw failed('none', 'no_credentials', 'client authentication required: client_secret_basic, client_secret_post or private_key_jwt');
      }
    },
  };
}

/** RFC 6749 §2.3.1 form-urlencoding, undone (`+` is a space). */
function formDecode(value: string): string {
  return decodeURIComponent(value.replace(/\+/g, ' '));
}

export type FormBody = Record<string, unknown>;

/** The parsed form body (urlencoded, `extended: false`), or an empty one. */
export function formBody(req: Request): FormBody {
  const body = req.body as unknown;
  return typeof body === 'object' && body !== null && !Array.isArray(body) ? (body as FormBody) : {};
}

/** A parameter sent once; a repeated one is refused (RFC 6749 §3.2). */
function single(body: FormBody, name: string): string | undefined {
  const value = body[name];
  if (value === undefined) return undefined;
  if (typeof value !== 'string') throw new LeashError('ERR_REQUEST_MALFORMED', `parameter '${name}' must be sent once`);
  return value;
}

/**
 * RFC 6749 §5.2 error response for an endpoint that authenticates clients: 401 carries a
 * `WWW-Authenticate: Basic` challenge when Basic was tried or nothing was (RFC 7235 needs a
 * challenge on 401). Never a stack or a backend message.
 */
export function sendOAuthError(res: Response, err: unknown): void {
  const { status, body } = toOAuthError(err);
  if (status === 401 && err instanceof LeashError && err.code === 'ERR_CLIENT_AUTH_FAILED') {
    const method = err.detail?.method;
    if (method === 'client_secret_basic' || method === 'none') res.set('WWW-Authenticate', 'Basic realm="leash"');
  }
  setRetryAfter(res, status);
  sendNoStoreJson(res, status, body);
}

/** Default body limit of the form endpoints: a token, an assertion and a few parameters. */
export const FORM_ENDPOINT_MAX_BODY_BYTES = 32 * 1024;

/**
 * The request side of an RFC 6749-style form endpoint (introspection, revocation):
 * `application/x-www-form-urlencoded` only, a small body, every parameter at most once
 * (RFC 6749 §3.2), and body-parser failures turned into `invalid_request`, never a 500.
 */
export function oauthFormParser(maxBodyBytes = FORM_ENDPOINT_MAX_BODY_BYTES): Array<RequestHandler | ErrorRequestHandler> {
  const parse = urlencoded({ extended: false, limit: maxBodyBytes, parameterLimit: 32, type: 'application/x-www-form-urlencoded' });
  const requireForm: RequestHandler = (req, res, next) => {
    if (!req.is('application/x-www-form-urlencoded')) {
      sendOAuthError(res, new LeashError('ERR_REQUEST_MALFORMED', 'send the parameters as an application/x-www-form-urlencoded body'));
      return;
    }
    next();
  };
  const once: RequestHandler = (req, res, next) => {
    const repeated = Object.entries(formBody(req)).find(([, v]) => typeof v !== 'string');
    if (repeated) {
      sendOAuthError(res, new LeashError('ERR_REQUEST_MALFORMED', `parameter '${repeated[0].slice(0, 64)}' must be sent once`));
      return;
    }
    next();
  };
  const parseErrors: ErrorRequestHandler = (err: { type?: unknown; status?: unknown }, _req, res, next) => {
    if (err.type === 'entity.too.large') return sendOAuthError(res, new LeashError('ERR_REQUEST_TOO_LARGE', `request body larger than ${maxBodyBytes} bytes`));
    if (typeof err.status === 'number' && err.status >= 400 && err.status < 500) {
      return sendOAuthError(res, new LeashError('ERR_REQUEST_MALFORMED', 'malformed form body: send UTF-8 application/x-www-form-urlencoded with at most 32 parameters'));
    }
    next(err);
  };
  return [requireForm, parse, parseErrors, once];
}

/** Any other method on a POST-only endpoint. */
export const methodNotAllowed: RequestHandler = (_req, res) => {
  res.set('Allow', 'POST');
  sendOAuthError(res, new LeashError('ERR_METHOD_NOT_ALLOWED', 'this endpoint takes POST'));
};
