import { describe, it, expect, beforeAll, afterAll, beforeEach } from '@jest/globals';
import { createHash } from 'node:crypto';
import type { Attestor } from '../../src/attestation/attestor.js';
import { IdentityCache } from '../../src/attestation/identity-cache.js';
import { ATTESTOR_FACTORIES, createAttestation, createAttestor, tokenDigest, type AttestationDeps } from '../../src/attestation/registry.js';
import { ISSUER_KINDS, type JwksSourceConfig, type TrustedIssuerConfig } from '../../src/config/schema.js';
import type { ErrorCode } from '../../src/errors/codes.js';
import { epochSeconds, ManualClock } from '../../src/time/clock.js';
import { AUD, ISS, claims, codeOf, issuerConfig, makeKey, MetadataServer, sign, type IssuerFields, type TestKey } from './fixtures.js';

let key: TestKey;
let other: TestKey;
let server: MetadataServer;

beforeAll(async () => {
  key = await makeKey('ES256', 'k1');
  other = await makeKey('ES256', 'k2');
  server = await MetadataServer.start();
});
afterAll(() => server.close());
beforeEach(() => {
  server.jwks = { keys: [key.publicJwk] };
  server.jwksStatus = 200;
  server.jwksHits = 0;
});

const inline = () => ({ inline: { keys: [key.publicJwk as Record<string, unknown>] } });
const oidc = (over: Omit<IssuerFields, 'jwks'> & { jwks?: Partial<JwksSourceConfig> } = {}) => issuerConfig({ kind: 'oidc', name: 'idp', ...over, jwks: over.jwks ?? inline() });

/** A service whose attestors count their verifications (the wrap hook metrics use). */
function counted(issuers: TrustedIssuerConfig[], clock: ManualClock, extra: Partial<AttestationDeps> = {}) {
  const calls: string[] = [];
  const failures: Array<[string | undefined, ErrorCode]> = [];
  const wrap = (a: Attestor): Attestor => ({
    name: a.name,
    kind: a.kind,
    issuer: a.issuer,
    verify: (token, digest) => {
      calls.push(a.name);
      return a.verify(token, digest);
    },
  });
  const service = createAttestation(issuers, { clock, baseDir: '/', wrap, onFailure: (i, c) => failures.push([i, c]), ...extra });
  return { service, calls, failures };
}

describe('registry: the closed set of kinds', () => {
  it('has one factory per configured kind, no more', () => {
    // x509-svid is verified from the TLS client certificate, not as a token (attestation/x509-svid/).
    expect(Object.keys(ATTESTOR_FACTORIES).sort()).toEqual(ISSUER_KINDS.filter((k) => k !== 'x509-svid').sort());
  });

  it('an unknown kind is a TypeError listing the valid ones', () => {
    const bad = { ...oidc(), kind: 'vault' } as unknown as TrustedIssuerConfig;
    expect(() => createAttestation([bad], { clock: new ManualClock(), baseDir: '/' })).toThrow(TypeError);
    expect(() => createAttestor(bad, { clock: new ManualClock(), baseDir: '/' })).toThrow(
      "unknown trusted issuer kind 'vault': valid kinds are kubernetes, spiffe, github-actions, gitlab, gcp, azure, aws, oidc",
    );
    expect(() => createAttestor({ ...oidc(), kind: 'toString' } as unknown as TrustedIssuerConfig, { clock: new ManualClock(), baseDir: '/' })).toThrow(TypeError);
  });

  it('config problems carry the issuer index in their path', () => {
    const broken = { ...oidc(), kind: 'spiffe' } as TrustedIssuerConfig;
    expect(() => createAttestation([oidc(), broken], { clock: new ManualClock(), baseDir: '/' })).toThrow(/\/trusted_issuers\/1\/trust_domain/);
  });
});

