import type { OAuthClientProvider, OAuthDiscoveryState } from '@modelcontextprotocol/sdk/client/auth.js';
import type { Middleware } from '@modelcontextprotocol/sdk/client/middleware.js';
import type { AuthorizationServerMetadata, OAuthClientInformationMixed, OAuthClientMetadata, OAuthTokens } from '@modelcontextprotocol/sdk/shared/auth.js';
import type { FetchLike } from '@modelcontextprotocol/sdk/shared/transport.js';
import { readJson } from '../discovery.js';
import { LeashExchangeError } from '../errors.js';
import { attestationTokenType, LeashPluginClient, readAttestation, type AttestationSource, type LeashToken } from '../plugin-client.js';
import { resourceMetadataUrl } from '../protected-resource.js';
import { toolCallDetail } from './tool-call.js';

const TOKEN_EXCHANGE_GRANT = 'urn:ietf:params:oauth:grant-type:token-exchange';

/** What the agent is told while a tool call waits for a human. */
export interface PendingToolCall {
  readonly approvalId: string;
  readonly tool: string;
  /** Seconds between polls. */
  readonly interval: number;
}

export interface LeashMcpAgentOptions {
  /** Leash's issuer URL. */
  readonly issuer: string;
  /** The plugin id (`client_id`). */
  readonly clientId: string;
  readonly attestation: AttestationSource;
  /** The task the orchestrator opened (a function: read at every exchange). */
  readonly task: string | (() => string);
  /** The MCP server's Streamable HTTP endpoint = its resource identifier. */
  readonly serverUrl: string;
  /** Scopes of the session token (initialize, tools/list, and `tool:<name>` for tools called without a per-call credential). */
  readonly scope?: readonly string[];
  /** Which tool calls get their own credential (`authorization_details`). Default: every one. */
  readonly perCall?: (tool: string) => boolean;
  /** Argument names to show Leash (policy conditions, the approver), per tool. */
  readonly expose?: Readonly<Record<string, readonly string[]>>;
  /** Shown to approvers. */
  readonly justification?: string;
  /** Told when a call waits for a human; the agent keeps polling. */
  readonly onApprovalPending?: (pending: PendingToolCall) => void;
  /** Give up waiting for a human after this long. Default 10 minutes. */
  readonly approvalTimeoutMs?: number;
  readonly fetch?: typeof fetch;
  /** For tests: how to wait between polls. */
  readonly sleep?: (ms: number) => Promise<void>;
}

/** A tool call Leash refused a credential for: carries the OAuth error. */
export class LeashToolCallRefused extends Error {
  readonly tool: string;
  /** The token endpoint's answer (`error`: `access_denied`, `invalid_grant`, ...). */
  readonly exchangeError: LeashExchangeError;
  constructor(tool: string, exchangeError: LeashExchangeError) {
    super(`Leash refused a credential for tool '${tool}': ${exchangeError.message}`, { cause: exchangeError });
    this.name = 'LeashToolCallRefused';
    this.tool = tool;
    this.exchangeError = exchangeError;
  }
}

export interface LeashMcpAgent {
  /** For `new StreamableHTTPClientTransport(url, { authProvider, fetch })`: the session token, RFC 9728 discovery, step-up. */
  readonly authProvider: OAuthClientProvider;
  /** The SDK fetch middleware that gives every tool call its own credential. */
  readonly middleware: Middleware;
  /** `middleware` applied to the global (or given) fetch. */
  readonly fetch: FetchLike;
}

const delay = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * The agent side of Leash in front of MCP servers, on the SDK's own auth hooks:
 * - `authProvider` (OAuthClientProvider, non-interactive): the SDK discovers the server's
 *   RFC 9728 document, then asks Leash for a session token by token exchange (the plugin's
 *   attestation as subject_token, the task, `resource` = the server); a 403
 *   `insufficient_scope` steps up to the scope the server named.
 * - `middleware` (SDK fetch middleware): each `tools/call` gets its own credential, an
 *   exchange with RFC 9396 `authorization_details` naming the server, the tool and the
 *   SHA-256 of its arguments; when a human must approve, it polls until they decide.
 */
