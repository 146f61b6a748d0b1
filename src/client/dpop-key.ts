import { generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto';
import { calculateJwkThumbprint, type JWK } from 'jose';
import { accessTokenHash } from './dpop-proof.js';
import { systemClock, type Clock } from './clock.js';

/** `Ed25519` is RFC 9864's fully-specified name for `EdDSA` over an Ed25519 key: the same signature. */
export type DpopAlgorithm = 'ES256' | 'EdDSA' | 'Ed25519';

export interface DpopProofInput {
  /** HTTP method of the request the proof goes with, e.g. `POST`. */
  readonly method: string;
  /** Absolute request URL; query and fragment are left out of `htu`. */
  readonly url: string;
  /** When calling a resource server: the access token, hashed into `ath`. */
  readonly accessToken?: string | undefined;
  /** A server-provided `DPoP-Nonce`, when the server asks for one. */
  readonly nonce?: string | undefined;
}

/** A DPoP key pair (RFC 9449): the private half stays in this process. */
export interface DpopKey {
  readonly alg: DpopAlgorithm;
  /** RFC 7638 thumbprint: the `cnf.jkt` of tokens bound to this key. */
  readonly jkt: string;
  readonly publicJwk: JWK;
  /** A fresh proof JWT (new `jti`, `iat` now) for one request. */
  proof(input: DpopProofInput): Promise<string>;
}

function encode(value: unknown): string {
  return Buffer.from(JSON.stringify(value), 'utf8').toString('base64url');
}

function htuOf(url: string): string {
  const u = new URL(url);
  u.search = '';
  u.hash = '';
  return u.href;
}

/** Generates an ephemeral DPoP key; keep one per process and reuse it for every request. */
export async function createDpopKey(alg: DpopAlgorithm = 'ES256', opts: { clock?: Clock } = {}): Promise<DpopKey> {
  if (alg !== 'ES256' && alg !== 'EdDSA' && alg !== 'Ed25519') throw new TypeError(`createDpopKey: unsupported algorithm '${String(alg)}'`);
  const clock = opts.clock ?? systemClock;
  const { privateKey, publicKey } = alg === 'ES256' ? generateKeyPairSync('ec', { namedCurve: 'P-256' }) : generateKeyPairSync('ed25519');
  const exported = publicKey.export({ format: 'jwk' }) as JWK;
  const publicJwk: JWK = alg === 'ES256' ? { kty: exported.kty, crv: exported.crv, x: exported.x, y: exported.y } : { kty: exported.kty, crv: exported.crv, x: exported.x };
  const jkt = await calculateJwkThumbprint(publicJwk, 'sha256');
  const header = encode({ typ: 'dpop+jwt', alg, jwk: publicJwk });
  const signer = (data: Buffer, key: KeyObject): Buffer => (alg === 'ES256' ? sign('sha256', data, { key, dsaEncoding: 'ieee-p1363' }) : sign(null, data, key));

  return Object.freeze({
    alg,
    jkt,
    publicJwk: Object.freeze(publicJwk),
    async proof(input: DpopProofInput): Promise<string> {
      const payload: Record<string, unknown> = {
        jti: randomBytes(16).toString('base64url'),
        htm: input.method.toUpperCase(),
        htu: htuOf(input.url),
        iat: Math.floor(clock.now() / 1000),
      };
      if (input.accessToken !== undefined) payload.ath = accessTokenHash(input.accessToken);
      if (input.nonce !== undefined) payload.nonce = input.nonce;
      const signingInput = `${header}.${encode(payload)}`;
      return `${signingInput}.${signer(Buffer.from(signingInput, 'ascii'), privateKey).toString('base64url')}`;
    },
  });
}
