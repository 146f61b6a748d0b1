import { describe, it, expect, beforeAll } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import { CompactSign } from 'jose';
import { createGitHubActionsAttestor } from '../../src/attestation/github-actions/github-actions-attestor.js';
import type { AttestorDeps } from '../../src/attestation/jwt-attestor.js';
import { createKubernetesAttestor } from '../../src/attestation/kubernetes/kubernetes-attestor.js';
import { createOidcAttestor } from '../../src/attestation/oidc/oidc-attestor.js';
import { tokenDigest } from '../../src/attestation/registry.js';
import { createSpiffeAttestor } from '../../src/attestation/spiffe/spiffe-attestor.js';
import { parseSpiffeId } from '../../src/attestation/spiffe/spiffe-id.js';
import { ConfigError } from '../../src/config/config-error.js';
import type { TrustedIssuerConfig } from '../../src/config/schema.js';
import { epochSeconds, ManualClock } from '../../src/time/clock.js';
import { AUD, ISS, claims, codeOf, issuerConfig, makeKey, sign, type IssuerFields, type TestKey } from './fixtures.js';

const clock = new ManualClock();
const deps: AttestorDeps = { clock, baseDir: '/' };
let key: TestKey;
let inline: { keys: unknown[] };

beforeAll(async () => {
  key = await makeKey('ES256', 'k1');
  inline = { keys: [key.publicJwk as Record<string, unknown>] };
});

const cfg = (over: IssuerFields) => issuerConfig({ jwks: { inline: inline as NonNullable<TrustedIssuerConfig['jwks']>['inline'] }, ...over });
const tokenWith = (over: Record<string, unknown>) => sign(claims(clock, over), { key });
async function identity(attestor: { verify(t: string, d: string): Promise<unknown> }, over: Record<string, unknown>) {
  const token = await tokenWith(over);
  return attestor.verify(token, tokenDigest(token));
}

describe('every kind: the shared checks apply before the claim mapping', () => {
  it.each([
    ['kubernetes', () => createKubernetesAttestor(cfg({ kind: 'kubernetes' }), deps)],
    ['spiffe', () => createSpiffeAttestor(cfg({ kind: 'spiffe', trust_domain: 'example.org' }), deps)],
    ['github-actions', () => createGitHubActionsAttestor(cfg({ kind: 'github-actions' }), deps)],
    ['oidc', () => createOidcAttestor(cfg({ kind: 'oidc' }), deps)],
  ])('%s refuses a foreign iss, a wrong aud and an expired token', async (_kind, make) => {
    const a = make();
    expect(await codeOf(identity(a, { iss: 'https://not-this-one.example' }))).toBe('ERR_ATTESTATION_ISSUER_UNKNOWN');
    expect(await codeOf(identity(a, { aud: 'nope' }))).toBe('ERR_ATTESTATION_AUDIENCE');
    expect(await codeOf(identity(a, { exp: epochSeconds(clock) - 100, iat: epochSeconds(clock) - 700 }))).toBe('ERR_ATTESTATION_EXPIRED');
  });
});

