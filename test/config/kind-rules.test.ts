import { describe, expect, it } from '@jest/globals';
import { ConfigError, type ConfigProblem } from '../../src/config/config-error.js';
import { parseConfig as parseWithGuardrails } from '../../src/config/load.js';
import { minimalConfig } from './fixtures.js';

// The organisation's guardrails (no-broad-binding...) are the review's concern and tested
// there; here only the kinds' own rules speak.
const parseConfig = (input: unknown) => parseWithGuardrails(input, { guardrailMode: 'report' });
function problemsOf(input: unknown): readonly ConfigProblem[] {
  try {
    parseConfig(input);
  } catch (e) {
    if (e instanceof ConfigError) return e.problems;
    throw e;
  }
  throw new Error('expected a ConfigError, but the config was accepted');
}

/**
 * Each trusted-issuer kind's own rules and what its bindings must pin: issuers that sign
 * for strangers (every GitLab project, Google account, AWS account, Entra application)
 * make an unpinned binding a validation error.
 */

const TENANT = '11111111-2222-3333-4444-555555555555';
const ISSUERS: Record<string, Record<string, unknown>> = {
  gitlab: { name: 'gitlab', kind: 'gitlab', issuer: 'https://gitlab.com', audience: 'https://leash.example.com', jwks: { discovery: true } },
  gcp: { name: 'gcp', kind: 'gcp', issuer: 'https://accounts.google.com', audience: 'https://leash.example.com', jwks: { uri: 'https://www.googleapis.com/oauth2/v3/certs' } },
  azure: { name: 'entra', kind: 'azure', issuer: `https://login.microsoftonline.com/${TENANT}/v2.0`, audience: 'api://leash', jwks: { discovery: true } },
  aws: { name: 'aws', kind: 'aws', issuer: 'https://sts.us-east-1.amazonaws.com', audience: 'leash.example.com', region: 'us-east-1' },
};

function withBinding(kind: keyof typeof ISSUERS, binding: Record<string, unknown>): Record<string, any> {
  const cfg = minimalConfig();
  cfg.trusted_issuers.push(ISSUERS[kind]);
  cfg.plugins[0].bindings = [{ issuer: ISSUERS[kind]!.name, ...binding }];
  return cfg;
}

const BINDING = '/plugins/0/bindings/0';

