import { IncomingMessage, type ServerResponse } from 'node:http';
import * as querystring from 'node:querystring';
import { LeashError } from '../../errors/leash-error.js';
import { toOAuthError } from '../../errors/oauth-error.js';
import { sendNoStoreJson } from './no-store-json.js';
import { splitClientCredentials, type ClientCredentials } from '../../exchange/client-authentication.js';

type NodeHandler = (req: IncomingMessage, res: ServerResponse) => void;

/**
 * The client oidc-provider sees when a token request names none. Plugins are public
 * clients whose attestation already names exactly one plugin (RFC 8693 does not require
 * `client_id`), so the pipeline resolves the plugin from the attestation alone. Not a
 * valid plugin id (it has ':'), so it never collides with one; a request that sends it
 * explicitly is treated exactly like one that sends none.
 */
export const ATTESTED_CLIENT_ID = 'urn:leash:client:attested';

/** The client_id the caller actually named, if any. */
export function namedClientId(clientId: string | undefined): string | undefined {
  return clientId === undefined || clientId === '' || clientId === ATTESTED_CLIENT_ID ? undefined : clientId;
}

/** The client credentials the gate took off a token request's form (see clientCredentialsOf). */
const CREDENTIALS = Symbol('leash.clientCredentials');
type WithCredentials = IncomingMessage & { [CREDENTIALS]?: ClientCredentials };

/** The client assertion a token request carried, for the pipeline to verify; undefined when it sent none. */
export function clientCredentialsOf(req: IncomingMessage): ClientCredentials | undefined {
  return (req as WithCredentials)[CREDENTIALS];
}

const FORM = 'application/x-www-form-urlencoded';

function mediaType(contentType: string | undefined): { type: string; charset: string | undefined } {
  const [type = '', ...params] = (contentType ?? '').split(';');
  const charset = params.map((p) => p.trim().split('=')).find(([k]) => k?.toLowerCase() === 'charset')?.[1];
  return { type: type.trim().toLowerCase(), charset: charset?.replace(/^"|"$/g, '') };
}

/** Reads the whole body, or undefined past `limit` bytes. */
async function readBody(req: IncomingMessage, limit: number): Promise<Buffer | undefined> {
  const chunks: Buffer[] = [];
  let received = 0;
  // Not destroyed on an early return: the answer (413) must still reach the client.
  for await (const chunk of req.iterator({ destroyOnReturn: false })) {
    received += (chunk as Buffer).length;
    if (received > limit) return undefined;
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks, received);
}

/**
 * A request oidc-provider can read as if it came off the wire: the same socket, method,
 * URL and headers, with `body` as its stream (and headers adjusted to it).
 */
function replay(req: IncomingMessage, body: Buffer, headers: Record<string, string>): IncomingMessage {
  const copy = new IncomingMessage(req.socket);
  copy.method = req.method;
  copy.url = req.url ?? '/';
  copy.httpVersionMajor = req.httpVersionMajor;
  copy.httpVersionMinor = req.httpVersionMinor;
  copy.httpVersion = req.httpVersion;
  const replaced = new Set(Object.keys(headers));
  const raw: string[] = [];
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    if (!replaced.has((req.rawHeaders[i] as string).toLowerCase())) raw.push(req.rawHeaders[i] as string, req.rawHeaders[i + 1] as string);
  }
  for (const [name, value] of Object.entries(headers)) raw.push(name, value);
  copy.rawHeaders = raw;
  // Headers as seen so far (a wrapper may have pinned X-Forwarded-*), with the body's own;
  // both views are set, as the parser would have (the DPoP header is read distinct).
  copy.headers = { ...req.headers, ...headers };
  copy.headersDistinct = { ...req.headersDistinct, ...Object.fromEntries(Object.entries(headers).map(([k, v]) => [k, [v]])) };
  copy.complete = true;
  // The whole body is already here: never ask the socket for more.
  copy._read = () => undefined;
  copy.push(body);
  copy.push(null);
  return copy;
}

export interface TokenClientOptions {
  /** The largest form body read (settings.max_body_bytes). */
  readonly maxBodyBytes: () => number;
  /** A request refused here, before oidc-provider: audited (before the answer leaves) like any refusal. */
  readonly onRefused: (err: LeashError, clientId: string | undefined) => Promise<void>;
}

/**
 * In front of oidc-provider's token endpoint: refuses client credentials Leash cannot
 * verify (`invalid_client`), takes a client assertion off the form for the pipeline to
 * verify (clientCredentialsOf), and lets a request without `client_id` through under
 * ATTESTED_CLIENT_ID so the attestation (or the assertion) alone identifies the plugin. Every other request
 * (another route, another content type, an Authorization header for oidc-provider to
 * refuse) passes untouched.
 */
export function tokenClientGate(handler: NodeHandler, opts: TokenClientOptions): NodeHandler {
  const refuse = async (res: ServerResponse, err: LeashError, clientId: string | undefined): Promise<void> => {
    await opts.onRefused(err, clientId).catch(() => undefined);
    const { status, body } = toOAuthError(err);
    sendNoStoreJson(res, status, body);
  };
  return (req, res) => {
    const path = (req.url ?? '').split('?')[0];
    const { type, charset } = mediaType(req.headers['content-type']);
    if (req.method !== 'POST' || path !== '/token' || type !== FORM) {
      handler(req, res);
      return;
    }
    void (async () => {
      const limit = opts.maxBodyBytes();
      const body = await readBody(req, limit);
      if (body === undefined) {
        res.setHeader('Connection', 'close');
        return refuse(res, new LeashError('ERR_REQUEST_TOO_LARGE', `request body larger than ${limit} bytes`), undefined);
      }
      let params: querystring.ParsedUrlQuery;
      try {
        // Decoded as oidc-provider decodes it, so both see the same parameters.
        params = querystring.parse(charset === undefined ? body.toString('utf8') : new TextDecoder(charset).decode(body));
      } catch {
        // An unknown charset: oidc-provider refuses it with its own error.
        return handler(replay(req, body, {}), res);
      }
      const clientId = typeof params.client_id === 'string' ? params.client_id : undefined;
      let split: ReturnType<typeof splitClientCredentials<querystring.ParsedUrlQuery>>;
      try {
        split = splitClientCredentials(params);
      } catch (e) {
        if (e instanceof LeashError) return refuse(res, e, namedClientId(clientId));
        throw e;
      }
      const credentials = split.credentials;
      if (!credentials && (params.client_id !== undefined || req.headers.authorization !== undefined)) {
        return handler(replay(req, body, {}), res);
      }
      // oidc-provider sees a public client: the assertion is the pipeline's to verify.
      const rest = split.params;
      const forwarded = Buffer.from(querystring.stringify({ ...rest, client_id: params.client_id ?? ATTESTED_CLIENT_ID }), 'utf8');
      const copy = replay(req, forwarded, { 'content-type': FORM, 'content-length': String(forwarded.length) }) as WithCredentials;
      if (credentials) copy[CREDENTIALS] = credentials;
      handler(copy, res);
    })().catch(() => {
      // The client went away mid-body: nothing to answer.
      if (!res.headersSent) res.destroy();
    });
  };
}
