import { constants, createPublicKey, KeyObject, verify, webcrypto, type JsonWebKey } from 'node:crypto';
import { p1363ToDer } from './ecdsa-signature.js';

/*
 * JWS signature verification on the hot path (attestations at /token, Leash tokens at
 * /introspect, /revoke and delegation), synchronous with node:crypto. jose's verify goes
 * through WebCrypto, whose every call is a job on the libuv pool and a promise: measured
 * here, RS256 ~100 µs of CPU per verify through jose against ~28 µs synchronously, ES256
 * ~175 against ~100. jose still selects the key (JWKS rules) and the callers keep their
 * claim checks; only the signature operation moves here, with jose's key rules: the key's
 * type and curve must fit the algorithm, RSA keys have at least 2048 bits.
 */

/** The JWS algorithms Leash verifies (RFC 7518 §3.1 and RFC 8037), and how node:crypto does each. */
/** `ecdsa`: the width of r and s; the JWS signature (r || s) is handed to node:crypto as DER with the bare key (src/keys/ecdsa-signature.ts says why). */
const ALGORITHMS: Readonly<Record<string, { readonly hash: string | null; readonly key: (k: KeyObject) => boolean; readonly options?: Readonly<Record<string, unknown>>; readonly ecdsa?: number }>> = {
  RS256: { hash: 'sha256', key: rsa },
  RS384: { hash: 'sha384', key: rsa },
  RS512: { hash: 'sha512', key: rsa },
  PS256: { hash: 'sha256', key: rsaOrPss, options: { padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 } },
  PS384: { hash: 'sha384', key: rsaOrPss, options: { padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 48 } },
  PS512: { hash: 'sha512', key: rsaOrPss, options: { padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 64 } },
  ES256: { hash: 'sha256', key: curve('prime256v1'), ecdsa: 32 },
  ES384: { hash: 'sha384', key: curve('secp384r1'), ecdsa: 48 },
  ES512: { hash: 'sha512', key: curve('secp521r1'), ecdsa: 66 },
  EdDSA: { hash: null, key: (k) => k.asymmetricKeyType === 'ed25519' || k.asymmetricKeyType === 'ed448' },
  Ed25519: { hash: null, key: (k) => k.asymmetricKeyType === 'ed25519' },
};

function rsa(k: KeyObject): boolean {
  return k.asymmetricKeyType === 'rsa' && (k.asymmetricKeyDetails?.modulusLength ?? 0) >= 2048;
}

function rsaOrPss(k: KeyObject): boolean {
  return (k.asymmetricKeyType === 'rsa' || k.asymmetricKeyType === 'rsa-pss') && (k.asymmetricKeyDetails?.modulusLength ?? 0) >= 2048;
}

function curve(name: string): (k: KeyObject) => boolean {
  return (k) => k.asymmetricKeyType === 'ec' && k.asymmetricKeyDetails?.namedCurve === name;
}

/** True for an algorithm this module verifies. */
export function isVerifiableAlgorithm(alg: string): boolean {
  return Object.hasOwn(ALGORITHMS, alg);
}

/** Node key objects of the public keys jose hands out (WebCrypto CryptoKeys), made once per key. */
const fromCryptoKey = new WeakMap<object, KeyObject>();

/**
 * A node:crypto public KeyObject for a key jose selected (a CryptoKey in Node), a JWK, or a
 * KeyObject. A private or secret key is refused: verification only ever uses public keys.
 */
export function publicKeyObject(key: unknown): KeyObject {
  let out: KeyObject;
  if (key instanceof KeyObject) out = key;
  else if (isCryptoKey(key)) {
    const cached = fromCryptoKey.get(key);
    if (cached) return cached;
    out = KeyObject.from(key);
    fromCryptoKey.set(key, out);
  } else if (key !== null && typeof key === 'object' && 'kty' in key) out = createPublicKey({ key: key as JsonWebKey, format: 'jwk' });
  else throw new TypeError('a public key (KeyObject, CryptoKey or JWK) is required');
  if (out.type !== 'public') throw new TypeError(`a public key is required, not a ${out.type} key`);
  return out;
}

function isCryptoKey(key: unknown): key is webcrypto.CryptoKey {
  // A global in Node (no import of it in node:crypto's typings).
  return typeof globalThis.CryptoKey === 'function' && key instanceof globalThis.CryptoKey;
}

/** Why a signature was not accepted; `key` means the key cannot be used with the algorithm at all. */
export type JwsVerifyFailure = 'alg' | 'key' | 'shape' | 'signature';

/**
 * Verifies the signature of a compact JWS `header.payload.signature` with `alg` (already
 * checked against the caller's allow-list) and a public key. Returns undefined when it
 * verifies, else why not. The token's header is the caller's to check; this only computes.
 */
export function verifyCompactSignature(token: string, alg: string, key: KeyObject): JwsVerifyFailure | undefined {
  const spec = Object.hasOwn(ALGORITHMS, alg) ? ALGORITHMS[alg] : undefined;
  if (!spec) return 'alg';
  if (!spec.key(key)) return 'key';
  const second = token.lastIndexOf('.');
  if (second <= 0 || token.indexOf('.') === second) return 'shape';
  const signature = Buffer.from(token.slice(second + 1), 'base64url');
  if (signature.length === 0) return 'signature';
  const input = Buffer.from(token.slice(0, second), 'ascii');
  try {
    // p1363ToDer refuses an r || s of the wrong width: a bad signature, as below.
    const signed = spec.ecdsa !== undefined ? p1363ToDer(signature, spec.ecdsa) : signature;
    return verify(spec.hash, input, spec.options ? { key, ...spec.options } : key, signed) ? undefined : 'signature';
  } catch {
    // OpenSSL refusing the operation (a malformed signature for the key) is a bad signature too.
    return 'signature';
  }
}
