import { readFile } from 'node:fs/promises';
import { AWS_ATTESTATION_TOKEN_TYPE, awsAttestation, type AwsAttestationOptions } from './aws-attestation.js';
import { discoverTokenEndpoint, isHttpUrl, readJson } from './discovery.js';
import { decodeJwt } from 'jose';
import { systemClock, type Clock } from './clock.js';
import { createDpopKey, type DpopKey } from './dpop-key.js';
import { LeashExchangeError } from './errors.js';

const TOKEN_EXCHANGE_GRANT = 'urn:ietf:params:oauth:grant-type:token-exchange';
const TOKEN_TYPE_JWT = 'urn:ietf:params:oauth:token-type:jwt';
/** Entries past this count trigger a sweep of expired tokens. */
const CACHE_SWEEP_AT = 256;

/**
 * Where the workload attestation comes from: a file (re-read every exchange), a function,
 * or (on AWS) a GetCallerIdentity request signed with the workload's AWS credentials for
 * every exchange.
 */
export type AttestationSource = { readonly file: string } | { readonly token: () => string | Promise<string> } | { readonly aws: AwsAttestationOptions };

/** The attestation to present now (a file is read every time: the kubelet rotates projected tokens). */
export async function readAttestation(source: AttestationSource): Promise<string> {
  if ('aws' in source) return awsAttestation(source.aws);
  const token = 'file' in source ? (await readFile(source.file, 'utf8')).trim() : (await source.token()).trim();
  if (token === '') {
    throw new Error('file' in source ? `attestation file '${source.file}' is empty` : 'the attestation function returned an empty token');
  }
  return token;
}

/** The RFC 8693 `subject_token_type` of an attestation source. */
export function attestationTokenType(source: AttestationSource): string {
  return 'aws' in source ? AWS_ATTESTATION_TOKEN_TYPE : TOKEN_TYPE_JWT;
}

export interface LeashPluginClientOptions {
  /** Leash base URL, the `iss` of its tokens, e.g. `https://leash.example.com`. */
  readonly issuer: string;
  /** The plugin id (`client_id`). */
  readonly clientId: string;
  readonly attestation: AttestationSource;
  /** `true`: generate an ES256 DPoP key for this client; or pass one. Default off. */
  readonly dpop?: boolean | DpopKey;
  readonly fetch?: typeof fetch;
  /** Fetch a new token this long before the cached one expires. Default 30. */
  readonly refreshSkewSeconds?: number;
  readonly clock?: Clock;
}

export interface GetTokenRequest {
  /** The API: sent as `resource` (RFC 8707) when it is an http(s) URL, else as `audience`. */
  readonly audience: string;
  readonly scope?: readonly string[];
  /** The task id the orchestrator opened. */
  readonly task: string;
  /** Requested lifetime in seconds (`expires_in`); the broker may shorten it. Not part of the cache key. */
  readonly ttl?: number;
}

/** One uncached exchange: a request that is good once (a per-call credential, an approval being polled). */
export interface ExchangeOnceRequest extends GetTokenRequest {
  /** RFC 9396 `authorization_details`, sent as JSON. */
  readonly authorizationDetails?: readonly object[];
  /** A pending approval to poll or redeem (`approval_id`). */
  readonly approvalId?: string;
  /** Shown to approvers (`justification`). */
  readonly justification?: string;
}

export interface LeashToken {
  readonly accessToken: string;
  readonly tokenType: 'Bearer' | 'DPoP';
  /** Milliseconds since the epoch. */
  readonly expiresAt: number;
  readonly scope: readonly string[];
  /** RFC 9396 §7: the authorization details the token was issued for, when it names any. */
  readonly authorizationDetails?: readonly object[];
}

interface CachedToken {
  readonly token: LeashToken;
  /** When to stop handing it out (ms): `expiresAt` minus the refresh skew. */
  readonly refreshAt: number;
}

/**
 * The plugin side of Leash: exchanges the workload attestation for short-lived tokens
 * (RFC 8693), caches them per (audience, scopes, task) until shortly before they expire,
 * and builds the Authorization (and DPoP) headers for calling the API.
 */