describe('kubernetes', () => {
  const k8sClaims = (ns = 'plugins', sa = 'crm-reader', extra: Record<string, unknown> = {}) => ({
    sub: `system:serviceaccount:${ns}:${sa}`,
    'kubernetes.io': {
      namespace: ns,
      serviceaccount: { name: sa, uid: 'sa-uid-1' },
      pod: { name: `${sa}-7d9f`, uid: 'pod-uid-1' },
      node: { name: 'node-a', uid: 'node-uid-1' },
      ...extra,
    },
  });
  const attestor = () => createKubernetesAttestor(cfg({ kind: 'kubernetes', name: 'prod-cluster' }), deps);

  it('maps a projected service-account token to the service account identity', async () => {
    const token = await tokenWith(k8sClaims());
    const id = await attestor().verify(token, tokenDigest(token));
    expect(id).toEqual({
      issuer: 'prod-cluster',
      kind: 'kubernetes',
      subject: 'system:serviceaccount:plugins:crm-reader',
      attributes: {
        namespace: 'plugins',
        service_account: 'crm-reader',
        service_account_uid: 'sa-uid-1',
        pod: 'crm-reader-7d9f',
        pod_uid: 'pod-uid-1',
        node: 'node-a',
      },
      issuedAt: epochSeconds(clock),
      expiresAt: epochSeconds(clock) + 600,
      tokenDigest: tokenDigest(token),
    });
    expect(Object.isFrozen(id)).toBe(true);
    expect(Object.isFrozen(id.attributes)).toBe(true);
  });

  it('a token not bound to a pod (TokenRequest without bound object) has no pod attributes', async () => {
    const c = k8sClaims();
    const k8s = c['kubernetes.io'] as Record<string, unknown>;
    delete k8s.pod;
    delete k8s.node;
    const id = (await identity(attestor(), c)) as { attributes: Record<string, string> };
    expect(Object.keys(id.attributes).sort()).toEqual(['namespace', 'service_account', 'service_account_uid']);
  });

  const bad: Array<[string, () => Record<string, unknown>, string]> = [
    ['no kubernetes.io claim', () => ({ sub: 'system:serviceaccount:plugins:crm-reader', 'kubernetes.io': undefined }), 'ERR_ATTESTATION_CLAIM_MISSING'],
    ['kubernetes.io not an object', () => ({ ...k8sClaims(), 'kubernetes.io': 'plugins' }), 'ERR_ATTESTATION_CLAIM_INVALID'],
    ['no namespace', () => k8sClaims('plugins', 'crm-reader', { namespace: undefined }), 'ERR_ATTESTATION_CLAIM_MISSING'],
    ['no serviceaccount', () => k8sClaims('plugins', 'crm-reader', { serviceaccount: undefined }), 'ERR_ATTESTATION_CLAIM_MISSING'],
    ['no serviceaccount uid', () => k8sClaims('plugins', 'crm-reader', { serviceaccount: { name: 'crm-reader' } }), 'ERR_ATTESTATION_CLAIM_MISSING'],
    ['serviceaccount name a number', () => k8sClaims('plugins', 'crm-reader', { serviceaccount: { name: 7, uid: 'u' } }), 'ERR_ATTESTATION_CLAIM_INVALID'],
    ['sub of another service account', () => ({ ...k8sClaims(), sub: 'system:serviceaccount:plugins:admin' }), 'ERR_ATTESTATION_CLAIM_INVALID'],
    ['sub missing', () => ({ ...k8sClaims(), sub: undefined }), 'ERR_ATTESTATION_CLAIM_MISSING'],
    ['namespace with a colon (ambiguous subject)', () => k8sClaims('a:b', 'c'), 'ERR_ATTESTATION_CLAIM_INVALID'],
    ['service account name with a colon', () => k8sClaims('a', 'b:c'), 'ERR_ATTESTATION_CLAIM_INVALID'],
    ['uppercase namespace', () => k8sClaims('Plugins', 'crm-reader'), 'ERR_ATTESTATION_CLAIM_INVALID'],
    ['pod without uid', () => k8sClaims('plugins', 'crm-reader', { pod: { name: 'p' } }), 'ERR_ATTESTATION_CLAIM_MISSING'],
    ['pod an array', () => k8sClaims('plugins', 'crm-reader', { pod: ['p'] }), 'ERR_ATTESTATION_CLAIM_INVALID'],
    ['node without name', () => k8sClaims('plugins', 'crm-reader', { node: { uid: 'n' } }), 'ERR_ATTESTATION_CLAIM_MISSING'],
  ];
  it.each(bad)('refuses: %s', async (_name, make, code) => {
    expect(await codeOf(identity(attestor(), make()))).toBe(code);
  });
});

