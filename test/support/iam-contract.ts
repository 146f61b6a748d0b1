import { createHash, createHmac, randomUUID, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A contract server for the IAM Query API calls Leash makes, PutRolePolicy and
 * DeleteRolePolicy, written from the IAM API reference: form POST `Action=PutRolePolicy&
 * Version=2010-05-08&RoleName=..&PolicyName=..&PolicyDocument=..`, SigV4-signed (service
 * `iam`); XML answers; errors as `<ErrorResponse><Error><Type/><Code/><Message/></Error>
 * <RequestId/></ErrorResponse>` (NoSuchEntity 404, MalformedPolicyDocument 400,
 * AccessDenied 403, LimitExceeded 409, ...). The IAM quota on a role's inline policies is
 * enforced as documented: all of them together at most 10,240 characters, whitespace not
 * counted. The signature is recomputed here from the raw request, independently of the
 * SDK's signer.
 */

/** IAM quotas: "Role policy size cannot exceed 10,240 characters" (the aggregate of a role's inline policies). */
export const ROLE_POLICY_SIZE_QUOTA = 10_240;

/** Size as IAM counts it: whitespace does not count. */
export function policySize(doc: string): number {
  return doc.replace(/\s/g, '').length;
}

export interface IamCredentials {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  /** This key may not call PutRolePolicy (AccessDenied). */
  readonly denied?: boolean;
}

export interface RecordedIamRequest {
  readonly action: string | undefined;
  readonly params: Readonly<Record<string, string>>;
  readonly accessKeyId: string | undefined;
  readonly region: string | undefined;
  readonly service: string | undefined;
  /** Whether the SigV4 signature checked out (requests that fail it are answered 403). */
  readonly signatureValid: boolean;
  readonly status: number;
}

export interface IamFailure {
  readonly code: string;
  readonly status: number;
  readonly message?: string;
  readonly type?: 'Sender' | 'Receiver';
}

export interface IamContractServer {
  readonly url: string;
  readonly region: string;
  readonly requests: RecordedIamRequest[];
  /** Inline role policies stored, by `roleName/policyName`. */
  readonly policies: Map<string, string>;
  /** Existing role names (by name, as PutRolePolicy addresses them). */
  readonly roles: Set<string>;
  /** Answer the next `n` PutRolePolicy calls with this error. */
  failNext(failure: IamFailure, n?: number): void;
  close(): Promise<void>;
}

const XMLNS = 'https://iam.amazonaws.com/doc/2010-05-08/';
/** Messages deliberately contain ARNs and account ids: tests check Leash never relays them. */
export const IAM_SECRET_MESSAGE_MARKER = 'arn:aws:iam::999999999999:role/internal-secret-path';

const sha256Hex = (data: string | Buffer) => createHash('sha256').update(data).digest('hex');
const hmac = (key: Buffer | string, data: string) => createHmac('sha256', key).update(data, 'utf8').digest();
const xmlEscape = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

interface SigV4Check {
  readonly ok: boolean;
  readonly accessKeyId?: string;
  readonly region?: string;
  readonly service?: string;
  readonly why?: string;
}

/** Recomputes an AWS4-HMAC-SHA256 header signature (SigV4, header form) and compares it. */
export function verifySigV4(
  req: { method: string; url: string; headers: IncomingMessage['headers'] },
  body: Buffer,
  secretFor: (accessKeyId: string) => string | undefined,
  opts: { now?: number; maxSkewMs?: number } = {},
): SigV4Check {
  const auth = req.headers.authorization;
  const m = /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request, ?SignedHeaders=([a-z0-9;-]+), ?Signature=([0-9a-f]{64})$/.exec(auth ?? '');
  if (!m) return { ok: false, why: 'missing or malformed Authorization' };
  const [, accessKeyId, day, region, service, signedHeaderList, signature] = m as unknown as [string, string, string, string, string, string, string];
  const secret = secretFor(accessKeyId);
  if (secret === undefined) return { ok: false, accessKeyId, region, service, why: 'unknown access key' };
  const amzDate = req.headers['x-amz-date'];
  if (typeof amzDate !== 'string' || !/^\d{8}T\d{6}Z$/.test(amzDate) || amzDate.slice(0, 8) !== day) return { ok: false, accessKeyId, region, service, why: 'bad x-amz-date' };
  const signedAt = Date.parse(`${amzDate.slice(0, 4)}-${amzDate.slice(4, 6)}-${amzDate.slice(6, 8)}T${amzDate.slice(9, 11)}:${amzDate.slice(11, 13)}:${amzDate.slice(13, 15)}Z`);
  if (Math.abs((opts.now ?? Date.now()) - signedAt) > (opts.maxSkewMs ?? 15 * 60_000)) return { ok: false, accessKeyId, region, service, why: 'request time too skewed' };
  const signedHeaders = signedHeaderList.split(';');
  if (!signedHeaders.includes('host')) return { ok: false, accessKeyId, region, service, why: 'host not signed' };
  const canonicalHeaders = signedHeaders
    .map((h) => {
      const v = req.headers[h];
      const value = Array.isArray(v) ? v.join(',') : (v ?? '');
      return `${h}:${value.trim().replace(/\s+/g, ' ')}\n`;
    })
    .join('');
  const url = new URL(req.url, 'http://placeholder');
  const query = [...url.searchParams.entries()]
    .map(([k, v]) => [encodeRfc3986(k), encodeRfc3986(v)] as const)
    .sort(([a, av], [b, bv]) => (a < b ? -1 : a > b ? 1 : av < bv ? -1 : av > bv ? 1 : 0))
    .map(([k, v]) => `${k}=${v}`)
    .join('&');
  const payloadHash = sha256Hex(body);
  const declared = req.headers['x-amz-content-sha256'];
  if (typeof declared === 'string' && declared !== payloadHash) return { ok: false, accessKeyId, region, service, why: 'x-amz-content-sha256 does not match the body' };
  const canonicalRequest = [req.method, url.pathname || '/', query, canonicalHeaders, signedHeaderList, payloadHash].join('\n');
  const scope = `${day}/${region}/${service}/aws4_request`;
  const stringToSign = ['AWS4-HMAC-SHA256', amzDate, scope, sha256Hex(canonicalRequest)].join('\n');
  const kSigning = hmac(hmac(hmac(hmac(`AWS4${secret}`, day), region), service), 'aws4_request');
  const expected = hmac(kSigning, stringToSign);
  const ok = timingSafeEqual(expected, Buffer.from(signature, 'hex'));
  return ok ? { ok, accessKeyId, region, service } : { ok, accessKeyId, region, service, why: 'signature mismatch' };
}

function encodeRfc3986(s: string): string {
  return encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

function sendXml(res: ServerResponse, status: number, xml: string): void {
  res.writeHead(status, { 'content-type': 'text/xml', 'x-amzn-requestid': randomUUID() });
  res.end(`<?xml version="1.0" encoding="UTF-8"?>\n${xml}`);
}

function sendError(res: ServerResponse, f: IamFailure): void {
  const requestId = randomUUID();
  sendXml(
    res,
    f.status,
    `<ErrorResponse xmlns="${XMLNS}"><Error><Type>${f.type ?? (f.status >= 500 ? 'Receiver' : 'Sender')}</Type><Code>${xmlEscape(f.code)}</Code>` +
      `<Message>${xmlEscape(f.message ?? `${f.code} for ${IAM_SECRET_MESSAGE_MARKER}`)}</Message></Error><RequestId>${requestId}</RequestId></ErrorResponse>`,
  );
}

export async function startIamContractServer(opts: { credentials: readonly IamCredentials[]; roles?: readonly string[]; region?: string }): Promise<IamContractServer> {
  const region = opts.region ?? 'us-east-1';
  const requests: RecordedIamRequest[] = [];
  const policies = new Map<string, string>();
  const roles = new Set(opts.roles ?? []);
  const failures: IamFailure[] = [];
  const keys = new Map(opts.credentials.map((c) => [c.accessKeyId, c]));

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const body = await readBody(req);
    const params = Object.fromEntries(new URLSearchParams(body.toString('utf8')));
    const sig = verifySigV4({ method: req.method ?? 'GET', url: req.url ?? '/', headers: req.headers }, body, (id) => keys.get(id)?.secretAccessKey);
    const record = (status: number) => {
      requests.push({ action: params.Action, params, accessKeyId: sig.accessKeyId, region: sig.region, service: sig.service, signatureValid: sig.ok, status });
    };
    const fail = (f: IamFailure) => {
      record(f.status);
      sendError(res, f);
    };

    if (req.method !== 'POST' || !(req.headers['content-type'] ?? '').startsWith('application/x-www-form-urlencoded')) {
      return fail({ code: 'InvalidAction', status: 400, message: 'the Query API takes a form POST' });
    }
    if (!sig.ok) {
      if (sig.why === 'unknown access key') return fail({ code: 'InvalidClientTokenId', status: 403, message: 'The security token included in the request is invalid.' });
      return fail({ code: 'SignatureDoesNotMatch', status: 403, message: `signature check failed: ${sig.why}` });
    }
    if (sig.service !== 'iam' || sig.region !== region) return fail({ code: 'SignatureDoesNotMatch', status: 403, message: `credential scope must be ${region}/iam` });
    if (params.Version !== '2010-05-08') return fail({ code: 'InvalidParameterValue', status: 400, message: 'Version must be 2010-05-08' });
    if (params.Action !== 'PutRolePolicy' && params.Action !== 'DeleteRolePolicy') return fail({ code: 'InvalidAction', status: 400, message: `unsupported action ${params.Action}` });
    if (keys.get(sig.accessKeyId as string)?.denied) {
      return fail({ code: 'AccessDenied', status: 403, message: `User: ${IAM_SECRET_MESSAGE_MARKER} is not authorized to perform: iam:${params.Action}` });
    }
    const injected = failures.shift();
    if (injected) return fail(injected);
    if (params.Action === 'DeleteRolePolicy') {
      const { RoleName: roleName, PolicyName: policyName } = params;
      if (!roleName || !policyName) return fail({ code: 'ValidationError', status: 400, message: 'RoleName and PolicyName are required' });
      if (!roles.has(roleName)) return fail({ code: 'NoSuchEntity', status: 404, message: `The role with name ${roleName} cannot be found.` });
      if (!policies.delete(`${roleName}/${policyName}`)) return fail({ code: 'NoSuchEntity', status: 404, message: `The role policy with name ${policyName} cannot be found.` });
      record(200);
      return sendXml(res, 200, `<DeleteRolePolicyResponse xmlns="${XMLNS}"><ResponseMetadata><RequestId>${randomUUID()}</RequestId></ResponseMetadata></DeleteRolePolicyResponse>`);
    }
    const { RoleName: roleName, PolicyName: policyName, PolicyDocument: doc } = params;
    if (!roleName || !policyName || !doc) return fail({ code: 'ValidationError', status: 400, message: 'RoleName, PolicyName and PolicyDocument are required' });
    if (!/^[\w+=,.@-]{1,64}$/.test(roleName) || !/^[\w+=,.@-]{1,128}$/.test(policyName)) return fail({ code: 'ValidationError', status: 400, message: 'invalid RoleName or PolicyName' });
    let parsed: unknown;
    try {
      parsed = JSON.parse(doc);
    } catch {
      parsed = undefined;
    }
    if (typeof parsed !== 'object' || parsed === null || (parsed as { Version?: unknown }).Version !== '2012-10-17') {
      return fail({ code: 'MalformedPolicyDocument', status: 400, message: 'Syntax errors in policy.' });
    }
    if (!roles.has(roleName)) return fail({ code: 'NoSuchEntity', status: 404, message: `The role with name ${roleName} cannot be found.` });
    let aggregate = policySize(doc);
    for (const [key, other] of policies) if (key.startsWith(`${roleName}/`) && key !== `${roleName}/${policyName}`) aggregate += policySize(other);
    if (aggregate > ROLE_POLICY_SIZE_QUOTA) {
      return fail({ code: 'LimitExceeded', status: 409, message: `Maximum policy size of ${ROLE_POLICY_SIZE_QUOTA} bytes exceeded for role ${roleName}` });
    }
    policies.set(`${roleName}/${policyName}`, doc);
    record(200);
    sendXml(res, 200, `<PutRolePolicyResponse xmlns="${XMLNS}"><ResponseMetadata><RequestId>${randomUUID()}</RequestId></ResponseMetadata></PutRolePolicyResponse>`);
  };

  const server: Server = createServer((req, res) => {
    handle(req, res).catch(() => {
      if (!res.headersSent) sendError(res, { code: 'ServiceFailure', status: 500, message: 'contract server fault' });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    region,
    requests,
    policies,
    roles,
    failNext(failure, n = 1) {
      for (let i = 0; i < n; i++) failures.push(failure);
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
