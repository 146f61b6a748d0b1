import { describe, expect, it } from '@jest/globals';
import type { PluginConfig } from '../../src/config/schema.js';
import { compilePolicy } from '../../src/policy/compile.js';
import { evaluate } from '../../src/policy/evaluate.js';
import type { Decision, PolicyInput, PolicyRequest } from '../../src/policy/types.js';
import { config, grant, identity, NOW, plugin, problemsOf, settings, task } from './fixtures.js';

const API = 'https://api.example.com';
const OTHER = 'https://secret-reach.example.com';

function decide(p: PluginConfig, request: Partial<PolicyRequest> = {}, over: Partial<PolicyInput> = {}, cfgOver = {}): Decision {
  const policy = compilePolicy(config([p], cfgOver));
  const compiled = policy.plugins.get(p.id)!;
  return policy.evaluate({
    plugin: compiled,
    identity: identity(`system:serviceaccount:plugins:${p.id}`),
    task: task({ env: 'prod' }),
    request: { audience: API, scopes: undefined, ttl: undefined, params: {}, ...request },
    now: NOW,
    ...over,
  });
}

function denied(d: Decision) {
  if (d.allow) throw new Error(`expected a denial, got allow: ${d.reasons.join('; ')}`);
  return d;
}
function allowed(d: Decision) {
  if (!d.allow) throw new Error(`expected allow, got ${d.code}: ${d.description}`);
  return d;
}

const reader = plugin('reader', {
  grants: [grant({ audience: API, scopes: ['contacts:read', 'contacts:search', 'contacts:export'], max_ttl: 300 }), grant({ audience: OTHER, scopes: ['x'] })],
});

describe('evaluate: allowed', () => {
  it('defaults scopes to the first scope, never all, and ttl to the grant max', () => {
    const d = allowed(decide(reader));
    expect(d.scopes).toEqual(['contacts:read']);
    expect(d.ttl).toBe(300);
    expect(d.grant.index).toBe(0);
    expect(d.dpopRequired).toBe(false);
    expect(d.reasons).toEqual(['grant 0 matched audience', 'scopes defaulted to contacts:read', 'ttl defaulted to grant max 300s']);
  });

  it('uses default_scopes when configured', () => {
    const p = plugin('r', { grants: [grant({ scopes: ['a', 'b', 'c'], default_scopes: ['b', 'c'] })] });
    expect(allowed(decide(p)).scopes).toEqual(['b', 'c']);
  });

  it('an empty scope list (scope="") is treated as no scope', () => {
    expect(allowed(decide(reader, { scopes: [] })).scopes).toEqual(['contacts:read']);
  });

  it('issues exactly the requested scopes when all are granted (deduplicated)', () => {
    const d = allowed(decide(reader, { scopes: ['contacts:search', 'contacts:export', 'contacts:search'] }));
    expect(d.scopes).toEqual(['contacts:search', 'contacts:export']);
    expect(d.reasons).toContain('requested scopes within grant');
  });

  it('a requested ttl below the max is kept; equal to the max is allowed', () => {
    expect(allowed(decide(reader, { ttl: 60 })).ttl).toBe(60);
    expect(allowed(decide(reader, { ttl: 300 })).ttl).toBe(300);
  });

  it('picks the grant of the requested audience', () => {
    const d = allowed(decide(reader, { audience: OTHER }));
    expect(d.grant.index).toBe(1);
    expect(d.scopes).toEqual(['x']);
  });

  it('a grant without task_required works without a task', () => {
    const p = plugin('r', { grants: [grant({ task_required: false })] });
    expect(allowed(decide(p, {}, { task: undefined })).scopes).toEqual(['read']);
  });

  it('approval: explicit on the grant, else human for write/exfiltrate/admin effects and for the risk tiers settings name', () => {
    const rule = (p: ReturnType<typeof plugin>, over = {}) => allowed(decide(p, {}, {}, over)).grant.approval;
    for (const effect of ['write', 'exfiltrate', 'admin'] as const) expect(rule(plugin('w', { grants: [grant({ effect, approval: undefined })] }))).toBe('human');
    for (const effect of ['read', 'read-sensitive'] as const) expect(rule(plugin('r', { grants: [grant({ effect, approval: undefined })] }))).toBe('none');
    // a critical plugin's read waits for a person by default ...
    expect(rule(plugin('c', { risk: 'critical', grants: [grant({ approval: undefined })] }))).toBe('human');
    expect(rule(plugin('h', { risk: 'high', grants: [grant({ approval: undefined })] }))).toBe('none');
    // ... unless the grant says otherwise, or the settings name other tiers
    expect(rule(plugin('c', { risk: 'critical', grants: [grant({ approval: 'none' })] }))).toBe('none');
    expect(rule(plugin('w', { grants: [grant({ effect: 'write', approval: 'step-up' })] }))).toBe('step-up');
    const highToo = {
      settings: settings({
        approvals: { poll_interval: 5, pending_ttl: 900, redeem_ttl: 300, max_pending_per_plugin: 10, max_pending_per_task: 20, approver_groups: [], required_for_risk: ['high'] },
      }),
    };
    expect(rule(plugin('h', { risk: 'high', grants: [grant({ approval: undefined })] }), highToo)).toBe('human');
    expect(rule(plugin('c', { risk: 'critical', grants: [grant({ approval: undefined })] }), highToo)).toBe('none');
  });

  it('dpop: required by the grant, by the risk tier, or not at all', () => {
    expect(allowed(decide(plugin('g', { grants: [grant({ dpop: 'required' })] }))).dpopRequired).toBe(true);
    expect(allowed(decide(plugin('h', { risk: 'high' }))).dpopRequired).toBe(true);
    expect(allowed(decide(plugin('c', { risk: 'critical' }))).dpopRequired).toBe(true);
    expect(allowed(decide(plugin('m', { risk: 'medium' }))).dpopRequired).toBe(false);
    const onlyMedium = { settings: settings({ dpop: { required_for_risk: ['medium'], max_proof_age: 60, algorithms: ['ES256'] } }) };
    expect(allowed(decide(plugin('m', { risk: 'medium' }), {}, {}, onlyMedium)).dpopRequired).toBe(true);
    expect(allowed(decide(plugin('h', { risk: 'high' }), {}, {}, onlyMedium)).dpopRequired).toBe(false);
  });

  it('a risk tier does not demand DPoP for aws-sts grants (AWS credentials cannot be bound to a key)', () => {
    const aws = { role_arn: 'arn:aws:iam::123456789012:role/r', mode: 'web-identity' as const, actions: ['s3:GetObject'], resources: ['*'], transitive_tags: false, role_max_session: 3600 };
    expect(allowed(decide(plugin('h', { risk: 'high', grants: [grant({ kind: 'aws-sts', aws })] }))).dpopRequired).toBe(false);
  });

  it('conditions that hold let the request through', () => {
    const p = plugin('r', { grants: [grant({ conditions: [{ attr: 'task.env', equals: 'prod' }] })] });
    expect(allowed(decide(p)).reasons).toContain('conditions hold');
  });

  it('is pure: the same input gives the same decision, and the exported evaluate is the policy one', () => {
    const policy = compilePolicy(config([reader]));
    const input: PolicyInput = { plugin: policy.plugins.get('reader')!, identity: identity('x'), task: task(), request: { audience: API, scopes: ['contacts:read'], ttl: 10, params: {} }, now: NOW };
    expect(policy.evaluate(input)).toEqual(evaluate(input));
    expect(policy.evaluate(input)).toEqual(policy.evaluate(input));
  });
});