describe('registry: routing by iss', () => {
  it('picks the trusted issuer by iss and names it (not the URL) in the identity', async () => {
    const clock = new ManualClock();
    const second = await makeKey('RS256', 'r1');
    const svc = createAttestation([oidc({ name: 'first' }), oidc({ name: 'second', issuer: 'https://second.example', jwks: { inline: { keys: [second.publicJwk as Record<string, unknown>] } } })], {
      clock,
      baseDir: '/',
    });
    await expect(svc.verify(await sign(claims(clock), { key }))).resolves.toMatchObject({ issuer: 'first' });
    await expect(svc.verify(await sign(claims(clock, { iss: 'https://second.example' }), { key: second }))).resolves.toMatchObject({ issuer: 'second' });
  });

  it('refuses an unknown or non-string iss with ISSUER_UNKNOWN and a missing one with CLAIM_MISSING', async () => {
    const clock = new ManualClock();
    const { service, calls, failures } = counted([oidc()], clock);
    expect(await codeOf(service.verify(await sign(claims(clock, { iss: 'https://stranger.example' }), { key })))).toBe('ERR_ATTESTATION_ISSUER_UNKNOWN');
    expect(await codeOf(service.verify(await sign(claims(clock, { iss: [ISS] }), { key })))).toBe('ERR_ATTESTATION_ISSUER_UNKNOWN');
    expect(await codeOf(service.verify(await sign(claims(clock, { iss: undefined }), { key })))).toBe('ERR_ATTESTATION_CLAIM_MISSING');
    expect(calls).toEqual([]); // never reached an attestor
    expect(failures).toEqual([
      [undefined, 'ERR_ATTESTATION_ISSUER_UNKNOWN'],
      [undefined, 'ERR_ATTESTATION_ISSUER_UNKNOWN'],
      [undefined, 'ERR_ATTESTATION_CLAIM_MISSING'],
    ]);
  });

  it('two trusted issuers sharing an iss are told apart by audience, deterministically', async () => {
    const clock = new ManualClock();
    const a = oidc({ name: 'tenant-a', audience: 'aud-a' });
    const b = oidc({ name: 'tenant-b', audience: ['aud-b', 'aud-b2'], jwks: { inline: { keys: [other.publicJwk as Record<string, unknown>] } } });
    const { service, calls } = counted([a, b], clock);
    await expect(service.verify(await sign(claims(clock, { aud: 'aud-a' }), { key }))).resolves.toMatchObject({ issuer: 'tenant-a' });
    await expect(service.verify(await sign(claims(clock, { aud: 'aud-b2' }), { key: other }))).resolves.toMatchObject({ issuer: 'tenant-b' });
    expect(calls).toEqual(['tenant-a', 'tenant-b']);
    // Naming both audiences: tried in config order, the one whose keys verify wins.
    calls.length = 0;
    await expect(service.verify(await sign(claims(clock, { aud: ['aud-a', 'aud-b'] }), { key: other }))).resolves.toMatchObject({ issuer: 'tenant-b' });
    expect(calls).toEqual(['tenant-a', 'tenant-b']);
    // Naming neither: the first refuses it for its audience.
    expect(await codeOf(service.verify(await sign(claims(clock, { aud: 'aud-x' }), { key })))).toBe('ERR_ATTESTATION_AUDIENCE');
    // Audience of b, key of a: b refuses the signature (a is not tried: its audience does not match).
    expect(await codeOf(service.verify(await sign(claims(clock, { aud: 'aud-b' }), { key })))).toBe('ERR_ATTESTATION_SIGNATURE');
  });

  it('reports failures per trusted issuer and reason through onFailure', async () => {
    const clock = new ManualClock();
    const { service, failures } = counted([oidc({ name: 'idp' })], clock);
    await service.verify('a.b').catch(() => undefined);
    await service.verify(await sign(claims(clock, { exp: epochSeconds(clock) - 100, iat: epochSeconds(clock) - 200 }), { key })).catch(() => undefined);
    await service.verify(await sign(claims(clock, { aud: 'nope' }), { key })).catch(() => undefined);
    expect(failures).toEqual([
      [undefined, 'ERR_ATTESTATION_MALFORMED'],
      ['idp', 'ERR_ATTESTATION_EXPIRED'],
      ['idp', 'ERR_ATTESTATION_AUDIENCE'],
    ]);
  });

  it('a throwing onFailure hook does not change the outcome', async () => {
    const clock = new ManualClock();
    const svc = createAttestation([oidc()], {
      clock,
      baseDir: '/',
      onFailure: () => {
        throw new Error('metrics down');
      },
    });
    expect(await codeOf(svc.verify(await sign(claims(clock, { aud: 'nope' }), { key })))).toBe('ERR_ATTESTATION_AUDIENCE');
  });

  it('refuses oversized and non-string input before hashing it', async () => {
    const { service, calls } = counted([oidc()], new ManualClock());
    expect(await codeOf(service.verify('x'.repeat(20000)))).toBe('ERR_ATTESTATION_MALFORMED');
    expect(await codeOf(service.verify(undefined as unknown as string))).toBe('ERR_ATTESTATION_MALFORMED');
    expect(calls).toEqual([]);
  });

  it('keys unavailable maps to ERR_ATTESTATION_KEYS_UNAVAILABLE (temporarily_unavailable) and is reported', async () => {
    const clock = new ManualClock();
    server.jwksStatus = 503;
    const { service, failures } = counted([oidc({ jwks: { uri: server.jwksUri } })], clock);
    expect(await codeOf(service.verify(await sign(claims(clock), { key })))).toBe('ERR_ATTESTATION_KEYS_UNAVAILABLE');
    expect(failures).toEqual([['idp', 'ERR_ATTESTATION_KEYS_UNAVAILABLE']]);
    const { ERROR_CODES } = await import('../../src/errors/codes.js');
    expect(ERROR_CODES.ERR_ATTESTATION_KEYS_UNAVAILABLE.oauth).toBe('temporarily_unavailable');
  });
});

