import { describe, it, expect, beforeAll, afterAll } from '@jest/globals';
import express from 'express';
import { randomBytes } from 'node:crypto';
import {
  createDpopKey,
  createLeashVerifier,
  LeashPluginClient,
  protectedResourceHandler,
  protectedResourceMetadata,
  requireLeashToken,
  resourceMetadataUrl,
  type DpopKey,
  type LeashVerifier,
} from '../../src/client/index.js';
import type { KeyManager } from '../../src/keys/key-manager.js';
import { signJwt } from '../../src/keys/jws.js';
import { systemClock } from '../../src/time/clock.js';
import { listen, startIssuer, tempKeys, type TestIssuer } from './fixtures.js';

const AUD = 'https://api.example.com';
let keys: KeyManager;
let otherKeys: KeyManager;
const cleanups: Array<() => void | Promise<void>> = [];
let issuer: TestIssuer;
let api: string;
let proxied: string;
let verifier: LeashVerifier;
let dpopKey: DpopKey;

function claims(extra: Record<string, unknown> = {}): Record<string, unknown> {
  const now = Math.floor(Date.now() / 1000);
  return {
    iss: issuer.url,
    sub: 'search-plugin',
    aud: AUD,
    iat: now,
    nbf: now,
    exp: now + 300,
    jti: randomBytes(8).toString('hex'),
    scope: 'items:read items:write',
    client_id: 'search-plugin',
    plugin: 'search-plugin',
    task: 'task-1',
    workload: { issuer: 'https://k8s.example', sub: 'system:serviceaccount:ai:search' },
    ...extra,
  };
}
const mint = (extra: Record<string, unknown> = {}, header: Record<string, unknown> = { typ: 'at+jwt' }, k: KeyManager = keys) => signJwt(k.current(), header, claims(extra));

beforeAll(async () => {
  const a = await tempKeys(systemClock, 'ES256');
  const b = await tempKeys(systemClock, 'ES256');
  keys = a.keys;
  otherKeys = b.keys;
  cleanups.push(a.cleanup, b.cleanup);
  issuer = await startIssuer({ keys, clock: systemClock });
  cleanups.push(() => issuer.close());
  dpopKey = await createDpopKey('ES256');

  verifier = createLeashVerifier({ issuer: issuer.url, audience: AUD, requiredScopes: ['items:read'] });
  const app = express();
  app.get('/items', requireLeashToken(verifier), (req, res) => {
    res.json({ principal: req.leash, sameInLocals: res.locals.leash === req.leash });
  });
  app.post('/items', requireLeashToken(verifier, { requiredScopes: ['items:delete'] }), (_req, res) => {
    res.json({ ok: true });
  });
  // The same API publishing RFC 9728 metadata: every challenge names it.
  app.use(protectedResourceHandler({ resource: `${AUD}/v2`, authorizationServer: 'https://leash.example.com', scopesSupported: ['items:read'] }));
  app.all('/v2/items', requireLeashToken(verifier, { requiredScopes: ['items:delete'], resourceMetadataUrl: resourceMetadataUrl(`${AUD}/v2`) }), (_req, res) => {
    res.json({ ok: true });
  });
  const srv = await listen(app);
  api = srv.url;
  cleanups.push(srv.close);

  // The same API "behind a proxy": clients call https://api.example.com/v1/..., the app sees /items.
  const behind = express();
  behind.get('/items', requireLeashToken(verifier, { publicUrl: 'https://api.example.com/v1' }), (req, res) => {
    res.json({ jkt: req.leash?.jkt });
  });
  const srv2 = await listen(behind);
  proxied = srv2.url;
  cleanups.push(srv2.close);
});
afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
});

interface Answer {
  status: number;
  body: Record<string, unknown>;
  challenge: string | null;
}
async function call(path: string, headers: Record<string, string>, method = 'GET', base = api): Promise<Answer> {
  const res = await fetch(`${base}${path}`, { method, headers });
  return { status: res.status, body: (await res.json()) as Record<string, unknown>, challenge: res.headers.get('www-authenticate') };
}
const bearer = (t: string) => ({ authorization: `Bearer ${t}` });
async function dpopHeaders(token: string, url: string, key: DpopKey = dpopKey, method = 'GET') {
  return { authorization: `DPoP ${token}`, dpop: await key.proof({ method, url, accessToken: token }) };
}