describe('bindings must pin what the issuer shares with strangers', () => {
  const accepted: Array<[string, keyof typeof ISSUERS, Record<string, unknown>]> = [
    ['gitlab: exact subject', 'gitlab', { subject: 'project_path:platform/crm-sync:ref_type:branch:ref:main' }],
    ['gitlab: subject glob over release branches of one project', 'gitlab', { subject: { glob: 'project_path:platform/crm-sync:ref_type:branch:ref:release-*' } }],
    ['gitlab: project claim and a ref claim', 'gitlab', { subject: { glob: '*' }, claims: { project_path: 'platform/crm-sync', ref: 'main' } }],
    ['gitlab: project id and protected refs only', 'gitlab', { subject: { glob: '*' }, claims: { project_id: '20', ref_protected: 'true' } }],
    ['gcp: exact email', 'gcp', { subject: 'crm-reader@acme-prod.iam.gserviceaccount.com' }],
    ['gcp: any account of one project', 'gcp', { subject: { glob: '*@acme-prod.iam.gserviceaccount.com' } }],
    ['gcp: unique id', 'gcp', { subject: { glob: '*' }, claims: { unique_id: '112233445566778899000' } }],
    ['gcp: Compute Engine project', 'gcp', { subject: { glob: '*' }, claims: { project_id: 'acme-prod', instance_name: { glob: 'crm-*' } } }],
    ['azure: exact oid', 'azure', { subject: '99999999-8888-7777-6666-555555555555' }],
    [
      'azure: managed identity resource id',
      'azure',
      { subject: { glob: '*' }, claims: { xms_mirid: '/subscriptions/a/resourcegroups/crm/providers/Microsoft.ManagedIdentity/userAssignedIdentities/crm' } },
    ],
    ['aws: exact ARN', 'aws', { subject: 'arn:aws:sts::210987654321:assumed-role/crm-reader/i-0abc' }],
    ['aws: any session of one role (glob)', 'aws', { subject: { glob: 'arn:aws:sts::210987654321:assumed-role/crm-reader/*' } }],
    ['aws: the role unique id', 'aws', { subject: { glob: '*' }, claims: { role_id: 'AROALEASHROLEID00001' } }],
  ];
  it.each(accepted)('accepted: %s', (_name, kind, binding) => {
    expect(() => parseConfig(withBinding(kind, binding))).not.toThrow();
  });

  const refused: Array<[string, keyof typeof ISSUERS, Record<string, unknown>, RegExp]> = [
    ['gitlab: every project (the */* binding)', 'gitlab', { subject: { glob: '*' } }, /must pin the project and constrain the ref/],
    ['gitlab: a project, any ref', 'gitlab', { subject: { glob: 'project_path:platform/crm-sync:ref_type:branch:ref:*' } }, /constrain the ref/],
    ['gitlab: a ref, any project', 'gitlab', { subject: { glob: '*' }, claims: { ref: 'main' } }, /pin the project/],
    ['gitlab: a project glob', 'gitlab', { subject: { glob: '*' }, claims: { project_path: { glob: 'platform/*' }, ref: 'main' } }, /pin the project/],
    ['gitlab: ref glob that is just *', 'gitlab', { subject: { glob: '*' }, claims: { project_path: 'platform/crm-sync', ref: { glob: '*' } } }, /constrain the ref/],
    ['gitlab: ref_protected false', 'gitlab', { subject: { glob: '*' }, claims: { project_path: 'platform/crm-sync', ref_protected: 'false' } }, /constrain the ref/],
    ['gcp: any Google account', 'gcp', { subject: { glob: '*' } }, /must pin the service account or the project/],
    ['gcp: every default compute account of every project', 'gcp', { subject: { glob: '*@developer.gserviceaccount.com' } }, /must pin/],
    ['gcp: every service agent', 'gcp', { subject: { glob: '*@gcp-sa-pubsub.iam.gserviceaccount.com' } }, /must pin/],
    ['gcp: a project glob', 'gcp', { subject: { glob: '*@acme-*.iam.gserviceaccount.com' } }, /must pin/],
    ['azure: every app of the tenant', 'azure', { subject: { glob: '*' } }, /must pin the workload/],
    ['azure: an app id only', 'azure', { subject: { glob: '*' }, claims: { app_id: 'cccccccc-0000-0000-0000-000000000001' } }, /must pin the workload/],
    ['aws: every AWS account', 'aws', { subject: { glob: 'arn:aws:sts::*:assumed-role/crm-reader/*' } }, /must pin the AWS account/],
    ['aws: a role name in any account', 'aws', { subject: { glob: '*' }, claims: { role: 'crm-reader' } }, /must pin the AWS account/],
  ];
  it.each(refused)('refused: %s', (_name, kind, binding, message) => {
    expect(problemsOf(withBinding(kind, binding))).toEqual([{ path: BINDING, message: expect.stringMatching(message) }]);
  });
});

