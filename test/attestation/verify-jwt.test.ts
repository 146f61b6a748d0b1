import { describe, it, expect, beforeAll } from '@jest/globals';
import { SignJWT, exportSPKI, generateKeyPair } from 'jose';
import { createKeySource } from '../../src/attestation/key-source.js';
import { createAttestation } from '../../src/attestation/registry.js';
import { createJwtVerifier, decodeUnverified } from '../../src/attestation/verify-jwt.js';
import { MAX_TOKEN_LENGTH } from '../../src/client/token-limits.js';
import type { TrustedIssuerConfig } from '../../src/config/schema.js';
import { LeashError } from '../../src/errors/leash-error.js';
import { epochSeconds, ManualClock } from '../../src/time/clock.js';
import { AUD, ISS, b64, claims, codeOf, issuerConfig, makeKey, sign, type TestKey } from './fixtures.js';

const clock = new ManualClock();
const now = () => epochSeconds(clock);
let rsa: TestKey;
let ec: TestKey;
let foreign: TestKey;
let cfg: TrustedIssuerConfig;

beforeAll(async () => {
  rsa = await makeKey('RS256', 'rsa-1');
  ec = await makeKey('ES256', 'ec-1');
  foreign = await makeKey('RS256', 'rsa-1'); // same kid, different key
  cfg = issuerConfig({ kind: 'oidc', name: 'idp', jwks: { inline: { keys: [rsa.publicJwk, ec.publicJwk] } } });
});

const service = () => createAttestation([cfg], { clock, baseDir: '/' });

describe('shared JWT checks: accepted tokens', () => {
  it.each(['RS256', 'ES256'] as const)('accepts a valid %s token and reports its times', async (alg) => {
    const key = alg === 'RS256' ? rsa : ec;
    const token = await sign(claims(clock), { key });
    const id = await service().verify(token);
    expect(id).toMatchObject({ issuer: 'idp', kind: 'oidc', subject: 'workload', issuedAt: now(), expiresAt: now() + 600 });
  });

  it('accepts aud as a string or as an array naming the audience among others', async () => {
    const svc = service();
    await expect(svc.verify(await sign(claims(clock, { aud: AUD }), { key: rsa }))).resolves.toMatchObject({ subject: 'workload' });
    await expect(svc.verify(await sign(claims(clock, { aud: ['other', AUD] }), { key: ec }))).resolves.toMatchObject({ subject: 'workload' });
  });

  it('tolerates clock_skew on exp, nbf and iat', async () => {
    const svc = service();
    const t = now();
    await expect(svc.verify(await sign(claims(clock, { exp: t - 20, iat: t - 100, nbf: t - 100 }), { key: rsa }))).resolves.toBeDefined();
    await expect(svc.verify(await sign(claims(clock, { nbf: t + 20, iat: t + 20 }), { key: rsa }))).resolves.toBeDefined();
  });

  it('accepts a token without iat whose lifetime is within max_token_age', async () => {
    await expect(service().verify(await sign(claims(clock, { iat: undefined, exp: now() + 3000 }), { key: rsa }))).resolves.toMatchObject({ issuedAt: undefined });
  });

  it('tries every matching key when a kid-less token meets several keys of its type', async () => {
    const a = await makeKey('RS256', 'a', { withKid: false });
    const b = await makeKey('RS256', 'b', { withKid: false });
    const svc = createAttestation([{ ...cfg, jwks: { ...cfg.jwks!, inline: { keys: [a.publicJwk, b.publicJwk] } } } as TrustedIssuerConfig], { clock, baseDir: '/' });
    await expect(svc.verify(await sign(claims(clock), { key: b, header: { kid: undefined } }))).resolves.toMatchObject({ subject: 'workload' });
    const stranger = await makeKey('RS256', 'c', { withKid: false });
    expect(await codeOf(svc.verify(await sign(claims(clock, { sub: 'x' }), { key: stranger, header: { kid: undefined } })))).toBe('ERR_ATTESTATION_SIGNATURE');
  });
});