describe('evaluate: denied, with the exact code', () => {
  it('ERR_PLUGIN_DISABLED', () => {
    const d = denied(decide(plugin('off', { disabled: true })));
    expect(d.code).toBe('ERR_PLUGIN_DISABLED');
  });

  it.each([
    ['an unknown audience', 'https://nope.example.com'],
    ['a trailing slash', `${API}/`],
    ['a prefix', 'https://api.example.co'],
    ['an extension', `${API}.evil.test`],
    ['a path below', `${API}/v1`],
    ['another case', 'https://API.example.com'],
  ])('ERR_AUDIENCE_NOT_GRANTED for %s', (_name, audience) => {
    const d = denied(decide(reader, { audience }));
    expect(d.code).toBe('ERR_AUDIENCE_NOT_GRANTED');
    expect(d.description).toContain(audience);
    expect(d.description).not.toContain(OTHER); // other audiences are not revealed
    expect(d.description).not.toContain(`'${API}'`); // nor the near-miss it resembles
  });

  it('ERR_TASK_REQUIRED (task_required defaults to true)', () => {
    expect(denied(decide(reader, {}, { task: undefined })).code).toBe('ERR_TASK_REQUIRED');
  });

  it('ERR_SCOPE_NOT_GRANTED names the offending scopes only', () => {
    const d = denied(decide(reader, { scopes: ['contacts:read', 'contacts:delete', 'admin'] }));
    expect(d.code).toBe('ERR_SCOPE_NOT_GRANTED');
    expect(d.description).toContain("'contacts:delete', 'admin'");
    expect(d.description).not.toContain('contacts:export');
  });

  it('a scope granted for another audience is not granted here', () => {
    expect(denied(decide(reader, { scopes: ['x'] })).code).toBe('ERR_SCOPE_NOT_GRANTED');
  });

  it('ERR_TTL_EXCEEDS_MAX', () => {
    const d = denied(decide(reader, { ttl: 301 }));
    expect(d.code).toBe('ERR_TTL_EXCEEDS_MAX');
    expect(d.description).toContain('300');
  });

  it.each([0, -5, 1.5, Number.NaN])('ERR_TTL_INVALID for ttl %p', (ttl) => {
    expect(denied(decide(reader, { ttl })).code).toBe('ERR_TTL_INVALID');
  });

  it('ERR_CONDITION_FAILED lists the failed conditions', () => {
    const p = plugin('r', {
      grants: [
        grant({
          conditions: [
            { attr: 'task.env', equals: 'staging' },
            { attr: 'request.ticket', present: true },
            { attr: 'task.env', in: ['prod'] },
          ],
        }),
      ],
    });
    const d = denied(decide(p));
    expect(d.code).toBe('ERR_CONDITION_FAILED');
    expect(d.description).toBe("the grant's conditions do not hold: task.env must equal 'staging'; request.ticket must be present");
  });

  it('ERR_CONDITION_FAILED outside the time window', () => {
    const p = plugin('r', { grants: [grant({ time: { days: ['sat', 'sun'], from: '00:00', to: '24:00' } })] });
    expect(denied(decide(p)).code).toBe('ERR_CONDITION_FAILED'); // NOW is a Wednesday
  });

  it.each(['human', 'step-up'] as const)('approval %s is allowed by policy and reported (the pipeline enforces it)', (approval) => {
    const d = decide(plugin('r', { grants: [grant({ approval })] }));
    expect(d.allow).toBe(true);
    expect(d.allow && d.grant.approval).toBe(approval);
    expect(d.reasons).toContain(`approval '${approval}' required`);
  });

  it('checks in order: disabled before audience, audience before task, task before scopes, scopes before ttl, ttl before conditions, conditions before approval', () => {
    const p = (over: Partial<PluginConfig> = {}) => plugin('r', { grants: [grant({ scopes: ['a'], max_ttl: 10, approval: 'human', conditions: [{ attr: 'request.x', present: true }] })], ...over });
    const all = { audience: API, scopes: ['b'], ttl: 99 };
    expect(denied(decide(p({ disabled: true }), { ...all, audience: OTHER }, { task: undefined })).code).toBe('ERR_PLUGIN_DISABLED');
    expect(denied(decide(p(), { ...all, audience: OTHER }, { task: undefined })).code).toBe('ERR_AUDIENCE_NOT_GRANTED');
    expect(denied(decide(p(), all, { task: undefined })).code).toBe('ERR_TASK_REQUIRED');
    expect(denied(decide(p(), all)).code).toBe('ERR_SCOPE_NOT_GRANTED');
    expect(denied(decide(p(), { ...all, scopes: ['a'] })).code).toBe('ERR_TTL_EXCEEDS_MAX');
    expect(denied(decide(p(), { ...all, scopes: ['a'], ttl: 5 })).code).toBe('ERR_CONDITION_FAILED');
    expect(decide(p(), { ...all, scopes: ['a'], ttl: 5, params: { x: '1' } }).allow).toBe(true);
  });

  it('every denial carries reasons ending with why', () => {
    const d = denied(decide(reader, { ttl: 999 }));
    expect(d.reasons).toEqual(['grant 0 matched audience', 'scopes defaulted to contacts:read', 'ttl above grant max']);
  });
});