describe('registry: verified-identity cache', () => {
  it('tokenDigest is the base64url SHA-256 of the token', () => {
    expect(tokenDigest('abc')).toBe(createHash('sha256').update('abc').digest('base64url'));
    expect(tokenDigest('abc')).toBe('ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0');
  });

  it('a reused token is verified once, and the identity is the same object', async () => {
    const clock = new ManualClock();
    const { service, calls } = counted([oidc()], clock);
    const token = await sign(claims(clock), { key });
    const first = await service.verify(token);
    clock.advance(10);
    const second = await service.verify(token);
    expect(second).toBe(first);
    expect(second.tokenDigest).toBe(tokenDigest(token));
    expect(calls).toHaveLength(1);
  });

  it('concurrent first presentations share one verification', async () => {
    const clock = new ManualClock();
    const { service, calls } = counted([oidc()], clock);
    const token = await sign(claims(clock), { key });
    const [a, b, c] = await Promise.all([service.verify(token), service.verify(token), service.verify(token)]);
    expect(a).toBe(b);
    expect(b).toBe(c);
    expect(calls).toHaveLength(1);
  });

  it('never returns an identity at or after the token exp', async () => {
    const clock = new ManualClock();
    const { service, calls } = counted([oidc({ clock_skew: 0 })], clock, { cache: { maxAgeSeconds: 3600 } });
    const token = await sign(claims(clock, { exp: epochSeconds(clock) + 30 }), { key });
    await service.verify(token);
    clock.advance(29);
    await service.verify(token);
    expect(calls).toHaveLength(1);
    clock.advance(1); // now == exp
    expect(await codeOf(service.verify(token))).toBe('ERR_ATTESTATION_EXPIRED');
    expect(calls).toHaveLength(2);
  });

  it('re-verifies once the cache max age passes', async () => {
    const clock = new ManualClock();
    const { service, calls } = counted([oidc()], clock, { cache: { maxAgeSeconds: 60 } });
    const token = await sign(claims(clock), { key });
    await service.verify(token);
    clock.advance(59);
    await service.verify(token);
    expect(calls).toHaveLength(1);
    clock.advance(1);
    await service.verify(token);
    expect(calls).toHaveLength(2);
  });

  it('does not serve a token from cache past iat + max_token_age', async () => {
    const clock = new ManualClock();
    const { service, calls } = counted([oidc({ max_token_age: 600, clock_skew: 0 })], clock, { cache: { maxAgeSeconds: 3600 } });
    const token = await sign(claims(clock, { iat: epochSeconds(clock) - 590, nbf: undefined, exp: epochSeconds(clock) + 600 }), { key });
    await service.verify(token);
    clock.advance(9);
    await service.verify(token);
    expect(calls).toHaveLength(1);
    clock.advance(2);
    expect(await codeOf(service.verify(token))).toBe('ERR_ATTESTATION_TOO_OLD');
  });

  it('never caches a failure: the same token succeeds once the keys are back', async () => {
    const clock = new ManualClock();
    const { service, calls } = counted([oidc({ jwks: { uri: server.jwksUri } })], clock);
    const token = await sign(claims(clock), { key });
    server.jwksStatus = 503;
    expect(await codeOf(service.verify(token))).toBe('ERR_ATTESTATION_KEYS_UNAVAILABLE');
    expect(await codeOf(service.verify(token))).toBe('ERR_ATTESTATION_KEYS_UNAVAILABLE');
    server.jwksStatus = 200;
    await expect(service.verify(token)).resolves.toMatchObject({ issuer: 'idp' });
    expect(calls).toHaveLength(3);
  });

  it('a refused token is refused every time (verified again, not remembered)', async () => {
    const clock = new ManualClock();
    const { service, calls } = counted([oidc()], clock);
    const token = await sign(claims(clock, { aud: 'nope' }), { key });
    expect(await codeOf(service.verify(token))).toBe('ERR_ATTESTATION_AUDIENCE');
    expect(await codeOf(service.verify(token))).toBe('ERR_ATTESTATION_AUDIENCE');
    expect(calls).toHaveLength(2);
  });

  it('is bounded: the least recently used identity is evicted first', async () => {
    const clock = new ManualClock();
    const { service, calls } = counted([oidc()], clock, { cache: { maxEntries: 2 } });
    const [t1, t2, t3] = await Promise.all(['a', 'b', 'c'].map((sub) => sign(claims(clock, { sub }), { key })));
    await service.verify(t1!);
    await service.verify(t2!);
    await service.verify(t1!); // t1 is now the most recent
    await service.verify(t3!); // evicts t2
    expect(calls).toHaveLength(3);
    await service.verify(t1!);
    expect(calls).toHaveLength(3);
    await service.verify(t2!);
    expect(calls).toHaveLength(4);
  });

  it('maxEntries 0 disables the cache', async () => {
    const clock = new ManualClock();
    const { service, calls } = counted([oidc()], clock, { cache: { maxEntries: 0 } });
    const token = await sign(claims(clock), { key });
    await service.verify(token);
    await service.verify(token);
    expect(calls).toHaveLength(2);
  });

  it('IdentityCache drops an entry at its deadline and refuses a bad size', () => {
    const cache = new IdentityCache(10);
    const id = { issuer: 'i', kind: 'oidc', subject: 's', attributes: {}, issuedAt: 0, expiresAt: 10, tokenDigest: 'd' } as const;
    cache.set('d', id, 1000);
    expect(cache.get('d', 999)).toBe(id);
    expect(cache.get('d', 1000)).toBeUndefined();
    expect(cache.size).toBe(0);
    expect(() => new IdentityCache(-1)).toThrow(TypeError);
  });

  it('cached identities are frozen, so one request cannot alter another', async () => {
    const clock = new ManualClock();
    const svc = createAttestation([oidc({ claims: ['tenant'] })], { clock, baseDir: '/' });
    const token = await sign(claims(clock, { tenant: 'acme', aud: AUD }), { key });
    const id = await svc.verify(token);
    expect(() => {
      (id.attributes as Record<string, string>).tenant = 'evil';
    }).toThrow(TypeError);
    expect((await svc.verify(token)).attributes.tenant).toBe('acme');
  });
});
