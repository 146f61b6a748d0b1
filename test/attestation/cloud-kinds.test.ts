import { beforeAll, describe, expect, it } from '@jest/globals';
import { createAzureAttestor } from '../../src/attestation/azure/azure-attestor.js';
import { createGcpAttestor } from '../../src/attestation/gcp/gcp-attestor.js';
import { createGitLabAttestor } from '../../src/attestation/gitlab/gitlab-attestor.js';
import type { AttestorDeps } from '../../src/attestation/jwt-attestor.js';
import { tokenDigest } from '../../src/attestation/registry.js';
import { epochSeconds, ManualClock } from '../../src/time/clock.js';
import { claims, codeOf, issuerConfig, makeKey, sign, type IssuerFields, type TestKey } from './fixtures.js';

/** The JWT kinds for GitLab CI, Google Cloud and Microsoft Entra: claim mapping and their own refusals. */

const clock = new ManualClock();
const deps: AttestorDeps = { clock, baseDir: '/' };
let key: TestKey;

beforeAll(async () => {
  key = await makeKey('RS256', 'k1');
});

const cfg = (over: IssuerFields) => issuerConfig({ jwks: { inline: { keys: [key.publicJwk as Record<string, unknown>] } }, ...over });
async function identity(attestor: { verify(t: string, d: string): Promise<unknown> }, payload: Record<string, unknown>) {
  const token = await sign(claims(clock, payload), { key });
  return attestor.verify(token, tokenDigest(token)) as Promise<{ subject: string; attributes: Record<string, string>; kind: string }>;
}

describe('gitlab', () => {
  const GITLAB = 'https://gitlab.example.com';
  const attestor = () => createGitLabAttestor(cfg({ kind: 'gitlab', name: 'gitlab', issuer: GITLAB }), deps);
  const job = (over: Record<string, unknown> = {}) => ({
    iss: GITLAB,
    sub: 'project_path:platform/crm-sync:ref_type:branch:ref:main',
    namespace_id: '72',
    namespace_path: 'platform',
    project_id: '20',
    project_path: 'platform/crm-sync',
    user_id: '5',
    user_login: 'alice',
    user_email: 'alice@example.com',
    pipeline_id: '574',
    pipeline_source: 'push',
    job_id: '302',
    ref: 'main',
    ref_type: 'branch',
    ref_path: 'refs/heads/main',
    ref_protected: 'true',
    environment: 'production',
    environment_protected: 'true',
    deployment_tier: 'production',
    runner_id: 1,
    runner_environment: 'gitlab-hosted',
    sha: '714a629c0b401fdce83e847fc9589983fc6f46bc',
    project_visibility: 'private',
    ci_config_ref_uri: 'gitlab.example.com/platform/crm-sync//.gitlab-ci.yml@refs/heads/main',
    ...over,
  });

  it('maps a CI job token: subject is sub, the documented claims become attributes (not user_email)', async () => {
    const id = await identity(attestor(), job());
    expect(id).toMatchObject({ kind: 'gitlab', subject: 'project_path:platform/crm-sync:ref_type:branch:ref:main' });
    expect(id.attributes).toMatchObject({
      project_path: 'platform/crm-sync',
      ref: 'main',
      ref_type: 'branch',
      ref_protected: 'true',
      namespace_path: 'platform',
      pipeline_source: 'push',
      environment: 'production',
      runner_id: '1',
    });
    expect(id.attributes.user_email).toBeUndefined();
  });

  it.each([
    ['sub of another project', job({ sub: 'project_path:platform/other:ref_type:branch:ref:main' }), 'ERR_ATTESTATION_CLAIM_INVALID'],
    ['sub of another ref', job({ sub: 'project_path:platform/crm-sync:ref_type:branch:ref:dev' }), 'ERR_ATTESTATION_CLAIM_INVALID'],
    ['a tag passed off as a branch', job({ ref_type: 'tag' }), 'ERR_ATTESTATION_CLAIM_INVALID'],
    ['no project_path', job({ project_path: undefined }), 'ERR_ATTESTATION_CLAIM_MISSING'],
    ['no ref', job({ ref: undefined }), 'ERR_ATTESTATION_CLAIM_MISSING'],
    ['a project_path that is not a string', job({ project_path: ['platform/crm-sync'] }), 'ERR_ATTESTATION_CLAIM_INVALID'],
  ])('refuses %s', async (_name, payload, code) => {
    expect(await codeOf(identity(attestor(), payload))).toBe(code);
  });
});

