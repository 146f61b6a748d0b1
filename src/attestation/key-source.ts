import { readFileSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { createLocalJWKSet, createRemoteJWKSet, customFetch, type JSONWebKeySet, type JWTVerifyGetKey } from 'jose';
import { ConfigError, type ConfigProblem } from '../config/config-error.js';
import type { JwksSourceConfig } from '../config/schema.js';
import { LeashError, isLeashError } from '../errors/leash-error.js';
import { fetchJson, isLoopbackHttp, type FetchLike } from './fetch-json.js';

export interface KeySourceOptions {
  /** The issuer's exact `iss`; discovery fetches `<issuer>/.well-known/openid-configuration`. */
  readonly issuer: string;
  /** Folder a relative `file` is resolved against (the config file's folder). */
  readonly baseDir: string;
  /** Override of the global fetch (tests, proxies). */
  readonly fetch?: FetchLike | undefined;
  /** Where this JWKS sits in the config, for ConfigError paths (e.g. `/trusted_issuers/0/jwks`). */
  readonly configPath?: string | undefined;
}

const DEFAULTS = { timeout_ms: 2000, cooldown_ms: 30000, cache_max_age_ms: 600000 } as const;

/** JWK members that only private or symmetric keys carry: a verification JWKS must not hold them. */
const SECRET_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k', 'priv'] as const;

/**
 * Build the key lookup jose calls while verifying an issuer's token, from exactly one of
 * `inline`, `file`, `uri` or `discovery`. Local keys are loaded now (a bad file is a
 * ConfigError at startup); remote keys are fetched on first use, so startup never depends
 * on the network. The lookup throws LeashError: ERR_ATTESTATION_KEYS_UNAVAILABLE when keys
 * cannot be fetched, ERR_ATTESTATION_SIGNATURE when the fetched set has no key for the token.
 */
export function createKeySource(jwks: JwksSourceConfig, opts: KeySourceOptions): JWTVerifyGetKey {
  const at = opts.configPath ?? 'jwks';
  const given = (['inline', 'file', 'uri', 'discovery'] as const).filter((k) => (k === 'discovery' ? jwks.discovery === true : jwks[k] !== undefined));
  if (given.length !== 1) {
    throw new ConfigError([{ path: at, message: `exactly one of inline, file, uri, discovery is required (found ${given.length === 0 ? 'none' : given.join(', ')})` }]);
  }
  const timing = {
    timeoutDuration: jwks.timeout_ms ?? DEFAULTS.timeout_ms,
    cooldownDuration: jwks.cooldown_ms ?? DEFAULTS.cooldown_ms,
    cacheMaxAge: jwks.cache_max_age_ms ?? DEFAULTS.cache_max_age_ms,
  };

  if (jwks.inline !== undefined) return localLookup(jwks.inline, `${at}/inline`);
  if (jwks.file !== undefined) {
    const path = isAbsolute(jwks.file) ? jwks.file : resolve(opts.baseDir, jwks.file);
    let parsed: unknown;
    try {
      parsed = JSON.parse(readFileSync(path, 'utf8'));
    } catch (cause) {
      throw new ConfigError([{ path: `${at}/file`, message: `cannot read JWKS file '${path}': ${(cause as Error).message}` }]);
    }
    return localLookup(parsed, `${at}/file`);
  }
  if (jwks.uri !== undefined) {
    const url = metadataUrl(jwks.uri, `${at}/uri`, 'JWKS uri');
    return remoteLookup(url, timing, opts.fetch);
  }
  return discoveryLookup(opts, timing, at);
}

function localLookup(input: unknown, path: string): JWTVerifyGetKey {
  const problems = jwksProblems(input, path);
  if (problems.length > 0) throw new ConfigError(problems);
  let lookup: JWTVerifyGetKey;
  try {
    lookup = createLocalJWKSet(input as JSONWebKeySet);
  } catch (cause) {
    throw new ConfigError([{ path, message: `not a usable JWKS: ${(cause as Error).message}` }]);
  }
  return withErrorMapping(lookup);
}

/** Problems that make a JWKS unusable for verification: shape, private or symmetric keys. */
function jwksProblems(input: unknown, path: string): ConfigProblem[] {
  if (!isObject(input) || !Array.isArray(input.keys) || input.keys.length === 0) {
    return [{ path, message: 'must be a JWKS: an object with a non-empty "keys" array' }];
  }
  const problems: ConfigProblem[] = [];
  input.keys.forEach((key: unknown, i: number) => {
    if (!isObject(key) || typeof key.kty !== 'string') problems.push({ path: `${path}/keys/${i}`, message: 'must be a JWK with a "kty"' });
    else if (key.kty === 'oct') problems.push({ path: `${path}/keys/${i}`, message: 'symmetric keys are never accepted for attestation' });
    else if (SECRET_MEMBERS.some((m) => m in key)) problems.push({ path: `${path}/keys/${i}`, message: 'holds private key material: publish public keys only' });
  });
  return problems;
}

type Timing = { timeoutDuration: number; cooldownDuration: number; cacheMaxAge: number };

function remoteLookup(url: URL, timing: Timing, fetchImpl: FetchLike | undefined): JWTVerifyGetKey {
  // Our own fetch step, so every network failure is a LeashError with a reason (jose would
  // surface a bare TypeError) and the body is size-capped and shape-checked.
  const guardedFetch = async (href: string, init: { headers: Headers; signal: AbortSignal }): Promise<Response> => {
    const json = await fetchJson(href, { signal: init.signal, fetch: fetchImpl, headers: init.headers, what: 'JWKS' });
    // Shape only: oct keys are never selected (HMAC is never allowed) and jose refuses private ones.
    if (!isObject(json) || !Array.isArray(json.keys) || !json.keys.every(isObject)) {
      throw new LeashError('ERR_ATTESTATION_KEYS_UNAVAILABLE', "the issuer's JWKS could not be fetched; try again later", { url: href, reason: 'invalid_jwks' });
    }
    return new Response(JSON.stringify(json), { status: 200, headers: { 'content-type': 'application/json' } });
  };
  return withErrorMapping(createRemoteJWKSet(url, { ...timing, [customFetch]: guardedFetch }));
}

function discoveryLookup(opts: KeySourceOptions, timing: Timing, at: string): JWTVerifyGetKey {
  const issuerUrl = metadataUrl(opts.issuer, at.replace(/\/jwks$/, '') + '/issuer', 'issuer (with jwks.discovery)');
  const configUrl = `${opts.issuer.replace(/\/+$/, '')}/.well-known/openid-configuration`;
  let resolved: JWTVerifyGetKey | undefined;
  let pending: Promise<JWTVerifyGetKey> | undefined;

  const unavailable = (reason: string) => new LeashError('ERR_ATTESTATION_KEYS_UNAVAILABLE', "the issuer's discovery document is not usable; try again later", { url: configUrl, reason });

  async function discover(): Promise<JWTVerifyGetKey> {
    const doc = await fetchJson(configUrl, { signal: AbortSignal.timeout(timing.timeoutDuration), fetch: opts.fetch, what: 'discovery document' });
    if (!isObject(doc)) throw unavailable('not_an_object');
    // OIDC Discovery §4.3: the document must name exactly the issuer it was fetched for.
    if (doc.issuer !== opts.issuer) throw unavailable('issuer_mismatch');
    if (typeof doc.jwks_uri !== 'string') throw unavailable('jwks_uri_missing');
    let jwksUrl: URL;
    try {
      jwksUrl = new URL(doc.jwks_uri);
    } catch {
      throw unavailable('jwks_uri_invalid');
    }
    const allowed = jwksUrl.protocol === 'https:' || (isLoopbackHttp(issuerUrl) && jwksUrl.protocol === 'http:');
    if (!allowed) throw unavailable('jwks_uri_not_https');
    return remoteLookup(jwksUrl, timing, opts.fetch);
  }

  // Discovered once and kept; a failed discovery is not remembered, the next token retries.
  // Concurrent first uses share one fetch.
  const current = (): Promise<JWTVerifyGetKey> => {
    if (resolved) return Promise.resolve(resolved);
    pending ??= discover()
      .then((lookup) => (resolved = lookup))
      .finally(() => {
        pending = undefined;
      });
    return pending;
  };

  return async (header, token) => (await current())(header, token);
}

/** Parse a metadata URL from config: https, or plain http on loopback only. */
function metadataUrl(value: string, path: string, what: string): URL {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new ConfigError([{ path, message: `${what} must be an absolute URL` }]);
  }
  if (url.protocol !== 'https:' && !isLoopbackHttp(url)) {
    throw new ConfigError([{ path, message: `${what} must use https (plain http only on 127.0.0.1 or localhost)` }]);
  }
  return url;
}