describe('spiffe', () => {
  const attestor = (trust_domain: string | undefined = 'example.org') => createSpiffeAttestor(cfg({ kind: 'spiffe', name: 'mesh', trust_domain }), deps);
  const withoutTrustDomain = () => createSpiffeAttestor(cfg({ kind: 'spiffe', name: 'mesh' }), deps);

  it('maps a JWT-SVID to its SPIFFE ID, trust domain and path', async () => {
    const id = await identity(attestor(), { sub: 'spiffe://example.org/ns/plugins/sa/crm-reader' });
    expect(id).toMatchObject({
      issuer: 'mesh',
      kind: 'spiffe',
      subject: 'spiffe://example.org/ns/plugins/sa/crm-reader',
      attributes: { trust_domain: 'example.org', path: '/ns/plugins/sa/crm-reader' },
    });
  });

  it('accepts the trust domain configured as a spiffe:// URI too', async () => {
    await expect(identity(attestor('spiffe://example.org'), { sub: 'spiffe://example.org/w' })).resolves.toMatchObject({ subject: 'spiffe://example.org/w' });
  });

  it.each([
    ['another trust domain', 'spiffe://evil.org/ns/plugins'],
    ['a sub-domain of the trust domain', 'spiffe://a.example.org/w'],
    ['the trust domain itself (no workload path)', 'spiffe://example.org'],
    ['uppercase trust domain', 'spiffe://Example.org/w'],
    ['uppercase scheme', 'SPIFFE://example.org/w'],
    ['another scheme', 'https://example.org/w'],
    ['a port', 'spiffe://example.org:8443/w'],
    ['userinfo', 'spiffe://user@example.org/w'],
    ['a query', 'spiffe://example.org/w?x=1'],
    ['a fragment', 'spiffe://example.org/w#f'],
    ['percent-encoding', 'spiffe://example.org/w%2Fx'],
    ['an empty segment', 'spiffe://example.org/a//b'],
    ['a trailing slash', 'spiffe://example.org/a/'],
    ['a dot segment', 'spiffe://example.org/a/./b'],
    ['a dot-dot segment', 'spiffe://example.org/a/../b'],
    ['not a string', 42],
  ])('refuses a sub with %s', async (_name, sub) => {
    expect(await codeOf(identity(attestor(), { sub }))).toBe('ERR_ATTESTATION_CLAIM_INVALID');
  });

  it('refuses a JWT-SVID without sub or without aud', async () => {
    expect(await codeOf(identity(attestor(), { sub: undefined }))).toBe('ERR_ATTESTATION_CLAIM_MISSING');
    expect(await codeOf(identity(attestor(), { sub: 'spiffe://example.org/w', aud: undefined }))).toBe('ERR_ATTESTATION_AUDIENCE');
  });

  it('a missing or invalid trust_domain is a ConfigError', () => {
    expect(withoutTrustDomain).toThrow(ConfigError);
    expect(() => attestor('Example.ORG')).toThrow(ConfigError);
    expect(() => attestor('')).toThrow(ConfigError);
  });

  it('parseSpiffeId accepts the characters the spec allows', () => {
    expect(parseSpiffeId('spiffe://td-1.example_x/A.b-c_9/x')).toEqual({ trustDomain: 'td-1.example_x', path: '/A.b-c_9/x' });
    expect(parseSpiffeId('spiffe://example.org')).toEqual({ trustDomain: 'example.org', path: '' });
    expect(parseSpiffeId(`spiffe://example.org/${'a'.repeat(2048)}`)).toHaveProperty('error');
    expect(parseSpiffeId('spiffe:///path')).toHaveProperty('error');
  });
});

describe('github-actions', () => {
  const attestor = () => createGitHubActionsAttestor(cfg({ kind: 'github-actions', name: 'gha' }), deps);
  const gha = {
    sub: 'repo:octo/app:ref:refs/heads/main',
    repository: 'octo/app',
    repository_owner: 'octo',
    repository_id: '74',
    repository_owner_id: 65,
    ref: 'refs/heads/main',
    ref_type: 'branch',
    sha: 'e3b0c442',
    workflow: 'deploy',
    workflow_ref: 'octo/app/.github/workflows/deploy.yml@refs/heads/main',
    job_workflow_ref: 'octo/app/.github/workflows/deploy.yml@refs/heads/main',
    environment: 'prod',
    event_name: 'push',
    actor: 'mona',
    runner_environment: 'github-hosted',
    run_id: '123',
    ref_protected: true,
  };

  it('maps the documented claims as string attributes, subject = sub', async () => {
    const id = (await identity(attestor(), gha)) as { subject: string; attributes: Record<string, string> };
    expect(id.subject).toBe('repo:octo/app:ref:refs/heads/main');
    expect(id.attributes).toEqual({
      repository: 'octo/app',
      repository_owner: 'octo',
      repository_id: '74',
      repository_owner_id: '65',
      ref: 'refs/heads/main',
      ref_type: 'branch',
      sha: 'e3b0c442',
      workflow: 'deploy',
      workflow_ref: 'octo/app/.github/workflows/deploy.yml@refs/heads/main',
      job_workflow_ref: 'octo/app/.github/workflows/deploy.yml@refs/heads/main',
      environment: 'prod',
      event_name: 'push',
      actor: 'mona',
      runner_environment: 'github-hosted',
    });
  });

  it('omits claims that are absent', async () => {
    const id = (await identity(attestor(), { sub: 'repo:octo/app:pull_request', repository: 'octo/app' })) as { attributes: Record<string, string> };
    expect(id.attributes).toEqual({ repository: 'octo/app' });
  });

  it.each([
    ['no repository', { ...gha, repository: undefined }, 'ERR_ATTESTATION_CLAIM_MISSING'],
    ['repository not a string', { ...gha, repository: ['octo/app'] }, 'ERR_ATTESTATION_CLAIM_INVALID'],
    ['no sub', { ...gha, sub: undefined }, 'ERR_ATTESTATION_CLAIM_MISSING'],
    ['empty sub', { ...gha, sub: '' }, 'ERR_ATTESTATION_CLAIM_INVALID'],
    ['an object-valued attribute', { ...gha, environment: { name: 'prod' } }, 'ERR_ATTESTATION_CLAIM_INVALID'],
  ])('refuses: %s', async (_name, over, code) => {
    expect(await codeOf(identity(attestor(), over))).toBe(code);
  });
});

