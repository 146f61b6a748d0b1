import { createHash, createHmac, type Hash, type Hmac } from 'node:crypto';
import { SignatureV4 } from '@smithy/signature-v4';

/**
 * Builds `aws` attestations the way a workload would, with the AWS SDK's own SigV4 signer
 * (@smithy/signature-v4), and lets a test change any part before or after signing.
 */

const bytes = (d: string | ArrayBuffer | ArrayBufferView): Buffer =>
  typeof d === 'string' ? Buffer.from(d) : d instanceof ArrayBuffer ? Buffer.from(d) : Buffer.from(d.buffer, d.byteOffset, d.byteLength);

/** The SDK's hash interface over node:crypto: HMAC-SHA256 with a secret, SHA-256 without. */
class Sha256 {
  readonly #h: Hash | Hmac;
  constructor(secret?: string | ArrayBuffer | ArrayBufferView) {
    this.#h = secret === undefined ? createHash('sha256') : createHmac('sha256', bytes(secret));
  }
  update(data: string | ArrayBuffer | ArrayBufferView): void {
    this.#h.update(bytes(data));
  }
  async digest(): Promise<Uint8Array> {
    return new Uint8Array(this.#h.digest());
  }
}

export interface SignOptions {
  /** Where the request claims to go (its Host and url). */
  readonly endpoint: string;
  readonly serverId?: string | undefined;
  readonly credentials: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  readonly region?: string;
  readonly service?: string;
  readonly body?: string;
  readonly date: Date;
  /** Headers left out of the signature (they are still sent). */
  readonly unsigned?: readonly string[];
  readonly extraHeaders?: Record<string, string>;
}

export interface SignedAwsRequest {
  method: string;
  url: string;
  headers: Record<string, string>;
  body: string;
}

export async function signCallerIdentity(o: SignOptions): Promise<SignedAwsRequest> {
  const url = new URL(o.endpoint);
  const body = o.body ?? 'Action=GetCallerIdentity&Version=2011-06-15';
  const headers: Record<string, string> = {
    host: url.host,
    'content-type': 'application/x-www-form-urlencoded; charset=utf-8',
    ...(o.serverId !== undefined ? { 'x-leash-server-id': o.serverId } : {}),
    ...o.extraHeaders,
  };
  const signer = new SignatureV4({ credentials: o.credentials, region: o.region ?? 'us-east-1', service: o.service ?? 'sts', sha256: Sha256 });
  const signed = await signer.sign(
    { method: 'POST', protocol: url.protocol, hostname: url.hostname, port: url.port ? Number(url.port) : undefined, path: url.pathname, headers, body, query: {} },
    { signingDate: o.date, unsignableHeaders: new Set(o.unsigned ?? []) },
  );
  return { method: 'POST', url: `${url.origin}${url.pathname}`, headers: { ...(signed.headers as Record<string, string>) }, body };
}

export const encodeAwsRequest = (r: unknown): string => Buffer.from(JSON.stringify(r), 'utf8').toString('base64url');
export const decodeAwsRequest = (token: string): SignedAwsRequest => JSON.parse(Buffer.from(token, 'base64url').toString('utf8')) as SignedAwsRequest;