export class LeashPluginClient {
  private readonly issuer: string;
  private readonly fetchFn: typeof fetch;
  private readonly clock: Clock;
  private readonly refreshSkewMs: number;
  private readonly cache = new Map<string, CachedToken>();
  private readonly inFlight = new Map<string, Promise<LeashToken>>();
  private tokenEndpoint: Promise<string> | undefined;
  private dpopKey: Promise<DpopKey> | undefined;

  constructor(private readonly opts: LeashPluginClientOptions) {
    if (!opts.issuer || !opts.clientId) throw new TypeError('LeashPluginClient: issuer and clientId are required');
    if (!('file' in opts.attestation) && !('token' in opts.attestation) && !('aws' in opts.attestation)) {
      throw new TypeError('LeashPluginClient: attestation must be { file }, { token } or { aws }');
    }
    this.issuer = opts.issuer.replace(/\/+$/, '');
    this.fetchFn = opts.fetch ?? globalThis.fetch;
    this.clock = opts.clock ?? systemClock;
    this.refreshSkewMs = (opts.refreshSkewSeconds ?? 30) * 1000;
    if (opts.dpop === true) this.dpopKey = createDpopKey('ES256', { clock: this.clock });
    else if (opts.dpop) this.dpopKey = Promise.resolve(opts.dpop);
  }

  /** A token for this audience, scopes and task: from the cache, or a new exchange. */
  async getToken(req: GetTokenRequest): Promise<LeashToken> {
    if (!req.audience || !req.task) throw new TypeError('getToken: audience and task are required');
    const scopes = [...new Set(req.scope ?? [])].sort();
    const key = JSON.stringify([req.audience, scopes, req.task]);
    const cached = this.cache.get(key);
    if (cached && this.clock.now() < cached.refreshAt) return cached.token;
    const pending = this.inFlight.get(key);
    if (pending) return pending;
    const exchange = this.exchange(req, scopes)
      .then((token) => {
        this.remember(key, token);
        return token;
      })
      .finally(() => this.inFlight.delete(key));
    this.inFlight.set(key, exchange);
    return exchange;
  }

  /**
   * One exchange, never cached nor shared with a concurrent call: for per-call credentials
   * (`authorizationDetails`) and approvals. `authorization_pending` / `slow_down` are thrown
   * as LeashExchangeError with `approvalId` and `interval`.
   */
  async exchangeOnce(req: ExchangeOnceRequest): Promise<LeashToken> {
    if (!req.audience || !req.task) throw new TypeError('exchangeOnce: audience and task are required');
    return this.exchange(req, [...new Set(req.scope ?? [])].sort());
  }

  /**
   * Headers for calling the resource server with `token`: `authorization` with the token's
   * scheme and, for a DPoP-bound token, a fresh `dpop` proof bound to the token (`ath`).
   */
  async authorizationHeaders(token: LeashToken, req: { method: string; url: string }): Promise<{ authorization: string; dpop?: string }> {
    if (token.tokenType !== 'DPoP') return { authorization: `Bearer ${token.accessToken}` };
    if (!this.dpopKey) throw new TypeError('authorizationHeaders: a DPoP token needs the client to have a DPoP key');
    const key = await this.dpopKey;
    const proof = await key.proof({ method: req.method, url: req.url, accessToken: token.accessToken });
    return { authorization: `DPoP ${token.accessToken}`, dpop: proof };
  }

  /** Forgets every cached token (e.g. after the API answered 401 for one). */
  clearCache(): void {
    this.cache.clear();
  }

  private remember(key: string, token: LeashToken): void {
    const now = this.clock.now();
    // A token shorter-lived than twice the skew is still reused for half its life.
    const skew = Math.min(this.refreshSkewMs, (token.expiresAt - now) / 2);
    if (this.cache.size >= CACHE_SWEEP_AT) {
      for (const [k, v] of this.cache) if (v.refreshAt <= now) this.cache.delete(k);
    }
    this.cache.set(key, { token, refreshAt: token.expiresAt - skew });
  }

