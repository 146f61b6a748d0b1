import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { TLSSocket } from 'node:tls';
import type { AuthInfo } from '@modelcontextprotocol/sdk/server/auth/types.js';
import { LeashVerifyError } from '../errors.js';
import { sendVerifyError } from '../middleware.js';
import { protectedResourceHandler, resourceMetadataUrl } from '../protected-resource.js';
import { createMemoryReplayCache } from '../replay-memory.js';
import type { LeashPrincipal, LeashVerifier } from '../verifier.js';
import { argumentsHash, canonicalJson, MCP_TOOL_CALL_TYPE, toolCallDetailsOf, type ToolCallDetail } from './tool-call.js';
import type { SingleUseGuard } from './single-use.js';
import type { UsageRecordInput, UsageRecordOutcome, UsageReporter } from '../usage-reporter.js';

/** The scope that lets a session token call one tool: `tool:<name>`. */
export const TOOL_SCOPE_PREFIX = 'tool:';
export const toolScope = (tool: string): string => `${TOOL_SCOPE_PREFIX}${tool}`;

/** One tool call as the helper saw it: the seam for usage reporting (route = tool name). */
export interface ToolCallRecord {
  readonly jti: string;
  readonly plugin: string;
  readonly sub: string;
  readonly task: string;
  readonly tool: string;
  /** A per-call credential (authorization_details) or a session token's `tool:` scope. */
  readonly credential: 'per-call' | 'scope';
  /** `allowed`: the call reached the MCP server (then `status` is its HTTP answer); `refused`: the helper stopped it. */
  readonly outcome: 'allowed' | 'refused';
  readonly status: number;
  /** Why it was refused (the RFC 6750 error code). */
  readonly error?: string;
  /** When the helper decided (ms since the epoch). */
  readonly at: number;
}

/** How a refused tool call maps onto Leash's usage outcomes (the RFC 6750 error the helper answered). */
const REFUSAL_OUTCOMES: Readonly<Record<string, UsageRecordOutcome>> = {
  insufficient_scope: 'missing_scope',
  invalid_token: 'invalid_token',
  invalid_dpop_proof: 'bad_dpop',
  use_dpop_nonce: 'bad_dpop',
  temporarily_unavailable: 'unavailable',
};

/**
 * One tool call as a Leash usage record (`POST /usage`): the MCP server's resource
 * identifier as audience, `TOOL` as method and the tool name as route (never arguments).
 */
export function toolCallUsage(record: ToolCallRecord, audience: string): UsageRecordInput {
  const outcome: UsageRecordOutcome | undefined = record.outcome === 'allowed' ? (record.status < 400 ? 'ok' : undefined) : (REFUSAL_OUTCOMES[record.error ?? ''] ?? 'invalid_token');
  return {
    at: record.at,
    jti: record.jti,
    plugin: record.plugin,
    task: record.task,
    audience,
    method: 'TOOL',
    route: record.tool,
    status: record.status,
    ...(outcome !== undefined ? { outcome } : {}),
  };
}

export interface LeashMcpAuthOptions {
  /** `createLeashVerifier({ issuer, audience: resource, revocations? })`. */
  readonly verifier: LeashVerifier;
  /**
   * The MCP server's resource identifier: the URL of its Streamable HTTP endpoint, e.g.
   * `https://mcp.example.com/mcp`. It is the grant's audience in Leash and the `resource`
   * of the RFC 9728 document.
   */
  readonly resource: string;
  /** Leash's issuer URL (named in `authorization_servers`). */
  readonly authorizationServer: string;
  /** Scopes every request needs (e.g. a base `mcp` scope); tool calls need `tool:<name>` on top, or a per-call credential. */
  readonly requiredScopes?: readonly string[];
  /** Advertised in the RFC 9728 document (`scopes_supported`) when given. */
  readonly scopesSupported?: readonly string[];
  readonly resourceName?: string;
  /**
   * Where spent per-call credentials are remembered. Default: in this process (one
   * replica). With several replicas use `leashSingleUse(...)` (Leash's store decides, one
   * round trip per call) or a shared cache of your own.
   */
  readonly singleUse?: SingleUseGuard;
  /** Called once per tool call, allowed or refused, after the answer is sent: report it as a usage record. */
  readonly onToolCall?: (record: ToolCallRecord) => void;
  /**
   * Leash's usage reporter (`createUsageReporter`, this server's resource-server
   * credentials): each tool call is also sent to Leash (`POST /usage`) as a usage record,
   * `method` `TOOL` and the tool name as `route` (toolCallUsage).
   */
  readonly usage?: Pick<UsageReporter, 'report'>;
  /** ms since the epoch; default Date.now. */
  readonly now?: () => number;
}

