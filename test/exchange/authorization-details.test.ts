import { describe, expect, it } from '@jest/globals';
import { parseAuthorizationDetails } from '../../src/exchange/authorization-details.js';
import { parseExchangeRequest } from '../../src/exchange/request.js';
import { isLeashError } from '../../src/errors/leash-error.js';
import { argumentsHash, canonicalJson, toolCallDetail, toolCallDetailsOf } from '../../src/client/mcp/tool-call.js';

const MCP = 'https://mcp.example.com/mcp';
const HASH = argumentsHash({ to: 'ann@example.com' });
const call = (over: Record<string, unknown> = {}) => ({ type: 'leash_mcp_tool_call', locations: [MCP], tool: 'send_email', arguments_sha256: HASH, arguments: { to: 'ann@example.com' }, ...over });

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (isLeashError(err)) return err.code;
    throw err;
  }
  return 'OK';
}

describe('authorization_details (RFC 9396) on a token exchange', () => {
  it('reads a task and one tool call', () => {
    const parsed = parseAuthorizationDetails(JSON.stringify([{ type: 'leash_task', task: 't-1' }, call()]), MCP);
    expect(parsed.taskId).toBe('t-1');
    expect(parsed.toolCall).toEqual({ server: MCP, tool: 'send_email', argumentsSha256: HASH, arguments: { to: 'ann@example.com' } });
    // The accepted entries in their wire shape, for CEL conditions (request.authorization_details).
    expect(parsed.entries).toEqual([{ type: 'leash_task', task: 't-1' }, call()]);
    // locations may be left out: the call is at the requested resource.
    expect(parseAuthorizationDetails(JSON.stringify([call({ locations: undefined })]), MCP).toolCall?.server).toBe(MCP);
  });

  const refused: Array<[string, string]> = [
    ['not JSON', '[{'],
    ['an object, not an array', JSON.stringify(call())],
    ['an empty array', '[]'],
    ['more than 4 entries', JSON.stringify([call(), call(), call(), call(), call()])],
    ['an entry that is not an object', '["leash_task"]'],
    ['an entry without type', JSON.stringify([{ task: 't' }])],
    ['an unknown type', JSON.stringify([{ type: 'payment_initiation', instructedAmount: { amount: 1 } }])],
    ['unknown members on a known type', JSON.stringify([call({ actions: ['send'] })])],
    ['two tool calls', JSON.stringify([call(), call({ tool: 'other' })])],
    [
      'two tasks',
      JSON.stringify([
        { type: 'leash_task', task: 'a' },
        { type: 'leash_task', task: 'b' },
      ]),
    ],
    ['a bad task id', JSON.stringify([{ type: 'leash_task', task: 'a b' }])],
    ['another server in locations', JSON.stringify([call({ locations: ['https://evil.example.com/mcp'] })])],
    ['two locations', JSON.stringify([call({ locations: [MCP, MCP] })])],
    ['a tool name with spaces', JSON.stringify([call({ tool: 'send email' })])],
    ['an empty tool name', JSON.stringify([call({ tool: '' })])],
    ['a hash that is not SHA-256 base64url', JSON.stringify([call({ arguments_sha256: 'abc' })])],
    ['arguments as an array', JSON.stringify([call({ arguments: ['ann'] })])],
    ['an argument named __proto__', '[{"type":"leash_mcp_tool_call","tool":"t","arguments_sha256":"' + HASH + '","arguments":{"__proto__":1}}]'],
    ['argument values nested too deep', JSON.stringify([call({ arguments: { a: { b: { c: { d: { e: { f: 1 } } } } } } })])],
    ['more than 4096 characters', JSON.stringify([call({ arguments: { to: 'x'.repeat(5000) } })])],
  ];
  it.each(refused)('refuses %s (ERR_AUTHORIZATION_DETAILS_INVALID)', (_n, raw) => {
    expect(codeOf(() => parseAuthorizationDetails(raw, MCP))).toBe('ERR_AUTHORIZATION_DETAILS_INVALID');
  });

  const base = { subject_token: 'a.b.c', subject_token_type: 'urn:ietf:params:oauth:token-type:jwt', resource: MCP };
  it('names the task instead of the task parameter, and must agree with it when both are sent', () => {
    expect(parseExchangeRequest(undefined, { ...base, authorization_details: JSON.stringify([{ type: 'leash_task', task: 't-1' }]) }).taskId).toBe('t-1');
    expect(parseExchangeRequest(undefined, { ...base, task: 't-1', authorization_details: JSON.stringify([{ type: 'leash_task', task: 't-1' }]) }).taskId).toBe('t-1');
    expect(codeOf(() => parseExchangeRequest(undefined, { ...base, task: 't-2', authorization_details: JSON.stringify([{ type: 'leash_task', task: 't-1' }]) }))).toBe(
      'ERR_AUTHORIZATION_DETAILS_INVALID',
    );
    expect(codeOf(() => parseExchangeRequest(undefined, { ...base, authorization_details: ['[]', '[]'] }))).toBe('ERR_REQUEST_MALFORMED');
  });
});

