import { describe, expect, it } from '@jest/globals';
import { Ajv } from 'ajv';
import { configJsonSchema } from '../../src/config/json-schema.js';
import { parseConfig } from '../../src/config/load.js';
import { ISSUER_KINDS, TRUSTED_ISSUER_FIELDS, type IssuerKind } from '../../src/config/schema.js';
import { minimalConfig, problemsOf } from './fixtures.js';

/**
 * A trusted issuer is one sub-schema per `kind`: each kind accepts its own keys (and gets
 * its own defaults), and a key of another kind, or of none, is an error at its path.
 */

const TENANT = '11111111-2222-3333-4444-555555555555';
const JWKS = { discovery: true };

/** One issuer of each kind with every key that kind takes (the optional ones too). */
const FULL: Readonly<Record<IssuerKind, Record<string, unknown>>> = {
  kubernetes: {
    name: 'k8s',
    kind: 'kubernetes',
    issuer: 'https://kubernetes.default.svc',
    audience: 'leash',
    jwks: JWKS,
    algorithms: ['RS256'],
    max_token_age: 600,
    clock_skew: 10,
    token_review: { api_server: 'https://kubernetes.default.svc' },
  },
  spiffe: { name: 'mesh', kind: 'spiffe', issuer: 'https://spire.example.org', audience: ['leash'], jwks: JWKS, algorithms: ['ES256'], max_token_age: 600, clock_skew: 5, trust_domain: 'example.org' },
  'github-actions': {
    name: 'gha',
    kind: 'github-actions',
    issuer: 'https://token.actions.githubusercontent.com',
    audience: 'leash',
    jwks: JWKS,
    algorithms: ['RS256'],
    max_token_age: 600,
    clock_skew: 5,
  },
  gitlab: { name: 'gitlab', kind: 'gitlab', issuer: 'https://gitlab.com', audience: 'leash', jwks: JWKS, algorithms: ['RS256'], max_token_age: 600, clock_skew: 5 },
  gcp: { name: 'gcp', kind: 'gcp', issuer: 'https://accounts.google.com', audience: 'leash', jwks: JWKS, algorithms: ['RS256'], max_token_age: 600, clock_skew: 5 },
  azure: { name: 'entra', kind: 'azure', issuer: `https://login.microsoftonline.com/${TENANT}/v2.0`, audience: 'api://leash', jwks: JWKS, algorithms: ['RS256'], max_token_age: 600, clock_skew: 5 },
  aws: { name: 'aws', kind: 'aws', issuer: 'https://sts.us-east-1.amazonaws.com', audience: 'leash.example.com', region: 'us-east-1', max_token_age: 900, clock_skew: 5 },
  oidc: {
    name: 'idp',
    kind: 'oidc',
    issuer: 'https://idp.example.com',
    audience: 'leash',
    jwks: JWKS,
    algorithms: ['ES256'],
    max_token_age: 600,
    clock_skew: 5,
    subject_claim: 'client_id',
    claims: ['tenant'],
  },
  'x509-svid': { name: 'x509', kind: 'x509-svid', issuer: 'spiffe://example.org', trust_domain: 'example.org', bundle_file: 'bundle.pem', max_token_age: 600, clock_skew: 5 },
};

/** A value of the right shape for any key some kind takes. */
const SAMPLE: Readonly<Record<string, unknown>> = Object.assign({}, ...Object.values(FULL));

/** The minimal config with `issuer` as its third trusted issuer (`/trusted_issuers/2`). */
function withIssuer(issuer: Record<string, unknown>): Record<string, any> {
  const cfg = minimalConfig();
  cfg.trusted_issuers.push({ name: 'other', kind: 'oidc', issuer: 'https://other.example.com', audience: 'leash', jwks: JWKS }, issuer);
  return cfg;
}

