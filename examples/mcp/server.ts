/**
 * An MCP server (the official SDK, Streamable HTTP) with three tools of different effects,
 * with Leash in front: RFC 9728 metadata, token checks, and a tool-level check before any
 * tool runs. In your own server import from `leash-client` and `leash-client/mcp`.
 */
import express from 'express';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { z } from 'zod';
import { createLeashVerifier, type LeashRevocationView } from '../../src/client/index.js';
import { createLeashMcpAuth, type LeashMcpAuthOptions, type SingleUseGuard, type ToolCallRecord } from '../../src/client/mcp/index.js';

export interface ExampleServerOptions {
  /** Leash's issuer URL. */
  readonly leash: string;
  /** Port to listen on (0: any); the resource identifier is `http://127.0.0.1:<port>/mcp`. */
  readonly port?: number;
  /** The public URL of the endpoint when it differs (replicas behind one address). */
  readonly publicUrl?: string;
  /** Several replicas: share single use through Leash (`leashSingleUse`). Default: this process. */
  readonly singleUse?: SingleUseGuard;
  /** Revocations to honour for session tokens (`createRevocationFollower`). */
  readonly revocations?: LeashRevocationView;
  /** The usage seam: one record per tool call. */
  readonly onToolCall?: (record: ToolCallRecord) => void;
  /** Leash's usage reporter (`createUsageReporter` with this server's resource-server credentials): tool calls go to `POST /usage`. */
  readonly usage?: LeashMcpAuthOptions['usage'];
}

export interface ExampleServer {
  /** The MCP endpoint = the resource identifier = the grant's audience in Leash. */
  readonly url: string;
  /** Where this replica listens (equal to `url` unless `publicUrl` was given). */
  readonly local: string;
  /** What the tools did (for the test to see that a refused call never ran). */
  readonly ran: Array<{ tool: string; args: Record<string, unknown>; plugin: string | undefined; task: string | undefined }>;
  close(): Promise<void>;
}

/** The MCP server itself: the tools know nothing of Leash but what `extra.authInfo` says. */
export function buildMcpServer(ran: ExampleServer['ran']): McpServer {
  const server = new McpServer({ name: 'support-tools', version: '1.0.0' });
  const who = (extra: { authInfo?: { extra?: Record<string, unknown> } }) => {
    const p = extra.authInfo?.extra?.leash as { plugin?: string; task?: string } | undefined;
    return { plugin: p?.plugin, task: p?.task };
  };
  server.registerTool('search_docs', { description: 'Search the support knowledge base (read).', inputSchema: { query: z.string() } }, async (args, extra) => {
    ran.push({ tool: 'search_docs', args, ...who(extra) });
    return { content: [{ type: 'text', text: `3 articles match '${args.query}'` }] };
  });
  server.registerTool(
    'update_ticket',
    { description: 'Change a ticket (write; a person approves each call).', inputSchema: { id: z.string(), status: z.enum(['open', 'pending', 'closed']), note: z.string().optional() } },
    async (args, extra) => {
      ran.push({ tool: 'update_ticket', args, ...who(extra) });
      return { content: [{ type: 'text', text: `ticket ${args.id} is now ${args.status}` }] };
    },
  );
  server.registerTool(
    'send_email',
    { description: 'Send an email (exfiltrate; a person approves each call; only to example.com).', inputSchema: { to: z.string(), subject: z.string(), body: z.string() } },
    async (args, extra) => {
      ran.push({ tool: 'send_email', args, ...who(extra) });
      return { content: [{ type: 'text', text: `sent '${args.subject}' to ${args.to}` }] };
    },
  );
  return server;
}

export async function startExampleServer(opts: ExampleServerOptions): Promise<ExampleServer> {
  const app = express();
  const ran: ExampleServer['ran'] = [];
  const http: Server = await new Promise((resolve) => {
    const s = app.listen(opts.port ?? 0, '127.0.0.1', () => resolve(s));
  });
  const url = opts.publicUrl ?? `http://127.0.0.1:${(http.address() as AddressInfo).port}/mcp`;
  const local = `http://127.0.0.1:${(http.address() as AddressInfo).port}/mcp`;

  const leash = createLeashMcpAuth({
    verifier: createLeashVerifier({ issuer: opts.leash, audience: url, ...(opts.revocations ? { revocations: opts.revocations } : {}) }),
    resource: url,
    authorizationServer: opts.leash,
    requiredScopes: ['mcp'],
    scopesSupported: ['mcp', 'tool:search_docs'],
    resourceName: 'Support tools',
    ...(opts.singleUse ? { singleUse: opts.singleUse } : {}),
    ...(opts.onToolCall ? { onToolCall: opts.onToolCall } : {}),
    ...(opts.usage ? { usage: opts.usage } : {}),
  });

  app.use(leash.metadata);
  // Stateless Streamable HTTP: one MCP server and transport per request (the SDK's pattern).
  app.post('/mcp', express.json({ limit: '1mb' }), ...leash.protect, async (req, res) => {
    const server = buildMcpServer(ran);
    const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
    res.on('close', () => {
      void transport.close();
      void server.close();
    });
    await server.connect(transport);
    await transport.handleRequest(req, res, req.body);
  });
  // No server-initiated stream or session to end in stateless mode; still authenticated first.
  app.all('/mcp', ...leash.protect, (_req, res) => {
    res
      .status(405)
      .set('allow', 'POST')
      .json({ jsonrpc: '2.0', error: { code: -32000, message: 'Method not allowed.' }, id: null });
  });

  return {
    url,
    local,
    ran,
    close: () =>
      new Promise<void>((resolve, reject) => {
        http.closeAllConnections();
        http.close((err) => (err ? reject(err) : resolve()));
      }),
  };
}
