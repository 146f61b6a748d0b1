import { createPrivateKey, createPublicKey, sign, type JsonWebKey as NodeJwk, type KeyObject } from 'node:crypto';
import type { JWK } from 'jose';
import type { SigningAlgorithm } from '../../config/schema.js';
import type { SigningKey } from '../key-manager.js';

/** The curve each signing algorithm uses (`kty` EC for P-256, OKP for Ed25519). */
const CURVE: Record<SigningAlgorithm, { kty: string; crv: string }> = {
  ES256: { kty: 'EC', crv: 'P-256' },
  EdDSA: { kty: 'OKP', crv: 'Ed25519' },
};

/** Members of a public JWK per key type (RFC 7518 §6.2.1, RFC 8037 §2); nothing else is published. */
const PUBLIC_MEMBERS: Record<string, readonly string[]> = {
  EC: ['kty', 'crv', 'x', 'y'],
  OKP: ['kty', 'crv', 'x'],
};

/** Strips a JWK down to its public members: `d` (and anything unknown) never leaves. */
export function publicMembers(jwk: JWK): JWK {
  const members = PUBLIC_MEMBERS[jwk.kty ?? ''];
  if (!members) throw new TypeError(`unsupported key type '${String(jwk.kty)}'`);
  const src = jwk as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const m of members) {
    if (typeof src[m] !== 'string') throw new TypeError(`JWK member '${m}' is missing`);
    out[m] = src[m];
  }
  return out as JWK;
}

/** True when the JWK's key type and curve are the ones `alg` signs with. */
export function jwkMatchesAlgorithm(jwk: JWK, alg: SigningAlgorithm): boolean {
  const want = CURVE[alg];
  return jwk.kty === want.kty && jwk.crv === want.crv;
}

/**
 * A SigningKey over a node:crypto private KeyObject. The KeyObject is built once here:
 * signing is on the token endpoint's hot path, and synchronous node:crypto is several
 * times cheaper than WebCrypto through jose on this kind of machine.
 */
export function createNodeSigningKey(opts: {
  kid: string;
  alg: SigningAlgorithm;
  privateJwk: JWK;
  visibleUntil?: number | undefined;
}): SigningKey {
  const { kid, alg, privateJwk } = opts;
  if (!jwkMatchesAlgorithm(privateJwk, alg)) {
    throw new TypeError(`key ${kid} is not a ${CURVE[alg].crv} key, which ${alg} needs`);
  }
  const keyObject: KeyObject = createPrivateKey({ key: privateJwk as NodeJwk, format: 'jwk' });
  // Derive the public half from the private key rather than trusting the file's x/y.
  const derived = createPublicKey(keyObject).export({ format: 'jwk' }) as JWK;
  const publicJwk: JWK = Object.freeze({ ...publicMembers(derived), kid, alg, use: 'sig' });
  const signFn =
    alg === 'ES256'
      ? (data: Uint8Array): Uint8Array => sign('sha256', data, { key: keyObject, dsaEncoding: 'ieee-p1363' })
      : (data: Uint8Array): Uint8Array => sign(null, data, keyObject);
  return Object.freeze({ kid, alg, publicJwk, visibleUntil: opts.visibleUntil, sign: signFn });
}
