import { describe, expect, it } from '@jest/globals';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, type ConfigProblem } from '../../src/config/config-error.js';
import { parseConfig, readGuardrailsFile } from '../../src/config/load.js';
import { compilePolicy } from '../../src/policy/compile.js';
import type { BindingConfig } from '../../src/config/schema.js';
import { bindingBreadth, defaultGuardrails } from '../../src/config/guardrails.js';
import { minimalConfig } from '../config/fixtures.js';

const DAY = 86_400_000;
const NOW = Date.UTC(2026, 11, 1, 12, 0, 0);
const iso = (ms: number) => new Date(ms).toISOString();

function problems(input: unknown, opts: Parameters<typeof parseConfig>[1] = {}): readonly ConfigProblem[] {
  try {
    parseConfig(input, opts);
  } catch (e) {
    if (e instanceof ConfigError) return e.problems;
    throw e;
  }
  return [];
}

/** What the new user wrote: every broad thing at once, which used to validate cleanly. */
function broadPolicy(): Record<string, any> {
  const cfg = minimalConfig();
  cfg.plugins.push(
    {
      id: 'everything',
      owner: 'team-x@example.com',
      risk: 'medium',
      bindings: [{ issuer: 'cluster', subject: { glob: 'system:serviceaccount:*:*' } }],
      grants: [{ audience: 'https://api.example.com', scopes: ['*', 'org:admin'], effect: 'read' }],
    },
    {
      id: 'sender',
      owner: 'team-y@example.com',
      risk: 'medium',
      bindings: [{ issuer: 'cluster', subject: 'system:serviceaccount:plugins:sender' }],
      grants: [{ audience: 'https://mail.example.com', scopes: ['mail:send'], effect: 'exfiltrate', approval: 'none', max_ttl: 120 }],
    },
    {
      id: 'crown-jewels',
      owner: 'team-z@example.com',
      risk: 'critical',
      bindings: [{ issuer: 'cluster', subject: 'system:serviceaccount:plugins:crown' }],
      grants: [{ audience: 'https://vault.example.com', scopes: ['secrets:read'], effect: 'read', approval: 'none', dpop: 'required' }],
    },
  );
  return cfg;
}

const exception = (over: Record<string, unknown> = {}) => ({
  id: 'exc-sender',
  plugin: 'sender',
  grant: 'https://mail.example.com',
  guardrail: 'approval-for-effect',
  reason: 'mail relay has its own human review',
  ticket: 'SEC-42',
  owner: 'team-y@example.com',
  approved_by: 'security@example.com',
  created_at: iso(NOW - 10 * DAY),
  expires_at: iso(NOW + 20 * DAY),
  ...over,
});

