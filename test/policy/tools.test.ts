import { describe, expect, it } from '@jest/globals';
import type { McpToolConfig, PluginConfig } from '../../src/config/schema.js';
import { compilePolicy } from '../../src/policy/compile.js';
import type { Decision, PolicyRequest } from '../../src/policy/types.js';
import type { ToolCallRequest } from '../../src/exchange/authorization-details.js';
import { config, grant, identity, NOW, plugin, problemsOf, task } from './fixtures.js';

const MCP = 'https://mcp.example.com/mcp';
const HASH = 'x'.repeat(43);

const tool = (over: Partial<McpToolConfig> & Pick<McpToolConfig, 'name' | 'effect'>): McpToolConfig => ({ expose: [], arguments: {}, max_ttl: 60, ...over });

const agent = (tools: McpToolConfig[], grantOver = {}): PluginConfig =>
  plugin('agent', { grants: [grant({ audience: MCP, scopes: ['mcp'], effect: 'read', approval: 'none', max_ttl: 300, tools, ...grantOver })] });

const TOOLS = [
  tool({ name: 'search_*', effect: 'read' }),
  tool({ name: 'update_ticket', effect: 'write', expose: ['id'] }),
  tool({ name: 'send_email', effect: 'exfiltrate', expose: ['to'], arguments: { to: { glob: '*@example.com' } }, max_ttl: 30 }),
  tool({ name: 'pay', effect: 'write', approval: 'none', arguments: { amount: { max: 100, min: 1 }, currency: { in: ['EUR', 'USD'] } } }),
  tool({ name: 'list_*', effect: 'read', per_call: true }),
];

function decide(p: PluginConfig, request: Partial<PolicyRequest>): Decision {
  const policy = compilePolicy(config([p]));
  return policy.evaluate({
    plugin: policy.plugins.get(p.id)!,
    identity: identity('system:serviceaccount:plugins:agent'),
    task: task(),
    request: { audience: MCP, scopes: undefined, ttl: undefined, params: {}, ...request },
    now: NOW,
  });
}
const call = (name: string, args: Record<string, unknown> = {}): ToolCallRequest => ({ server: MCP, tool: name, argumentsSha256: HASH, arguments: args });
const allowed = (d: Decision) => {
  if (!d.allow) throw new Error(`expected allow, got ${d.code}: ${d.description}`);
  return d;
};
const denied = (d: Decision) => {
  if (d.allow) throw new Error(`expected a denial: ${d.reasons.join('; ')}`);
  return d;
};

describe('MCP grants: tools at load', () => {
  it('compiles defaults: approval from the effect, per_call unless read, the tool ttl under the grant', () => {
    const g = compilePolicy(config([agent(TOOLS)])).plugins.get('agent')!.grants[0]!;
    expect(g.tools!.map((t) => [t.pattern, t.effect, t.approval, t.perCall, t.maxTtl, t.mustExpose])).toEqual([
      ['search_*', 'read', 'none', false, 60, []],
      ['update_ticket', 'write', 'human', true, 60, ['id']],
      ['send_email', 'exfiltrate', 'human', true, 30, ['to']],
      ['pay', 'write', 'none', true, 60, ['amount', 'currency']],
      ['list_*', 'read', 'none', true, 60, []],
    ]);
  });

  it.each([
    ['a human-approved tool without per-call credentials', [tool({ name: 'x', effect: 'write', per_call: false })], {}, '/plugins/0/grants/0/tools/0/per_call'],
    ['a tool living longer than its grant', [tool({ name: 'x', effect: 'read', max_ttl: 600 })], {}, '/plugins/0/grants/0/tools/0/max_ttl'],
    ['an argument test with no member', [tool({ name: 'x', effect: 'read', arguments: { a: {} } })], {}, '/plugins/0/grants/0/tools/0/arguments/a'],
    ['a tool: scope listed by hand', [tool({ name: 'x', effect: 'read' })], { scopes: ['mcp', 'tool:x'] }, '/plugins/0/grants/0/scopes/1'],
    ['tools on an aws-sts grant', [tool({ name: 'x', effect: 'read' })], { kind: 'aws-sts' }, '/plugins/0/grants/0/tools'],
  ])('refuses %s', (_name, tools, over, path) => {
    expect(problemsOf(() => compilePolicy(config([agent(tools, over)]))).map((p) => p.path)).toContain(path);
  });
});

