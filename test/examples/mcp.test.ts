import { describe, it, expect, beforeAll, afterAll } from '@jest/globals';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { discoverOAuthProtectedResourceMetadata, extractWWWAuthenticateParams } from '@modelcontextprotocol/sdk/client/auth.js';
import { OAuthProtectedResourceMetadataSchema } from '@modelcontextprotocol/sdk/shared/auth.js';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { startTestBroker, freePort, ORCHESTRATOR_KEY, OPS_KEY, type TestBroker } from '../support/broker.js';
import { startExampleServer, type ExampleServer } from '../../examples/mcp/server.js';
import { connectAgent, EXPOSE } from '../../examples/mcp/agent.js';
import { createUsageReporter, LeashExchangeError, LeashPluginClient, type UsageReporter } from '../../src/client/index.js';
import { leashSingleUse, LeashToolCallRefused, toolCallDetail, type PendingToolCall, type ToolCallRecord } from '../../src/client/mcp/index.js';

const RS_SECRET = 'support-tools-secret-0123456789';
const sha = (s: string) => createHash('sha256').update(s).digest('hex');

let tb: TestBroker;
let server: ExampleServer;
let MCP: string;
/** The example server's reporter to Leash (`POST /usage`), with its resource-server credentials. */
let reporter: UsageReporter;
const usage: ToolCallRecord[] = [];

/** The example's policy file, pointed at this run's MCP server and test cluster. */
function examplePlugin(mcpUrl: string): Record<string, any> {
  const doc = parseYaml(readFileSync(new URL('../../examples/mcp/policy.yaml', import.meta.url), 'utf8')) as { plugins: Array<Record<string, any>> };
  const plugin = structuredClone(doc.plugins[0]!);
  plugin.bindings[0].issuer = 'test-cluster';
  plugin.grants[0].audience = mcpUrl;
  return plugin;
}

const attestation = { token: () => tb.cluster.saToken({ ns: 'agents', sa: 'support-agent' }) };

async function openTask(): Promise<string> {
  return tb.openTask({ plugins: ['support-agent'] });
}

