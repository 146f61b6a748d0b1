import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createRemoteJWKSet, errors as joseErrors, jwtVerify, type JWTPayload } from 'jose';

/**
 * A contract server for AWS STS, following the STS API reference: the Query protocol (form
 * POST, `Version=2011-06-15`), the documented XML answers and `ErrorResponse` shapes, SigV4
 * verification of signed calls with real HMACs, and AssumeRoleWithWebIdentity checks the way
 * an IAM OIDC provider does them (signature against the issuer's JWKS, `iss`, `aud`, `exp`).
 * Drives the real `@aws-sdk/client-sts` end to end; no AWS account needed.
 */

export const STS_NS = 'https://sts.amazonaws.com/doc/2011-06-15/';
export const TEST_ACCOUNT = '123456789012';
export const TEST_ACCESS_KEY_ID = 'AKIALEASHTESTKEY0001';
export const TEST_SECRET_ACCESS_KEY = 'leash/test/secret/0123456789abcdefghijkl';

const NAME = /^[\w+=,.@-]{2,64}$/;
const ROLE_ARN = /^arn:aws[a-z-]*:iam::(\d{12}):role\/(?:[\w+=,.@-]+\/)*([\w+=,.@-]{1,64})$/;
const TAG_KEY = /^[\p{L}\p{Z}\p{N}_.:/=+\-@]{1,128}$/u;
const TAG_VALUE = /^[\p{L}\p{Z}\p{N}_.:/=+\-@]{0,256}$/u;
const SIGV4_SKEW_MS = 15 * 60 * 1000;

export interface StsContractOptions {
  /** Region the SigV4 scope must name (default us-east-1). */
  readonly region?: string;
  /** Signing keys the server knows (default: TEST_ACCESS_KEY_ID -> TEST_SECRET_ACCESS_KEY). */
  readonly accessKeys?: Readonly<Record<string, string>>;
  /**
   * IAM principals by access key id, for GetCallerIdentity: who signed. A temporary key
   * (role session) has a session token that must come as X-Amz-Security-Token.
   */
  readonly principals?: Readonly<Record<string, StsPrincipal>>;
  /** The IAM OIDC provider: who may sign web identity tokens. */
  readonly oidc?: { readonly issuer: string; readonly jwksUrl: string; readonly audiences: readonly string[] };
  /** The roles' MaxSessionDuration (default 3600). */
  readonly roleMaxSession?: number;
  /** The role trust policy: return false to answer AccessDenied. */
  readonly trust?: (call: StsCall) => boolean;
  readonly now?: () => number;
}

export interface StsPrincipal {
  readonly secret: string;
  /** `arn:aws:sts::<account>:assumed-role/<role>/<session>`, `arn:aws:iam::<account>:user/<name>`... */
  readonly arn: string;
  /** AROA...:<session> for a role session, AIDA... for a user. */
  readonly userId: string;
  readonly sessionToken?: string;
  /** The session has expired: STS answers ExpiredToken. */
  readonly expired?: boolean;
}

export interface StsCall {
  readonly action: string;
  readonly params: Readonly<Record<string, string>>;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  /** AssumeRole and GetCallerIdentity: the access key id whose signature verified. */
  signedBy?: string;
  /** AssumeRoleWithWebIdentity: the verified token's claims. */
  claims?: JWTPayload;
  /** Tags as AWS would apply them: from Tags.member.N (AssumeRole) or the token (web identity). */
  tags?: Record<string, string>;
  transitiveTagKeys?: string[];
  sourceIdentity?: string;
  status?: number;
  errorCode?: string;
  /** Credentials answered, when the call succeeded. */
  issued?: { readonly accessKeyId: string; readonly expiration: string; /** `aws:TokenIssueTime` of the session (ISO 8601, to the second). */ readonly tokenIssueTime: string };
}

interface StsFault {
  readonly code: string;
  readonly status: number;
  readonly message: string;
  readonly type: 'Sender' | 'Receiver';
}

class StsError extends Error {
  constructor(
    readonly code: string,
    readonly status: number,
    message: string,
    readonly type: 'Sender' | 'Receiver' = status >= 500 ? 'Receiver' : 'Sender',
  ) {
    super(message);
  }
}

