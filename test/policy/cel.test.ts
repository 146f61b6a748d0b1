import { describe, expect, it } from '@jest/globals';
import type { ConditionConfig } from '../../src/config/schema.js';
import { compilePolicy } from '../../src/policy/compile.js';
import { CEL_COST_LIMIT, compileCelCondition, isAlwaysTrue } from '../../src/policy/cel/expression.js';
import { CEL_VARIABLES, MAX_CLAIMS } from '../../src/policy/cel/variables.js';
import type { CompiledPolicy, PolicyInput } from '../../src/policy/types.js';
import { config, grant, identity, NOW, plugin, problemsOf, task } from './fixtures.js';

const SCOPES = ['crm:read', 'crm:search', 'crm:export'];
const BOUNDS = { audience: 'https://api.example.com', scopes: SCOPES };

function policyWith(conditions: ConditionConfig[]): CompiledPolicy {
  return compilePolicy(config([plugin('p', { grants: [grant({ scopes: SCOPES, conditions, task_required: false })] })]));
}

function decide(policy: CompiledPolicy, over: Partial<PolicyInput> & { attributes?: Record<string, string>; scopes?: string[]; ttl?: number; details?: Record<string, unknown>[] } = {}) {
  const p = policy.plugins.get('p')!;
  return policy.evaluate({
    plugin: p,
    identity: over.identity ?? identity('system:serviceaccount:plugins:p', over.attributes ?? { namespace: 'plugins', service_account: 'p' }),
    task: 'task' in over ? over.task : task({ env: 'prod' }, ['p', 'q']),
    request: { audience: 'https://api.example.com', scopes: over.scopes, ttl: over.ttl, params: { audience: 'https://api.example.com' }, authorizationDetails: over.details },
    now: over.now ?? NOW,
    chain: over.chain,
  });
}

const holds = (policy: CompiledPolicy, over: Parameters<typeof decide>[1] = {}) => decide(policy, over).allow;

describe('CEL conditions: every variable is bound', () => {
  const cases: Array<[string, Parameters<typeof decide>[1], Parameters<typeof decide>[1]]> = [
    ["workload.issuer == 'cluster'", {}, { identity: identity('s', {}, 'other-cluster') }],
    ["workload.kind == 'kubernetes'", {}, { identity: identity('s', {}, 'github') }],
    ["workload.subject.startsWith('system:serviceaccount:plugins:')", {}, { identity: identity('system:serviceaccount:kube-system:p') }],
    ["workload.claims.namespace == 'plugins'", {}, { attributes: { namespace: 'tools' } }],
    ['has(workload.claims.service_account)', {}, { attributes: { namespace: 'plugins' } }],
    ["request.audience == 'https://api.example.com'", {}, undefined],
    ["request.scopes.all(s, s.startsWith('crm:read'))", { scopes: ['crm:read'] }, { scopes: ['crm:read', 'crm:export'] }],
    // No scope asked: the grant's default scopes (the first one) are what the condition sees.
    ["request.scopes == ['crm:read']", {}, { scopes: ['crm:search'] }],
    ['request.ttl <= 60', { ttl: 60 }, { ttl: 120 }],
    ['request.ttl == 0', {}, { ttl: 1 }],
    ['request.params.audience == request.audience', {}, undefined],
    ['size(request.authorization_details) == 0', {}, { details: [{ type: 'leash_task', task: 'task-1' }] }],
    [
      "request.authorization_details.all(d, d.type != 'leash_mcp_tool_call' || (d.tool == 'send_email' && d.arguments.to.endsWith('@example.com')))",
      {
        details: [
          { type: 'leash_task', task: 'task-1' },
          { type: 'leash_mcp_tool_call', tool: 'send_email', arguments: { to: 'ann@example.com' } },
        ],
      },
      { details: [{ type: 'leash_mcp_tool_call', tool: 'send_email', arguments: { to: 'eve@evil.example' } }] },
    ],
    ["task.id == 'task-1'", {}, { task: undefined }],
    ["task.attributes.env == 'prod'", {}, { task: task({ env: 'dev' }) }],
    ["'q' in task.plugins", {}, { task: task({ env: 'prod' }, ['p']) }],
    ["plugin.id == 'p' && plugin.owner == 'team@example.com' && plugin.risk == 'low'", {}, undefined],
    ['now.getDayOfWeek() == 3 && now.getHours() == 12', {}, { now: NOW + 3_600_000 }],
    ["now.getHours('Europe/Paris') == 13 && now.getHours('+05:30') == 17", {}, { now: NOW + 3_600_000 }],
    ["now < timestamp('2026-11-26T00:00:00Z')", {}, { now: Date.UTC(2026, 10, 26) }],
    ["approval.rule == 'none'", {}, undefined],
    ['delegation.depth == 0 && size(delegation.chain) == 0', {}, { chain: ['planner'] }],
    ["delegation.chain == ['planner', 'q']", { chain: ['planner', 'q'] }, { chain: ['q'] }],
  ];
  it.each(cases)('%s', (expr, good, bad) => {
    const policy = policyWith([{ expr }]);
    expect(decide(policy, good)).toMatchObject({ allow: true });
    if (bad) expect(decide(policy, bad)).toMatchObject({ allow: false, code: 'ERR_CONDITION_FAILED' });
  });

  it('the list covers every declared variable', () => {
    const used = cases.map(([e]) => e).join(' ');
    for (const v of CEL_VARIABLES) expect(used).toContain(v.name);
  });
});