describe('MCP grants: tool scopes on a session token', () => {
  it('grants tool:<name> for a read tool a glob matches, with the grant scopes', () => {
    const d = allowed(decide(agent(TOOLS), { scopes: ['mcp', 'tool:search_docs'] }));
    expect(d.scopes).toEqual(['mcp', 'tool:search_docs']);
    expect(d.tool).toBeUndefined();
  });

  it.each([
    ['a tool no entry matches', ['tool:delete_all'], 'ERR_TOOL_NOT_GRANTED'],
    ['a write tool (per call)', ['tool:update_ticket'], 'ERR_TOOL_PER_CALL_REQUIRED'],
    ['a read tool marked per_call', ['tool:list_users'], 'ERR_TOOL_PER_CALL_REQUIRED'],
    ['a glob as the scope of a tool the glob does not cover', ['tool:search/x'], 'ERR_TOOL_NOT_GRANTED'],
  ])('refuses %s', (_n, scopes, code) => {
    expect(denied(decide(agent(TOOLS), { scopes })).code).toBe(code);
  });

  it('a grant without tools treats tool: scopes as plain scopes', () => {
    expect(denied(decide(plugin('agent', { grants: [grant({ audience: MCP, scopes: ['mcp'] })] }), { scopes: ['tool:x'] })).code).toBe('ERR_SCOPE_NOT_GRANTED');
  });
});

describe('MCP grants: one tool call (authorization_details)', () => {
  it('allows a call with the tool ttl and reports the tool; approval follows the tool', () => {
    const read = allowed(decide(agent(TOOLS), { toolCall: call('search_docs') }));
    expect(read.tool?.pattern).toBe('search_*');
    expect(read.ttl).toBe(60);
    expect(read.scopes).toEqual(['mcp']);
    const email = allowed(decide(agent(TOOLS), { toolCall: call('send_email', { to: 'ann@example.com' }) }));
    expect(email.ttl).toBe(30);
    expect(email.tool?.approval).toBe('human');
    expect(email.reasons).toContain('tool call needs a human approval');
    // The requested lifetime can only shorten it.
    expect(allowed(decide(agent(TOOLS), { toolCall: call('search_docs'), ttl: 10 })).ttl).toBe(10);
  });

  it.each([
    ['a tool no entry matches', call('drop_tables'), 'ERR_TOOL_NOT_GRANTED', undefined],
    ['a recipient the policy must see, hidden', call('send_email', {}), 'ERR_TOOL_ARGUMENTS_REFUSED', undefined],
    ['a recipient outside the glob', call('send_email', { to: 'mallory@attacker.test' }), 'ERR_TOOL_ARGUMENTS_REFUSED', undefined],
    ['a recipient of the wrong JSON type', call('send_email', { to: ['ann@example.com'] }), 'ERR_TOOL_ARGUMENTS_REFUSED', undefined],
    ['an amount over max', call('pay', { amount: 101, currency: 'EUR' }), 'ERR_TOOL_ARGUMENTS_REFUSED', undefined],
    ['an amount under min', call('pay', { amount: 0, currency: 'EUR' }), 'ERR_TOOL_ARGUMENTS_REFUSED', undefined],
    ['an amount as a string', call('pay', { amount: '50', currency: 'EUR' }), 'ERR_TOOL_ARGUMENTS_REFUSED', undefined],
    ['a currency not listed', call('pay', { amount: 50, currency: 'BTC' }), 'ERR_TOOL_ARGUMENTS_REFUSED', undefined],
    ['a per-call request that also asks for a tool scope', call('search_docs'), 'ERR_TOOL_PER_CALL_REQUIRED', ['tool:search_docs']],
  ] as Array<[string, ToolCallRequest, string, string[] | undefined]>)('refuses %s', (_n, toolCall, code, scopes) => {
    const d = denied(decide(agent(TOOLS), { toolCall, ...(scopes ? { scopes } : {}) }));
    expect(d.code).toBe(code);
    // Descriptions name config values, never the request's argument values.
    expect(d.description).not.toContain('mallory');
  });

  it('allows what the argument tests allow', () => {
    allowed(decide(agent(TOOLS), { toolCall: call('pay', { amount: 100, currency: 'USD' }) }));
    allowed(decide(agent(TOOLS), { toolCall: call('pay', { amount: 1, currency: 'EUR' }) }));
  });

  it('the first matching entry decides', () => {
    const p = agent([tool({ name: 'admin_*', effect: 'admin' }), tool({ name: '*', effect: 'read' })]);
    expect(allowed(decide(p, { toolCall: call('admin_reset') })).tool?.effect).toBe('admin');
    expect(allowed(decide(p, { toolCall: call('whoami') })).tool?.effect).toBe('read');
  });

  it('a grant without tools refuses a tool call', () => {
    expect(denied(decide(plugin('agent', { grants: [grant({ audience: MCP, scopes: ['mcp'] })] }), { toolCall: call('x') })).code).toBe('ERR_TOOL_NOT_GRANTED');
  });
});