export function createLeashMcpAgent(opts: LeashMcpAgentOptions): LeashMcpAgent {
  const issuer = opts.issuer.replace(/\/+$/, '');
  const fetchFn = opts.fetch ?? globalThis.fetch;
  const sleep = opts.sleep ?? delay;
  const taskId = () => (typeof opts.task === 'function' ? opts.task() : opts.task);
  const plugin = new LeashPluginClient({ issuer: opts.issuer, clientId: opts.clientId, attestation: opts.attestation, fetch: fetchFn });
  const serverUrl = new URL(opts.serverUrl).href;
  const baseScope = [...(opts.scope ?? [])];
  let challengedScope: string | undefined;
  let tokens: OAuthTokens | undefined;
  let discovery: Promise<OAuthDiscoveryState> | undefined;

  /**
   * RFC 9728 discovery done here rather than by the SDK: Leash has no authorization
   * endpoint, and the SDK's RFC 8414 schema requires one (RFC 8414 §2 does not, for a
   * server without grants that use it). The checks are the RFC's: the document names this
   * very resource and Leash, and Leash's metadata names its own issuer.
   */
  async function discover(): Promise<OAuthDiscoveryState> {
    const prmUrl = resourceMetadataUrl(opts.serverUrl);
    const prmRes = await fetchFn(prmUrl, { headers: { accept: 'application/json' } });
    const prm = await readJson(prmRes);
    if (!prmRes.ok || !prm) throw new Error(`no protected resource metadata at ${prmUrl} (HTTP ${prmRes.status})`);
    if (prm.resource !== opts.serverUrl) throw new Error(`the metadata at ${prmUrl} names resource ${String(prm.resource)}, not ${opts.serverUrl} (RFC 9728 §3.3)`);
    const servers = Array.isArray(prm.authorization_servers) ? prm.authorization_servers : [];
    if (!servers.some((s) => typeof s === 'string' && s.replace(/\/+$/, '') === issuer)) throw new Error(`${opts.serverUrl} does not name ${issuer} as its authorization server`);
    const asUrl = `${issuer}/.well-known/oauth-authorization-server`;
    const asRes = await fetchFn(asUrl, { headers: { accept: 'application/json' } });
    const as = await readJson(asRes);
    if (!asRes.ok || !as || typeof as.issuer !== 'string' || as.issuer.replace(/\/+$/, '') !== issuer || typeof as.token_endpoint !== 'string') {
      throw new Error(`the authorization server metadata at ${asUrl} does not name issuer ${issuer} with a token_endpoint (RFC 8414 §3.3)`);
    }
    return {
      authorizationServerUrl: opts.issuer,
      resourceMetadataUrl: prmUrl,
      resourceMetadata: prm as unknown as NonNullable<OAuthDiscoveryState['resourceMetadata']>,
      // Only token_endpoint and its auth methods are read on a non-interactive flow.
      authorizationServerMetadata: as as unknown as AuthorizationServerMetadata,
    };
  }

  const authProvider: OAuthClientProvider = {
    get redirectUrl() {
      return undefined;
    },
    get clientMetadata(): OAuthClientMetadata {
      const scope = challengedScope ?? baseScope.join(' ');
      return {
        redirect_uris: [],
        client_name: opts.clientId,
        grant_types: [TOKEN_EXCHANGE_GRANT],
        token_endpoint_auth_method: 'none',
        ...(scope !== '' ? { scope } : {}),
      };
    },
    clientInformation(): OAuthClientInformationMixed {
      return { client_id: opts.clientId, token_endpoint_auth_method: 'none' };
    },
    tokens: () => tokens,
    saveTokens(t: OAuthTokens) {
      tokens = t;
    },
    async prepareTokenRequest(scope?: string): Promise<URLSearchParams> {
      // The SDK adds `resource` (from the RFC 9728 document) and `client_id`.
      const form = new URLSearchParams({
        grant_type: TOKEN_EXCHANGE_GRANT,
        subject_token: await readAttestation(opts.attestation),
        subject_token_type: attestationTokenType(opts.attestation),
        task: taskId(),
      });
      const s = challengedScope ?? scope;
      if (s) form.set('scope', s);
      return form;
    },
    discoveryState() {
      if (!discovery) {
        discovery = discover();
        discovery.catch(() => {
          discovery = undefined;
        });
      }
      return discovery;
    },
    invalidateCredentials(scope) {
      if (scope === 'all' || scope === 'tokens') tokens = undefined;
      if (scope === 'all' || scope === 'discovery') discovery = undefined;
    },
    redirectToAuthorization() {
      throw new Error('Leash issues tokens by token exchange: there is no authorization redirect');
    },
    saveCodeVerifier() {
      throw new Error('Leash issues tokens by token exchange: there is no authorization code');
    },
    codeVerifier() {
      throw new Error('Leash issues tokens by token exchange: there is no authorization code');
    },
  };

  /** A credential for exactly this call; waits for a human when the policy asks for one. */
  async function callToken(tool: string, args: Record<string, unknown>): Promise<LeashToken> {
    const detail = toolCallDetail({ resource: opts.serverUrl, tool, arguments: args, expose: opts.expose?.[tool] ?? [] });
    const deadline = Date.now() + (opts.approvalTimeoutMs ?? 600_000);
    let approvalId: string | undefined;
    for (;;) {
      try {
        return await plugin.exchangeOnce({
          audience: opts.serverUrl,
          task: taskId(),
          authorizationDetails: [detail],
          ...(approvalId !== undefined ? { approvalId } : {}),
          ...(opts.justification !== undefined ? { justification: opts.justification } : {}),
        });
      } catch (err) {
        if (!(err instanceof LeashExchangeError)) throw err;
        const waiting = err.error === 'authorization_pending' || err.error === 'slow_down';
        if (!waiting || err.approvalId === undefined) throw new LeashToolCallRefused(tool, err);
        if (approvalId === undefined) opts.onApprovalPending?.({ approvalId: err.approvalId, tool, interval: err.interval ?? 5 });
        approvalId = err.approvalId;
        if (Date.now() >= deadline) throw new LeashToolCallRefused(tool, err);
        await sleep((err.interval ?? 5) * 1000);
      }
    }
  }

  const middleware: Middleware = (next) => async (input, init) => {
    const url = typeof input === 'string' ? input : input.href;
    let headers = init?.headers;
    if (init?.method === 'POST' && typeof init.body === 'string' && new URL(url).href === serverUrl) {
      const call = toolCallOf(init.body);
      if (call && (opts.perCall?.(call.name) ?? true)) {
        const token = await callToken(call.name, call.args);
        const h = new Headers(init.headers);
        h.set('authorization', `${token.tokenType} ${token.accessToken}`);
        headers = h;
      }
    }
    const res = await next(input, { ...init, ...(headers !== undefined ? { headers } : {}) });
    if ((res.status === 401 || res.status === 403) && new URL(url).href === serverUrl) {
      // The SDK hands prepareTokenRequest the configured scope, not the challenged one: remember it here.
      const scope = /scope="([^"]*)"/.exec(res.headers.get('www-authenticate') ?? '')?.[1];
      if (scope) challengedScope = scope;
    }
    return res;
  };

  const base: FetchLike = (input, init) => fetchFn(input, init);
  return { authProvider, middleware, fetch: middleware(base) };
}

/** The one `tools/call` of a JSON-RPC body, or undefined (batches carry no per-call credential). */
function toolCallOf(body: string): { name: string; args: Record<string, unknown> } | undefined {
  let msg: unknown;
  try {
    msg = JSON.parse(body);
  } catch {
    return undefined;
  }
  if (typeof msg !== 'object' || msg === null || Array.isArray(msg)) return undefined;
  const m = msg as { method?: unknown; params?: { name?: unknown; arguments?: unknown } };
  if (m.method !== 'tools/call' || typeof m.params?.name !== 'string') return undefined;
  const args = m.params.arguments;
  return { name: m.params.name, args: typeof args === 'object' && args !== null && !Array.isArray(args) ? (args as Record<string, unknown>) : {} };
}