describe('the SDK side: canonical JSON (RFC 8785) and tool-call details', () => {
  it('sorts members by UTF-16 code units, drops whitespace, writes numbers as ECMAScript does', () => {
    // RFC 8785 §3.2.3's sorting example and §3.2.2.3's number forms.
    expect(
      canonicalJson({
        '\u20ac': 'Euro Sign',
        '\r': 'Carriage Return',
        '\ufb33': 'Hebrew Letter Dalet With Dagesh',
        '1': 'One',
        '\ud83d\ude00': 'Emoji: Grinning Face',
        '\u0080': 'Control',
        '\u00f6': 'Latin Small Letter O With Diaeresis',
      }),
    ).toBe(
      '{"\\r":"Carriage Return","1":"One","\u0080":"Control","\u00f6":"Latin Small Letter O With Diaeresis","\u20ac":"Euro Sign","\ud83d\ude00":"Emoji: Grinning Face","\ufb33":"Hebrew Letter Dalet With Dagesh"}',
    );
    // eslint-disable-next-line no-loss-of-precision -- RFC 8785's test vector has more digits than a double holds: that is the point
    expect(canonicalJson({ numbers: [333333333.33333329, 1e30, 4.5, 0.002, 1e-27, -0], b: [true, false, null] })).toBe('{"b":[true,false,null],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27,0]}');
  });

  it('hashes the same arguments the same in any member order, and different arguments differently', () => {
    expect(argumentsHash({ a: 1, b: { c: 'x', d: [1, 2] } })).toBe(argumentsHash({ b: { d: [1, 2], c: 'x' }, a: 1 }));
    expect(argumentsHash({ a: 1 })).not.toBe(argumentsHash({ a: '1' }));
    expect(argumentsHash(undefined)).toBe(argumentsHash({}));
  });

  it.each([
    ['NaN', { a: Number.NaN }],
    ['a function', { a: () => 1 }],
    ['a Date', { a: new Date(0) }],
    ['a bigint', { a: BigInt(1) }],
  ])('refuses %s as JSON', (_n, v) => {
    expect(() => canonicalJson(v)).toThrow(TypeError);
  });

  it('exposes only the named arguments the call has, and reads details back from a claim', () => {
    const d = toolCallDetail({ resource: MCP, tool: 'send_email', arguments: { to: 'ann@example.com', body: 'secret' }, expose: ['to', 'cc'] });
    expect(d).toEqual({
      type: 'leash_mcp_tool_call',
      locations: [MCP],
      tool: 'send_email',
      arguments_sha256: argumentsHash({ to: 'ann@example.com', body: 'secret' }),
      arguments: { to: 'ann@example.com' },
    });
    expect(toolCallDetailsOf([d, { type: 'leash_task', task: 't' }, { type: 'leash_mcp_tool_call', tool: 'x' }, null])).toEqual([d]);
    expect(toolCallDetailsOf('nope')).toEqual([]);
  });
});
