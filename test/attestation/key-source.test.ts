import { describe, it, expect, beforeAll, afterAll, beforeEach } from '@jest/globals';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exportJWK } from 'jose';
import type { FetchLike } from '../../src/attestation/fetch-json.js';
import { createKeySource } from '../../src/attestation/key-source.js';
import { createAttestation } from '../../src/attestation/registry.js';
import { ConfigError } from '../../src/config/config-error.js';
import type { JwksSourceConfig } from '../../src/config/schema.js';
import { LeashError } from '../../src/errors/leash-error.js';
import { ManualClock } from '../../src/time/clock.js';
import { claims, codeOf, issuerConfig, makeKey, MetadataServer, sign, type IssuerFields, type TestKey } from './fixtures.js';

const clock = new ManualClock();
let rsa: TestKey;
let ec: TestKey;
let dir: string;
let server: MetadataServer;

beforeAll(async () => {
  rsa = await makeKey('RS256', 'rsa-1');
  ec = await makeKey('ES256', 'ec-1');
  dir = await mkdtemp(join(tmpdir(), 'leash-attestation-'));
  server = await MetadataServer.start();
});

afterAll(async () => {
  await server.close();
  await rm(dir, { recursive: true, force: true });
});

beforeEach(() => {
  server.jwks = { keys: [rsa.publicJwk, ec.publicJwk] };
  server.jwksStatus = 200;
  server.discoveryStatus = 200;
  server.discoveryOverride = {};
  server.delayMs = 0;
  server.jwksHits = 0;
  server.discoveryHits = 0;
});

/** An oidc issuer over `jwks`, with the token's iss equal to `issuer`. */
function serviceFor(jwks: Partial<JwksSourceConfig>, issuer = 'https://cluster.example.test', extra: IssuerFields = {}) {
  return createAttestation([issuerConfig({ kind: 'oidc', name: 'idp', issuer, jwks, ...extra })], { clock, baseDir: dir, cache: { maxEntries: 0 } });
}

const tokenFor = (key: TestKey, issuer = 'https://cluster.example.test', over: Record<string, unknown> = {}) => sign(claims(clock, { iss: issuer, ...over }), { key });

function configProblems(fn: () => unknown): string[] {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).problems.map((p) => `${p.path}: ${p.message}`);
  }
  throw new Error('expected a ConfigError');
}

describe('key source: local keys', () => {
  it('inline: verifies with the given keys', async () => {
    await expect(serviceFor({ inline: { keys: [rsa.publicJwk] } }).verify(await tokenFor(rsa))).resolves.toMatchObject({ subject: 'workload' });
  });

  it('file: absolute and relative (to baseDir) paths are read once at construction', async () => {
    const path = join(dir, 'jwks.json');
    await writeFile(path, JSON.stringify({ keys: [rsa.publicJwk, ec.publicJwk] }));
    const absolute = serviceFor({ file: path });
    const relative = serviceFor({ file: 'jwks.json' });
    // Replace the file: the services keep the keys they read at construction.
    await writeFile(path, 'not json any more');
    await expect(absolute.verify(await tokenFor(ec))).resolves.toBeDefined();
    await expect(relative.verify(await tokenFor(rsa))).resolves.toBeDefined();
  });

  it('file: a missing or invalid file is a ConfigError at startup naming the path', async () => {
    expect(configProblems(() => serviceFor({ file: 'absent.json' }))[0]).toMatch(/^\/trusted_issuers\/0\/jwks\/file: cannot read JWKS file/);
    await writeFile(join(dir, 'bad.json'), '{"nokeys":true}');
    expect(configProblems(() => serviceFor({ file: 'bad.json' }))[0]).toMatch(/must be a JWKS/);
  });

  it('refuses private or symmetric keys in a local JWKS', async () => {
    const privateJwk = await exportJWK(rsa.privateKey);
    expect(configProblems(() => serviceFor({ inline: { keys: [privateJwk] } }))[0]).toMatch(/keys\/0: holds private key material/);
    expect(configProblems(() => serviceFor({ inline: { keys: [{ kty: 'oct', k: 'c2VjcmV0' }] } }))[0]).toMatch(/symmetric keys are never accepted/);
  });

  it('requires exactly one source', () => {
    expect(configProblems(() => createKeySource({ timeout_ms: 2000, cooldown_ms: 0, cache_max_age_ms: 1000 }, { issuer: 'x', baseDir: dir }))[0]).toMatch(/exactly one of .* \(found none\)/);
    expect(
      configProblems(() => createKeySource({ inline: { keys: [rsa.publicJwk] }, uri: server.jwksUri, timeout_ms: 2000, cooldown_ms: 0, cache_max_age_ms: 1000 }, { issuer: 'x', baseDir: dir }))[0],
    ).toMatch(/found inline, uri/);
  });

  it('a remote source must be https (plain http only on loopback)', () => {
    expect(configProblems(() => serviceFor({ uri: 'http://keys.example.com/jwks' }))[0]).toMatch(/must use https/);
    expect(configProblems(() => serviceFor({ discovery: true }, 'http://idp.example.com'))[0]).toMatch(/\/trusted_issuers\/0\/issuer: issuer .* must use https/);
    expect(() => serviceFor({ uri: 'https://keys.example.com/jwks' })).not.toThrow();
  });
});

