/**
 * The agent side: an MCP client (the official SDK) whose credentials come from Leash through
 * the SDK's own auth hooks: an OAuthClientProvider for the session, a fetch middleware that
 * gives every tool call its own credential. In your own agent import from `leash-client/mcp`.
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { AttestationSource } from '../../src/client/index.js';
import { createLeashMcpAgent, type LeashMcpAgentOptions, type PendingToolCall } from '../../src/client/mcp/index.js';

export interface ExampleAgentOptions {
  readonly leash: string;
  readonly plugin: string;
  readonly attestation: AttestationSource;
  readonly task: string;
  readonly mcpUrl: string;
  readonly scope?: readonly string[];
  readonly perCall?: LeashMcpAgentOptions['perCall'];
  readonly onApprovalPending?: (pending: PendingToolCall) => void;
}

/** What the policy wants to see of each tool's arguments (docs/mcp.md). */
export const EXPOSE: Readonly<Record<string, readonly string[]>> = {
  update_ticket: ['id', 'status'],
  send_email: ['to', 'subject'],
};

export async function connectAgent(opts: ExampleAgentOptions): Promise<Client> {
  const leash = createLeashMcpAgent({
    issuer: opts.leash,
    clientId: opts.plugin,
    attestation: opts.attestation,
    task: opts.task,
    serverUrl: opts.mcpUrl,
    scope: opts.scope ?? ['mcp'],
    expose: EXPOSE,
    justification: 'support agent working a ticket',
    ...(opts.perCall ? { perCall: opts.perCall } : {}),
    ...(opts.onApprovalPending ? { onApprovalPending: opts.onApprovalPending } : {}),
  });
  const client = new Client({ name: 'support-agent', version: '1.0.0' });
  await client.connect(new StreamableHTTPClientTransport(new URL(opts.mcpUrl), { authProvider: leash.authProvider, fetch: leash.fetch }));
  return client;
}
