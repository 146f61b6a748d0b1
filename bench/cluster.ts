import { createPublicKey, generateKeyPairSync, randomUUID, sign, type JsonWebKey, type KeyObject } from 'node:crypto';

/** The stand-in cluster's issuer URL and the audience its tokens are projected for. */
export const BENCH_CLUSTER_ISSUER = 'https://kubernetes.bench.svc';
export const BENCH_AUDIENCE = 'leash';
export const BENCH_NAMESPACE = 'plugins';
export const BENCH_SERVICE_ACCOUNT = 'crm-reader';
export const BENCH_KID = 'bench-rsa-1';

export interface PublicJwks {
  readonly keys: readonly (JsonWebKey & { kid: string; alg: string; use: string })[];
}

/** A Kubernetes service account a token is projected for. */
export interface ServiceAccount {
  readonly namespace: string;
  readonly name: string;
}

const b64json = (v: unknown) => Buffer.from(JSON.stringify(v), 'utf8').toString('base64url');

/**
 * A stand-in Kubernetes cluster with one RSA-2048 key, minting projected service-account
 * tokens as a kubelet would (RS256, the default for cluster signing keys). Signing uses
 * node:crypto's callback form so a large pool is minted on the libuv pool, in parallel.
 */
export class BenchCluster {
  readonly #privateKey: KeyObject;
  readonly jwks: PublicJwks;

  constructor() {
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    this.#privateKey = privateKey;
    const publicJwk = createPublicKey(privateKey).export({ format: 'jwk' });
    this.jwks = { keys: [{ ...publicJwk, kid: BENCH_KID, alg: 'RS256', use: 'sig' }] };
  }

  /** Signing input of one SA token; every token gets its own pod uid, so each is distinct. */
  #signingInput(nowSeconds: number, lifetime: number, who: ServiceAccount): string {
    const header = { alg: 'RS256', kid: BENCH_KID, typ: 'JWT' };
    const payload = {
      iss: BENCH_CLUSTER_ISSUER,
      sub: `system:serviceaccount:${who.namespace}:${who.name}`,
      aud: [BENCH_AUDIENCE],
      iat: nowSeconds,
      nbf: nowSeconds,
      exp: nowSeconds + lifetime,
      'kubernetes.io': {
        namespace: who.namespace,
        serviceaccount: { name: who.name, uid: '6f1c1f43-2b2f-4a39-9d43-6a8f0c1d2e3f' },
        pod: { name: `${who.name}-${randomUUID().slice(0, 8)}`, uid: randomUUID() },
      },
    };
    return `${b64json(header)}.${b64json(payload)}`;
  }

  /** `count` distinct tokens valid for `lifetime` seconds (a projected token's default is one hour), for the bench service account unless `who` names another. */
  async mint(count: number, lifetime = 3600, who: ServiceAccount = { namespace: BENCH_NAMESPACE, name: BENCH_SERVICE_ACCOUNT }): Promise<string[]> {
    const now = Math.floor(Date.now() / 1000);
    const out: string[] = new Array<string>(count);
    const batch = 256;
    for (let start = 0; start < count; start += batch) {
      const jobs: Promise<void>[] = [];
      for (let i = start; i < Math.min(count, start + batch); i++) {
        const input = this.#signingInput(now, lifetime, who);
        jobs.push(
          new Promise<void>((resolve, reject) => {
            sign('sha256', Buffer.from(input, 'ascii'), this.#privateKey, (err, sig) => {
              if (err) return reject(err);
              out[i] = `${input}.${sig.toString('base64url')}`;
              resolve();
            });
          }),
        );
      }
      await Promise.all(jobs);
    }
    return out;
  }
}