async function approve(id: string): Promise<Record<string, unknown>> {
  const res = await fetch(`${tb.url}/admin/approvals/${id}/approve`, {
    method: 'POST',
    headers: { authorization: `Bearer ${OPS_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify({ reason: 'looked at it' }),
  });
  expect(res.status).toBe(200);
  return (await res.json()) as Record<string, unknown>;
}

async function approvalView(id: string): Promise<Record<string, unknown>> {
  const res = await fetch(`${tb.url}/admin/approvals/${id}`, { headers: { authorization: `Bearer ${OPS_KEY}` } });
  return (await res.json()) as Record<string, unknown>;
}

/** A plugin client of the agent's own, for what the SDK client would never do (replays, tampering). */
const rawPlugin = () => new LeashPluginClient({ issuer: tb.url, clientId: 'support-agent', attestation });

async function perCallToken(task: string, tool: string, args: Record<string, unknown>, extra: { approvalId?: string } = {}): Promise<string> {
  const token = await rawPlugin().exchangeOnce({ audience: MCP, task, authorizationDetails: [toolCallDetail({ resource: MCP, tool, arguments: args, expose: EXPOSE[tool] ?? [] })], ...extra });
  return token.accessToken;
}

/** One JSON-RPC tools/call over plain HTTP, as a misbehaving client could send it. */
async function rawCall(url: string, token: string, tool: string, args: Record<string, unknown>): Promise<{ status: number; body: any; challenge: string | null }> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name: tool, arguments: args } }),
  });
  return { status: res.status, body: await res.json(), challenge: res.headers.get('www-authenticate') };
}

beforeAll(async () => {
  const port = await freePort();
  MCP = `http://127.0.0.1:${port}/mcp`;
  tb = await startTestBroker({
    patch: (cfg) => {
      cfg.settings.approvals = { poll_interval: 1 };
      cfg.plugins.push(examplePlugin(MCP));
      cfg.resource_servers = [{ id: 'support-tools', audiences: [MCP], client_secret_sha256: sha(RS_SECRET) }];
    },
  });
  reporter = createUsageReporter({ issuer: tb.url, clientId: 'support-tools', clientSecret: RS_SECRET, flushIntervalMs: 20, maxAttempts: 1 });
  server = await startExampleServer({ leash: tb.url, port, onToolCall: (r) => usage.push(r), usage: reporter });
});
afterAll(async () => {
  await reporter?.close();
  await server?.close();
  await tb?.close();
});

describe('examples/mcp: an MCP server behind Leash, an agent with per-call credentials (real SDK client and server over HTTP)', () => {
  it('serves an RFC 9728 document naming Leash, and challenges with resource_metadata', async () => {
    const metadataUrl = `http://127.0.0.1:${new URL(MCP).port}/.well-known/oauth-protected-resource/mcp`;
    const res = await fetch(metadataUrl);
    expect(res.status).toBe(200);
    const doc = (await res.json()) as Record<string, unknown>;
    // RFC 9728 §2: `resource` is required and (§3.3) identical to the identifier the URL was derived from.
    expect(doc).toEqual({
      resource: MCP,
      authorization_servers: [tb.url],
      bearer_methods_supported: ['header'],
      scopes_supported: ['mcp', 'tool:search_docs'],
      dpop_signing_alg_values_supported: ['ES256', 'EdDSA', 'Ed25519'],
      authorization_details_types_supported: ['leash_mcp_tool_call'],
      resource_name: 'Support tools',
    });
    expect(OAuthProtectedResourceMetadataSchema.parse(doc)).toMatchObject({ resource: MCP });
    // The SDK's own discovery finds it from the server URL.
    expect((await discoverOAuthProtectedResourceMetadata(MCP)).authorization_servers).toEqual([tb.url]);
    // RFC 8414 §3.3 at Leash: the authorization server it names describes itself under that issuer.
    const as = (await (await fetch(`${tb.url}/.well-known/oauth-authorization-server`)).json()) as Record<string, unknown>;
    expect(as.issuer).toBe(tb.url);

    const unauth = await fetch(MCP, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: '{"jsonrpc":"2.0","id":1,"method":"tools/list"}',
    });
    expect(unauth.status).toBe(401);
    expect(unauth.headers.get('www-authenticate')).toContain(`Bearer resource_metadata="${metadataUrl}"`);
    expect(extractWWWAuthenticateParams(unauth).resourceMetadataUrl?.href).toBe(metadataUrl);
  });

  it('an allowed read: the SDK client gets a session token from Leash, then a per-call credential for the tool', async () => {
    const task = await openTask();
    const client = await connectAgent({ leash: tb.url, plugin: 'support-agent', attestation, task, mcpUrl: MCP });
    try {
      const tools = await client.listTools();
      expect(tools.tools.map((t) => t.name).sort()).toEqual(['search_docs', 'send_email', 'update_ticket']);
      const before = usage.length;
      const result = await client.callTool({ name: 'search_docs', arguments: { query: 'refund policy' } });
      expect(result.content).toEqual([{ type: 'text', text: "3 articles match 'refund policy'" }]);
      expect(server.ran.at(-1)).toEqual({ tool: 'search_docs', args: { query: 'refund policy' }, plugin: 'support-agent', task });
      // The usage seam saw the call, by tool name, once its answer was sent.
      await new Promise((r) => setImmediate(r));
      expect(usage.slice(before)).toEqual([expect.objectContaining({ tool: 'search_docs', plugin: 'support-agent', task, credential: 'per-call', outcome: 'allowed', status: 200 })]);
      // And Leash has it as a usage record of the task: method TOOL, the tool name as route.
      await reporter.flush();
      await tb.broker.usage.idle();
      const rows = await tb.broker.testing.store.listTaskUsage(task, 100);
      expect(rows).toEqual([
        expect.objectContaining({ plugin: 'support-agent', task, server: 'support-tools', audience: MCP, method: 'TOOL', route: 'search_docs', outcome: 'ok', calls: 1, errors: 0 }),
      ]);
    } finally {
      await client.close();
    }
  });

  it('step-up: without per-call credentials the server answers 403 insufficient_scope and the SDK re-asks Leash for tool:<name>', async () => {
    const task = await openTask();
    const client = await connectAgent({ leash: tb.url, plugin: 'support-agent', attestation, task, mcpUrl: MCP, perCall: () => false });
    try {
      const before = usage.length;
      const result = await client.callTool({ name: 'search_docs', arguments: { query: 'sla' } });
      expect(result.content).toEqual([{ type: 'text', text: "3 articles match 'sla'" }]);
      await new Promise((r) => setImmediate(r));
      expect(usage.slice(before).map((r) => [r.tool, r.credential, r.outcome, r.status])).toEqual([
        ['search_docs', 'scope', 'refused', 403],
        ['search_docs', 'scope', 'allowed', 200],
      ]);
      // Leash sees the refusal as missing_scope and the call as ok, each by the tool's name.
      await reporter.flush();
      await tb.broker.usage.idle();
      const rows = await tb.broker.testing.store.listTaskUsage(task, 100);
      expect(rows.map((r) => [r.route, r.outcome, r.calls]).sort()).toEqual([
        ['search_docs', 'missing_scope', 1],
        ['search_docs', 'ok', 1],
      ]);
      // A write tool is never reached by a scope: Leash refuses tool:update_ticket, the call fails, nothing runs.
      const ran = server.ran.length;
      await expect(client.callTool({ name: 'update_ticket', arguments: { id: 'T-1', status: 'closed' } })).rejects.toThrow();
      expect(server.ran.length).toBe(ran);
      const refused = await tb.exchange({
        grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange',
        client_id: 'support-agent',
        subject_token: await attestation.token(),
        subject_token_type: 'urn:ietf:params:oauth:token-type:jwt',
        resource: MCP,
        task,
        scope: 'mcp tool:update_ticket',
      });
      expect(refused.body).toMatchObject({ error: 'invalid_scope' });
      expect(String(refused.body.error_description)).toContain('ERR_TOOL_PER_CALL_REQUIRED');
    } finally {
      await client.close();
    }
  });

  it('a write waits for a human, who sees the tool and the exposed arguments, and runs once approved', async () => {
    const task = await openTask();
    const seen: PendingToolCall[] = [];
    const views: Record<string, unknown>[] = [];
    const client = await connectAgent({
      leash: tb.url,
      plugin: 'support-agent',
      attestation,
      task,
      mcpUrl: MCP,
      onApprovalPending: (p) => {
        seen.push(p);
        void approvalView(p.approvalId).then(async (v) => {
          views.push(v);
          await approve(p.approvalId);
        });
      },
    });
    try {
      const ran = server.ran.length;
      const result = await client.callTool({ name: 'update_ticket', arguments: { id: 'T-42', status: 'closed', note: 'customer confirmed' } });
      expect(result.content).toEqual([{ type: 'text', text: 'ticket T-42 is now closed' }]);
      expect(server.ran.slice(ran)).toEqual([{ tool: 'update_ticket', args: { id: 'T-42', status: 'closed', note: 'customer confirmed' }, plugin: 'support-agent', task }]);
      expect(seen).toHaveLength(1);
      // The approver saw the tool and the values the policy exposes (not `note`), bound to the hash of all.
      expect(views[0]).toMatchObject({
        plugin: 'support-agent',
        cause: 'tool-call',
        effect: 'write',
        tool_call: {
          tool: 'update_ticket',
          arguments: { id: 'T-42', status: 'closed' },
          arguments_sha256: toolCallDetail({ resource: MCP, tool: 'update_ticket', arguments: { id: 'T-42', status: 'closed', note: 'customer confirmed' } }).arguments_sha256,
        },
      });

      // The same approval redeemed for other arguments is refused: another argument set needs another approval.
      const other = perCallToken(task, 'update_ticket', { id: 'T-42', status: 'open' }, { approvalId: seen[0]!.approvalId });
      await expect(other).rejects.toMatchObject({ error: 'invalid_grant', error_description: expect.stringContaining('ERR_APPROVAL_MISMATCH') });
      const fresh = perCallToken(task, 'update_ticket', { id: 'T-42', status: 'open' });
      const pending = (await fresh.catch((e: unknown) => e)) as LeashExchangeError;
      expect(pending.error).toBe('authorization_pending');
      expect(pending.approvalId).not.toBe(seen[0]!.approvalId);
    } finally {
      await client.close();
    }
  });

  it('a call with changed arguments is refused, at Leash and at the server', async () => {
    const task = await openTask();
    // The policy tests the recipient: Leash refuses before anyone is asked, and the tool never runs.
    const client = await connectAgent({ leash: tb.url, plugin: 'support-agent', attestation, task, mcpUrl: MCP });
    try {
      const ran = server.ran.length;
      const err = await client.callTool({ name: 'send_email', arguments: { to: 'mallory@attacker.test', subject: 'export', body: 'all customers' } }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(LeashToolCallRefused);
      expect((err as LeashToolCallRefused).exchangeError).toMatchObject({ error: 'invalid_authorization_details', error_description: expect.stringContaining('ERR_TOOL_ARGUMENTS_REFUSED') });
      expect(server.ran.length).toBe(ran);
    } finally {
      await client.close();
    }
    // A per-call credential for one argument set does not carry another one.
    const token = await perCallToken(task, 'search_docs', { query: 'pricing' });
    const tampered = await rawCall(MCP, token, 'search_docs', { query: 'salaries' });
    expect(tampered.status).toBe(403);
    expect(tampered.body).toMatchObject({ error: 'insufficient_scope', error_description: expect.stringContaining('other arguments') });
    expect(tampered.challenge).toContain('resource_metadata=');
    const otherTool = await rawCall(MCP, token, 'send_email', { query: 'pricing' });
    expect(otherTool.status).toBe(403);
    // Nor does a session token reach a tool its scope does not name.
    const session = await rawPlugin().exchangeOnce({ audience: MCP, task, scope: ['mcp'] });
    const noScope = await rawCall(MCP, session.accessToken, 'update_ticket', { id: 'T-1', status: 'open' });
    expect(noScope.status).toBe(403);
    expect(noScope.challenge).toContain('scope="mcp tool:update_ticket"');
  });

  it('a replayed per-call credential is refused, in one replica and across replicas through Leash', async () => {
    const task = await openTask();
    const token = await perCallToken(task, 'search_docs', { query: 'once' });
    const first = await rawCall(MCP, token, 'search_docs', { query: 'once' });
    expect(first.status).toBe(200);
    expect(first.body.result.content[0].text).toBe("3 articles match 'once'");
    const again = await rawCall(MCP, token, 'search_docs', { query: 'once' });
    expect(again.status).toBe(401);
    expect(again.body).toMatchObject({ error: 'invalid_token', error_description: expect.stringContaining('already used') });

    // Two replicas behind one address: each asks Leash, whose store spends the jti once.
    const singleUse = leashSingleUse({ issuer: tb.url, clientId: 'support-tools', clientSecret: RS_SECRET });
    const a = await startExampleServer({ leash: tb.url, publicUrl: MCP, singleUse });
    const b = await startExampleServer({ leash: tb.url, publicUrl: MCP, singleUse });
    try {
      const shared = await perCallToken(task, 'search_docs', { query: 'replicas' });
      expect((await rawCall(a.local, shared, 'search_docs', { query: 'replicas' })).status).toBe(200);
      const replay = await rawCall(b.local, shared, 'search_docs', { query: 'replicas' });
      expect(replay.status).toBe(401);
      expect(b.ran).toEqual([]);
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('ending the task stops the agent mid-run', async () => {
    const task = await openTask();
    const client = await connectAgent({ leash: tb.url, plugin: 'support-agent', attestation, task, mcpUrl: MCP });
    try {
      await client.callTool({ name: 'search_docs', arguments: { query: 'step 1' } });
      const end = await fetch(`${tb.url}/tasks/${task}`, { method: 'DELETE', headers: { authorization: `Bearer ${ORCHESTRATOR_KEY}` } });
      expect(end.status).toBeLessThan(300);
      const ran = server.ran.length;
      const err = await client.callTool({ name: 'search_docs', arguments: { query: 'step 2' } }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(LeashToolCallRefused);
      expect((err as LeashToolCallRefused).exchangeError).toMatchObject({ error: 'invalid_grant', error_description: expect.stringContaining('ERR_TASK_ENDED') });
      expect(server.ran.length).toBe(ran);
    } finally {
      await client.close();
    }
  });
});

export type { Client };