describe('verifier + middleware: bearer tokens', () => {
  it('accepts a good bearer token and sets req.leash', async () => {
    const r = await call('/items?page=2', bearer(await mint()));
    expect(r.status).toBe(200);
    expect(r.body.principal).toMatchObject({
      plugin: 'search-plugin',
      sub: 'search-plugin',
      task: 'task-1',
      scopes: ['items:read', 'items:write'],
      workload: { issuer: 'https://k8s.example', sub: 'system:serviceaccount:ai:search' },
    });
    expect(r.body.principal).not.toHaveProperty('jkt');
    expect(r.body.sameInLocals).toBe(true);
  });

  const refused: Array<[string, () => Promise<Record<string, string>>, number, string, string]> = [
    ['wrong audience', async () => bearer(await mint({ aud: 'https://other.example.com' })), 401, 'invalid_token', 'another audience'],
    ['expired', async () => bearer(await mint({ exp: Math.floor(Date.now() / 1000) - 120 })), 401, 'invalid_token', 'expired'],
    ['not yet valid', async () => bearer(await mint({ nbf: Math.floor(Date.now() / 1000) + 600 })), 401, 'invalid_token', 'not valid yet'],
    ['another issuer', async () => bearer(await mint({ iss: 'https://evil.example.com' })), 401, 'invalid_token', 'another issuer'],
    ['typ JWT instead of at+jwt', async () => bearer(await mint({}, { typ: 'JWT' })), 401, 'invalid_token', 'at+jwt'],
    ['no typ', async () => bearer(await mint({}, {})), 401, 'invalid_token', 'at+jwt'],
    ['no task claim', async () => bearer(await mint({ task: undefined })), 401, 'invalid_token', "'task'"],
    ['signed by a key Leash does not publish', async () => bearer(await mint({}, { typ: 'at+jwt' }, otherKeys)), 401, 'invalid_token', 'does not publish'],
    ['missing the route-wide scope', async () => bearer(await mint({ scope: 'items:write' })), 403, 'insufficient_scope', 'items:read'],
    ['malformed credentials', async () => ({ authorization: 'Bearer a b' }), 400, 'invalid_request', 'malformed'],
    ['unbound token sent with the DPoP scheme', async () => dpopHeaders(await mint(), `${api}/items`), 401, 'invalid_token', 'not DPoP-bound'],
  ];

  it.each(refused)('refuses: %s', async (_name, headers, status, error, fragment) => {
    const r = await call('/items', await headers());
    expect(r.status).toBe(status);
    expect(r.body.error).toBe(error);
    expect(String(r.body.error_description)).toContain(fragment);
    expect(r.challenge).toContain(`error="${error}"`);
    expect(r.body).not.toHaveProperty('principal');
  });

  it('answers 403 insufficient_scope with the needed scopes in the challenge', async () => {
    const r = await call('/items', bearer(await mint()), 'POST');
    expect(r.status).toBe(403);
    expect(r.body).toEqual({ error: 'insufficient_scope', error_description: 'the token lacks scope items:delete' });
    expect(r.challenge).toBe('Bearer error="insufficient_scope", error_description="the token lacks scope items:delete", scope="items:read items:delete"');
  });

  it.each([
    ['no Authorization header', {}],
    ['an unsupported scheme', { authorization: 'Basic dXNlcjpwYXNz' }],
  ])('answers 401 with both challenges and no error code for %s (RFC 6750 §3.1)', async (_n, headers: Record<string, string>) => {
    const r = await call('/items', headers);
    expect(r.status).toBe(401);
    expect(r.body.error).toBe('invalid_token');
    expect(r.challenge).toBe('Bearer, DPoP algs="ES256 EdDSA Ed25519"');
  });

  it('never echoes the token in the answer', async () => {
    const token = await mint({ aud: 'x' });
    const r = await call('/items', bearer(token));
    expect(JSON.stringify(r.body) + r.challenge).not.toContain(token);
  });
});

