import { describe, it, expect } from '@jest/globals';
import { generateKeyPairSync } from 'node:crypto';
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify, type JWK } from 'jose';
import type { SigningKey } from '../../src/keys/key-manager.js';
import { signJwt } from '../../src/keys/jws.js';
import { createNodeSigningKey } from '../../src/keys/local/index.js';

function key(alg: 'ES256' | 'EdDSA'): SigningKey {
  const { privateKey } = alg === 'ES256' ? generateKeyPairSync('ec', { namedCurve: 'P-256' }) : generateKeyPairSync('ed25519');
  return createNodeSigningKey({ kid: `k-${alg}`, alg, privateJwk: privateKey.export({ format: 'jwk' }) as JWK });
}

describe('signJwt', () => {
  it.each(['ES256', 'EdDSA'] as const)('%s: jose jwtVerify accepts the token with typ at+jwt', async (alg) => {
    const k = key(alg);
    const now = Math.floor(Date.now() / 1000);
    const token = await signJwt(k, { typ: 'at+jwt' }, { iss: 'https://leash', aud: 'https://api', sub: 'p', iat: now, exp: now + 60, scope: 'a b' });
    const { payload, protectedHeader } = await jwtVerify(token, createLocalJWKSet({ keys: [k.publicJwk] }), {
      typ: 'at+jwt',
      issuer: 'https://leash',
      audience: 'https://api',
      algorithms: [alg],
    });
    expect(protectedHeader).toEqual({ alg, kid: k.kid, typ: 'at+jwt' });
    expect(payload.scope).toBe('a b');
  });

  it('is not verified by another key with the same kid', async () => {
    const a = key('ES256');
    const b = key('ES256');
    const token = await signJwt(a, {}, { sub: 'p' });
    await expect(jwtVerify(token, createLocalJWKSet({ keys: [b.publicJwk] }))).rejects.toMatchObject({
      code: 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED',
    });
  });

  it('takes alg and kid from the key and refuses a header that names others', async () => {
    const k = key('EdDSA');
    await expect(signJwt(k, { alg: 'none' }, {})).rejects.toBeInstanceOf(TypeError);
    await expect(signJwt(k, { kid: 'other' }, {})).rejects.toBeInstanceOf(TypeError);
    const token = await signJwt(k, { alg: 'EdDSA', kid: k.kid, typ: 'JWT' }, {});
    expect(decodeProtectedHeader(token)).toEqual({ alg: 'EdDSA', kid: k.kid, typ: 'JWT' });
  });

  it('refuses a signer that returns a signature of the wrong shape (e.g. DER)', async () => {
    const good = key('ES256');
    const der: SigningKey = { ...good, sign: () => new Uint8Array(71) };
    await expect(signJwt(der, {}, {})).rejects.toThrow('71-byte signature');
  });

  it('accepts an async signer (remote backends)', async () => {
    const k = key('ES256');
    const remote: SigningKey = { ...k, sign: async (d) => k.sign(d) };
    const token = await signJwt(remote, { typ: 'at+jwt' }, { sub: 'x' });
    await expect(jwtVerify(token, createLocalJWKSet({ keys: [k.publicJwk] }))).resolves.toBeDefined();
  });
});