describe('trusted issuers: one sub-schema per kind', () => {
  it('the kinds of the schema are the attestation kinds, and each lists its keys', () => {
    expect(Object.keys(TRUSTED_ISSUER_FIELDS).sort()).toEqual([...ISSUER_KINDS].sort());
    expect(Object.keys(FULL).sort()).toEqual([...ISSUER_KINDS].sort());
    for (const kind of ISSUER_KINDS) expect(Object.keys(FULL[kind]).sort()).toEqual([...TRUSTED_ISSUER_FIELDS[kind]].sort());
  });

  it.each(ISSUER_KINDS)('kind %s is accepted with every key it takes', (kind) => {
    const config = parseConfig(withIssuer(FULL[kind]));
    expect(config.trusted_issuers[2]).toMatchObject(FULL[kind]);
  });

  it('fills defaults per kind: algorithms for JWT kinds, subject_claim and claims for oidc only', () => {
    const bare = (kind: IssuerKind) => {
      const { algorithms: _a, subject_claim: _s, claims: _c, max_token_age: _m, clock_skew: _k, token_review: _t, region: _r, ...rest } = FULL[kind];
      return parseConfig(withIssuer(rest)).trusted_issuers[2]!;
    };
    expect(bare('oidc')).toMatchObject({ algorithms: ['RS256', 'ES256'], subject_claim: 'sub', claims: [], max_token_age: 3600, clock_skew: 30 });
    const k8s = bare('kubernetes');
    expect(k8s).toMatchObject({ algorithms: ['RS256', 'ES256'], max_token_age: 3600, clock_skew: 30 });
    expect(Object.keys(k8s).sort()).toEqual(['algorithms', 'audience', 'clock_skew', 'issuer', 'jwks', 'kind', 'max_token_age', 'name']);
    const aws = bare('aws');
    expect(Object.keys(aws).sort()).toEqual(['audience', 'clock_skew', 'issuer', 'kind', 'max_token_age', 'name']);
  });

  it('a kubernetes issuer with subject_claim and claims is refused, naming the path and the kind they belong to', () => {
    const k8s = { ...FULL.kubernetes, subject_claim: 'email', claims: ['team'] };
    expect(problemsOf(withIssuer(k8s))).toEqual([
      { path: '/trusted_issuers/2/subject_claim', message: "only applies to kind 'oidc' (this issuer is 'kubernetes')" },
      { path: '/trusted_issuers/2/claims', message: "only applies to kind 'oidc' (this issuer is 'kubernetes')" },
    ]);
  });

  it('exact messages: keys of several kinds, keys meaning nothing for the kind, keys of no kind', () => {
    expect(problemsOf(withIssuer({ ...FULL.gitlab, trust_domain: 'example.org' }))).toEqual([
      { path: '/trusted_issuers/2/trust_domain', message: "only applies to kinds 'spiffe' and 'x509-svid' (this issuer is 'gitlab')" },
    ]);
    expect(problemsOf(withIssuer({ ...FULL.kubernetes, region: 'eu-west-1', bundle_file: 'b.pem' }))).toEqual([
      { path: '/trusted_issuers/2/region', message: "only applies to kind 'aws' (this issuer is 'kubernetes')" },
      { path: '/trusted_issuers/2/bundle_file', message: "only applies to kind 'x509-svid' (this issuer is 'kubernetes')" },
    ]);
    expect(problemsOf(withIssuer({ ...FULL.aws, jwks: JWKS, algorithms: ['RS256'] }))).toEqual([
      { path: '/trusted_issuers/2/jwks', message: "does not apply to kind 'aws': STS checks the signature, Leash holds no AWS key" },
      { path: '/trusted_issuers/2/algorithms', message: "does not apply to kind 'aws': the attestation is a SigV4-signed request, not a JWT" },
    ]);
    expect(problemsOf(withIssuer({ ...FULL['x509-svid'], audience: 'leash', jwks: JWKS, algorithms: ['ES256'] }))).toEqual([
      { path: '/trusted_issuers/2/audience', message: "does not apply to kind 'x509-svid' (a certificate has no audience)" },
      { path: '/trusted_issuers/2/jwks', message: "does not apply to kind 'x509-svid' (certificates verify against bundle_file)" },
      { path: '/trusted_issuers/2/algorithms', message: "does not apply to kind 'x509-svid' (the attestation is a certificate, not a JWT)" },
    ]);
    expect(problemsOf(withIssuer({ ...FULL.gcp, subjectClaim: 'sub' }))).toEqual([
      { path: '/trusted_issuers/2/subjectClaim', message: "unknown key 'subjectClaim' (allowed for kind 'gcp': name, kind, issuer, audience, jwks, algorithms, max_token_age, clock_skew)" },
    ]);
  });

  // Every (kind, key of another kind) pair: refused at its path, never silently ignored.
  const foreign = ISSUER_KINDS.flatMap((kind) =>
    [...new Set(Object.values(TRUSTED_ISSUER_FIELDS).flat())].filter((key) => !TRUSTED_ISSUER_FIELDS[kind].includes(key)).map((key) => [kind, key] as const),
  );
  it.each(foreign)('kind %s refuses %s', (kind, key) => {
    const problems = problemsOf(withIssuer({ ...FULL[kind], [key]: SAMPLE[key] }));
    expect(problems).toHaveLength(1);
    expect(problems[0]!.path).toBe(`/trusted_issuers/2/${key}`);
    expect(problems[0]!.message).toMatch(new RegExp(`^(only applies to kinds? .*\\(this issuer is '${kind}'\\)|does not apply to kind '${kind}')`));
  });

  it('a key the kind requires is named with the kind', () => {
    const { bundle_file: _b, trust_domain: _t, ...x509 } = FULL['x509-svid'];
    expect(problemsOf(withIssuer(x509))).toEqual([
      { path: '/trusted_issuers/2/trust_domain', message: "is required for kind 'x509-svid'" },
      { path: '/trusted_issuers/2/bundle_file', message: "is required for kind 'x509-svid' (the trust domain's X.509 CA bundle, PEM)" },
    ]);
    const { jwks: _j, audience: _a, ...gha } = FULL['github-actions'];
    expect(problemsOf(withIssuer(gha))).toEqual([
      { path: '/trusted_issuers/2/audience', message: "is required for kind 'github-actions'" },
      { path: '/trusted_issuers/2/jwks', message: "is required for kind 'github-actions' (where the issuer's verification keys come from)" },
    ]);
  });

  it('a missing, unknown or non-string kind is one problem at /kind', () => {
    const kinds = ISSUER_KINDS.map((k) => `"${k}"`).join(', ');
    const { kind: _k, ...noKind } = FULL.gitlab;
    expect(problemsOf(withIssuer(noKind))).toEqual([{ path: '/trusted_issuers/2/kind', message: 'is required' }]);
    expect(problemsOf(withIssuer({ ...FULL.gitlab, kind: 'jenkins' }))).toEqual([{ path: '/trusted_issuers/2/kind', message: `must be one of ${kinds}` }]);
    expect(problemsOf(withIssuer({ ...FULL.gitlab, kind: 7 }))).toEqual([{ path: '/trusted_issuers/2/kind', message: `must be one of ${kinds}` }]);
  });

  it('the editor JSON Schema (draft-07, no discriminator keyword) accepts each kind and refuses a foreign key too', () => {
    const ajv = new Ajv({ allErrors: true, strict: true });
    ajv.addFormat('uri', { type: 'string', validate: (s: string) => URL.canParse(s) });
    const validate = ajv.compile(configJsonSchema());
    for (const kind of ISSUER_KINDS) expect([kind, validate(withIssuer(FULL[kind]))]).toEqual([kind, true]);
    expect(validate(withIssuer({ ...FULL.kubernetes, subject_claim: 'email' }))).toBe(false);
    expect(JSON.stringify(configJsonSchema())).not.toContain('"discriminator"');
  });
});
