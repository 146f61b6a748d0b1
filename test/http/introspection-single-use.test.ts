import { describe, it, expect, beforeAll, afterAll } from '@jest/globals';
import { decodeJwt } from 'jose';
import { startTestBroker, EXCHANGE, JWT_TYPE, type TestBroker } from '../support/broker.js';
import { basic, sha256hex } from './introspect-support.js';
import { toolCallDetail } from '../../src/client/mcp/tool-call.js';

const MCP = 'https://mcp.example.com/mcp';
const SECRET = 'mcp-rs-secret-0123456789';
let tb: TestBroker;
let task: string;

beforeAll(async () => {
  tb = await startTestBroker({
    patch: (cfg) => {
      cfg.plugins.push({
        id: 'agent',
        owner: 'team-agents@example.com',
        risk: 'low',
        bindings: [{ issuer: 'test-cluster', subject: 'system:serviceaccount:agents:agent' }],
        grants: [{ audience: MCP, scopes: ['mcp'], effect: 'read', approval: 'none', max_ttl: 300, tools: [{ name: 'search', effect: 'read' }] }],
      });
      cfg.resource_servers = [
        { id: 'mcp-server', audiences: [MCP], client_secret_sha256: sha256hex(SECRET) },
        { id: 'other-api', audiences: ['https://other.example.com'], client_secret_sha256: sha256hex(SECRET) },
      ];
    },
  });
  task = await tb.openTask({ plugins: ['agent'] });
});
afterAll(async () => tb.close());

async function token(extra: Record<string, string>): Promise<{ status: number; body: Record<string, unknown> }> {
  return tb.exchange({ grant_type: EXCHANGE, client_id: 'agent', subject_token: await tb.cluster.saToken({ ns: 'agents', sa: 'agent' }), subject_token_type: JWT_TYPE, resource: MCP, task, ...extra });
}
async function introspect(form: Record<string, string>, client = 'mcp-server'): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${tb.url}/introspect`, {
    method: 'POST',
    headers: { authorization: basic(client, SECRET), 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(form).toString(),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

describe('per-call credentials at the token endpoint and introspection', () => {
  it('issues a per-call token for one tool call: authorization_details in the token and the response, the tool ttl, no tool scope', async () => {
    const detail = toolCallDetail({ resource: MCP, tool: 'search', arguments: { q: 'x' } });
    const res = await token({ authorization_details: JSON.stringify([detail]) });
    expect(res.status).toBe(200);
    expect(res.body.authorization_details).toEqual([detail]);
    expect(res.body.expires_in).toBe(60);
    const claims = decodeJwt(res.body.access_token as string);
    expect(claims.authorization_details).toEqual([detail]);
    expect(claims.scope).toBe('mcp');
  });

  it('single_use=consume: active once, then inactive for every replica; plain introspection shows the details', async () => {
    const detail = toolCallDetail({ resource: MCP, tool: 'search', arguments: { q: 'once' } });
    const t = (await token({ authorization_details: JSON.stringify([detail]) })).body.access_token as string;
    const plain = await introspect({ token: t });
    expect(plain.body).toMatchObject({ active: true, authorization_details: [detail] });
    expect(await introspect({ token: t, single_use: 'consume' })).toEqual({ status: 200, body: expect.objectContaining({ active: true, jti: decodeJwt(t).jti }) });
    expect(await introspect({ token: t, single_use: 'consume' })).toEqual({ status: 200, body: { active: false } });
  });

  it("refuses single_use on a session token, an unknown single_use value, and another audience's token without spending it", async () => {
    const session = (await token({})).body.access_token as string;
    const notPerCall = await introspect({ token: session, single_use: 'consume' });
    expect(notPerCall.status).toBe(400);
    expect(notPerCall.body.error).toBe('invalid_request');
    const detail = toolCallDetail({ resource: MCP, tool: 'search', arguments: { q: 'other' } });
    const t = (await token({ authorization_details: JSON.stringify([detail]) })).body.access_token as string;
    expect((await introspect({ token: t, single_use: 'peek' })).status).toBe(400);
    expect(await introspect({ token: t, single_use: 'consume' }, 'other-api')).toEqual({ status: 200, body: { active: false } });
    // The other API's attempt did not spend it.
    expect((await introspect({ token: t, single_use: 'consume' })).body.active).toBe(true);
  });
});