describe('grant config problems', () => {
  it('default_scopes must be among scopes', () => {
    const problems = problemsOf(() => compilePolicy(config([plugin('r', { grants: [grant({ scopes: ['a'], default_scopes: ['a', 'b'] })] })])));
    expect(problems).toEqual([{ path: '/plugins/0/grants/0/default_scopes/1', message: expect.stringContaining("'b'") }]);
  });

  it('one grant per audience', () => {
    const problems = problemsOf(() => compilePolicy(config([plugin('r', { grants: [grant(), grant({ scopes: ['write'] })] })])));
    expect(problems).toEqual([{ path: '/plugins/0/grants/1/audience', message: expect.stringContaining('/plugins/0/grants/0') }]);
  });

  it('collects problems across plugins, grants and bindings in one error', () => {
    const problems = problemsOf(() =>
      compilePolicy(
        config([
          plugin('a', { grants: [grant({ conditions: [{ attr: 'task.env' }] })] }),
          plugin('b', { bindings: [{ issuer: 'typo', subject: 'x', claims: {} }], grants: [grant({ time: { days: ['mon'], from: '10:00', to: '09:00' } })] }),
        ]),
      ),
    );
    expect(problems.map((p) => p.path)).toEqual(['/plugins/0/grants/0/conditions/0', '/plugins/1/bindings/0/issuer', '/plugins/1/grants/0/time']);
  });

  it('compiles defaults the loader would fill when they are absent', () => {
    const sparse = { audience: API, scopes: ['a', 'b'], effect: 'read' } as unknown as ReturnType<typeof grant>;
    const d = allowed(decide(plugin('r', { grants: [sparse] })));
    expect(d.scopes).toEqual(['a']);
    expect(d.ttl).toBe(300);
    expect(d.grant.kind).toBe('jwt');
    expect(denied(decide(plugin('r', { grants: [sparse] }), {}, { task: undefined })).code).toBe('ERR_TASK_REQUIRED');
  });
});