export interface LeashMcpAuth {
  /** `resource_metadata` URL named in every challenge. */
  readonly resourceMetadataUrl: string;
  /** Serves the RFC 9728 document; mount at the app root. */
  readonly metadata: RequestHandler;
  /** Verifies the Leash token; sets `req.auth` (the SDK's AuthInfo, passed to tool handlers as `extra.authInfo`) and `req.leash`. */
  readonly authenticate: RequestHandler;
  /**
   * Checks every `tools/call` in the (already JSON-parsed) body against the token before
   * the MCP server sees it. Mount after `express.json()` and `authenticate`.
   */
  readonly authorizeToolCalls: RequestHandler;
  /** `[authenticate, authorizeToolCalls]`, for `app.post('/mcp', express.json(), ...leash.protect, handler)`. */
  readonly protect: readonly RequestHandler[];
}

declare module 'express-serve-static-core' {
  interface Request {
    /** Set by the Leash MCP helper: what the MCP SDK's Streamable HTTP transport hands tool handlers. */
    auth?: AuthInfo;
  }
}

interface ToolCallMessage {
  readonly name: string;
  readonly args: Record<string, unknown>;
}

/** The `tools/call` requests of a JSON-RPC message or batch; a malformed call is refused, never skipped. */
function toolCalls(body: unknown): ToolCallMessage[] | 'malformed' {
  const messages = Array.isArray(body) ? body : [body];
  const calls: ToolCallMessage[] = [];
  for (const m of messages) {
    if (typeof m !== 'object' || m === null || (m as { method?: unknown }).method !== 'tools/call') continue;
    const params = (m as { params?: unknown }).params;
    if (typeof params !== 'object' || params === null) return 'malformed';
    const { name, arguments: args } = params as { name?: unknown; arguments?: unknown };
    if (typeof name !== 'string' || name === '') return 'malformed';
    if (args !== undefined && (typeof args !== 'object' || args === null || Array.isArray(args))) return 'malformed';
    calls.push({ name, args: (args as Record<string, unknown> | undefined) ?? {} });
  }
  return calls;
}

function sameValue(a: unknown, b: unknown): boolean {
  try {
    return canonicalJson(a) === canonicalJson(b);
  } catch {
    return false;
  }
}

/** Why a per-call credential does not cover this call, or undefined when it does. */
function detailMismatch(detail: ToolCallDetail, call: ToolCallMessage, resource: string): string | undefined {
  if (detail.locations[0] !== resource) return 'the per-call credential is for another MCP server';
  if (detail.tool !== call.name) return `the per-call credential is for tool '${detail.tool}', not this one`;
  let hash: string;
  try {
    hash = argumentsHash(call.args);
  } catch {
    return 'the call arguments are not JSON';
  }
  if (hash !== detail.arguments_sha256) return 'the per-call credential was issued for other arguments: get a credential for this call';
  for (const [k, v] of Object.entries(detail.arguments ?? {})) {
    // The values the policy and the approver saw must be the call's own.
    if (!Object.hasOwn(call.args, k) || !sameValue(call.args[k], v)) return 'the per-call credential names argument values this call does not have';
  }
  return undefined;
}

