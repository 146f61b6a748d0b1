import { randomUUID } from 'node:crypto';
import { SignJWT, exportJWK, generateKeyPair, type CryptoKey, type JWK } from 'jose';

export const CLUSTER_ISSUER = 'https://kubernetes.test.svc';

/** A stand-in Kubernetes cluster: real keys that sign projected service-account tokens. */
export class TestCluster {
  private constructor(
    readonly rsa: { privateKey: CryptoKey; publicJwk: JWK },
    readonly ec: { privateKey: CryptoKey; publicJwk: JWK },
  ) {}

  static async create(): Promise<TestCluster> {
    const rsa = await generateKeyPair('RS256', { extractable: true });
    const ec = await generateKeyPair('ES256', { extractable: true });
    return new TestCluster(
      { privateKey: rsa.privateKey, publicJwk: { ...(await exportJWK(rsa.publicKey)), kid: 'rsa-1', alg: 'RS256', use: 'sig' } },
      { privateKey: ec.privateKey, publicJwk: { ...(await exportJWK(ec.publicKey)), kid: 'ec-1', alg: 'ES256', use: 'sig' } },
    );
  }

  jwks(): { keys: JWK[] } {
    return { keys: [this.rsa.publicJwk, this.ec.publicJwk] };
  }

  /**
   * A service-account token. `claims` and `header` override the defaults, and a key set to
   * `undefined` in `claims` is removed (to test missing claims).
   */
  async saToken(opts: { sa?: string; ns?: string; nowSeconds?: number; claims?: Record<string, unknown>; header?: Record<string, unknown>; alg?: 'RS256' | 'ES256' } = {}): Promise<string> {
    const ns = opts.ns ?? 'plugins';
    const sa = opts.sa ?? 'crm-reader';
    const now = opts.nowSeconds ?? Math.floor(Date.now() / 1000);
    const payload: Record<string, unknown> = {
      iss: CLUSTER_ISSUER,
      sub: `system:serviceaccount:${ns}:${sa}`,
      aud: ['leash'],
      iat: now,
      nbf: now,
      exp: now + 600,
      'kubernetes.io': { namespace: ns, serviceaccount: { name: sa, uid: randomUUID() }, pod: { name: `${sa}-abc`, uid: randomUUID() } },
      ...opts.claims,
    };
    for (const [k, v] of Object.entries(payload)) if (v === undefined) delete payload[k];
    const alg = opts.alg ?? 'RS256';
    const key = alg === 'RS256' ? this.rsa : this.ec;
    return new SignJWT(payload).setProtectedHeader({ alg, kid: key.publicJwk.kid as string, typ: 'JWT', ...opts.header }).sign(key.privateKey);
  }
}
