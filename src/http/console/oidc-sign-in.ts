import { createHash, randomBytes } from 'node:crypto';

/**
 * The console's side of OpenID Connect sign-in: authorization code with PKCE (S256), as a
 * public client (no secret in config). The provider is the admin issuer people already get
 * admin tokens from; its endpoints come from its discovery document. The ID token is then
 * verified by the admin authenticator, exactly as a bearer admin token is (sessions.ts).
 */

export interface ProviderEndpoints {
  readonly authorization_endpoint: string;
  readonly token_endpoint: string;
}

/** What one sign-in attempt must remember until the provider sends the browser back. */
export interface SignInStart {
  readonly state: string;
  readonly nonce: string;
  readonly verifier: string;
  /** Where to send the browser to sign in. */
  readonly url: string;
}

const random = () => randomBytes(32).toString('base64url');

export class SignInError extends Error {
  constructor(
    readonly reason: 'discovery' | 'token_endpoint',
    message: string,
  ) {
    super(message);
  }
}

const httpsOrLoopback = (u: string): boolean => {
  try {
    const url = new URL(u);
    return url.protocol === 'https:' || (url.protocol === 'http:' && ['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname));
  } catch {
    return false;
  }
};

export class OidcSignIn {
  #endpoints: { value: ProviderEndpoints; until: number } | undefined;

  constructor(
    private readonly opts: {
      readonly issuer: string;
      readonly clientId: string;
      readonly scope: string;
      readonly redirectUri: string;
      readonly now: () => number;
      readonly timeoutMs?: number;
    },
  ) {}

  /** The provider's endpoints (discovery, cached ten minutes); its `issuer` must be the one configured. */
  async endpoints(): Promise<ProviderEndpoints> {
    const now = this.opts.now();
    if (this.#endpoints && this.#endpoints.until > now) return this.#endpoints.value;
    let doc: Record<string, unknown>;
    try {
      const res = await fetch(`${this.opts.issuer.replace(/\/$/, '')}/.well-known/openid-configuration`, { signal: AbortSignal.timeout(this.opts.timeoutMs ?? 5000), redirect: 'error' });
      if (!res.ok) throw new Error(`status ${res.status}`);
      doc = (await res.json()) as Record<string, unknown>;
    } catch {
      throw new SignInError('discovery', 'the identity provider cannot be reached; retry later');
    }
    const { issuer, authorization_endpoint, token_endpoint, code_challenge_methods_supported: pkce } = doc;
    if (issuer !== this.opts.issuer) throw new SignInError('discovery', "the identity provider's discovery document names another issuer");
    if (typeof authorization_endpoint !== 'string' || typeof token_endpoint !== 'string' || !httpsOrLoopback(authorization_endpoint) || !httpsOrLoopback(token_endpoint)) {
      throw new SignInError('discovery', "the identity provider's discovery document has no usable endpoints");
    }
    if (Array.isArray(pkce) && !pkce.includes('S256')) throw new SignInError('discovery', 'the identity provider does not support PKCE with S256');
    const value = { authorization_endpoint, token_endpoint };
    this.#endpoints = { value, until: now + 600_000 };
    return value;
  }

  /** A new sign-in: fresh state, nonce and PKCE verifier, and the provider URL to send the browser to. */
  async start(): Promise<SignInStart> {
    const { authorization_endpoint } = await this.endpoints();
    const state = random();
    const nonce = random();
    const verifier = random();
    const url = new URL(authorization_endpoint);
    url.search = new URLSearchParams({
      response_type: 'code',
      client_id: this.opts.clientId,
      redirect_uri: this.opts.redirectUri,
      scope: this.opts.scope,
      state,
      nonce,
      code_challenge: createHash('sha256').update(verifier).digest('base64url'),
      code_challenge_method: 'S256',
    }).toString();
    return { state, nonce, verifier, url: url.toString() };
  }

  /** Redeems the code at the token endpoint; returns the ID token (verified by the caller). */
  async redeem(code: string, verifier: string): Promise<string> {
    const { token_endpoint } = await this.endpoints();
    let body: Record<string, unknown>;
    let status: number;
    try {
      const res = await fetch(token_endpoint, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
        body: new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: this.opts.redirectUri, client_id: this.opts.clientId, code_verifier: verifier }),
        signal: AbortSignal.timeout(this.opts.timeoutMs ?? 5000),
        redirect: 'error',
      });
      status = res.status;
      body = (await res.json()) as Record<string, unknown>;
    } catch {
      throw new SignInError('token_endpoint', 'the identity provider cannot be reached; retry later');
    }
    // The provider's own error text is not shown: only that the code was refused.
    if (status !== 200 || typeof body.id_token !== 'string') throw new SignInError('token_endpoint', 'the identity provider did not accept the sign-in; sign in again');
    return body.id_token;
  }
}