describe('guardrails: on by default, each violation a validation error with its path and guardrail id', () => {
  it('the broad policy of the issue no longer validates: every violation named', () => {
    const found = problems(broadPolicy()).map((p) => [p.path, p.guardrail]);
    expect(found).toEqual(
      expect.arrayContaining([
        ['/plugins/1/bindings/0', 'no-broad-binding'],
        ['/plugins/1/grants/0/scopes/0', 'no-broad-scope'],
        ['/plugins/1/grants/0/scopes/1', 'no-broad-scope'],
        ['/plugins/2/grants/0/approval', 'approval-for-effect'],
        ['/plugins/3/grants/0/approval', 'approval-for-risk'],
      ]),
    );
    expect(found).toHaveLength(5);
    const message = problems(broadPolicy()).find((p) => p.guardrail === 'approval-for-risk')!.message;
    expect(message).toContain('[guardrail approval-for-risk]');
  });

  it.each([
    ['max-ttl', (c: any) => (c.plugins[0].grants[0] = { ...c.plugins[0].grants[0], effect: 'write', approval: 'human', max_ttl: 1800 }), '/plugins/0/grants/0/max_ttl'],
    ['task-required', (c: any) => (c.plugins[0].grants[0] = { ...c.plugins[0].grants[0], effect: 'write', task_required: false }), '/plugins/0/grants/0/task_required'],
    [
      'dpop-for-risk',
      (c: any) => {
        c.plugins[0].risk = 'high';
        c.settings = { dpop: { required_for_risk: ['critical'] } };
      },
      '/plugins/0/grants/0/dpop',
    ],
    ['vendor-risk-floor', (c: any) => (c.plugins[0].vendor_managed = true), '/plugins/0/risk'],
    [
      'vendor-approval',
      (c: any) => {
        Object.assign(c.plugins[0], { vendor_managed: true, risk: 'high' });
        c.plugins[0].grants[0] = { ...c.plugins[0].grants[0], effect: 'read-sensitive', max_ttl: 300 };
      },
      '/plugins/0/grants/0/approval',
    ],
    [
      'vendor-dpop',
      (c: any) => {
        Object.assign(c.plugins[0], { vendor_managed: true, risk: 'high' });
        c.settings = { dpop: { required_for_risk: ['critical'] } };
        c.guardrails = { dpop_for_risk: ['critical'] };
      },
      '/plugins/0/grants/0/dpop',
    ],
  ])('%s', (guardrail, patch, path) => {
    const cfg = minimalConfig();
    patch(cfg);
    const found = problems(cfg, guardrail === 'vendor-dpop' ? { guardrails: { ...defaultGuardrails(), dpop_for_risk: ['critical'] } } : {});
    expect(found.map((p) => [p.path, p.guardrail])).toContainEqual([path, guardrail]);
  });

  it('a narrow glob (a service-account prefix) is not broad; the minimal config meets every default', () => {
    const cfg = minimalConfig();
    cfg.plugins[0].bindings = [{ issuer: 'cluster', subject: { glob: 'system:serviceaccount:plugins:crm-reader-*' } }];
    expect(problems(cfg)).toEqual([]);
  });

  it("a kind's own narrowing is honoured: any session of one AWS role, any protected ref of one GitLab project; not across kinds", () => {
    const broad = (issuer: string, b: BindingConfig) => bindingBreadth(b, issuer);
    const role = { issuer: 'aws', claims: {}, subject: { glob: 'arn:aws:sts::210987654321:assumed-role/crm-reader/*' } };
    expect(broad('aws', role)).toBeUndefined();
    expect(broad('oidc', role)).toMatch(/whole segment/);
    expect(broad('aws', { issuer: 'aws', claims: {}, subject: { glob: 'arn:aws:sts::210987654321:assumed-role/*/*' } })).toMatch(/whole segment/);
    const anyRef = { issuer: 'gitlab', claims: {}, subject: { glob: 'project_path:platform/deployer:ref_type:branch:ref:*' } };
    expect(broad('gitlab', anyRef)).toMatch(/whole segment/);
    expect(broad('gitlab', { ...anyRef, claims: { ref_protected: 'true' } })).toBeUndefined();
    expect(broad('gitlab', { ...anyRef, claims: { ref_protected: { equals: 'true' } } })).toBeUndefined();
    const claimsOnly = { issuer: 'x', subject: { glob: '*' }, claims: { role_id: 'AROALEASHROLEID00001' } };
    expect(broad('aws', claimsOnly)).toBeUndefined();
    expect(broad('kubernetes', claimsOnly)).toMatch(/whole segment/);
    expect(broad('aws', { ...claimsOnly, claims: { role_id: { glob: 'AROA*' } } })).toMatch(/whole segment/);
    expect(broad('gitlab', { issuer: 'gitlab', subject: { glob: 'project_path:platform/*:ref_type:branch:ref:*' }, claims: { ref_protected: 'true' } })).toMatch(/whole segment/);
  });
});

