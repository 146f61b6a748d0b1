import { createServer, type Server } from 'node:http';
import { exportJWK, generateKeyPair } from 'jose';
import Provider, { type Configuration, type KoaContextWithOIDC } from 'oidc-provider';

/**
 * A real OpenID Connect provider in-process (oidc-provider, the same library Leash's token
 * endpoint runs on) for the console's sign-in: authorization code with PKCE, one public
 * client, its login form (oidc-provider's development interactions: any password) and a
 * few people whose roles and groups land in the ID token (`leash` scope).
 */
export interface IdpPerson {
  readonly roles: readonly string[];
  readonly groups: readonly string[];
}

export interface TestIdp {
  readonly issuer: string;
  readonly clientId: string;
  readonly jwks: { keys: Record<string, unknown>[] };
  listen(): Promise<void>;
  close(): Promise<void>;
}

export async function createTestIdp(opts: { port: number; redirectUri: string; people: Readonly<Record<string, IdpPerson>>; clientId?: string }): Promise<TestIdp> {
  const issuer = `http://127.0.0.1:${opts.port}`;
  const clientId = opts.clientId ?? 'leash-console';
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  const kid = 'idp-key-1';
  const privateJwk = { ...(await exportJWK(privateKey)), kid, alg: 'ES256', use: 'sig' };
  const publicJwk = { ...(await exportJWK(publicKey)), kid, alg: 'ES256', use: 'sig' };
  const config: Configuration = {
    clients: [
      {
        client_id: clientId,
        token_endpoint_auth_method: 'none',
        redirect_uris: [opts.redirectUri],
        grant_types: ['authorization_code'],
        response_types: ['code'],
        id_token_signed_response_alg: 'ES256',
      },
    ],
    jwks: { keys: [privateJwk] },
    cookies: { keys: ['test-idp-cookie-key-0123456789abcdef'] },
    scopes: ['openid', 'leash'],
    claims: { openid: ['sub'], leash: ['roles', 'groups'] },
    // The roles and groups go into the ID token itself: the console reads nothing else.
    conformIdTokenClaims: false,
    pkce: { required: () => true },
    features: { devInteractions: { enabled: true } },
    findAccount: (_ctx: KoaContextWithOIDC, sub: string) => {
      const person = opts.people[sub];
      if (!person) return undefined;
      return { accountId: sub, claims: () => ({ sub, roles: [...person.roles], groups: [...person.groups] }) };
    },
    // A first-party client: no consent screen, the grant is made on the spot.
    loadExistingGrant: async (ctx: KoaContextWithOIDC) => {
      const existing = ctx.oidc.result?.consent?.grantId ?? ctx.oidc.session?.grantIdFor(ctx.oidc.client!.clientId);
      if (existing) return ctx.oidc.provider.Grant.find(existing);
      const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client!.clientId, accountId: ctx.oidc.session!.accountId! });
      grant.addOIDCScope('openid leash');
      await grant.save();
      return grant;
    },
    ttl: { IdToken: 3600, AccessToken: 600, AuthorizationCode: 60, Interaction: 600, Session: 3600, Grant: 3600 },
  };
  // Its development-only warnings (in-memory adapter, devInteractions) are what a test IdP is.
  const warn = console.warn;
  console.warn = (...args: unknown[]) => {
    if (!String(args[0]).startsWith('oidc-provider WARNING')) warn(...args);
  };
  let provider: Provider;
  try {
    provider = new Provider(issuer, config);
  } finally {
    console.warn = warn;
  }
  let server: Server | undefined;
  return {
    issuer,
    clientId,
    jwks: { keys: [publicJwk] },
    async listen() {
      const handler = provider.callback();
      server = createServer((req, res) => void handler(req, res));
      await new Promise<void>((resolve) => server!.listen(opts.port, '127.0.0.1', () => resolve()));
    },
    async close() {
      if (!server) return;
      server.closeAllConnections();
      await new Promise<void>((resolve) => server!.close(() => resolve()));
    },
  };
}