describe('middleware: RFC 9728 protected resource metadata', () => {
  const META = 'https://api.example.com/.well-known/oauth-protected-resource/v2';

  it('derives the metadata URL by inserting the well-known suffix before the path (RFC 9728 §3.1)', () => {
    expect(resourceMetadataUrl('https://api.example.com/v2')).toBe(META);
    expect(resourceMetadataUrl('https://api.example.com')).toBe('https://api.example.com/.well-known/oauth-protected-resource');
    expect(resourceMetadataUrl('https://api.example.com/')).toBe('https://api.example.com/.well-known/oauth-protected-resource');
    expect(resourceMetadataUrl('http://127.0.0.1:8080/mcp')).toBe('http://127.0.0.1:8080/.well-known/oauth-protected-resource/mcp');
    for (const bad of ['http://api.example.com/v2', 'https://api.example.com/v2#frag', 'api.example.com']) expect(() => resourceMetadataUrl(bad)).toThrow(TypeError);
  });

  it('serves the document with the required resource and only true members', async () => {
    const res = await fetch(`${api}/.well-known/oauth-protected-resource/v2`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('application/json');
    expect(await res.json()).toEqual({ resource: `${AUD}/v2`, authorization_servers: ['https://leash.example.com'], bearer_methods_supported: ['header'], scopes_supported: ['items:read'] });
    expect(protectedResourceMetadata({ resource: `${AUD}/v2`, authorizationServer: 'https://leash.example.com', dpopRequired: true, dpopAlgorithms: ['ES256'] })).toMatchObject({
      dpop_bound_access_tokens_required: true,
      dpop_signing_alg_values_supported: ['ES256'],
    });
    expect((await fetch(`${api}/.well-known/oauth-protected-resource/v2`, { method: 'POST' })).status).toBe(405);
    expect((await fetch(`${api}/.well-known/oauth-protected-resource/v3`)).status).toBe(404);
  });

  it('names resource_metadata in the 401 without credentials, the 401 for a bad token and the 403 insufficient_scope', async () => {
    const none = await call('/v2/items', {});
    expect(none.status).toBe(401);
    expect(none.challenge).toBe(`Bearer resource_metadata="${META}", DPoP algs="ES256 EdDSA Ed25519", resource_metadata="${META}"`);
    const bad = await call('/v2/items', bearer(await mint({ aud: 'https://other.example.com' })));
    expect(bad.challenge).toBe(`Bearer error="invalid_token", error_description="the token is for another audience", resource_metadata="${META}"`);
    const scope = await call('/v2/items', bearer(await mint()));
    expect(scope.status).toBe(403);
    expect(scope.challenge).toBe(`Bearer error="insufficient_scope", error_description="the token lacks scope items:delete", scope="items:read items:delete", resource_metadata="${META}"`);
  });
});

describe('verifier + middleware: DPoP-bound tokens', () => {
  const bound = () => mint({ cnf: { jkt: dpopKey.jkt } });

  it('accepts a bound token with a good proof (query string ignored)', async () => {
    const token = await bound();
    const r = await call('/items?page=2', await dpopHeaders(token, `${api}/items?page=2`));
    expect(r.status).toBe(200);
    expect((r.body.principal as { jkt: string }).jkt).toBe(dpopKey.jkt);
  });

  it('refuses a bound token without a proof', async () => {
    const r = await call('/items', { authorization: `DPoP ${await bound()}` });
    expect(r.status).toBe(401);
    expect(r.body.error).toBe('invalid_dpop_proof');
    expect(r.challenge).toMatch(/^DPoP error="invalid_dpop_proof", .*algs="ES256 EdDSA Ed25519"$/);
  });

  it('refuses a proof made by another key', async () => {
    const other = await createDpopKey('ES256');
    const token = await bound();
    const r = await call('/items', await dpopHeaders(token, `${api}/items`, other));
    expect(r.status).toBe(401);
    expect(r.body).toEqual({ error: 'invalid_token', error_description: 'the DPoP proof is signed by a key the token is not bound to' });
    expect(r.challenge).toContain('DPoP error="invalid_token"');
  });

  it('refuses a bound token presented as Bearer', async () => {
    const r = await call('/items', bearer(await bound()));
    expect(r.status).toBe(401);
    expect(r.body.error).toBe('invalid_token');
    expect(String(r.body.error_description)).toContain('DPoP-bound');
    expect(r.challenge).toContain('DPoP error="invalid_token"');
  });

  it('refuses a proof for another URL, another method, or another token', async () => {
    const token = await bound();
    const wrongUrl = await call('/items', await dpopHeaders(token, `${api}/other`));
    expect(wrongUrl.body.error).toBe('invalid_dpop_proof');
    expect(String(wrongUrl.body.error_description)).toContain('htu');
    const wrongMethod = await call('/items', await dpopHeaders(token, `${api}/items`, dpopKey, 'POST'));
    expect(String(wrongMethod.body.error_description)).toContain('htm');
    const otherToken = await bound();
    const h = await dpopHeaders(otherToken, `${api}/items`);
    const wrongAth = await call('/items', { authorization: `DPoP ${token}`, dpop: h.dpop });
    expect(String(wrongAth.body.error_description)).toContain('ath');
  });

  it('refuses a replayed proof', async () => {
    const token = await bound();
    const h = await dpopHeaders(token, `${api}/items`);
    expect((await call('/items', h)).status).toBe(200);
    const again = await call('/items', h);
    expect(again.status).toBe(401);
    expect(again.body.error).toBe('invalid_dpop_proof');
    expect(String(again.body.error_description)).toContain('already used');
  });

  it('checks htu against publicUrl behind a proxy', async () => {
    const token = await bound();
    const good = await call('/items', await dpopHeaders(token, 'https://api.example.com/v1/items'), 'GET', proxied);
    expect(good.status).toBe(200);
    expect(good.body.jkt).toBe(dpopKey.jkt);
    const internal = await call('/items', await dpopHeaders(token, `${proxied}/items`), 'GET', proxied);
    expect(internal.status).toBe(401);
  });
});

describe('verifier: keys and end to end', () => {
  it('answers 503 temporarily_unavailable when the JWKS cannot be fetched', async () => {
    const v = createLeashVerifier({ issuer: issuer.url, audience: AUD, jwksUri: 'http://127.0.0.1:1/jwks' });
    await expect(v.verify({ authorization: `Bearer ${await mint()}`, method: 'GET', url: `${AUD}/x` })).rejects.toMatchObject({
      error: 'temporarily_unavailable',
      status: 503,
    });
  });

  it('uses an explicit jwksUri', async () => {
    const v = createLeashVerifier({ issuer: issuer.url, audience: AUD, jwksUri: `${issuer.url}/jwks` });
    await expect(v.verify({ authorization: `Bearer ${await mint()}`, method: 'GET', url: `${AUD}/x` })).resolves.toMatchObject({ task: 'task-1' });
  });

  it('plugin client -> Leash-style token endpoint -> resource server, with DPoP', async () => {
    const plugin = new LeashPluginClient({ issuer: issuer.url, clientId: 'search-plugin', attestation: { token: () => 'att' }, dpop: true });
    const token = await plugin.getToken({ audience: AUD, scope: ['items:read'], task: 'task-9' });
    const url = `${api}/items?q=1`;
    const headers = await plugin.authorizationHeaders(token, { method: 'GET', url });
    const r = await call('/items?q=1', headers as Record<string, string>);
    expect(r.status).toBe(200);
    expect(r.body.principal).toMatchObject({ plugin: 'search-plugin', task: 'task-9', scopes: ['items:read'] });
    // The proof is single-use: the same headers again are refused.
    expect((await call('/items?q=1', headers as Record<string, string>)).status).toBe(401);
  });
});
