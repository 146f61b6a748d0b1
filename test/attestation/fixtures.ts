import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { SignJWT, exportJWK, generateKeyPair, type CryptoKey, type JWK } from 'jose';
import type { JwksSourceConfig, TrustedIssuerConfig } from '../../src/config/schema.js';
import { epochSeconds, ManualClock } from '../../src/time/clock.js';

export const ISS = 'https://cluster.example.test';
export const AUD = 'leash';

export interface TestKey {
  readonly kid: string;
  readonly alg: 'RS256' | 'ES256';
  readonly privateKey: CryptoKey;
  readonly publicKey: CryptoKey;
  readonly publicJwk: JWK;
}

export async function makeKey(alg: 'RS256' | 'ES256', kid: string, opts: { withKid?: boolean } = {}): Promise<TestKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const jwk: JWK = { ...(await exportJWK(publicKey)), alg, use: 'sig' };
  if (opts.withKid !== false) jwk.kid = kid;
  return { kid, alg, privateKey, publicKey, publicJwk: jwk };
}

export interface SignOptions {
  readonly key: TestKey;
  /** Header members added or overridden (a value of undefined removes one). */
  readonly header?: Record<string, unknown>;
  readonly crit?: Record<string, boolean>;
}

/** Sign a payload as the key's issuer would. */
export async function sign(payload: Record<string, unknown>, { key, header = {}, crit }: SignOptions): Promise<string> {
  const protectedHeader: Record<string, unknown> = { alg: key.alg, kid: key.kid, typ: 'JWT', ...header };
  for (const [k, v] of Object.entries(protectedHeader)) if (v === undefined) delete protectedHeader[k];
  return new SignJWT(payload).setProtectedHeader(protectedHeader as { alg: string }).sign(key.privateKey, crit ? { crit } : undefined);
}

/** A payload with valid times relative to the clock; `claims` override (undefined removes). */
export function claims(clock: ManualClock, over: Record<string, unknown> = {}): Record<string, unknown> {
  const now = epochSeconds(clock);
  const payload: Record<string, unknown> = { iss: ISS, aud: [AUD], sub: 'workload', iat: now, nbf: now, exp: now + 600, ...over };
  for (const [k, v] of Object.entries(payload)) if (v === undefined) delete payload[k];
  return payload;
}

export const b64 = (value: unknown) => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');

/** Any trusted-issuer field, whatever the kind: attestor tests build configs directly, without the loader's per-kind check. */
export type IssuerFields = { [K in keyof TrustedIssuerConfig]?: TrustedIssuerConfig[K] };

/** A complete trusted-issuer config, defaults as the loader fills them. */
export function issuerConfig(over: Omit<IssuerFields, 'jwks'> & { jwks: Partial<JwksSourceConfig> }): TrustedIssuerConfig {
  return {
    name: 'cluster',
    kind: 'kubernetes',
    issuer: ISS,
    audience: AUD,
    algorithms: ['RS256', 'ES256'],
    max_token_age: 3600,
    clock_skew: 30,
    subject_claim: 'sub',
    claims: [],
    ...over,
    jwks: { timeout_ms: 2000, cooldown_ms: 30000, cache_max_age_ms: 600000, ...over.jwks },
  } as TrustedIssuerConfig;
}

/**
 * A real issuer metadata server on 127.0.0.1: serves a JWKS at `/jwks` and a discovery
 * document at any `<path>/.well-known/openid-configuration`, counts requests, and can be
 * told to fail, lie about its issuer, or stall.
 */
export class MetadataServer {
  jwks: { keys: JWK[] } = { keys: [] };
  jwksStatus = 200;
  discoveryStatus = 200;
  /** Overrides of the discovery document's members. */
  discoveryOverride: Record<string, unknown> = {};
  delayMs = 0;
  jwksHits = 0;
  discoveryHits = 0;
  private readonly timers = new Set<NodeJS.Timeout>();

  private constructor(
    private readonly server: Server,
    readonly url: string,
  ) {}

  static async start(): Promise<MetadataServer> {
    let self: MetadataServer | undefined;
    const server = createServer((req, res) => void self?.handle(req, res));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    const { port } = server.address() as AddressInfo;
    self = new MetadataServer(server, `http://127.0.0.1:${port}`);
    return self;
  }

  get jwksUri(): string {
    return `${this.url}/jwks`;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (this.delayMs > 0) {
      await new Promise<void>((r) => {
        const timer = setTimeout(() => {
          this.timers.delete(timer);
          r();
        }, this.delayMs);
        this.timers.add(timer);
      });
    }
    const path = (req.url ?? '/').split('?')[0] as string;
    if (path === '/jwks') {
      this.jwksHits++;
      return this.send(res, this.jwksStatus, this.jwks);
    }
    if (path.endsWith('/.well-known/openid-configuration')) {
      this.discoveryHits++;
      const issuer = `${this.url}${path.slice(0, -'/.well-known/openid-configuration'.length)}`;
      return this.send(res, this.discoveryStatus, { issuer, jwks_uri: this.jwksUri, ...this.discoveryOverride });
    }
    this.send(res, 404, { error: 'not_found' });
  }

  private send(res: ServerResponse, status: number, body: unknown): void {
    if (res.destroyed) return;
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  }

  async close(): Promise<void> {
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/** Await a rejection and return its `code` (fails the test when it resolves). */
export async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (err) {
    return String((err as { code?: unknown }).code ?? (err as Error).name);
  }
  throw new Error('expected a rejection, but it resolved');
}