describe('CEL conditions: denials', () => {
  it('a false expression is named in the denial', () => {
    const policy = policyWith([{ expr: "workload.claims.namespace == 'plugins'" }, { attr: 'task.env', equals: 'prod' }]);
    const d = decide(policy, { attributes: { namespace: 'tools' }, task: task({ env: 'dev' }) });
    expect(d).toMatchObject({ allow: false, code: 'ERR_CONDITION_FAILED' });
    expect(!d.allow && d.description).toBe("the grant's conditions do not hold: expression 'workload.claims.namespace == 'plugins'' is false; task.env must equal 'prod'");
  });

  it('an expression that cannot be evaluated denies (fail closed), named, with why', () => {
    const policy = policyWith([{ expr: "workload.claims.env == 'prod'" }]);
    const d = decide(policy, { attributes: { namespace: 'plugins' } });
    expect(d).toMatchObject({ allow: false, code: 'ERR_CONDITION_FAILED' });
    expect(!d.allow && d.description).toMatch(/^the grant's conditions do not hold: expression 'workload.claims.env == 'prod'' could not be evaluated \(.*env.*\); denied$/);
  });

  it('a runtime error inside a || that is not needed does not deny (CEL commutative logic)', () => {
    const policy = policyWith([{ expr: "workload.claims.env == 'prod' || workload.claims.namespace == 'plugins'" }]);
    expect(holds(policy, { attributes: { namespace: 'plugins' } })).toBe(true);
  });

  it('a long expression is cut in the denial', () => {
    const long = `workload.subject == '${'x'.repeat(300)}'`;
    const d = decide(policyWith([{ expr: long }]));
    expect(!d.allow && d.description.length).toBeLessThan(300);
    expect(!d.allow && d.description).toContain('...');
  });

  it('a workload with more attributes than conditions accept is denied, not evaluated at a greater cost', () => {
    const many = Object.fromEntries(Array.from({ length: MAX_CLAIMS + 1 }, (_, i) => [`c${i}`, 'v']));
    const d = decide(policyWith([{ expr: 'size(workload.claims) > 0' }]), { attributes: many });
    expect(d).toMatchObject({ allow: false, code: 'ERR_CONDITION_FAILED' });
    expect(!d.allow && d.description).toContain(`more than the ${MAX_CLAIMS} conditions accept`);
  });

  it('matches() is RE2: a pattern that backtracks exponentially in other engines runs in linear time', () => {
    const policy = policyWith([{ expr: "workload.claims.ref.matches('^(a+)+$')" }]);
    const started = process.hrtime.bigint();
    expect(holds(policy, { attributes: { ref: `${'a'.repeat(5000)}!` } })).toBe(false);
    expect(Number(process.hrtime.bigint() - started) / 1e6).toBeLessThan(1000);
    expect(holds(policy, { attributes: { ref: 'aaaa' } })).toBe(true);
  });
});

describe('CEL conditions: checked at load, problems with their paths', () => {
  const rejects: Array<[string, string, RegExp]> = [
    ['syntax', 'workload.subject ==', /^does not parse: at 1:\d+/],
    ['unknown variable', "reqest.audience == 'x'", /^unknown variable 'reqest.audience'/],
    ['unknown field of a namespace', "workload.nope == 'x'", /^unknown variable 'workload.nope' \(known: workload.issuer, workload.kind, workload.subject, workload.claims\)/],
    ['field of a string', "workload.subject.x == 'y'", /^'workload.subject' is a string and has no field 'x'/],
    ['type error', 'workload.subject + 1 == 2', /^'\+' cannot combine a string and an int/],
    ['mixed numbers', 'request.ttl + 1.5 > 2.0', /CEL does not mix int, uint and double/],
    ['comparison that can never be true', 'request.ttl == "300"', /compares an int with a string, which are never equal/],
    ['not a bool', 'size(request.scopes)', /^is an int; a condition must be a bool$/],
    ['unknown function', "lower(workload.subject) == 'x'", /^unknown function 'lower'/],
    ['wrong receiver', 'request.ttl.startsWith("1")', /receiver of startsWith\(\) must be string, not int/],
    ['pattern from the request', 'workload.subject.matches(request.params.scope)', /takes a string literal as its pattern/],
    ['pattern RE2 refuses (a backreference)', "workload.subject.matches('(a)\\\\1')", /is not an RE2 regular expression/],
    ['unknown time zone', "now.getHours('Mars/Olympus') > 1", /'Mars\/Olympus' is not a time zone/],
    ['iterating a string', "workload.subject.all(c, c == 'a')", /^cannot iterate over a string/],
    [
      'three nested loops over scopes and claims',
      'workload.claims.all(a, workload.claims.all(b, workload.claims.all(c, a != b || b != c)))',
      /^may cost up to [\d,]+ units, above the limit of [\d,]+/,
    ],
    ['doubling a string in a chain of maps', '[workload.subject].map(a, a + a).map(b, b + b).map(c, c + c).map(d, d + d).map(e, e + e).map(f, f + f).map(g, g + g).size() > 0', /^may cost up to/],
    ['an empty expression', '  ', /^must not be empty$/],
  ];
  it.each(rejects)('%s', (_name, expr, message) => {
    const problems = problemsOf(() => policyWith([{ expr }]));
    expect(problems).toEqual([{ path: '/plugins/0/grants/0/conditions/0/expr', message: expect.stringMatching(message) }]);
  });

  it('an expr beside attr operators is refused', () => {
    expect(problemsOf(() => policyWith([{ expr: 'true', attr: 'task.env', equals: 'x' }]))).toEqual([{ path: '/plugins/0/grants/0/conditions/0', message: expect.stringContaining('stands alone') }]);
  });

  it('every problem of every expression is reported at once', () => {
    const problems = problemsOf(() => policyWith([{ expr: 'nope == 1' }, { expr: "task.id == 'x'" }, { expr: '1 +' }]));
    expect(problems.map((p) => p.path)).toEqual(['/plugins/0/grants/0/conditions/0/expr', '/plugins/0/grants/0/conditions/2/expr']);
  });

  it('the cost bound follows the grant: nested loops over a grant with few scopes pass, over many they do not', () => {
    const nested = 'request.scopes.all(a, request.scopes.exists(b, a == b))';
    expect(compileCelCondition(nested, BOUNDS)).toMatchObject({ ok: true });
    const many = Array.from({ length: 200 }, (_, i) => `s${i}`);
    expect(compileCelCondition(nested, { audience: 'a', scopes: many })).toMatchObject({ ok: false, message: expect.stringMatching(/may cost up to/) });
  });

  it('reports the worst-case cost of what it accepts', () => {
    const simple = compileCelCondition("workload.claims.repository == 'octo/app'", BOUNDS);
    expect(simple.ok && simple.expression.cost).toBeLessThan(20);
    const loop = compileCelCondition("request.scopes.all(s, s.startsWith('crm:'))", BOUNDS);
    expect(loop.ok && loop.expression.cost).toBeGreaterThan(simple.ok ? simple.expression.cost : 0);
    expect(loop.ok && loop.expression.cost).toBeLessThanOrEqual(CEL_COST_LIMIT);
  });
});

describe('isAlwaysTrue (for the governance review)', () => {
  it.each([
    ['true', true],
    ['1 == 1', true],
    ["workload.subject == 'x' || true", true],
    ["true || workload.subject == 'x'", true],
    ["!(workload.subject == 'x' && false)", true],
    ["size([1, 2, 3]) == 3 && (task.id == '' || true)", true],
    ['[1, 2].all(x, x > 0)', true],
    ["false ? workload.subject == 'x' : true", true],
    ["workload.subject == 'x'", false],
    ["workload.subject == 'x' || workload.subject != 'x'", false], // a tautology by meaning, not by constants: not detected
    ['false', false],
    ['1 +', false], // does not compile
    ["workload.claims.all(k, k != '')", false],
  ])('%s → %s', (expr, expected) => {
    expect(isAlwaysTrue(expr as string)).toBe(expected);
  });
});