describe('gcp', () => {
  const GOOGLE = 'https://accounts.google.com';
  const attestor = () => createGcpAttestor(cfg({ kind: 'gcp', name: 'gcp', issuer: GOOGLE }), deps);
  const sa = (over: Record<string, unknown> = {}) => ({
    iss: GOOGLE,
    sub: '112233445566778899000',
    azp: '112233445566778899000',
    email: 'crm-reader@acme-prod.iam.gserviceaccount.com',
    email_verified: true,
    google: { compute_engine: { project_id: 'acme-prod', project_number: 123456789012, zone: 'europe-west1-b', instance_id: '4567', instance_name: 'crm-1', instance_creation_timestamp: 1700000000 } },
    ...over,
  });

  it('maps a service-account identity token (format=full): subject is the email', async () => {
    const id = await identity(attestor(), sa());
    expect(id.subject).toBe('crm-reader@acme-prod.iam.gserviceaccount.com');
    expect(id.attributes).toEqual({
      email: 'crm-reader@acme-prod.iam.gserviceaccount.com',
      unique_id: '112233445566778899000',
      azp: '112233445566778899000',
      project_id: 'acme-prod',
      project_number: '123456789012',
      zone: 'europe-west1-b',
      instance_id: '4567',
      instance_name: 'crm-1',
      instance_creation_timestamp: '1700000000',
    });
  });

  it('a Cloud Run or GKE token without google.compute_engine has no instance attributes', async () => {
    const id = await identity(attestor(), sa({ google: undefined }));
    expect(Object.keys(id.attributes).sort()).toEqual(['azp', 'email', 'unique_id']);
  });

  it.each([
    ['a person (gmail account)', sa({ email: 'someone@gmail.com' }), 'ERR_ATTESTATION_CLAIM_INVALID'],
    ['a person (workspace account)', sa({ email: 'alice@acme.com' }), 'ERR_ATTESTATION_CLAIM_INVALID'],
    ['a domain that only ends like one', sa({ email: 'x@evilgserviceaccount.com' }), 'ERR_ATTESTATION_CLAIM_INVALID'],
    ['email not verified', sa({ email_verified: false }), 'ERR_ATTESTATION_CLAIM_INVALID'],
    ['email_verified as a string', sa({ email_verified: 'true' }), 'ERR_ATTESTATION_CLAIM_INVALID'],
    ['no email (format=standard)', sa({ email: undefined }), 'ERR_ATTESTATION_CLAIM_MISSING'],
    ['google.compute_engine not an object', sa({ google: { compute_engine: 'acme-prod' } }), 'ERR_ATTESTATION_CLAIM_INVALID'],
  ])('refuses %s', async (_name, payload, code) => {
    expect(await codeOf(identity(attestor(), payload))).toBe(code);
  });
});

describe('azure', () => {
  const TENANT = '11111111-2222-3333-4444-555555555555';
  const V2 = `https://login.microsoftonline.com/${TENANT}/v2.0`;
  const V1 = `https://sts.windows.net/${TENANT}/`;
  const attestor = (issuer = V2) => createAzureAttestor(cfg({ kind: 'azure', name: 'entra', issuer }), deps);
  const MIRID = '/subscriptions/aaaa/resourcegroups/crm/providers/Microsoft.ManagedIdentity/userAssignedIdentities/crm-reader';
  const app = (over: Record<string, unknown> = {}) => ({
    iss: V2,
    oid: '99999999-8888-7777-6666-555555555555',
    sub: '99999999-8888-7777-6666-555555555555',
    tid: TENANT,
    azp: 'cccccccc-0000-0000-0000-000000000001',
    idtyp: 'app',
    xms_mirid: MIRID,
    roles: ['Leash.Exchange'],
    ver: '2.0',
    ...over,
  });

  it('maps a managed identity access token (v2.0): subject is oid', async () => {
    const id = await identity(attestor(), app());
    expect(id.subject).toBe('99999999-8888-7777-6666-555555555555');
    expect(id.attributes).toEqual({
      oid: '99999999-8888-7777-6666-555555555555',
      tid: TENANT,
      xms_mirid: MIRID,
      idtyp: 'app',
      sub: '99999999-8888-7777-6666-555555555555',
      app_id: 'cccccccc-0000-0000-0000-000000000001',
    });
  });

  it('v1.0 tokens (sts.windows.net): appid becomes app_id', async () => {
    const id = await identity(attestor(V1), app({ iss: V1, azp: undefined, appid: 'cccccccc-0000-0000-0000-000000000002', ver: '1.0' }));
    expect(id.attributes.app_id).toBe('cccccccc-0000-0000-0000-000000000002');
  });

  it.each([
    ['a token of another tenant under this issuer', app({ tid: '00000000-0000-0000-0000-000000000000' }), 'ERR_ATTESTATION_CLAIM_INVALID'],
    ['a token acting for a user (scp)', app({ scp: 'user_impersonation', idtyp: 'user' }), 'ERR_ATTESTATION_CLAIM_INVALID'],
    ['a user token without scp', app({ idtyp: 'user' }), 'ERR_ATTESTATION_CLAIM_INVALID'],
    ['no oid', app({ oid: undefined }), 'ERR_ATTESTATION_CLAIM_MISSING'],
    ['no tid', app({ tid: undefined }), 'ERR_ATTESTATION_CLAIM_MISSING'],
  ])('refuses %s', async (_name, payload, code) => {
    expect(await codeOf(identity(attestor(), payload))).toBe(code);
  });

  it('a multi-tenant issuer is a programming error (config validation refuses it first)', () => {
    expect(() => attestor('https://login.microsoftonline.com/common/v2.0')).toThrow(TypeError);
  });

  it('the shared checks still apply (a token of tenant B under tenant A refused on iss first)', async () => {
    expect(await codeOf(identity(attestor(), app({ iss: 'https://login.microsoftonline.com/00000000-0000-0000-0000-000000000000/v2.0' })))).toBe('ERR_ATTESTATION_ISSUER_UNKNOWN');
    expect(await codeOf(identity(attestor(), app({ exp: epochSeconds(clock) - 100, iat: epochSeconds(clock) - 700 })))).toBe('ERR_ATTESTATION_EXPIRED');
  });
});
