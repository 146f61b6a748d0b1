import { createPrivateKey, createPublicKey, generateKeyPairSync, sign, type JsonWebKey as NodeJwk, type KeyObject } from 'node:crypto';
import { calculateJwkThumbprint, type JWK } from 'jose';
import type { SigningAlgorithm } from '../../config/schema.js';
import type { SigningKey } from '../key-manager.js';
import { derToP1363 } from '../ecdsa-signature.js';
import type { RingKey } from '../rotation/keyring.js';

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
      ? // DER from the bare key, converted here: cheaper than node's own conversion (ecdsa-signature.ts).
        (data: Uint8Array): Uint8Array => derToP1363(sign('sha256', data, keyObject), 32)
      : (data: Uint8Array): Uint8Array => sign(null, data, keyObject);
  return Object.freeze({ kid, alg, publicJwk, visibleUntil: opts.visibleUntil, sign: signFn });
}

/** A new private JWK generated in memory with node:crypto. */
export async function generatePrivateJwk(alg: SigningAlgorithm): Promise<{ kid: string; jwk: JWK }> {
  const { privateKey } = alg === 'ES256' ? generateKeyPairSync('ec', { namedCurve: 'P-256' }) : generateKeyPairSync('ed25519');
  const jwk = privateKey.export({ format: 'jwk' }) as JWK;
  const kid = await calculateJwkThumbprint(publicMembers(jwk), 'sha256');
  return { kid, jwk: { ...jwk, kid, alg } };
}

/** Checks a stored private JWK against its keyring entry and builds the signer. */
export async function signerFromPrivateJwk(entry: RingKey, raw: unknown, where: string, fail: (msg: string, cause?: unknown) => Error): Promise<SigningKey> {
  const jwk = raw as JWK;
  if (typeof jwk !== 'object' || jwk === null || typeof jwk.d !== 'string') throw fail(`'${where}' is not a private JSON Web Key (no 'd' member)`);
  if (!jwkMatchesAlgorithm(jwk, entry.alg)) throw fail(`'${where}' is not a key for ${entry.alg}, the algorithm the keyring gives it`);
  // The kid is the thumbprint: a mismatch means the material was swapped or edited.
  const thumbprint = await calculateJwkThumbprint(publicMembers(jwk), 'sha256');
  if (thumbprint !== entry.kid) throw fail(`'${where}' holds a key whose thumbprint is ${thumbprint}, not ${entry.kid}`);
  try {
    return createNodeSigningKey({ kid: entry.kid, alg: entry.alg, privateJwk: jwk });
  } catch (err) {
    throw fail(`'${where}' could not be loaded as a ${entry.alg} private key`, err);
  }
}