const xmlEscape = (s: string) => s.replace(/[<>&'"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', "'": '&apos;', '"': '&quot;' })[c]!);
const sha256hex = (data: string | Buffer) => createHash('sha256').update(data).digest('hex');
const hmac = (key: Buffer | string, data: string) => createHmac('sha256', key).update(data, 'utf8').digest();
const upperAlnum = (n: number) => {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  return [...randomBytes(n)].map((b) => alphabet[b % 32]).join('');
};
/** RFC 3986 encoding as SigV4 wants it (everything but unreserved). */
const uriEncode = (s: string) => encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
const isoSeconds = (ms: number) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');

/** Default messages name the role, as AWS's do: tests assert Leash never passes them on. */
function defaultMessage(code: string, roleArn: string | undefined): string {
  const role = roleArn ?? 'arn:aws:iam::123456789012:role/unknown';
  switch (code) {
    case 'AccessDenied':
      return `User: arn:aws:iam::${TEST_ACCOUNT}:user/leash is not authorized to perform: sts:AssumeRole on resource: ${role}`;
    case 'Throttling':
      return 'Rate exceeded';
    case 'ServiceUnavailable':
      return 'Service is unable to handle request.';
    case 'PackedPolicyTooLarge':
      return `Packed policy consumes 127% of allotted space for ${role}`;
    default:
      return `${code} for ${role}`;
  }
}

export class StsContractServer {
  readonly calls: StsCall[] = [];
  readonly #server: Server;
  #opts: StsContractOptions;
  #jwks: ReturnType<typeof createRemoteJWKSet> | undefined;
  #faults: StsFault[] = [];
  #holds: Array<{ arrived: (call: StsCall) => void; released: Promise<void> }> = [];
  url = '';

  private constructor(opts: StsContractOptions) {
    this.#opts = opts;
    this.#jwks = opts.oidc ? createRemoteJWKSet(new URL(opts.oidc.jwksUrl), { cacheMaxAge: 0, cooldownDuration: 0 }) : undefined;
    this.#server = createServer((req, res) => void this.#handle(req, res));
  }

  static async start(opts: StsContractOptions = {}): Promise<StsContractServer> {
    const s = new StsContractServer(opts);
    await new Promise<void>((resolve) => s.#server.listen(0, '127.0.0.1', resolve));
    s.url = `http://127.0.0.1:${(s.#server.address() as AddressInfo).port}`;
    return s;
  }

  /** The next `count` calls fail with this AWS error (Throttling 400, ServiceUnavailable 503, AccessDenied 403...). */
  failNext(count: number, code: string, status: number, message?: string): void {
    for (let i = 0; i < count; i++) this.#faults.push({ code, status, message: message ?? '', type: status >= 500 ? 'Receiver' : 'Sender' });
  }

  /**
   * A slow STS: the next call is processed (verified, credentials made) but its answer is
   * held until `release()`. `arrived` resolves with the call once it is being held.
   */
  holdNext(): { arrived: Promise<StsCall>; release: () => void } {
    let release!: () => void;
    let arrived!: (call: StsCall) => void;
    const released = new Promise<void>((r) => (release = r));
    const arrival = new Promise<StsCall>((r) => (arrived = r));
    this.#holds.push({ arrived, released });
    return { arrived: arrival, release };
  }

  /** Registers the IAM OIDC provider after start (a broker's URL is known only once it listens). */
  setOidc(oidc: NonNullable<StsContractOptions['oidc']>): void {
    this.#opts = { ...this.#opts, oidc };
    this.#jwks = createRemoteJWKSet(new URL(oidc.jwksUrl), { cacheMaxAge: 0, cooldownDuration: 0 });
  }

  get region(): string {
    return this.#opts.region ?? 'us-east-1';
  }

  async close(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #now(): number {
    return this.#opts.now?.() ?? Date.now();
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks);
    const params = Object.fromEntries(new URLSearchParams(body.toString('utf8')));
    const call: StsCall = { action: params.Action ?? '', params, headers: { ...req.headers } };
    this.calls.push(call);
    try {
      if (req.method !== 'POST' || !String(req.headers['content-type'] ?? '').startsWith('application/x-www-form-urlencoded')) {
        throw new StsError('InvalidAction', 400, 'STS Query requests are form POSTs');
      }
      if (params.Version !== '2011-06-15') throw new StsError('InvalidAction', 400, `Could not find operation ${call.action} for version ${params.Version ?? 'NO_VERSION_SPECIFIED'}`);
      let xml: string;
      switch (call.action) {
        case 'AssumeRole':
          this.#verifySigV4(req, body, call);
          xml = this.#assumeRole(call);
          break;
        case 'AssumeRoleWithWebIdentity':
          xml = await this.#assumeRoleWithWebIdentity(req, call);
          break;
        case 'GetCallerIdentity':
          xml = this.#getCallerIdentity(req, body, call);
          break;
        default:
          throw new StsError('InvalidAction', 400, `Could not find operation ${call.action} for version 2011-06-15`);
      }
      const hold = this.#holds.shift();
      if (hold) {
        hold.arrived(call);
        await hold.released;
      }
      call.status = 200;
      res.writeHead(200, { 'content-type': 'text/xml', 'x-amzn-requestid': randomBytes(16).toString('hex') });
      res.end(xml);
    } catch (err) {
      const e = err instanceof StsError ? err : new StsError('InternalFailure', 500, 'internal failure');
      call.status = e.status;
      call.errorCode = e.code;
      const requestId = randomBytes(16).toString('hex');
      res.writeHead(e.status, { 'content-type': 'text/xml', 'x-amzn-requestid': requestId });
      res.end(
        `<ErrorResponse xmlns="${STS_NS}"><Error><Type>${e.type}</Type><Code>${xmlEscape(e.code)}</Code><Message>${xmlEscape(e.message)}</Message></Error><RequestId>${requestId}</RequestId></ErrorResponse>`,
      );
    }
  }

