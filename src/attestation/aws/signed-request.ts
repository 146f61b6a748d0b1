import { LeashError } from '../../errors/leash-error.js';

/**
 * The AWS attestation: a GetCallerIdentity request the workload signed with its own AWS
 * credentials (SigV4), which Leash replays to the STS endpoint of its configuration. STS
 * answers with the caller's ARN only if the signature is good; Leash never sees a secret.
 *
 * `subject_token` is base64url(JSON) of `{ method, url, headers, body }` with
 * `subject_token_type` `urn:leash:params:oauth:token-type:aws-sigv4-get-caller-identity`
 * (docs/attestation.md). This module decodes it and checks everything that can be checked
 * without STS; it never decides where the request goes.
 */

export { TOKEN_TYPE_AWS_SIGV4 } from '../../formats/token-types.js';
/** The header that binds a signed request to one Leash (Vault's X-Vault-AWS-IAM-Server-ID plays the same part). */
export const SERVER_ID_HEADER = 'x-leash-server-id';
/** STS accepts a signature for 15 minutes; Leash never accepts one for longer. */
export const MAX_SIGNATURE_AGE = 900;

const MAX_DECODED = 6144;
const MAX_HEADERS = 24;
const MAX_HEADER_VALUE = 4096;
const MAX_BODY = 256;
const HEADER_NAME = /^[a-z0-9-]{1,64}$/;
const AMZ_DATE = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/;
const AUTHORIZATION = /^AWS4-HMAC-SHA256 Credential=([A-Z0-9]{16,128})\/(\d{8})\/([a-z0-9-]{1,32})\/([a-z0-9-]{1,32})\/aws4_request, ?SignedHeaders=([a-z0-9;-]{1,1024}), ?Signature=([0-9a-f]{64})$/;
/** Headers the signer must cover: where it goes, when it was signed, and which Leash it is for. */
const MUST_SIGN = ['host', 'x-amz-date', SERVER_ID_HEADER] as const;
/** Never forwarded, signed or not: they are about the connection, not the request. */
const HOP_BY_HOP: ReadonlySet<string> = new Set(['connection', 'keep-alive', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'proxy-authorization', 'proxy-connection', 'expect']);

export interface SignedRequest {
  /** Lower-case header names: what is forwarded (the signed headers and Authorization, without Host). */
  readonly forward: Readonly<Record<string, string>>;
  readonly body: string;
  readonly serverId: string;
  readonly accessKeyId: string;
  /** Seconds since epoch. */
  readonly signedAt: number;
}

export interface SignedRequestRules {
  /** The configured STS endpoint: the signed Host and the token's `url` must be its. */
  readonly endpoint: URL;
  readonly region: string;
  readonly serverIds: ReadonlySet<string>;
  readonly maxAge: number;
  readonly skew: number;
  /** Seconds since epoch. */
  readonly now: number;
}

const malformed = (why: string) => new LeashError('ERR_ATTESTATION_MALFORMED', `the AWS attestation ${why}`);
const claim = (code: 'ERR_ATTESTATION_CLAIM_INVALID' | 'ERR_ATTESTATION_CLAIM_MISSING', name: string, why: string) => new LeashError(code, `the AWS attestation's ${name} ${why}`, { claim: name });

/** Decode the token and read its server id (for routing among several aws issuers) without judging it. */
export function decodeSignedRequest(token: string): { method: unknown; url: unknown; headers: Map<string, string>; body: unknown } {
  if (typeof token !== 'string' || token.length === 0) throw malformed('is empty');
  if (!/^[A-Za-z0-9_-]+$/.test(token)) throw malformed('is not base64url');
  if (token.length > Math.ceil((MAX_DECODED * 4) / 3)) throw malformed('is too long');
  let doc: unknown;
  try {
    doc = JSON.parse(Buffer.from(token, 'base64url').toString('utf8'));
  } catch {
    throw malformed('is not base64url JSON');
  }
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) throw malformed('is not a JSON object');
  const { method, url, headers, body, ...rest } = doc as Record<string, unknown>;
  if (Object.keys(rest).length > 0) throw malformed(`has unknown members (${Object.keys(rest).slice(0, 3).join(', ')})`);
  if (headers === null || typeof headers !== 'object' || Array.isArray(headers)) throw malformed("has no 'headers' object");
  const entries = Object.entries(headers as Record<string, unknown>);
  if (entries.length > MAX_HEADERS) throw malformed(`has more than ${MAX_HEADERS} headers`);
  const map = new Map<string, string>();
  for (const [rawName, value] of entries) {
    const name = rawName.toLowerCase();
    if (!HEADER_NAME.test(name)) throw malformed('has a header name that is not a token');
    if (typeof value !== 'string' || value.length > MAX_HEADER_VALUE || /[\r\n\0]/.test(value))
      throw malformed(`has a header '${name}' that is not a single-line string of at most ${MAX_HEADER_VALUE} characters`);
    if (map.has(name)) throw malformed(`repeats the header '${name}'`);
    map.set(name, value);
  }
  return { method, url, headers: map, body };
}

