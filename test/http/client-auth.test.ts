import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createHash, randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import express from 'express';
import { SignJWT, exportJWK, generateKeyPair, type CryptoKey, type JWK } from 'jose';
import { ConfigError } from '../../src/config/config-error.js';
import type { ResourceServerConfig } from '../../src/config/schema.js';
import { CLIENT_ASSERTION_TYPE, createResourceServerAuthenticator, oauthFormParser, sendOAuthError, type ResourceServerAuthenticator } from '../../src/http/oauth/client-auth.js';
import { openSqliteStore, type SqliteStore } from '../../src/store/sqlite/sqlite-store.js';
import { ManualClock } from '../../src/time/clock.js';

const ISSUER = 'https://leash.test';
const ENDPOINT = `${ISSUER}/introspect`;
/** Characters RFC 6749 §2.3.1 form-urlencoding changes, so a naive Basic decoder gets them wrong. */
const SECRET = 's3cret:with+plus %percent&amp=é';
const sha = (s: string) => createHash('sha256').update(s, 'utf8').digest('hex');
const formEncode = (s: string) => encodeURIComponent(s).replace(/%20/g, '+');
const basic = (id: string, secret: string) => `Basic ${Buffer.from(`${formEncode(id)}:${formEncode(secret)}`).toString('base64')}`;
const JWKS_TIMING = { timeout_ms: 500, cooldown_ms: 0, cache_max_age_ms: 600000 };