  /** SigV4 (the AWS General Reference's four steps), recomputed from what arrived. */
  #verifySigV4(req: IncomingMessage, body: Buffer, call: StsCall): void {
    const auth = req.headers.authorization;
    if (!auth) throw new StsError('MissingAuthenticationToken', 403, 'Request is missing Authentication Token');
    const m = /^AWS4-HMAC-SHA256 Credential=([^/,\s]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request,\s*SignedHeaders=([a-z0-9;-]+),\s*Signature=([0-9a-f]{64})$/.exec(auth);
    if (!m) throw new StsError('IncompleteSignature', 403, 'Authorization header requires Credential, SignedHeaders and Signature');
    const [, accessKeyId, date, region, service, signedHeaders, signature] = m as unknown as [string, string, string, string, string, string, string];
    const principal = this.#opts.principals?.[accessKeyId];
    const secret = principal?.secret ?? (this.#opts.accessKeys ?? { [TEST_ACCESS_KEY_ID]: TEST_SECRET_ACCESS_KEY })[accessKeyId];
    if (secret === undefined) throw new StsError('InvalidClientTokenId', 403, 'The security token included in the request is invalid.');
    // Temporary credentials are only valid with their session token.
    if (principal?.sessionToken !== undefined && req.headers['x-amz-security-token'] !== principal.sessionToken) {
      throw new StsError('InvalidClientTokenId', 403, 'The security token included in the request is invalid.');
    }
    const amzDate = String(req.headers['x-amz-date'] ?? '');
    const signed = signedHeaders.split(';');
    if (!/^\d{8}T\d{6}Z$/.test(amzDate) || !signed.includes('host') || !signed.includes('x-amz-date')) {
      throw new StsError('IncompleteSignature', 403, 'host and x-amz-date must be signed');
    }
    const at = Date.UTC(+amzDate.slice(0, 4), +amzDate.slice(4, 6) - 1, +amzDate.slice(6, 8), +amzDate.slice(9, 11), +amzDate.slice(11, 13), +amzDate.slice(13, 15));
    if (Math.abs(at - this.#now()) > SIGV4_SKEW_MS) throw new StsError('SignatureDoesNotMatch', 403, 'Signature expired');
    if (date !== amzDate.slice(0, 8) || region !== this.region || service !== 'sts') {
      throw new StsError('SignatureDoesNotMatch', 403, 'Credential should be scoped to a valid region and the sts service');
    }
    const url = new URL(req.url ?? '/', 'http://x');
    const query = [...url.searchParams]
      .map(([k, v]) => [uriEncode(k), uriEncode(v)])
      .sort(([a, x], [b, y]) => (a! < b! ? -1 : a! > b! ? 1 : x! < y! ? -1 : 1))
      .map(([k, v]) => `${k}=${v}`)
      .join('&');
    const headerLines = signed.map((name) => {
      const value = req.headers[name];
      const joined = Array.isArray(value) ? value.join(',') : (value ?? '');
      return `${name}:${joined.trim().replace(/\s+/g, ' ')}\n`;
    });
    // The payload hash is computed from the body that arrived; an x-amz-content-sha256 header
    // is only one more signed header, so a body changed after signing breaks the signature.
    const payloadHash = sha256hex(body);
    const canonicalRequest = [req.method, url.pathname, query, headerLines.join(''), signedHeaders, payloadHash].join('\n');
    const scope = `${date}/${region}/${service}/aws4_request`;
    const stringToSign = ['AWS4-HMAC-SHA256', amzDate, scope, sha256hex(canonicalRequest)].join('\n');
    const key = hmac(hmac(hmac(hmac(`AWS4${secret}`, date), region), service), 'aws4_request');
    const expected = hmac(key, stringToSign);
    if (!timingSafeEqual(expected, Buffer.from(signature, 'hex'))) {
      throw new StsError('SignatureDoesNotMatch', 403, 'The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.');
    }
    call.signedBy = accessKeyId;
  }

  /** GetCallerIdentity: who signed this request (needs no permission; a good signature is the proof). */
  #getCallerIdentity(req: IncomingMessage, body: Buffer, call: StsCall): string {
    if (Object.keys(call.params).some((k) => k !== 'Action' && k !== 'Version')) throw new StsError('InvalidParameterValue', 400, 'GetCallerIdentity takes no parameters');
    this.#verifySigV4(req, body, call);
    const principal = this.#opts.principals?.[call.signedBy!];
    if (principal?.expired) throw new StsError('ExpiredToken', 400, 'The security token included in the request is expired');
    this.#fault(call);
    const arn = principal?.arn ?? `arn:aws:iam::${TEST_ACCOUNT}:user/leash`;
    const account = /^arn:[^:]+:[^:]+::(\d{12}):/.exec(arn)?.[1] ?? TEST_ACCOUNT;
    const userId = principal?.userId ?? `AIDA${upperAlnum(16)}`;
    return this.#result('GetCallerIdentity', `<Arn>${xmlEscape(arn)}</Arn><UserId>${xmlEscape(userId)}</UserId><Account>${account}</Account>`);
  }

  #checkCommon(call: StsCall): { account: string; role: string; duration: number } {
    const p = call.params;
    const arn = ROLE_ARN.exec(p.RoleArn ?? '');
    if (!arn) throw new StsError('ValidationError', 400, "1 validation error detected: Value at 'roleArn' failed to satisfy constraint");
    if (!NAME.test(p.RoleSessionName ?? '')) {
      throw new StsError('ValidationError', 400, "1 validation error detected: Value at 'roleSessionName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]*");
    }
    const duration = p.DurationSeconds === undefined ? 3600 : Number(p.DurationSeconds);
    const max = this.#opts.roleMaxSession ?? 3600;
    if (!Number.isInteger(duration) || duration < 900) {
      throw new StsError('ValidationError', 400, "1 validation error detected: Value at 'durationSeconds' failed to satisfy constraint: Member must have value greater than or equal to 900");
    }
    if (duration > max) throw new StsError('ValidationError', 400, 'The requested DurationSeconds exceeds the MaxSessionDuration set for this role.');
    if (p.Policy !== undefined) {
      if (p.Policy.length > 2048) {
        throw new StsError('ValidationError', 400, "1 validation error detected: Value at 'policy' failed to satisfy constraint: Member must have length less than or equal to 2048");
      }
      try {
        const doc = JSON.parse(p.Policy) as { Version?: unknown; Statement?: unknown };
        if (doc.Version !== '2012-10-17' || !Array.isArray(doc.Statement)) throw new Error('shape');
      } catch {
        throw new StsError('MalformedPolicyDocument', 400, 'The policy is not in the valid JSON format.');
      }
    }
    return { account: arn[1]!, role: arn[2]!, duration };
  }

  #fault(call: StsCall): void {
    const fault = this.#faults.shift();
    if (fault) throw new StsError(fault.code, fault.status, fault.message || defaultMessage(fault.code, call.params.RoleArn), fault.type);
  }

