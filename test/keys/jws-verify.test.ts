import { describe, expect, it } from '@jest/globals';
import { createSecretKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { compactVerify, importJWK, SignJWT, type JWK } from 'jose';
import { isVerifiableAlgorithm, publicKeyObject, verifyCompactSignature } from '../../src/keys/jws-verify.js';

/**
 * The synchronous signature check that replaced jose's WebCrypto verify on the hot path
 * (attestations, Leash tokens): it must accept exactly what jose accepts for the same key
 * and algorithm, and refuse keys that do not fit the algorithm as jose does.
 */

type Pair = { privateKey: KeyObject; publicKey: KeyObject };
const rsa = (bits = 2048): Pair => generateKeyPairSync('rsa', { modulusLength: bits });
const ec = (namedCurve: string): Pair => generateKeyPairSync('ec', { namedCurve });

const CASES: Array<[string, () => Pair]> = [
  ['RS256', () => rsa()],
  ['RS384', () => rsa()],
  ['RS512', () => rsa()],
  ['PS256', () => rsa()],
  ['PS384', () => rsa()],
  ['PS512', () => rsa()],
  ['ES256', () => ec('P-256')],
  ['ES384', () => ec('P-384')],
  ['ES512', () => ec('P-521')],
  ['EdDSA', () => generateKeyPairSync('ed25519')],
  ['Ed25519', () => generateKeyPairSync('ed25519')],
];

const sign = (alg: string, key: KeyObject, claims: Record<string, unknown> = { sub: 'x' }) => new SignJWT(claims).setProtectedHeader({ alg, kid: 'k' }).sign(key);

/** Flip one base64url character of part `part` (0 header, 1 payload, 2 signature). */
function tamper(token: string, part: number, at: number): string {
  const parts = token.split('.');
  const p = parts[part]!;
  const i = at % p.length;
  parts[part] = p.slice(0, i) + (p[i] === 'A' ? 'B' : 'A') + p.slice(i + 1);
  return parts.join('.');
}

async function joseAccepts(token: string, alg: string, key: KeyObject): Promise<boolean> {
  try {
    await compactVerify(token, key, { algorithms: [alg] });
    return true;
  } catch {
    return false;
  }
}

describe('verifyCompactSignature', () => {
  it.each(CASES)('%s: a good signature verifies with the KeyObject, the JWK and the CryptoKey jose imports', async (alg, pair) => {
    const { privateKey, publicKey } = pair();
    const token = await sign(alg, privateKey);
    expect(verifyCompactSignature(token, alg, publicKey)).toBeUndefined();
    const jwk = publicKey.export({ format: 'jwk' }) as JWK;
    expect(verifyCompactSignature(token, alg, publicKeyObject(jwk))).toBeUndefined();
    const cryptoKey = await importJWK(jwk, alg);
    expect(verifyCompactSignature(token, alg, publicKeyObject(cryptoKey))).toBeUndefined();
    // Another key of the same type does not verify it.
    expect(verifyCompactSignature(token, alg, pair().publicKey)).toBe('signature');
  });

  it.each(CASES)('%s: every one-character change agrees with jose (none accepted)', async (alg, pair) => {
    const { privateKey, publicKey } = pair();
    const token = await sign(alg, privateKey, { sub: 'plugin', aud: 'leash', n: 12345 });
    for (let part = 0; part < 3; part++) {
      for (let at = 0; at < 12; at++) {
        const bad = tamper(token, part, at * 7);
        if (bad === token) continue;
        const ours = verifyCompactSignature(bad, alg, publicKey) === undefined;
        expect([part, at, ours]).toEqual([part, at, await joseAccepts(bad, alg, publicKey)]);
        expect(ours).toBe(false);
      }
    }
  });

  it('refuses a key that does not fit the algorithm, as jose does', async () => {
    const small = rsa(1024);
    const token = await new SignJWT({}).setProtectedHeader({ alg: 'RS256' }).sign(rsa().privateKey);
    expect(verifyCompactSignature(token, 'RS256', small.publicKey)).toBe('key');
    await expect(compactVerify(token, small.publicKey, { algorithms: ['RS256'] })).rejects.toThrow(/2048/);
    const es = await sign('ES256', ec('P-256').privateKey);
    expect(verifyCompactSignature(es, 'ES256', ec('P-384').publicKey)).toBe('key');
    expect(verifyCompactSignature(es, 'ES256', rsa().publicKey)).toBe('key');
    expect(verifyCompactSignature(es, 'RS256', ec('P-256').publicKey)).toBe('key');
    expect(verifyCompactSignature(es, 'Ed25519', generateKeyPairSync('ed448').publicKey)).toBe('key');
  });

  it('refuses algorithms it does not verify: none, HMAC, unknown', async () => {
    const token = await sign('ES256', ec('P-256').privateKey);
    for (const alg of ['none', 'HS256', 'ES256K', 'RSA-OAEP', '__proto__', 'toString']) {
      expect(isVerifiableAlgorithm(alg)).toBe(false);
      expect(verifyCompactSignature(token, alg, ec('P-256').publicKey)).toBe('alg');
    }
  });

  it('refuses an ES256 signature in DER form, an empty one and a token with no signature part', async () => {
    const { privateKey, publicKey } = ec('P-256');
    const token = await sign('ES256', privateKey);
    const [h, p] = token.split('.');
    const der = (await import('node:crypto')).sign('sha256', Buffer.from(`${h}.${p}`), privateKey).toString('base64url');
    expect(verifyCompactSignature(`${h}.${p}.${der}`, 'ES256', publicKey)).toBe('signature');
    expect(verifyCompactSignature(`${h}.${p}.`, 'ES256', publicKey)).toBe('signature');
    expect(verifyCompactSignature(`${h}.${p}`, 'ES256', publicKey)).toBe('shape');
  });
});

describe('publicKeyObject', () => {
  it('refuses private and secret keys and anything that is not a key', () => {
    expect(() => publicKeyObject(ec('P-256').privateKey)).toThrow(/public key/);
    expect(() => publicKeyObject(createSecretKey(Buffer.alloc(32)))).toThrow(/public key/);
    expect(() => publicKeyObject(new Uint8Array(32))).toThrow(TypeError);
    expect(() => publicKeyObject({ kty: 'oct', k: 'AAAA' })).toThrow();
  });

  it('converts a CryptoKey once', async () => {
    const jwk = ec('P-256').publicKey.export({ format: 'jwk' }) as JWK;
    const cryptoKey = await importJWK(jwk, 'ES256');
    expect(publicKeyObject(cryptoKey)).toBe(publicKeyObject(cryptoKey));
  });
});