describe('shared JWT checks: must be refused (one row per attack)', () => {
  const table: Array<[string, () => Promise<string>, string]> = [
    // shape
    ['empty string', async () => '', 'ERR_ATTESTATION_MALFORMED'],
    ['two parts', async () => 'a.b', 'ERR_ATTESTATION_MALFORMED'],
    ['four parts', async () => 'a.b.c.d', 'ERR_ATTESTATION_MALFORMED'],
    ['garbage parts', async () => 'a.b.c', 'ERR_ATTESTATION_MALFORMED'],
    ['not base64url', async () => 'e30=.e30.sig', 'ERR_ATTESTATION_MALFORMED'],
    ['whitespace around a token', async () => ` ${await sign(claims(clock), { key: rsa })}`, 'ERR_ATTESTATION_MALFORMED'],
    ['non-JSON payload', async () => `${b64({ alg: 'RS256', kid: 'rsa-1' })}.${b64('not json')}.c2ln`, 'ERR_ATTESTATION_MALFORMED'],
    ['JSON array payload', async () => `${b64({ alg: 'RS256', kid: 'rsa-1' })}.${b64([1])}.c2ln`, 'ERR_ATTESTATION_MALFORMED'],
    ['null header', async () => `${b64('null')}.${b64({ iss: ISS })}.c2ln`, 'ERR_ATTESTATION_MALFORMED'],
    ['huge token', async () => `${b64({ alg: 'RS256' })}.${'A'.repeat(MAX_TOKEN_LENGTH)}.c2ln`, 'ERR_ATTESTATION_MALFORMED'],
    // algorithm
    ['alg none, empty signature', async () => `${b64({ alg: 'none' })}.${b64(claims(clock))}.`, 'ERR_ATTESTATION_ALG_NOT_ALLOWED'],
    ['alg None (case games)', async () => `${b64({ alg: 'None' })}.${b64(claims(clock))}.`, 'ERR_ATTESTATION_ALG_NOT_ALLOWED'],
    ['alg missing', async () => `${b64({ kid: 'rsa-1' })}.${b64(claims(clock))}.c2ln`, 'ERR_ATTESTATION_ALG_NOT_ALLOWED'],
    ['alg not a string', async () => `${b64({ alg: ['RS256'] })}.${b64(claims(clock))}.c2ln`, 'ERR_ATTESTATION_ALG_NOT_ALLOWED'],
    ['alg not in the issuer list (PS256)', async () => `${b64({ alg: 'PS256', kid: 'rsa-1' })}.${b64(claims(clock))}.c2ln`, 'ERR_ATTESTATION_ALG_NOT_ALLOWED'],
    ['HS256 signed with the issuer RSA public key (SPKI PEM bytes)', async () => hmacWith(new TextEncoder().encode(await exportSPKI(rsa.publicKey))), 'ERR_ATTESTATION_ALG_NOT_ALLOWED'],
    ['HS256 signed with the issuer public JWK JSON bytes', async () => hmacWith(new TextEncoder().encode(JSON.stringify(rsa.publicJwk))), 'ERR_ATTESTATION_ALG_NOT_ALLOWED'],
    // key-bearing headers: never used or fetched
    ['jku header', async () => sign(claims(clock), { key: rsa, header: { jku: 'https://evil.example/jwks' } }), 'ERR_ATTESTATION_HEADER_KEY'],
    ['x5u header', async () => sign(claims(clock), { key: rsa, header: { x5u: 'https://evil.example/cert' } }), 'ERR_ATTESTATION_HEADER_KEY'],
    ['embedded jwk of the signer', async () => selfSigned(), 'ERR_ATTESTATION_HEADER_KEY'],
    ['x5c header', async () => sign(claims(clock), { key: rsa, header: { x5c: ['MIIB'] } }), 'ERR_ATTESTATION_HEADER_KEY'],
    ['crit header', async () => sign(claims(clock), { key: rsa, header: { crit: ['foo'], foo: 1 }, crit: { foo: true } }), 'ERR_ATTESTATION_MALFORMED'],
    // signature
    ['unknown kid', async () => sign(claims(clock), { key: rsa, header: { kid: 'nope' } }), 'ERR_ATTESTATION_SIGNATURE'],
    ['foreign key with a known kid', async () => sign(claims(clock), { key: foreign }), 'ERR_ATTESTATION_SIGNATURE'],
    ['ES256 header on an RSA kid', async () => sign(claims(clock), { key: ec, header: { kid: 'rsa-1' } }), 'ERR_ATTESTATION_SIGNATURE'],
    ['tampered payload', async () => tamper(await sign(claims(clock), { key: rsa })), 'ERR_ATTESTATION_SIGNATURE'],
    ['signature stripped', async () => (await sign(claims(clock), { key: rsa })).replace(/[^.]+$/, ''), 'ERR_ATTESTATION_SIGNATURE'],
    // issuer and audience
    ['wrong iss', async () => sign(claims(clock, { iss: 'https://other.example' }), { key: rsa }), 'ERR_ATTESTATION_ISSUER_UNKNOWN'],
    ['no iss', async () => sign(claims(clock, { iss: undefined }), { key: rsa }), 'ERR_ATTESTATION_CLAIM_MISSING'],
    ['wrong aud', async () => sign(claims(clock, { aud: ['someone-else'] }), { key: rsa }), 'ERR_ATTESTATION_AUDIENCE'],
    ['no aud', async () => sign(claims(clock, { aud: undefined }), { key: rsa }), 'ERR_ATTESTATION_AUDIENCE'],
    ['aud of the wrong type', async () => sign(claims(clock, { aud: [AUD, 7] }), { key: rsa }), 'ERR_ATTESTATION_AUDIENCE'],
    // times
    ['missing exp', async () => sign(claims(clock, { exp: undefined }), { key: rsa }), 'ERR_ATTESTATION_CLAIM_MISSING'],
    ['exp not a number', async () => sign(claims(clock, { exp: String(now() + 60) }), { key: rsa }), 'ERR_ATTESTATION_CLAIM_INVALID'],
    ['expired beyond skew', async () => sign(claims(clock, { exp: now() - 31, iat: now() - 600 }), { key: rsa }), 'ERR_ATTESTATION_EXPIRED'],
    ['nbf in the future beyond skew', async () => sign(claims(clock, { nbf: now() + 120 }), { key: rsa }), 'ERR_ATTESTATION_NOT_YET_VALID'],
    ['iat in the future beyond skew', async () => sign(claims(clock, { iat: now() + 120, nbf: undefined }), { key: rsa }), 'ERR_ATTESTATION_NOT_YET_VALID'],
    ['iat older than max_token_age', async () => sign(claims(clock, { iat: now() - 3700, nbf: undefined }), { key: rsa }), 'ERR_ATTESTATION_TOO_OLD'],
    ['no iat and a lifetime beyond max_token_age', async () => sign(claims(clock, { iat: undefined, exp: now() + 7200 }), { key: rsa }), 'ERR_ATTESTATION_TOO_OLD'],
    ['iat not a number', async () => sign(claims(clock, { iat: 'yesterday' }), { key: rsa }), 'ERR_ATTESTATION_CLAIM_INVALID'],
  ];

  it.each(table)('%s', async (_name, make, code) => {
    const err = await service()
      .verify(await make())
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect(err).toBeInstanceOf(LeashError);
    expect((err as LeashError).code).toBe(code);
    // A refusal names no token material: its description is fixed text.
    expect((err as LeashError).description).not.toMatch(/eyJ/);
  });

  async function hmacWith(secret: Uint8Array): Promise<string> {
    return new SignJWT(claims(clock)).setProtectedHeader({ alg: 'HS256', kid: 'rsa-1' }).sign(secret);
  }

  async function selfSigned(): Promise<string> {
    const attacker = await makeKey('RS256', 'rsa-1');
    return sign(claims(clock), { key: attacker, header: { jwk: attacker.publicJwk } });
  }

  function tamper(token: string): string {
    const [h, , s] = token.split('.');
    return `${h}.${b64(claims(clock, { sub: 'admin' }))}.${s}`;
  }
});