describe('trusted issuers by kind', () => {
  const issuerProblems = (issuer: Record<string, unknown>) => {
    const cfg = minimalConfig();
    cfg.trusted_issuers.push(issuer);
    return problemsOf(cfg);
  };

  it.each([
    ['https://gitlab.com', 'gitlab'],
    ['https://token.actions.githubusercontent.com', 'github-actions'],
    ['https://token.actions.githubusercontent.com/acme', 'github-actions'],
    ['https://accounts.google.com', 'gcp'],
    [`https://login.microsoftonline.com/${TENANT}/v2.0`, 'azure'],
    [`https://sts.windows.net/${TENANT}/`, 'azure'],
  ])('the generic oidc kind refuses the shared issuer %s and names kind %s', (issuer, kind) => {
    expect(issuerProblems({ name: 'x', kind: 'oidc', issuer, audience: 'leash', jwks: { discovery: true } })).toEqual([
      { path: '/trusted_issuers/1/kind', message: expect.stringContaining(`use kind '${kind}'`) },
    ]);
  });

  it('the oidc kind still serves an issuer of ones own (self-managed GitLab is the gitlab kind by choice)', () => {
    const cfg = minimalConfig();
    cfg.trusted_issuers.push({ name: 'idp', kind: 'oidc', issuer: 'https://idp.example.com', audience: 'leash', jwks: { discovery: true } });
    expect(() => parseConfig(cfg)).not.toThrow();
  });

  it.each(['https://login.microsoftonline.com/common/v2.0', 'https://login.microsoftonline.com/organizations/v2.0', 'https://login.microsoftonline.com/acme.onmicrosoft.com/v2.0'])(
    'azure needs one tenant: %s is refused',
    (issuer) => {
      expect(issuerProblems({ ...ISSUERS.azure, issuer })).toEqual([{ path: '/trusted_issuers/1/issuer', message: expect.stringContaining('must name one tenant') }]);
    },
  );

  it('JWT kinds need jwks; aws takes none', () => {
    const { jwks: _unused, ...gitlab } = ISSUERS.gitlab!;
    expect(issuerProblems(gitlab)).toEqual([{ path: '/trusted_issuers/1/jwks', message: "is required for kind 'gitlab' (where the issuer's verification keys come from)" }]);
    expect(issuerProblems({ ...ISSUERS.aws, jwks: { discovery: true } })).toEqual([{ path: '/trusted_issuers/1/jwks', message: expect.stringContaining("does not apply to kind 'aws'") }]);
  });

  it('with the default guardrails, every session of one AWS role is not a broad binding; every role of an account is', () => {
    const role = withBinding('aws', { subject: { glob: 'arn:aws:sts::210987654321:assumed-role/crm-reader/*' } });
    expect(() => parseWithGuardrails(role)).not.toThrow();
    const anyRole = withBinding('aws', { subject: { glob: 'arn:aws:sts::210987654321:assumed-role/*/*' } });
    expect(() => parseWithGuardrails(anyRole)).toThrow(/no-broad-binding/);
  });

  it('aws: the issuer is an STS endpoint URL, https in production, and a signature lives at most 15 minutes', () => {
    expect(issuerProblems({ ...ISSUERS.aws, issuer: 'sts.amazonaws.com' })).toEqual([{ path: '/trusted_issuers/1/issuer', message: expect.stringContaining("STS endpoint's URL") }]);
    expect(issuerProblems({ ...ISSUERS.aws, issuer: 'https://sts.amazonaws.com/path?x=1' })).toEqual([{ path: '/trusted_issuers/1/issuer', message: expect.stringContaining("STS endpoint's URL") }]);
    expect(issuerProblems({ ...ISSUERS.aws, max_token_age: 3600 })).toEqual([{ path: '/trusted_issuers/1/max_token_age', message: expect.stringContaining('at most 900') }]);
    const prod = minimalConfig();
    prod.settings = { production: true, issuer: 'https://leash.example.com', store: { path: '/var/lib/leash/leash.db' } };
    prod.trusted_issuers.push({ ...ISSUERS.aws, issuer: 'http://sts.internal:8080' });
    expect(problemsOf(prod)).toEqual([{ path: '/trusted_issuers/1/issuer', message: 'must be an https:// URL when settings.production is true' }]);
  });

  it('region only applies to aws', () => {
    expect(issuerProblems({ ...ISSUERS.gitlab, region: 'us-east-1' })).toEqual([{ path: '/trusted_issuers/1/region', message: "only applies to kind 'aws' (this issuer is 'gitlab')" }]);
  });
});