describe('resource-server client authentication', () => {
  const clock = new ManualClock();
  let dir: string;
  let store: SqliteStore;
  let server: Server;
  let url: string;
  let rsKey: { privateKey: CryptoKey; jwk: JWK };
  let foreignKey: { privateKey: CryptoKey };
  let jwksServer: Server;
  let jwksUrl: string;
  let auth: ResourceServerAuthenticator;

  const servers = (): ResourceServerConfig[] => [
    { id: 'rs-secret', audiences: ['https://crm'], client_secret_sha256: sha(SECRET) },
    { id: 'rs-jwt', audiences: ['https://tickets'], jwks: { inline: { keys: [rsKey.jwk as Record<string, unknown>] }, ...JWKS_TIMING } },
    { id: 'rs-remote', audiences: ['https://remote'], jwks: { uri: jwksUrl, ...JWKS_TIMING } },
  ];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'leash-client-auth-'));
    store = openSqliteStore({ path: join(dir, 'leash.db'), clock });
    const pair = await generateKeyPair('ES256', { extractable: true });
    rsKey = { privateKey: pair.privateKey, jwk: { ...(await exportJWK(pair.publicKey)), kid: 'rs-1', alg: 'ES256', use: 'sig' } };
    foreignKey = { privateKey: (await generateKeyPair('ES256')).privateKey };
    // A loopback JWKS endpoint that never answers: a remote key source that is down.
    jwksServer = createServer(() => undefined);
    await new Promise<void>((r) => jwksServer.listen(0, '127.0.0.1', r));
    jwksUrl = `http://127.0.0.1:${(jwksServer.address() as AddressInfo).port}/jwks`;

    auth = createResourceServerAuthenticator(servers(), { issuer: ISSUER, endpointUrls: [ENDPOINT], clock, replay: store, baseDir: dir });
    const app = express();
    app.post('/check', ...oauthFormParser(), async (req: express.Request, res: express.Response) => {
      try {
        const rs = await auth.authenticate(req);
        res.json({ id: rs.id });
      } catch (err) {
        sendOAuthError(res, err);
      }
    });
    server = createServer(app);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/check`;
  });

  afterAll(async () => {
    server.closeAllConnections();
    jwksServer.closeAllConnections();
    await new Promise((r) => server.close(r));
    await new Promise((r) => jwksServer.close(r));
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  async function call(form: Record<string, string>, headers: Record<string, string> = {}) {
    const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers }, body: new URLSearchParams(form) });
    return { status: res.status, body: (await res.json()) as Record<string, unknown>, challenge: res.headers.get('www-authenticate'), cache: res.headers.get('cache-control') };
  }

  const now = () => Math.floor(clock.now() / 1000);
  async function assertion(
    over: { iss?: string; sub?: string; aud?: string | string[]; exp?: number | null; jti?: string | null; iat?: number } = {},
    key: CryptoKey = rsKey.privateKey,
    alg = 'ES256',
  ) {
    const payload: Record<string, unknown> = { iss: over.iss ?? 'rs-jwt', sub: over.sub ?? 'rs-jwt', aud: over.aud ?? ENDPOINT, iat: over.iat ?? now() };
    if (over.exp !== null) payload.exp = over.exp ?? now() + 60;
    if (over.jti !== null) payload.jti = over.jti ?? randomUUID();
    return new SignJWT(payload).setProtectedHeader({ alg, kid: 'rs-1' }).sign(key);
  }
  const jwtForm = (a: string, extra: Record<string, string> = {}) => ({ client_assertion_type: CLIENT_ASSERTION_TYPE, client_assertion: a, ...extra });

  describe('accepts', () => {
    it('client_secret_basic with a form-urlencoded secret', async () => {
      expect(await call({}, { authorization: basic('rs-secret', SECRET) })).toMatchObject({ status: 200, body: { id: 'rs-secret' } });
    });
    it('client_secret_basic with a matching client_id in the body', async () => {
      expect(await call({ client_id: 'rs-secret' }, { authorization: basic('rs-secret', SECRET) })).toMatchObject({ status: 200, body: { id: 'rs-secret' } });
    });
    it('client_secret_post', async () => {
      expect(await call({ client_id: 'rs-secret', client_secret: SECRET })).toMatchObject({ status: 200, body: { id: 'rs-secret' } });
    });
    it.each([
      ['the endpoint URL', ENDPOINT],
      ['the issuer', ISSUER],
      ['an array naming the issuer', ['https://other', ISSUER]],
    ])('private_key_jwt with aud = %s', async (_n, aud) => {
      expect(await call(jwtForm(await assertion({ aud })))).toMatchObject({ status: 200, body: { id: 'rs-jwt' } });
    });
    it('private_key_jwt with client_id equal to iss', async () => {
      expect(await call(jwtForm(await assertion(), { client_id: 'rs-jwt' }))).toMatchObject({ status: 200, body: { id: 'rs-jwt' } });
    });
  });

  describe('refuses with 401 invalid_client', () => {
    const cases: Array<[string, () => Promise<{ form: Record<string, string>; headers?: Record<string, string> }>, boolean]> = [
      ['Basic with a wrong secret', async () => ({ form: {}, headers: { authorization: basic('rs-secret', 'wrong') } }), true],
      ['Basic with the secret not form-urlencoded', async () => ({ form: {}, headers: { authorization: `Basic ${Buffer.from(`rs-secret:${SECRET}`).toString('base64')}` } }), true],
      ['Basic for an unknown client', async () => ({ form: {}, headers: { authorization: basic('nobody', SECRET) } }), true],
      ['Basic without a colon', async () => ({ form: {}, headers: { authorization: `Basic ${Buffer.from('rs-secret').toString('base64')}` } }), true],
      ['Basic that is not base64', async () => ({ form: {}, headers: { authorization: 'Basic !!!' } }), true],
      ['Basic with an empty secret', async () => ({ form: {}, headers: { authorization: basic('rs-secret', '') } }), true],
      ['Basic for a private_key_jwt client', async () => ({ form: {}, headers: { authorization: basic('rs-jwt', SECRET) } }), true],
      ['no credentials at all', async () => ({ form: {} }), true],
      ['a bare client_id (public client)', async () => ({ form: { client_id: 'rs-secret' } }), true],
      ['client_secret_post with a wrong secret', async () => ({ form: { client_id: 'rs-secret', client_secret: 'wrong' } }), false],
      ['client_secret_post for an unknown client', async () => ({ form: { client_id: 'nobody', client_secret: SECRET } }), false],
      ['client_secret_post without client_id', async () => ({ form: { client_secret: SECRET } }), false],
      ['client_secret_post for a private_key_jwt client', async () => ({ form: { client_id: 'rs-jwt', client_secret: SECRET } }), false],
      ['an assertion for another aud', async () => ({ form: jwtForm(await assertion({ aud: 'https://leash.test/token' })) }), false],
      ['an expired assertion', async () => ({ form: jwtForm(await assertion({ exp: now() - 60, iat: now() - 120 })) }), false],
      ['an assertion living more than 5 minutes', async () => ({ form: jwtForm(await assertion({ exp: now() + 600 })) }), false],
      ['an assertion without exp', async () => ({ form: jwtForm(await assertion({ exp: null })) }), false],
      ['an assertion without jti', async () => ({ form: jwtForm(await assertion({ jti: null })) }), false],
      ['an assertion whose sub is not iss', async () => ({ form: jwtForm(await assertion({ sub: 'someone' })) }), false],
      ['an assertion issued in the future', async () => ({ form: jwtForm(await assertion({ iat: now() + 120 })) }), false],
      ['an assertion signed by a foreign key', async () => ({ form: jwtForm(await assertion({}, foreignKey.privateKey)) }), false],
      ['an HS256 assertion', async () => ({ form: jwtForm(await assertion({}, new TextEncoder().encode('a-shared-secret-of-32-bytes-long!') as unknown as CryptoKey, 'HS256')) }), false],
      ['an assertion from an unknown client', async () => ({ form: jwtForm(await assertion({ iss: 'nobody', sub: 'nobody' })) }), false],
      ['an assertion from a secret client', async () => ({ form: jwtForm(await assertion({ iss: 'rs-secret', sub: 'rs-secret' })) }), false],
      ['an assertion whose client_id differs from iss', async () => ({ form: jwtForm(await assertion(), { client_id: 'rs-secret' }) }), false],
      ['a wrong client_assertion_type', async () => ({ form: { client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:saml2-bearer', client_assertion: await assertion() } }), false],
      ['a client_assertion that is not a JWT', async () => ({ form: jwtForm('not.a.jwt') }), false],
    ];
    it.each(cases)('%s', async (_n, make, challenge) => {
      const { form, headers } = await make();
      const res = await call(form, headers);
      expect(res.status).toBe(401);
      expect(res.body.error).toBe('invalid_client');
      expect(typeof res.body.error_description).toBe('string');
      expect(res.cache).toBe('no-store');
      if (challenge) expect(res.challenge).toBe('Basic realm="leash"');
      else expect(res.challenge).toBeNull();
    });

    it('a replayed assertion (same jti twice)', async () => {
      const a = await assertion({ jti: 'once-only' });
      expect((await call(jwtForm(a))).status).toBe(200);
      const again = await call(jwtForm(a));
      expect(again).toMatchObject({ status: 401, body: { error: 'invalid_client' } });
      expect(String(again.body.error_description)).toMatch(/already used/);
    });

    it('never echoes the secret in the error', async () => {
      const res = await call({ client_id: 'rs-secret', client_secret: 'leaky-secret-value' });
      expect(JSON.stringify(res.body)).not.toContain('leaky-secret-value');
    });
  });

  describe('refuses with 400 invalid_request', () => {
    it.each<[string, () => Promise<{ form: Record<string, string>; headers?: Record<string, string> }>]>([
      ['Basic and client_secret_post together', async () => ({ form: { client_id: 'rs-secret', client_secret: SECRET }, headers: { authorization: basic('rs-secret', SECRET) } })],
      ['client_secret_post and private_key_jwt together', async () => ({ form: { client_id: 'rs-jwt', client_secret: SECRET, ...jwtForm(await assertion()) } })],
      ['Basic and private_key_jwt together', async () => ({ form: jwtForm(await assertion()), headers: { authorization: basic('rs-secret', SECRET) } })],
      ['a client_assertion without its type', async () => ({ form: { client_assertion: await assertion() } })],
      ['Basic with a different client_id in the body', async () => ({ form: { client_id: 'rs-jwt' }, headers: { authorization: basic('rs-secret', SECRET) } })],
    ])('%s', async (_n, make) => {
      const { form, headers } = await make();
      expect(await call(form, headers)).toMatchObject({ status: 400, body: { error: 'invalid_request' } });
    });
  });

  it('answers 503 temporarily_unavailable when a remote JWKS cannot be fetched', async () => {
    const a = await assertion({ iss: 'rs-remote', sub: 'rs-remote' });
    expect(await call(jwtForm(a))).toMatchObject({ status: 503, body: { error: 'temporarily_unavailable' } });
  });

  it('answers 503 when the replay store is down, not 401 and not 200', async () => {
    const downDir = await mkdtemp(join(tmpdir(), 'leash-client-auth-down-'));
    const down = openSqliteStore({ path: join(downDir, 'x.db'), clock });
    await down.close();
    const broken = createResourceServerAuthenticator(servers(), { issuer: ISSUER, endpointUrls: [ENDPOINT], clock, replay: down, baseDir: dir });
    const req = { get: () => undefined, body: jwtForm(await assertion()) } as unknown as express.Request;
    await expect(broken.authenticate(req)).rejects.toMatchObject({ code: 'ERR_BACKEND_UNAVAILABLE' });
    await rm(downDir, { recursive: true, force: true });
  });

  describe('configuration', () => {
    const build = (list: ResourceServerConfig[]) => () => createResourceServerAuthenticator(list, { issuer: ISSUER, endpointUrls: [], clock, replay: store, baseDir: dir });
    it('refuses a server with both a secret and a JWKS, or neither', () => {
      const both = { id: 'x', audiences: ['a'], client_secret_sha256: sha('s'), jwks: { inline: { keys: [rsKey.jwk as Record<string, unknown>] }, ...JWKS_TIMING } };
      expect(build([both])).toThrow(ConfigError);
      expect(build([{ id: 'x', audiences: ['a'] }])).toThrow(/exactly one of client_secret_sha256 or jwks/);
    });
    it('refuses a duplicate id', () => {
      expect(build([servers()[0]!, servers()[0]!])).toThrow(/listed twice/);
    });
    it('refuses jwks.discovery and a JWKS holding a private key, with their paths', () => {
      try {
        build([
          { id: 'a', audiences: ['a'], jwks: { discovery: true, ...JWKS_TIMING } },
          { id: 'b', audiences: ['b'], jwks: { inline: { keys: [{ ...rsKey.jwk, d: 'secret' } as Record<string, unknown>] }, ...JWKS_TIMING } },
        ])();
        throw new Error('expected a ConfigError');
      } catch (err) {
        expect(err).toBeInstanceOf(ConfigError);
        expect((err as ConfigError).problems.map((p) => p.path)).toEqual(['/resource_servers/0/jwks/discovery', '/resource_servers/1/jwks/inline/keys/0']);
      }
    });
  });
});