describe('shared JWT checks: order and hardening', () => {
  it('checks in order: alg before key headers, key headers before crit, aud before exp', async () => {
    const svc = service();
    expect(await codeOf(svc.verify(`${b64({ alg: 'none', jku: 'https://evil' })}.${b64(claims(clock))}.`))).toBe('ERR_ATTESTATION_ALG_NOT_ALLOWED');
    expect(await codeOf(svc.verify(`${b64({ alg: 'RS256', jwk: {}, crit: ['x'] })}.${b64(claims(clock))}.c2ln`))).toBe('ERR_ATTESTATION_HEADER_KEY');
    expect(await codeOf(svc.verify(`${b64({ alg: 'RS256', kid: 'rsa-1', crit: ['x'] })}.${b64(claims(clock))}.c2ln`))).toBe('ERR_ATTESTATION_MALFORMED');
    expect(await codeOf(svc.verify(await sign(claims(clock, { aud: 'x', exp: now() - 999, iat: now() - 1200 }), { key: rsa })))).toBe('ERR_ATTESTATION_AUDIENCE');
    // A signature failure outranks every claim problem: nothing unsigned is ever trusted.
    expect(await codeOf(svc.verify(await sign(claims(clock, { aud: 'x', exp: undefined }), { key: foreign })))).toBe('ERR_ATTESTATION_SIGNATURE');
  });

  it('refuses HMAC even when a config (bypassing the schema) lists HS256', async () => {
    const sloppy = { ...cfg, algorithms: ['HS256', 'RS256'] } as unknown as TrustedIssuerConfig;
    const svc = createAttestation([sloppy], { clock, baseDir: '/' });
    const pem = new TextEncoder().encode(await exportSPKI(rsa.publicKey));
    const forged = await new SignJWT(claims(clock)).setProtectedHeader({ alg: 'HS256', kid: 'rsa-1' }).sign(pem);
    expect(await codeOf(svc.verify(forged))).toBe('ERR_ATTESTATION_ALG_NOT_ALLOWED');
    // The same config still verifies the real RS256 token.
    await expect(svc.verify(await sign(claims(clock), { key: rsa }))).resolves.toMatchObject({ subject: 'workload' });
  });

  it('refuses an algorithm the issuer does not list even with a matching key', async () => {
    const rsOnly = createAttestation([{ ...cfg, algorithms: ['RS256'] } as TrustedIssuerConfig], { clock, baseDir: '/' });
    expect(await codeOf(rsOnly.verify(await sign(claims(clock), { key: ec })))).toBe('ERR_ATTESTATION_ALG_NOT_ALLOWED');
  });

  it('is a TypeError to build a verifier with no asymmetric algorithm', () => {
    const keys = createKeySource(cfg.jwks!, { issuer: ISS, baseDir: '/' });
    expect(() => createJwtVerifier({ ...cfg, algorithms: ['HS256'] as unknown as TrustedIssuerConfig['algorithms'] }, { keys, clock })).toThrow(TypeError);
  });

  it('never trusts a header key: a jku pointing at a live server is not fetched', async () => {
    let hits = 0;
    const { createServer } = await import('node:http');
    const server = createServer((_req, res) => {
      hits++;
      res.end('{"keys":[]}');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const port = (server.address() as { port: number }).port;
    try {
      const token = await sign(claims(clock), { key: rsa, header: { jku: `http://127.0.0.1:${port}/jwks` } });
      expect(await codeOf(service().verify(token))).toBe('ERR_ATTESTATION_HEADER_KEY');
      expect(hits).toBe(0);
    } finally {
      await new Promise<void>((r) => server.close(() => r()));
    }
  });

  it('decodeUnverified reads header and payload without verifying', async () => {
    const token = await sign(claims(clock, { sub: 'x' }), { key: rsa });
    const { header, payload } = decodeUnverified(token);
    expect(header).toMatchObject({ alg: 'RS256', kid: 'rsa-1' });
    expect(payload).toMatchObject({ iss: ISS, sub: 'x' });
  });

  it('refuses a token at exp exactly when clock_skew is 0, and one second before is fine', async () => {
    const strict = createAttestation([{ ...cfg, clock_skew: 0 }], { clock, baseDir: '/', cache: { maxEntries: 0 } });
    const t = now();
    expect(await codeOf(strict.verify(await sign(claims(clock, { exp: t }), { key: rsa })))).toBe('ERR_ATTESTATION_EXPIRED');
    await expect(strict.verify(await sign(claims(clock, { exp: t + 1 }), { key: rsa }))).resolves.toBeDefined();
  });
});

describe('shared JWT checks: the clock is the injected one', () => {
  it('a token valid now is expired after the ManualClock moves past exp + skew', async () => {
    const local = new ManualClock();
    const svc = createAttestation([cfg], { clock: local, baseDir: '/', cache: { maxEntries: 0 } });
    const token = await sign(claims(local, { exp: epochSeconds(local) + 60 }), { key: rsa });
    await expect(svc.verify(token)).resolves.toBeDefined();
    local.advance(60 + 30);
    expect(await codeOf(svc.verify(token))).toBe('ERR_ATTESTATION_EXPIRED');
  });

  it('a far-future ManualClock makes a fresh token too old, not a crash', async () => {
    const local = new ManualClock();
    const svc = createAttestation([cfg], { clock: local, baseDir: '/', cache: { maxEntries: 0 } });
    const token = await sign(claims(local, { exp: epochSeconds(local) + 100_000, iat: epochSeconds(local) }), { key: rsa });
    local.advance(3601 + 30);
    expect(await codeOf(svc.verify(token))).toBe('ERR_ATTESTATION_TOO_OLD');
  });

  it('generateKeyPair is real: an RS384 key with an unlisted alg is still refused by alg', async () => {
    const { privateKey } = await generateKeyPair('RS384');
    const token = await new SignJWT(claims(clock)).setProtectedHeader({ alg: 'RS384', kid: 'rsa-1' }).sign(privateKey);
    expect(await codeOf(service().verify(token))).toBe('ERR_ATTESTATION_ALG_NOT_ALLOWED');
  });
});
