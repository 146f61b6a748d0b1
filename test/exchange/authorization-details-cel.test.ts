import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { decodeJwt } from 'jose';
import { EXCHANGE, JWT_TYPE, startTestBroker, type TestBroker } from '../support/broker.js';
import { argumentsHash } from '../../src/client/mcp/tool-call.js';

/**
 * CEL conditions over the request's RFC 9396 `authorization_details` (issue 15 §2: "policy
 * can condition on them"), over real HTTP: a grant of an MCP server whose condition reads
 * the exposed arguments of the one tool call a per-call credential is for.
 */

const MCP = 'https://billing.example.com/mcp';
const LIMIT =
  'request.authorization_details.all(d, d.type != "leash_mcp_tool_call" || !(d.tool in ["create_invoice", "refund_invoice"]) || (d.arguments.amount <= 100.0 && d.arguments.currency == "EUR"))';

let tb: TestBroker;
let task: string;

const call = (args: Record<string, unknown>, expose: string[] = ['amount', 'currency'], tool = 'create_invoice') =>
  JSON.stringify([
    {
      type: 'leash_mcp_tool_call',
      locations: [MCP],
      tool,
      arguments_sha256: argumentsHash(args),
      arguments: Object.fromEntries(expose.filter((k) => k in args).map((k) => [k, args[k]])),
    },
  ]);

async function exchange(extra: Record<string, string>) {
  return tb.exchange({ grant_type: EXCHANGE, subject_token: await tb.cluster.saToken({ sa: 'billing-agent' }), subject_token_type: JWT_TYPE, resource: MCP, ...extra });
}

beforeAll(async () => {
  tb = await startTestBroker({
    patch: (cfg) => {
      cfg.plugins.push({
        id: 'billing-agent',
        owner: 'team-billing@example.com',
        risk: 'low',
        bindings: [{ issuer: 'test-cluster', subject: 'system:serviceaccount:plugins:billing-agent' }],
        grants: [
          {
            audience: MCP,
            scopes: ['mcp'],
            kind: 'jwt',
            effect: 'read',
            approval: 'none',
            max_ttl: 300,
            conditions: [{ expr: LIMIT }],
            tools: [
              { name: 'list_invoices', effect: 'read' },
              { name: 'create_invoice', effect: 'write', approval: 'none', expose: ['amount', 'currency'] },
              // Its policy does not make the agent expose the amount: a condition reading it cannot hold without it.
              { name: 'refund_invoice', effect: 'write', approval: 'none', expose: ['currency'] },
            ],
          },
        ],
      });
    },
  });
  task = await tb.openTask({ plugins: ['billing-agent'] });
});

afterAll(async () => {
  await tb.close();
});

describe('CEL over authorization_details', () => {
  it('a tool call whose exposed arguments satisfy the expression gets its per-call credential (the task named in authorization_details too)', async () => {
    const args = { amount: 40, currency: 'EUR', customer: 'c-17' };
    const details = JSON.stringify([{ type: 'leash_task', task }, ...(JSON.parse(call(args)) as unknown[])]);
    const res = await exchange({ authorization_details: details });
    expect(res.status).toBe(200);
    expect(decodeJwt(res.body.access_token as string).authorization_details).toEqual([
      { type: 'leash_mcp_tool_call', locations: [MCP], tool: 'create_invoice', arguments_sha256: argumentsHash(args), arguments: { amount: 40, currency: 'EUR' } },
    ]);
  });

  it('the same call over the limit, or in another currency, is denied naming the expression', async () => {
    for (const args of [
      { amount: 400, currency: 'EUR' },
      { amount: 40, currency: 'USD' },
    ]) {
      const res = await exchange({ task, authorization_details: call(args) });
      expect({ status: res.status, error: res.body.error }).toEqual({ status: 400, error: 'invalid_request' });
      expect(String(res.body.error_description)).toMatch(/d\.arguments\.amount <= 100\.0.*\(ERR_CONDITION_FAILED\)$/);
      expect(res.body.access_token).toBeUndefined();
    }
  });

  it('an argument the expression reads but the agent did not expose denies (fail closed: no such key)', async () => {
    const res = await exchange({ task, authorization_details: call({ amount: 40, currency: 'EUR' }, ['currency'], 'refund_invoice') });
    expect(res.status).toBe(400);
    expect(String(res.body.error_description)).toMatch(/\(ERR_CONDITION_FAILED\)$/);
  });

  it('a session token (no authorization_details) is not affected by a condition on tool calls', async () => {
    const res = await exchange({ task, scope: 'mcp' });
    expect(res.status).toBe(200);
  });
});