describe('key source: remote JWKS (uri)', () => {
  it('fetches on first use only, then serves from cache', async () => {
    const svc = serviceFor({ uri: server.jwksUri });
    expect(server.jwksHits).toBe(0); // startup does not touch the network
    await expect(svc.verify(await tokenFor(rsa))).resolves.toBeDefined();
    await expect(svc.verify(await tokenFor(ec, undefined, { sub: 'b' }))).resolves.toBeDefined();
    expect(server.jwksHits).toBe(1);
  });

  it('an unknown kid after a successful fetch is a signature failure (no refetch within cooldown)', async () => {
    const svc = serviceFor({ uri: server.jwksUri });
    await svc.verify(await tokenFor(rsa));
    const stranger = await makeKey('RS256', 'rotated-away');
    expect(await codeOf(svc.verify(await tokenFor(stranger)))).toBe('ERR_ATTESTATION_SIGNATURE');
    expect(server.jwksHits).toBe(1);
  });

  it('an unknown kid refetches once the cooldown allows, and picks up a new key', async () => {
    const svc = serviceFor({ uri: server.jwksUri, cooldown_ms: 0 });
    await svc.verify(await tokenFor(rsa));
    const added = await makeKey('ES256', 'ec-2');
    server.jwks = { keys: [...server.jwks.keys, added.publicJwk] };
    await expect(svc.verify(await tokenFor(added))).resolves.toBeDefined();
    expect(server.jwksHits).toBe(2);
  });

  it.each([
    ['HTTP 503', (s: MetadataServer) => void (s.jwksStatus = 503)],
    ['HTTP 404', (s: MetadataServer) => void (s.jwksStatus = 404)],
  ])('JWKS endpoint answering %s -> temporarily unavailable', async (_name, breakIt) => {
    breakIt(server);
    const err = await serviceFor({ uri: server.jwksUri })
      .verify(await tokenFor(rsa))
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LeashError);
    expect((err as LeashError).code).toBe('ERR_ATTESTATION_KEYS_UNAVAILABLE');
  });

  it('JWKS that is not a key set -> temporarily unavailable', async () => {
    server.jwks = { nope: true } as unknown as { keys: [] };
    expect(await codeOf(serviceFor({ uri: server.jwksUri }).verify(await tokenFor(rsa)))).toBe('ERR_ATTESTATION_KEYS_UNAVAILABLE');
  });

  it('JWKS server down (connection refused) -> temporarily unavailable', async () => {
    const down = await MetadataServer.start();
    down.jwks = { keys: [rsa.publicJwk] };
    const uri = down.jwksUri;
    await down.close();
    const svc = serviceFor({ uri });
    const err = (await svc.verify(await tokenFor(rsa)).catch((e: unknown) => e)) as LeashError;
    expect(err.code).toBe('ERR_ATTESTATION_KEYS_UNAVAILABLE');
    expect(err.detail).toMatchObject({ reason: 'network' });
  });

  it('a stalled JWKS server times out -> temporarily unavailable', async () => {
    server.delayMs = 1500;
    const err = (await serviceFor({ uri: server.jwksUri, timeout_ms: 100 })
      .verify(await tokenFor(rsa))
      .catch((e: unknown) => e)) as LeashError;
    expect(err.code).toBe('ERR_ATTESTATION_KEYS_UNAVAILABLE');
  });

  it('a failed fetch is retried on the next token', async () => {
    const svc = serviceFor({ uri: server.jwksUri });
    server.jwksStatus = 500;
    expect(await codeOf(svc.verify(await tokenFor(rsa)))).toBe('ERR_ATTESTATION_KEYS_UNAVAILABLE');
    server.jwksStatus = 200;
    await expect(svc.verify(await tokenFor(rsa))).resolves.toBeDefined();
  });

  it('a JWKS response larger than the cap is refused unread', async () => {
    const big = { keys: [rsa.publicJwk], padding: 'x'.repeat(300 * 1024) };
    server.jwks = big as unknown as { keys: [] };
    expect(await codeOf(serviceFor({ uri: server.jwksUri }).verify(await tokenFor(rsa)))).toBe('ERR_ATTESTATION_KEYS_UNAVAILABLE');
  });
});