  #deny(call: StsCall, action: string): void {
    if (this.#opts.trust && !this.#opts.trust(call)) {
      throw new StsError('AccessDenied', 403, `Not authorized to perform ${action} on resource: ${call.params.RoleArn}`);
    }
  }

  #assumeRole(call: StsCall): string {
    const p = call.params;
    const { account, role, duration } = this.#checkCommon(call);
    if (p.SourceIdentity !== undefined && (!NAME.test(p.SourceIdentity) || p.SourceIdentity.toLowerCase().startsWith('aws:'))) {
      throw new StsError('ValidationError', 400, "1 validation error detected: Value at 'sourceIdentity' failed to satisfy constraint");
    }
    const tags: Record<string, string> = {};
    const seen = new Set<string>();
    for (let i = 1; p[`Tags.member.${i}.Key`] !== undefined; i++) {
      const key = p[`Tags.member.${i}.Key`]!;
      const value = p[`Tags.member.${i}.Value`] ?? '';
      if (!TAG_KEY.test(key) || !TAG_VALUE.test(value)) throw new StsError('ValidationError', 400, `tag ${i} fails the tag constraints`);
      // Tag keys are case-insensitive for uniqueness.
      if (seen.has(key.toLowerCase())) throw new StsError('InvalidParameterValue', 400, 'Duplicate tag keys found');
      seen.add(key.toLowerCase());
      tags[key] = value;
    }
    if (Object.keys(tags).length > 50) throw new StsError('ValidationError', 400, 'at most 50 session tags');
    const transitive: string[] = [];
    for (let i = 1; p[`TransitiveTagKeys.member.${i}`] !== undefined; i++) transitive.push(p[`TransitiveTagKeys.member.${i}`]!);
    for (const k of transitive) if (!(k in tags)) throw new StsError('InvalidParameterValue', 400, 'Transitive tag keys must be session tag keys');
    call.tags = tags;
    call.transitiveTagKeys = transitive;
    call.sourceIdentity = p.SourceIdentity;
    this.#deny(call, 'sts:AssumeRole');
    this.#fault(call);
    return this.#issue(call, 'AssumeRole', account, role, duration, '');
  }

  async #assumeRoleWithWebIdentity(req: IncomingMessage, call: StsCall): Promise<string> {
    // AssumeRoleWithWebIdentity is unsigned: the token is the proof. Leash must not send AWS keys.
    if (req.headers.authorization !== undefined) {
      throw new StsError('ValidationError', 400, 'contract: AssumeRoleWithWebIdentity must be unsigned (no Authorization header)');
    }
    const { account, role, duration } = this.#checkCommon(call);
    const token = call.params.WebIdentityToken;
    if (!token || token.length < 4 || token.length > 20000) throw new StsError('ValidationError', 400, "Value at 'webIdentityToken' failed to satisfy constraint");
    const oidc = this.#opts.oidc;
    if (!oidc || !this.#jwks) throw new StsError('InvalidIdentityToken', 400, 'No OpenIDConnect provider found in your account for this issuer');
    let claims: JWTPayload;
    try {
      ({ payload: claims } = await jwtVerify(token, this.#jwks, {
        issuer: oidc.issuer,
        audience: [...oidc.audiences],
        algorithms: ['ES256', 'EdDSA', 'RS256'],
        currentDate: new Date(this.#now()),
      }));
    } catch (err) {
      if (err instanceof joseErrors.JWTExpired) throw new StsError('ExpiredTokenException', 400, 'Token expired: current date/time must be before the expiration date/time');
      if (err instanceof joseErrors.JWKSTimeout || (err instanceof TypeError && /fetch/i.test(err.message))) {
        throw new StsError('IDPCommunicationError', 400, "Couldn't retrieve verification key from your identity provider");
      }
      throw new StsError('InvalidIdentityToken', 400, `Couldn't verify the web identity token (${(err as Error).constructor.name})`);
    }
    if (typeof claims.sub !== 'string' || claims.sub === '') throw new StsError('InvalidIdentityToken', 400, 'Token has no sub');
    call.claims = claims;
    const sourceIdentity = claims['https://aws.amazon.com/source_identity'];
    if (sourceIdentity !== undefined && (typeof sourceIdentity !== 'string' || !NAME.test(sourceIdentity))) {
      throw new StsError('InvalidIdentityToken', 400, 'The source_identity claim fails the SourceIdentity constraints');
    }
    call.sourceIdentity = sourceIdentity as string | undefined;
    const tagsClaim = claims['https://aws.amazon.com/tags'];
    const tags: Record<string, string> = {};
    const transitive: string[] = [];
    if (tagsClaim !== undefined) {
      const { principal_tags, transitive_tag_keys } = tagsClaim as { principal_tags?: unknown; transitive_tag_keys?: unknown };
      if (typeof principal_tags !== 'object' || principal_tags === null) throw new StsError('InvalidIdentityToken', 400, 'principal_tags must be an object');
      for (const [k, v] of Object.entries(principal_tags)) {
        // Each tag is a one-element array of strings.
        if (!Array.isArray(v) || v.length !== 1 || typeof v[0] !== 'string' || !TAG_KEY.test(k) || !TAG_VALUE.test(v[0])) {
          throw new StsError('InvalidIdentityToken', 400, `principal tag ${k} is not a one-value array`);
        }
        tags[k] = v[0];
      }
      if (transitive_tag_keys !== undefined) {
        if (!Array.isArray(transitive_tag_keys) || transitive_tag_keys.some((k) => typeof k !== 'string' || !(k in tags))) {
          throw new StsError('InvalidIdentityToken', 400, 'transitive_tag_keys must name principal tags');
        }
        transitive.push(...(transitive_tag_keys as string[]));
      }
    }
    call.tags = tags;
    call.transitiveTagKeys = transitive;
    this.#deny(call, 'sts:AssumeRoleWithWebIdentity');
    this.#fault(call);
    const extra = `<SubjectFromWebIdentityToken>${xmlEscape(claims.sub)}</SubjectFromWebIdentityToken><Audience>${xmlEscape(String(Array.isArray(claims.aud) ? claims.aud[0] : claims.aud))}</Audience><Provider>${xmlEscape(new URL(oidc.issuer).host)}</Provider>`;
    return this.#issue(call, 'AssumeRoleWithWebIdentity', account, role, duration, extra);
  }

  #issue(call: StsCall, action: string, account: string, role: string, duration: number, extra: string): string {
    const accessKeyId = `ASIA${upperAlnum(16)}`;
    const expiration = isoSeconds(this.#now() + duration * 1000);
    call.issued = { accessKeyId, expiration, tokenIssueTime: isoSeconds(this.#now()) };
    const session = call.params.RoleSessionName!;
    const packed = call.params.Policy === undefined && !call.tags ? '' : `<PackedPolicySize>${Math.ceil(((call.params.Policy?.length ?? 0) / 2048) * 100)}</PackedPolicySize>`;
    const source = call.sourceIdentity === undefined ? '' : `<SourceIdentity>${xmlEscape(call.sourceIdentity)}</SourceIdentity>`;
    return this.#result(
      action,
      `<Credentials><AccessKeyId>${accessKeyId}</AccessKeyId><SecretAccessKey>${randomBytes(30).toString('base64')}</SecretAccessKey>` +
        `<SessionToken>${randomBytes(96).toString('base64')}</SessionToken><Expiration>${expiration}</Expiration></Credentials>` +
        `${extra}<AssumedRoleUser><Arn>arn:aws:sts::${account}:assumed-role/${xmlEscape(role)}/${xmlEscape(session)}</Arn>` +
        `<AssumedRoleId>AROA${upperAlnum(17)}:${xmlEscape(session)}</AssumedRoleId></AssumedRoleUser>${packed}${source}`,
    );
  }

  #result(action: string, inner: string): string {
    return (
      `<${action}Response xmlns="${STS_NS}"><${action}Result>${inner}</${action}Result>` +
      `<ResponseMetadata><RequestId>${randomBytes(16).toString('hex')}</RequestId></ResponseMetadata></${action}Response>`
    );
  }
}