/**
 * Check a decoded request against the rules: POST of exactly
 * `Action=GetCallerIdentity&Version=2011-06-15` to the configured endpoint, signed
 * (SigV4, service `sts`, the configured region) over Host, X-Amz-Date and
 * X-Leash-Server-ID, with a server id this Leash answers to, and signed recently.
 */
export function checkSignedRequest(decoded: ReturnType<typeof decodeSignedRequest>, rules: SignedRequestRules): SignedRequest {
  const { method, url, headers, body } = decoded;
  if (method !== 'POST') throw malformed("method must be 'POST'");
  if (typeof url !== 'string') throw malformed("has no 'url'");
  let target: URL;
  try {
    target = new URL(url);
  } catch {
    throw malformed("'url' is not a URL");
  }
  // Leash sends the request to its configured endpoint, never to this URL; a mismatch means
  // the request was signed for another host and STS would refuse it anyway.
  if (target.origin !== rules.endpoint.origin || target.pathname !== rules.endpoint.pathname || target.search !== '') {
    throw claim('ERR_ATTESTATION_CLAIM_INVALID', 'url', `is not the STS endpoint this issuer uses (${rules.endpoint.href})`);
  }
  if (typeof body !== 'string' || body.length > MAX_BODY) throw malformed(`'body' must be a string of at most ${MAX_BODY} characters`);
  const params = new URLSearchParams(body);
  const keys = [...params.keys()];
  if (keys.length !== 2 || params.get('Action') !== 'GetCallerIdentity' || params.get('Version') !== '2011-06-15' || params.getAll('Action').length !== 1) {
    throw claim('ERR_ATTESTATION_CLAIM_INVALID', 'body', 'must be exactly Action=GetCallerIdentity&Version=2011-06-15: Leash replays nothing else');
  }

  const authorization = headers.get('authorization');
  if (authorization === undefined) throw claim('ERR_ATTESTATION_CLAIM_MISSING', 'authorization header', 'is missing: sign the request with SigV4');
  const auth = AUTHORIZATION.exec(authorization);
  if (!auth) throw claim('ERR_ATTESTATION_CLAIM_INVALID', 'authorization header', 'is not an AWS4-HMAC-SHA256 signature');
  const [, accessKeyId, scopeDate, region, service, signedList] = auth as unknown as [string, string, string, string, string, string];
  if (service !== 'sts') throw claim('ERR_ATTESTATION_CLAIM_INVALID', 'signature', `is scoped to the '${service}' service, not sts`);
  if (region !== rules.region) throw claim('ERR_ATTESTATION_CLAIM_INVALID', 'signature', `is scoped to region '${region}', not '${rules.region}'`);
  const signed = signedList.split(';');
  for (const name of MUST_SIGN) {
    if (!signed.includes(name)) throw claim('ERR_ATTESTATION_CLAIM_INVALID', 'signature', `does not cover the '${name}' header (SignedHeaders must include ${MUST_SIGN.join(', ')})`);
  }
  for (const name of signed) {
    if (!headers.has(name)) throw malformed(`signs the header '${name}' but does not carry it`);
    if (HOP_BY_HOP.has(name)) throw malformed(`signs the connection header '${name}'`);
  }

  const host = headers.get('host');
  if (host !== rules.endpoint.host) throw claim('ERR_ATTESTATION_CLAIM_INVALID', 'host header', `is not the STS endpoint's host (${rules.endpoint.host})`);
  const serverId = headers.get(SERVER_ID_HEADER) as string;
  if (!rules.serverIds.has(serverId))
    throw new LeashError('ERR_ATTESTATION_AUDIENCE', `the AWS attestation's ${SERVER_ID_HEADER} header does not name this Leash: sign it with the server id Leash is configured with`);

  const date = AMZ_DATE.exec(headers.get('x-amz-date') as string);
  if (!date) throw claim('ERR_ATTESTATION_CLAIM_INVALID', 'x-amz-date header', 'is not an ISO 8601 basic date-time (YYYYMMDDTHHMMSSZ)');
  const [, y, mo, d, h, mi, s] = date.map(Number) as [number, number, number, number, number, number, number];
  const signedAt = Date.UTC(y, mo - 1, d, h, mi, s) / 1000;
  if (!Number.isFinite(signedAt) || scopeDate !== (headers.get('x-amz-date') as string).slice(0, 8)) {
    throw claim('ERR_ATTESTATION_CLAIM_INVALID', 'signature', 'date does not match x-amz-date');
  }
  if (signedAt > rules.now + rules.skew)
    throw new LeashError('ERR_ATTESTATION_NOT_YET_VALID', 'the AWS attestation was signed in the future (x-amz-date): check clocks', { signed_at: signedAt, now: rules.now });
  if (rules.now - signedAt > rules.maxAge + rules.skew) {
    throw new LeashError('ERR_ATTESTATION_TOO_OLD', `the AWS attestation was signed more than ${rules.maxAge}s ago: sign a fresh request`, {
      signed_at: signedAt,
      now: rules.now,
      max_age: rules.maxAge,
    });
  }

  const forward: Record<string, string> = { authorization };
  for (const name of signed) if (name !== 'host') forward[name] = headers.get(name) as string;
  return Object.freeze({ forward: Object.freeze(forward), body, serverId, accessKeyId, signedAt });
}