describe('exceptions: the only way around a guardrail', () => {
  it('an unexpired exception covers its grant; the compiled grant carries it', () => {
    const cfg = broadPolicy();
    cfg.plugins.splice(1, 1);
    cfg.plugins.splice(2, 1);
    cfg.exceptions = [exception()];
    const config = parseConfig(cfg, { now: NOW });
    const grant = compilePolicy(config).plugins.get('sender')!.grants[0]!;
    expect(grant.exceptions).toEqual([{ id: 'exc-sender', guardrail: 'approval-for-effect', expiresAt: NOW + 20 * DAY }]);
    // The other plugins' grants lean on nothing.
    expect(compilePolicy(config).plugins.get('crm-reader')!.grants[0]!.exceptions).toEqual([]);
  });

  it('an exception for another guardrail, grant or plugin covers nothing', () => {
    const cfg = broadPolicy();
    cfg.plugins.splice(1, 1);
    cfg.plugins.splice(2, 1);
    cfg.exceptions = [exception({ guardrail: 'max-ttl' })];
    expect(problems(cfg).map((p) => p.guardrail)).toEqual(['approval-for-effect']);
  });

  it('a plugin-level exception (no grant) covers a binding', () => {
    const cfg = minimalConfig();
    cfg.plugins[0].bindings = [{ issuer: 'cluster', subject: { glob: 'system:serviceaccount:plugins:*' } }];
    expect(problems(cfg).map((p) => p.guardrail)).toEqual(['no-broad-binding']);
    cfg.exceptions = [exception({ id: 'exc-ns', plugin: 'crm-reader', grant: undefined, guardrail: 'no-broad-binding' })];
    expect(problems(cfg)).toEqual([]);
    // Every grant of the plugin leans on it.
    expect(
      compilePolicy(parseConfig(cfg))
        .plugins.get('crm-reader')!
        .grants[0]!.exceptions.map((e) => e.id),
    ).toEqual(['exc-ns']);
  });

  it('expired: `leash validate` (now given) reports the violation again; the broker (no now) still loads, refusing at request time', () => {
    const cfg = broadPolicy();
    cfg.plugins.splice(1, 1);
    cfg.plugins.splice(2, 1);
    cfg.exceptions = [exception({ created_at: iso(NOW - 40 * DAY), expires_at: iso(NOW - DAY) })];
    const found = problems(cfg, { now: NOW });
    expect(found).toHaveLength(1);
    expect(found[0]).toMatchObject({ path: '/plugins/1/grants/0/approval', guardrail: 'approval-for-effect' });
    expect(found[0]!.message).toContain("exception 'exc-sender' expired at");
    expect(() => parseConfig(cfg)).not.toThrow();
  });

  it.each([
    ['unknown plugin', { plugin: 'nobody' }, '/exceptions/0/plugin'],
    ['unknown grant', { grant: 'https://other.example.com' }, '/exceptions/0/grant'],
    ['longer than guardrails.exceptions.max_days', { created_at: iso(NOW), expires_at: iso(NOW + 91 * DAY) }, '/exceptions/0/expires_at'],
    ['expires before it starts', { created_at: iso(NOW), expires_at: iso(NOW - DAY) }, '/exceptions/0/expires_at'],
    ['a renewal before created_at', { renewals: [{ date: iso(NOW - 30 * DAY), by: 'sec', reason: 'still needed' }] }, '/exceptions/0/renewals/0/date'],
    ['a date that is no date', { expires_at: '2026-02-31' }, '/exceptions/0/expires_at'],
  ])('%s is a problem', (_name, over, path) => {
    const cfg = minimalConfig();
    cfg.plugins.push(broadPolicy().plugins[2]);
    cfg.exceptions = [exception(over)];
    expect(problems(cfg).map((p) => p.path)).toContain(path);
  });

  it('a renewal restarts the clock of max_days; a duplicate id is a problem', () => {
    const cfg = minimalConfig();
    cfg.plugins.push(broadPolicy().plugins[2]);
    cfg.exceptions = [exception({ created_at: iso(NOW - 150 * DAY), expires_at: iso(NOW + 60 * DAY), renewals: [{ date: iso(NOW - 10 * DAY), by: 'sec', reason: 'migration slipped' }] })];
    expect(problems(cfg)).toEqual([]);
    cfg.exceptions.push(exception());
    expect(problems(cfg).map((p) => p.path)).toContain('/exceptions/1/id');
  });
});

describe('where guardrails come from: defaults, the guardrails file, the policy (tighten only)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'leash-guardrails-'));

  it('a guardrails file relaxes a default; the policy section may only tighten it', () => {
    const file = join(dir, 'guardrails.yaml');
    writeFileSync(file, 'version: 1\nguardrails:\n  approval_for_effects: [admin]\n  max_ttl: { write: 1800 }\n');
    const source = readGuardrailsFile(file);
    expect(source.guardrails.approval_for_effects).toEqual(['admin']);
    expect(source.guardrails.max_ttl).toEqual({ ...defaultGuardrails().max_ttl, write: 1800 });
    const cfg = broadPolicy();
    cfg.plugins.splice(1, 1);
    cfg.plugins.splice(2, 1);
    expect(problems(cfg, { guardrails: source.guardrails })).toEqual([]);
    // The policy tightens it back: allowed, and in force.
    cfg.guardrails = { approval_for_effects: ['admin', 'exfiltrate'] };
    expect(problems(cfg, { guardrails: source.guardrails }).map((p) => p.guardrail)).toEqual(['approval-for-effect']);
    // The policy relaxing the baseline is refused, naming the field.
    cfg.guardrails = { approval_for_effects: [], max_ttl: { write: 3600 } };
    const found = problems(cfg, { guardrails: source.guardrails });
    expect(found.map((p) => p.path)).toEqual(expect.arrayContaining(['/guardrails/approval_for_effects', '/guardrails/max_ttl/write']));
    expect(found[0]!.message).toContain('guardrails are relaxed only in the guardrails file');
  });

  it('without a guardrails file the policy cannot relax the defaults', () => {
    const cfg = minimalConfig();
    cfg.guardrails = { allow_broad_bindings: true, vendor: { min_risk: 'low' }, exceptions: { max_days: 400 } };
    expect(
      problems(cfg)
        .map((p) => p.path)
        .sort(),
    ).toEqual(['/guardrails/allow_broad_bindings', '/guardrails/exceptions/max_days', '/guardrails/vendor/min_risk']);
  });

  it('a bad guardrails file is a ConfigError naming the file; a bad pattern is reported', () => {
    const file = join(dir, 'bad.yaml');
    writeFileSync(file, 'version: 1\nguardrails:\n  max_ttl: { write: -1 }\n  forbidden_scopes: ["(unclosed"]\n');
    expect(() => readGuardrailsFile(file)).toThrow(/in guardrails file/);
    writeFileSync(file, 'version: 1\nguardrails:\n  forbidden_scopes: ["(unclosed"]\n');
    expect(() => readGuardrailsFile(file)).toThrow(/forbidden_scopes\/0: is not a valid regular expression/);
  });
});