/**
 * Leash in front of an MCP server built on the SDK's Streamable HTTP transport: the RFC 9728
 * document, bearer/DPoP verification with `resource_metadata` challenges, and tool-level
 * authorization before the tool runs. A tool call passes with either a per-call credential
 * (`authorization_details` of type `leash_mcp_tool_call` naming this server, the tool and the
 * SHA-256 of these exact arguments; single use) or a session token whose scope has
 * `tool:<name>`. Otherwise the answer is 403 `insufficient_scope` naming the scope to step up
 * to (MCP authorization, "Scope Challenge Handling").
 */
export function createLeashMcpAuth(opts: LeashMcpAuthOptions): LeashMcpAuth {
  const metadataUrl = resourceMetadataUrl(opts.resource);
  const origin = new URL(opts.resource).origin;
  const now = opts.now ?? Date.now;
  const singleUse: SingleUseGuard = opts.singleUse ?? memorySingleUse({ now });
  const challenge = { resourceMetadataUrl: metadataUrl };
  const dpopAlgs = opts.verifier.dpopAlgorithms;
  const baseScopes = opts.requiredScopes ?? [];

  const metadata = protectedResourceHandler({
    resource: opts.resource,
    authorizationServer: opts.authorizationServer,
    ...(opts.scopesSupported ? { scopesSupported: opts.scopesSupported } : {}),
    dpopAlgorithms: dpopAlgs,
    authorizationDetailsTypes: [MCP_TOOL_CALL_TYPE],
    ...(opts.resourceName !== undefined ? { resourceName: opts.resourceName } : {}),
  });

  async function authenticate(req: Request, res: Response, next: NextFunction): Promise<void> {
    let principal: LeashPrincipal;
    try {
      principal = await opts.verifier.verify(
        {
          authorization: req.headers.authorization,
          dpop: req.headers.dpop,
          method: req.method,
          url: `${origin}${req.originalUrl}`,
          // Certificate-bound tokens (RFC 8705): the certificate of this TLS connection.
          clientCertificate: req.socket instanceof TLSSocket ? req.socket.getPeerX509Certificate() : undefined,
        },
        { requiredScopes: baseScopes },
      );
    } catch (err) {
      if (err instanceof LeashVerifyError) return sendVerifyError(res, err, dpopAlgs, challenge);
      return next(err);
    }
    const token = (req.headers.authorization ?? '').trim().split(/ +/)[1] ?? '';
    req.leash = principal;
    res.locals.leash = principal;
    req.auth = {
      token,
      clientId: principal.plugin,
      scopes: [...principal.scopes],
      expiresAt: principal.exp,
      resource: new URL(opts.resource),
      extra: { leash: principal },
    };
    next();
  }

  async function authorizeToolCalls(req: Request, res: Response, next: NextFunction): Promise<void> {
    const principal = req.leash;
    if (!principal) return next(new TypeError('authorizeToolCalls: mount authenticate first'));
    if (req.method !== 'POST') return next();
    // Fail closed: an unparsed body would reach the transport, which parses it itself, unchecked.
    if (req.body === undefined) return next(new TypeError('authorizeToolCalls: mount express.json() before it'));
    const calls = toolCalls(req.body);
    const details = toolCallDetailsOf(principal.claims.authorization_details);
    const perCall = details.length > 0 || principal.claims.authorization_details !== undefined;
    const refuse = (err: LeashVerifyError, tool: string | undefined) => {
      if (tool !== undefined) report(principal, tool, perCall, 'refused', err.status, err.error);
      sendVerifyError(res, err, dpopAlgs, challenge);
    };
    if (calls === 'malformed') return refuse(new LeashVerifyError('invalid_request', 'a tools/call request without a tool name or with non-object arguments'), undefined);

    if (perCall) {
      // A per-call credential is good for its one call and nothing else.
      const [call] = calls;
      if (calls.length !== 1 || call === undefined) {
        return refuse(new LeashVerifyError('insufficient_scope', 'a per-call credential carries exactly one tool call; use the session token for anything else'), call?.name);
      }
      const detail = details.length === 1 ? details[0] : undefined;
      const why = detail === undefined ? 'the credential does not name exactly one tool call' : detailMismatch(detail, call, opts.resource);
      if (why !== undefined) return refuse(new LeashVerifyError('insufficient_scope', why), call.name);
      let first: boolean;
      try {
        first = await singleUse.consume({ jti: principal.jti, expiresAt: principal.exp * 1000, token: req.auth?.token ?? '' });
      } catch (err) {
        // Cannot tell whether it was spent: refuse rather than risk a second run.
        return refuse(new LeashVerifyError('temporarily_unavailable', 'the single-use check is unavailable; retry later', { cause: err }), call.name);
      }
      if (!first) return refuse(new LeashVerifyError('invalid_token', 'this per-call credential was already used (or Leash no longer accepts it)'), call.name);
      return allow(res, principal, call.name, true, next);
    }

    for (const call of calls) {
      if (!principal.scopes.includes(toolScope(call.name))) {
        const needed = [...new Set([...baseScopes, ...principal.scopes, toolScope(call.name)])];
        return refuse(new LeashVerifyError('insufficient_scope', `the token lacks scope ${toolScope(call.name)}`, { scope: needed }), call.name);
      }
    }
    const [only] = calls;
    if (calls.length === 1 && only !== undefined) return allow(res, principal, only.name, false, next);
    for (const call of calls) report(principal, call.name, false, 'allowed', 200, undefined, res);
    next();
  }

  function allow(res: Response, principal: LeashPrincipal, tool: string, perCall: boolean, next: NextFunction): void {
    report(principal, tool, perCall, 'allowed', 0, undefined, res);
    next();
  }

  /** Refusals are reported at once; allowed calls when the MCP server's answer is sent. */
  function report(principal: LeashPrincipal, tool: string, perCall: boolean, outcome: 'allowed' | 'refused', status: number, error: string | undefined, res?: Response): void {
    const { onToolCall, usage } = opts;
    if (!onToolCall && !usage) return;
    const sink = (r: ToolCallRecord) => {
      if (usage) usage.report(toolCallUsage(r, opts.resource));
      onToolCall?.(r);
    };
    const at = now();
    const record = (s: number): ToolCallRecord => ({
      jti: principal.jti,
      plugin: principal.plugin,
      sub: principal.sub,
      task: principal.task,
      tool,
      credential: perCall ? 'per-call' : 'scope',
      outcome,
      status: s,
      ...(error !== undefined ? { error } : {}),
      at,
    });
    const emit = (r: ToolCallRecord) => {
      try {
        sink(r);
      } catch {
        // A reporter's fault never changes the answer.
      }
    };
    if (res) res.once('finish', () => emit(record(res.statusCode)));
    else emit(record(status));
  }

  const auth =
    (fn: (req: Request, res: Response, next: NextFunction) => Promise<void>): RequestHandler =>
    (req, res, next) => {
      fn(req, res, next).catch(next);
    };
  const authenticateHandler = auth(authenticate);
  const authorizeHandler = auth(authorizeToolCalls);
  return { resourceMetadataUrl: metadataUrl, metadata, authenticate: authenticateHandler, authorizeToolCalls: authorizeHandler, protect: [authenticateHandler, authorizeHandler] };
}

/** Per-call credentials remembered in this process until they expire. */
export function memorySingleUse(opts: { now?: () => number; maxEntries?: number } = {}): SingleUseGuard {
  const cache = createMemoryReplayCache({ ...(opts.now ? { now: opts.now } : {}), ...(opts.maxEntries ? { maxEntries: opts.maxEntries } : {}) });
  return { consume: ({ jti, expiresAt }) => cache.remember(`leash-call:${jti}`, expiresAt) };
}
