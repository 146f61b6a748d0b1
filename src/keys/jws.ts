import type { SigningKey } from './key-manager.js';

/** Raw signature length per algorithm: ES256 is r||s (RFC 7518 §3.4), Ed25519 is 64 bytes too. */
const SIGNATURE_LENGTH: Record<SigningKey['alg'], number> = { ES256: 64, EdDSA: 64 };

function b64url(value: unknown): string {
  return Buffer.from(JSON.stringify(value), 'utf8').toString('base64url');
}

/**
 * Signs a compact JWS (RFC 7515) JWT with any SigningKey. The protected header's `alg` and
 * `kid` always come from the key, so a caller cannot announce one key and sign with another.
 */
export async function signJwt(
  key: SigningKey,
  header: Record<string, unknown>,
  payload: Record<string, unknown>,
): Promise<string> {
  if (('alg' in header && header.alg !== key.alg) || ('kid' in header && header.kid !== key.kid)) {
    throw new TypeError('signJwt: the header alg and kid come from the signing key; do not set them');
  }
  const input = `${b64url({ alg: key.alg, kid: key.kid, ...header })}.${b64url(payload)}`;
  const signature = await key.sign(Buffer.from(input, 'ascii'));
  // A remote signer (Vault Transit) answering DER or a prefixed string would otherwise yield
  // tokens nobody can verify; fail here, before a broken token leaves.
  if (signature.length !== SIGNATURE_LENGTH[key.alg]) {
    throw new Error(`signing key ${key.kid} returned a ${signature.length}-byte signature; ${key.alg} needs ${SIGNATURE_LENGTH[key.alg]}`);
  }
  return `${input}.${Buffer.from(signature.buffer, signature.byteOffset, signature.byteLength).toString('base64url')}`;
}