describe('key source: discovery', () => {
  it('finds the JWKS through the issuer discovery document, once', async () => {
    const issuer = `${server.url}/tenant-a`;
    const svc = serviceFor({ discovery: true }, issuer);
    expect(server.discoveryHits).toBe(0);
    await expect(svc.verify(await tokenFor(rsa, issuer))).resolves.toMatchObject({ subject: 'workload' });
    await expect(svc.verify(await tokenFor(ec, issuer, { sub: 'two' }))).resolves.toBeDefined();
    expect(server.discoveryHits).toBe(1);
    expect(server.jwksHits).toBe(1);
  });

  it('a discovery document naming another issuer is refused (no keys used)', async () => {
    const issuer = `${server.url}/tenant-b`;
    server.discoveryOverride = { issuer: `${server.url}/evil` };
    const err = (await serviceFor({ discovery: true }, issuer)
      .verify(await tokenFor(rsa, issuer))
      .catch((e: unknown) => e)) as LeashError;
    expect(err.code).toBe('ERR_ATTESTATION_KEYS_UNAVAILABLE');
    expect(err.detail).toMatchObject({ reason: 'issuer_mismatch' });
    expect(server.jwksHits).toBe(0);
  });

  it('an issuer with a trailing slash must match exactly too', async () => {
    const issuer = `${server.url}/tenant-c/`;
    // The server answers with the issuer without the slash: not the same string.
    expect(await codeOf(serviceFor({ discovery: true }, issuer).verify(await tokenFor(rsa, issuer)))).toBe('ERR_ATTESTATION_KEYS_UNAVAILABLE');
  });

  it('discovery failures are not remembered: the next use retries', async () => {
    const issuer = server.url;
    const svc = serviceFor({ discovery: true }, issuer);
    server.discoveryStatus = 500;
    expect(await codeOf(svc.verify(await tokenFor(rsa, issuer)))).toBe('ERR_ATTESTATION_KEYS_UNAVAILABLE');
    server.discoveryStatus = 200;
    await expect(svc.verify(await tokenFor(rsa, issuer))).resolves.toBeDefined();
    await expect(svc.verify(await tokenFor(rsa, issuer, { sub: 'again' }))).resolves.toBeDefined();
    expect(server.discoveryHits).toBe(2);
  });

  it('concurrent first uses share one discovery fetch', async () => {
    const issuer = server.url;
    const svc = serviceFor({ discovery: true }, issuer);
    const tokens = await Promise.all([1, 2, 3].map((i) => tokenFor(rsa, issuer, { sub: `w${i}` })));
    await Promise.all(tokens.map((t) => svc.verify(t)));
    expect(server.discoveryHits).toBe(1);
  });

  it('a discovery server that is down does not stop startup; use says temporarily unavailable', async () => {
    const down = await MetadataServer.start();
    const issuer = down.url;
    await down.close();
    const svc = serviceFor({ discovery: true }, issuer);
    expect(await codeOf(svc.verify(await tokenFor(rsa, issuer)))).toBe('ERR_ATTESTATION_KEYS_UNAVAILABLE');
  });

  describe('with an https issuer (through an injected fetch)', () => {
    const issuer = 'https://idp.example.com';
    function fakeFetch(doc: Record<string, unknown>, jwks: unknown, seen: string[]): FetchLike {
      return async (url) => {
        seen.push(url);
        const body = url.endsWith('/.well-known/openid-configuration') ? doc : url === 'https://idp.example.com/keys' ? jwks : undefined;
        return body === undefined ? new Response('no', { status: 404 }) : new Response(JSON.stringify(body), { status: 200 });
      };
    }
    const build = (fetch: FetchLike) => createAttestation([issuerConfig({ kind: 'oidc', name: 'idp', issuer, jwks: { discovery: true } })], { clock, baseDir: dir, fetch, cache: { maxEntries: 0 } });

    it('follows an https jwks_uri', async () => {
      const seen: string[] = [];
      const svc = build(fakeFetch({ issuer, jwks_uri: 'https://idp.example.com/keys' }, { keys: [rsa.publicJwk] }, seen));
      await expect(svc.verify(await tokenFor(rsa, issuer))).resolves.toBeDefined();
      expect(seen).toEqual(['https://idp.example.com/.well-known/openid-configuration', 'https://idp.example.com/keys']);
    });

    it.each([
      ['http jwks_uri', { issuer, jwks_uri: 'http://idp.example.com/keys' }, 'jwks_uri_not_https'],
      ['missing jwks_uri', { issuer }, 'jwks_uri_missing'],
      ['jwks_uri not a URL', { issuer, jwks_uri: 'keys' }, 'jwks_uri_invalid'],
      ['issuer differing only by a trailing slash', { issuer: `${issuer}/`, jwks_uri: 'https://idp.example.com/keys' }, 'issuer_mismatch'],
    ])('refuses a discovery document with %s', async (_name, doc, reason) => {
      const seen: string[] = [];
      const err = (await build(fakeFetch(doc, { keys: [rsa.publicJwk] }, seen))
        .verify(await tokenFor(rsa, issuer))
        .catch((e: unknown) => e)) as LeashError;
      expect(err.code).toBe('ERR_ATTESTATION_KEYS_UNAVAILABLE');
      expect(err.detail).toMatchObject({ reason });
      expect(seen).toHaveLength(1); // the JWKS was never fetched
    });
  });
});