/** jose's key-selection errors, translated to the attestation codes callers see. */
function withErrorMapping(lookup: JWTVerifyGetKey): JWTVerifyGetKey {
  return async (header, token) => {
    try {
      return await lookup(header, token);
    } catch (err) {
      throw mapKeyError(err);
    }
  };
}

function mapKeyError(err: unknown): unknown {
  if (isLeashError(err)) return err;
  const code = (err as { code?: unknown } | null)?.code;
  switch (code) {
    // Carries an async iterator over the candidates: the verifier tries each.
    case 'ERR_JWKS_MULTIPLE_MATCHING_KEYS':
      return err;
    case 'ERR_JWKS_NO_MATCHING_KEY':
      return new LeashError('ERR_ATTESTATION_SIGNATURE', "no key of the issuer matches the token's kid and alg", { reason: 'no_matching_key' }, { cause: err });
    case 'ERR_JWKS_TIMEOUT':
      return new LeashError('ERR_ATTESTATION_KEYS_UNAVAILABLE', "the issuer's JWKS could not be fetched; try again later", { reason: 'timeout' }, { cause: err });
    case 'ERR_JOSE_NOT_SUPPORTED':
      return new LeashError('ERR_ATTESTATION_ALG_NOT_ALLOWED', 'the token is signed with an algorithm this issuer does not use', { reason: 'alg_not_supported' }, { cause: err });
    default:
      return new LeashError('ERR_ATTESTATION_SIGNATURE', "the issuer's key for this token cannot be used", { reason: typeof code === 'string' ? code : 'key_unusable' }, { cause: err });
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