describe('oidc', () => {
  const attestor = (over: IssuerFields = {}) => createOidcAttestor(cfg({ kind: 'oidc', name: 'corp-idp', subject_claim: 'client_id', claims: ['tenant', 'level', 'admin', 'absent'], ...over }), deps);

  it('takes the subject from subject_claim and copies configured claims, stringified', async () => {
    const id = await identity(attestor(), { client_id: 'svc-42', tenant: 'acme', level: 3, admin: false, other: 'ignored' });
    expect(id).toMatchObject({ issuer: 'corp-idp', kind: 'oidc', subject: 'svc-42', attributes: { tenant: 'acme', level: '3', admin: 'false' } });
    expect(Object.keys((id as { attributes: object }).attributes)).toEqual(['tenant', 'level', 'admin']);
  });

  it('defaults subject_claim to sub', async () => {
    await expect(identity(attestor({ subject_claim: 'sub', claims: [] }), { sub: 'user-1' })).resolves.toMatchObject({ subject: 'user-1', attributes: {} });
  });

  it('claims named like Object.prototype members are read only as own claims', async () => {
    const a = attestor({ subject_claim: 'constructor', claims: ['__proto__', 'toString'] });
    // Absent: nothing inherited leaks in (the subject is missing, not "function Object").
    expect(await codeOf(identity(a, { sub: 'x' }))).toBe('ERR_ATTESTATION_CLAIM_MISSING');
    // Present as real claims: plain own attributes, the prototype untouched.
    const raw = `{"iss":"${ISS}","aud":"${AUD}","exp":${epochSeconds(clock) + 60},"constructor":"svc","__proto__":"p","toString":"t"}`;
    const token = await new CompactSign(new TextEncoder().encode(raw)).setProtectedHeader({ alg: 'ES256', kid: 'k1' }).sign(key.privateKey);
    const id = await a.verify(token, tokenDigest(token));
    expect(id.subject).toBe('svc');
    expect(Object.getPrototypeOf(id.attributes)).toBe(Object.prototype);
    expect(Object.entries(id.attributes)).toEqual([
      ['__proto__', 'p'],
      ['toString', 't'],
    ]);
  });

  it.each([
    ['subject claim absent', { client_id: undefined }, 'ERR_ATTESTATION_CLAIM_MISSING'],
    ['subject claim empty', { client_id: '' }, 'ERR_ATTESTATION_CLAIM_INVALID'],
    ['subject claim a number', { client_id: 42 }, 'ERR_ATTESTATION_CLAIM_INVALID'],
    ['an object claim', { client_id: 'x', tenant: { id: 'acme' } }, 'ERR_ATTESTATION_CLAIM_INVALID'],
    ['an array claim', { client_id: 'x', tenant: ['acme'] }, 'ERR_ATTESTATION_CLAIM_INVALID'],
  ])('refuses: %s', async (_name, over, code) => {
    expect(await codeOf(identity(attestor(), over))).toBe(code);
  });
});

describe('identities carry the digest, never the token', () => {
  it('tokenDigest is base64url SHA-256 and the identity has no token material', async () => {
    const token = await tokenWith({ sub: `system:serviceaccount:ns:${'a'}`, 'kubernetes.io': { namespace: 'ns', serviceaccount: { name: 'a', uid: randomUUID() } } });
    const id = await createKubernetesAttestor(cfg({ kind: 'kubernetes' }), deps).verify(token, tokenDigest(token));
    expect(tokenDigest(token)).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(JSON.stringify(id)).not.toContain(token.split('.')[2]);
  });
});