  private async exchange(req: ExchangeOnceRequest, scopes: readonly string[]): Promise<LeashToken> {
    const endpoint = await this.discoverTokenEndpoint();
    const form = new URLSearchParams({
      grant_type: TOKEN_EXCHANGE_GRANT,
      client_id: this.opts.clientId,
      subject_token: await this.readAttestation(),
      subject_token_type: attestationTokenType(this.opts.attestation),
    });
    form.set(isHttpUrl(req.audience) ? 'resource' : 'audience', req.audience);
    if (scopes.length > 0) form.set('scope', scopes.join(' '));
    form.set('task', req.task);
    if (req.ttl !== undefined) form.set('expires_in', String(req.ttl));
    if (req.authorizationDetails !== undefined) form.set('authorization_details', JSON.stringify(req.authorizationDetails));
    if (req.approvalId !== undefined) form.set('approval_id', req.approvalId);
    if (req.justification !== undefined) form.set('justification', req.justification);

    let res = await this.post(endpoint, form, undefined);
    // RFC 9449 §8: the server may ask for a nonce once; retry with it.
    const nonce = res.headers.get('dpop-nonce');
    if (res.status === 400 && nonce && this.dpopKey) {
      const body = await readJson(res);
      if (body?.error !== 'use_dpop_nonce') throw oauthError(body, res.status);
      res = await this.post(endpoint, form, nonce);
    }
    const body = await readJson(res);
    if (!res.ok) throw oauthError(body, res.status);
    return this.toToken(body, scopes, res.status);
  }

  private async post(endpoint: string, form: URLSearchParams, nonce: string | undefined): Promise<Response> {
    const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' };
    if (this.dpopKey) {
      const key = await this.dpopKey;
      headers.dpop = await key.proof({ method: 'POST', url: endpoint, nonce });
    }
    try {
      return await this.fetchFn(endpoint, { method: 'POST', headers, body: form.toString() });
    } catch (err) {
      throw new LeashExchangeError('network_error', `could not reach the token endpoint ${endpoint}`, 0, { cause: err });
    }
  }

  private toToken(body: Record<string, unknown> | undefined, requested: readonly string[], status: number): LeashToken {
    const accessToken = body?.access_token;
    const tokenType = typeof body?.token_type === 'string' ? body.token_type.toLowerCase() : undefined;
    if (typeof accessToken !== 'string' || accessToken === '' || (tokenType !== 'bearer' && tokenType !== 'dpop')) {
      throw new LeashExchangeError('invalid_response', 'the token endpoint answered without access_token or a known token_type', status);
    }
    const now = this.clock.now();
    let expiresAt: number;
    if (typeof body?.expires_in === 'number' && body.expires_in > 0) {
      expiresAt = now + body.expires_in * 1000;
    } else {
      // expires_in is only RECOMMENDED (RFC 6749 §5.1); fall back to the JWT's own exp.
      let exp: number | undefined;
      try {
        exp = decodeJwt(accessToken).exp;
      } catch {
        exp = undefined;
      }
      expiresAt = exp !== undefined ? exp * 1000 : now;
    }
    const scope = typeof body?.scope === 'string' ? body.scope.split(' ').filter((s) => s !== '') : [...requested];
    const details = Array.isArray(body?.authorization_details) ? (body.authorization_details as object[]) : undefined;
    return { accessToken, tokenType: tokenType === 'dpop' ? 'DPoP' : 'Bearer', expiresAt, scope, ...(details ? { authorizationDetails: details } : {}) };
  }

  private readAttestation(): Promise<string> {
    return readAttestation(this.opts.attestation);
  }

  private discoverTokenEndpoint(): Promise<string> {
    if (!this.tokenEndpoint) {
      this.tokenEndpoint = this.discover();
      // A failed discovery is retried on the next call rather than cached.
      this.tokenEndpoint.catch(() => {
        this.tokenEndpoint = undefined;
      });
    }
    return this.tokenEndpoint;
  }

  private discover(): Promise<string> {
    return discoverTokenEndpoint(this.issuer, this.fetchFn);
  }
}

function oauthError(body: Record<string, unknown> | undefined, status: number): LeashExchangeError {
  if (typeof body?.error === 'string') {
    return new LeashExchangeError(body.error, typeof body.error_description === 'string' ? body.error_description : undefined, status, {
      ...(typeof body.approval_id === 'string' ? { approvalId: body.approval_id } : {}),
      ...(typeof body.interval === 'number' ? { interval: body.interval } : {}),
    });
  }
  return new LeashExchangeError('invalid_response', `the token endpoint answered HTTP ${status} without an OAuth error`, status);
}
