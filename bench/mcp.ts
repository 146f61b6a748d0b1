/**
 * MCP measurements (docs/mcp.md): what a per-call credential costs at Leash, and what the
 * MCP helper adds to a tool call. One process, loopback, sequential requests (latency, not
 * throughput), every variant interleaved so machine noise hits them alike.
 *
 *   npm run bench:mcp -- [--n 400]
 */
import express from 'express';
import type { AddressInfo } from 'node:net';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { startTestBroker, freePort, EXCHANGE, JWT_TYPE } from '../test/support/broker.js';
import { sha256hex } from '../test/http/introspect-support.js';
import { buildMcpServer, startExampleServer } from '../examples/mcp/server.js';
import { leashSingleUse, toolCallDetail } from '../src/client/mcp/index.js';

const n = Number(process.argv[process.argv.indexOf('--n') + 1] ?? 0) || 400;
const SECRET = 'bench-mcp-secret-0123456789';

function stats(ms: number[]): { median: number; p95: number } {
  const s = [...ms].sort((a, b) => a - b);
  return { median: s[Math.floor(s.length / 2)]!, p95: s[Math.floor(s.length * 0.95)]! };
}
const fmt = (x: { median: number; p95: number }) => `${x.median.toFixed(2)} ms (p95 ${x.p95.toFixed(2)})`;
async function timed(fn: () => Promise<void>): Promise<number> {
  const t = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t) / 1e6;
}

async function main(): Promise<void> {
  const port = await freePort();
  const MCP = `http://127.0.0.1:${port}/mcp`;
  const tb = await startTestBroker({
    patch: (cfg) => {
      (cfg.plugins as unknown[]).push({
        id: 'bench-agent',
        owner: 'bench@example.com',
        risk: 'low',
        bindings: [{ issuer: 'test-cluster', subject: 'system:serviceaccount:agents:bench-agent' }],
        grants: [{ audience: MCP, scopes: ['mcp'], effect: 'read', approval: 'none', max_ttl: 300, tools: [{ name: 'search_docs', effect: 'read' }] }],
      });
      cfg.resource_servers = [{ id: 'bench-mcp', audiences: [MCP], client_secret_sha256: sha256hex(SECRET) }];
    },
  });
  const task = await tb.openTask({ plugins: ['bench-agent'] });
  const attestation = await tb.cluster.saToken({ ns: 'agents', sa: 'bench-agent' });
  const local = await startExampleServer({ leash: tb.url, port });
  const replicas = await startExampleServer({ leash: tb.url, publicUrl: MCP, singleUse: leashSingleUse({ issuer: tb.url, clientId: 'bench-mcp', clientSecret: SECRET }) });
  // The baseline: the same MCP server and tool, no Leash.
  const bareApp = express();
  bareApp.post('/mcp', express.json({ limit: '1mb' }), async (req, res) => {
    const server = buildMcpServer([]);
    const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
    res.on('close', () => {
      void transport.close();
      void server.close();
    });
    await server.connect(transport);
    await transport.handleRequest(req, res, req.body);
  });
  const bareHttp = bareApp.listen(0, '127.0.0.1');
  await new Promise((r) => bareHttp.once('listening', r));
  const BARE = `http://127.0.0.1:${(bareHttp.address() as AddressInfo).port}/mcp`;

  const base = { grant_type: EXCHANGE, client_id: 'bench-agent', subject_token: attestation, subject_token_type: JWT_TYPE, resource: MCP, task };
  const exchange = async (extra: Record<string, string>) => {
    const r = await tb.exchange({ ...base, ...extra });
    if (r.status !== 200) throw new Error(`exchange ${r.status} ${JSON.stringify(r.body)}`);
    return r.body.access_token as string;
  };
  const args = (i: number) => ({ query: `q-${i}` });
  const detail = (i: number) => JSON.stringify([toolCallDetail({ resource: MCP, tool: 'search_docs', arguments: args(i) })]);
  const call = async (url: string, token: string | undefined, i: number) => {
    const res = await fetch(url, {
      method: 'POST',
      headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: JSON.stringify({ jsonrpc: '2.0', id: i, method: 'tools/call', params: { name: 'search_docs', arguments: args(i) } }),
    });
    await res.text();
    if (res.status !== 200) throw new Error(`tools/call ${res.status}`);
  };

  // Warm up every path (JIT, JWKS fetch, discovery).
  for (let i = 0; i < 30; i++) {
    await exchange({ scope: 'mcp tool:search_docs' });
    await call(local.local, await exchange({ authorization_details: detail(1_000_000 + i) }), 1_000_000 + i);
    await call(replicas.local, await exchange({ authorization_details: detail(2_000_000 + i) }), 2_000_000 + i);
    await call(BARE, undefined, i);
  }

  const t = { session: [] as number[], perCall: [] as number[], bare: [] as number[], scope: [] as number[], local: [] as number[], viaLeash: [] as number[] };
  const session = await exchange({ scope: 'mcp tool:search_docs' });
  for (let i = 0; i < n; i++) {
    t.session.push(await timed(async () => void (await exchange({ scope: 'mcp tool:search_docs' }))));
    let perCallToken = '';
    t.perCall.push(await timed(async () => void (perCallToken = await exchange({ authorization_details: detail(i) }))));
    const other = await exchange({ authorization_details: detail(n + i) });
    t.bare.push(await timed(() => call(BARE, undefined, i)));
    t.scope.push(await timed(() => call(local.local, session, i)));
    t.local.push(await timed(() => call(local.local, perCallToken, i)));
    t.viaLeash.push(await timed(() => call(replicas.local, other, n + i)));
  }
  const s = Object.fromEntries(Object.entries(t).map(([k, v]) => [k, stats(v)])) as Record<keyof typeof t, { median: number; p95: number }>;
  const lines = [
    `MCP measurements, ${n} sequential requests per variant, interleaved, loopback, SQLite store`,
    `token exchange, session token (scope mcp tool:search_docs):   ${fmt(s.session)}`,
    `token exchange, per-call (authorization_details):             ${fmt(s.perCall)}   (+${(s.perCall.median - s.session.median).toFixed(2)} ms median)`,
    `tools/call, no Leash (same SDK server and tool):              ${fmt(s.bare)}`,
    `tools/call, helper, session token with tool: scope:           ${fmt(s.scope)}   (+${(s.scope.median - s.bare.median).toFixed(2)} ms median)`,
    `tools/call, helper, per-call token, single use in process:    ${fmt(s.local)}   (+${(s.local.median - s.bare.median).toFixed(2)} ms median)`,
    `tools/call, helper, per-call token, single use through Leash: ${fmt(s.viaLeash)}   (+${(s.viaLeash.median - s.bare.median).toFixed(2)} ms median)`,
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
  bareHttp.closeAllConnections();
  bareHttp.close();
  await local.close();
  await replicas.close();
  await tb.close();
}

main().catch((err: unknown) => {
  process.stderr.write(`${String((err as Error)?.stack ?? err)}\n`);
  process.exit(1);
});
