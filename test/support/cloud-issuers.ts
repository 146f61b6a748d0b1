import { SignJWT, exportJWK, generateKeyPair, type CryptoKey, type JWK } from 'jose';
import { MetadataServer } from '../attestation/fixtures.js';
import { signCallerIdentity, encodeAwsRequest, type SignOptions } from './aws-sign.js';
import { StsContractServer } from './sts-contract.js';

/**
 * Stand-ins for the cloud and CI identity providers, over real HTTP: one metadata server
 * publishing a JWKS (and GitLab's discovery document) for test keys that sign GitLab CI,
 * Google and Entra tokens, and the STS contract server answering GetCallerIdentity for a
 * few AWS principals. `patch` adds their trusted issuers and one plugin per kind to the
 * test broker's policy.
 */

export const TENANT = '11111111-2222-3333-4444-555555555555';
export const AZURE_ISSUER = `https://login.microsoftonline.com/${TENANT}/v2.0`;
export const GOOGLE_ISSUER = 'https://accounts.google.com';
export const AWS_SERVER_ID = 'leash.test.example.com';
export const LEASH_AUDIENCE = 'https://leash.test.example.com';

export const AWS_ROLE_KEY = { accessKeyId: 'ASIALEASHE2EROLE0001', secretAccessKey: 'e2e/role/secret/0123456789abcdefghijkl', sessionToken: 'e2e-session-token-0123456789' };
/** Another account's role that happens to have the same name. */
export const AWS_FOREIGN_KEY = { accessKeyId: 'ASIALEASHE2EFOREIGN1', secretAccessKey: 'e2e/foreign/secret/0123456789abcdefghi', sessionToken: 'foreign-session-token' };
export const AWS_ACCOUNT = '210987654321';
export const AWS_ROLE_ARN = `arn:aws:sts::${AWS_ACCOUNT}:assumed-role/crm-reader/i-0e2e`;

export const CLOUD_API = 'https://deploy.example.com';

export class CloudIssuers {
  private constructor(
    readonly meta: MetadataServer,
    readonly sts: StsContractServer,
    private readonly key: { privateKey: CryptoKey; publicJwk: JWK },
    private readonly now: () => number,
  ) {}

  static async start(now: () => number = Date.now): Promise<CloudIssuers> {
    const meta = await MetadataServer.start();
    const { privateKey, publicKey } = await generateKeyPair('RS256', { extractable: true });
    const publicJwk: JWK = { ...(await exportJWK(publicKey)), kid: 'cloud-1', alg: 'RS256', use: 'sig' };
    meta.jwks = { keys: [publicJwk] };
    const sts = await StsContractServer.start({
      now,
      principals: {
        [AWS_ROLE_KEY.accessKeyId]: { secret: AWS_ROLE_KEY.secretAccessKey, sessionToken: AWS_ROLE_KEY.sessionToken, arn: AWS_ROLE_ARN, userId: 'AROALEASHE2EROLEID01:i-0e2e' },
        [AWS_FOREIGN_KEY.accessKeyId]: {
          secret: AWS_FOREIGN_KEY.secretAccessKey,
          sessionToken: AWS_FOREIGN_KEY.sessionToken,
          arn: 'arn:aws:sts::999988887777:assumed-role/crm-reader/i-0e2e',
          userId: 'AROAFOREIGNROLEID001:i-0e2e',
        },
      },
    });
    return new CloudIssuers(meta, sts, { privateKey, publicJwk }, now);
  }

  get gitlabIssuer(): string {
    return `${this.meta.url}/gitlab`;
  }

  async close(): Promise<void> {
    await this.meta.close();
    await this.sts.close();
  }

  /** Sign a JWT as the cloud key; `claims` override (undefined removes). */
  async jwt(claims: Record<string, unknown>, header: Record<string, unknown> = {}): Promise<string> {
    const now = Math.floor(this.now() / 1000);
    const payload: Record<string, unknown> = { aud: LEASH_AUDIENCE, iat: now, nbf: now, exp: now + 300, ...claims };
    for (const [k, v] of Object.entries(payload)) if (v === undefined) delete payload[k];
    return new SignJWT(payload).setProtectedHeader({ alg: 'RS256', kid: 'cloud-1', typ: 'JWT', ...header }).sign(this.key.privateKey);
  }

  gitlab(over: Record<string, unknown> = {}): Promise<string> {
    const ref = (over.ref as string | undefined) ?? 'main';
    const project = (over.project_path as string | undefined) ?? 'platform/deployer';
    return this.jwt({
      iss: this.gitlabIssuer,
      sub: `project_path:${project}:ref_type:branch:ref:${ref}`,
      project_path: project,
      project_id: '20',
      namespace_path: project.split('/')[0],
      ref,
      ref_type: 'branch',
      ref_protected: 'true',
      pipeline_source: 'push',
      ...over,
    });
  }

  gcp(over: Record<string, unknown> = {}): Promise<string> {
    return this.jwt({
      iss: GOOGLE_ISSUER,
      sub: '112233445566778899000',
      azp: '112233445566778899000',
      email: 'deployer@acme-prod.iam.gserviceaccount.com',
      email_verified: true,
      google: { compute_engine: { project_id: 'acme-prod', zone: 'europe-west1-b', instance_name: 'deployer-1' } },
      ...over,
    });
  }

  azure(over: Record<string, unknown> = {}): Promise<string> {
    return this.jwt({
      iss: AZURE_ISSUER,
      aud: 'api://leash',
      oid: '99999999-8888-7777-6666-555555555555',
      sub: '99999999-8888-7777-6666-555555555555',
      tid: TENANT,
      azp: 'cccccccc-0000-0000-0000-000000000001',
      idtyp: 'app',
      ...over,
    });
  }

  /** A GetCallerIdentity request signed now by the role's credentials (or as `over` says). */
  async aws(over: Partial<SignOptions> = {}): Promise<string> {
    return encodeAwsRequest(await signCallerIdentity({ endpoint: this.sts.url, serverId: AWS_SERVER_ID, credentials: AWS_ROLE_KEY, date: new Date(this.now()), ...over }));
  }

  /** Trusted issuers and one plugin per kind, each with a grant for CLOUD_API. */
  patch(cfg: Record<string, any>): void {
    cfg.trusted_issuers.push(
      { name: 'gitlab', kind: 'gitlab', issuer: this.gitlabIssuer, audience: LEASH_AUDIENCE, jwks: { discovery: true } },
      { name: 'gcp', kind: 'gcp', issuer: GOOGLE_ISSUER, audience: LEASH_AUDIENCE, jwks: { uri: this.meta.jwksUri } },
      { name: 'entra', kind: 'azure', issuer: AZURE_ISSUER, audience: 'api://leash', jwks: { uri: this.meta.jwksUri } },
      { name: 'aws', kind: 'aws', issuer: this.sts.url, audience: AWS_SERVER_ID, max_token_age: 900 },
    );
    const grant = (conditions: unknown[] = []) => [{ audience: CLOUD_API, scopes: ['deploy:read', 'deploy:status'], kind: 'jwt', effect: 'read', max_ttl: 120, task_required: false, conditions }];
    cfg.plugins.push(
      {
        id: 'gitlab-deployer',
        owner: 'team-platform@example.com',
        risk: 'low',
        bindings: [{ issuer: 'gitlab', subject: { glob: 'project_path:platform/deployer:ref_type:branch:ref:m*' }, claims: { ref_protected: 'true' } }],
        grants: grant([{ expr: "workload.claims.pipeline_source in ['push', 'schedule'] && request.scopes.all(s, s.startsWith('deploy:'))" }]),
      },
      {
        id: 'gcp-deployer',
        owner: 'team-platform@example.com',
        risk: 'low',
        bindings: [{ issuer: 'gcp', subject: 'deployer@acme-prod.iam.gserviceaccount.com' }],
        grants: grant([{ expr: "has(workload.claims.zone) && workload.claims.zone.startsWith('europe-')" }]),
      },
      {
        id: 'azure-deployer',
        owner: 'team-platform@example.com',
        risk: 'low',
        bindings: [{ issuer: 'entra', subject: '99999999-8888-7777-6666-555555555555' }],
        grants: grant(),
      },
      {
        id: 'aws-deployer',
        owner: 'team-platform@example.com',
        risk: 'low',
        bindings: [{ issuer: 'aws', subject: { glob: `arn:aws:sts::${AWS_ACCOUNT}:assumed-role/crm-reader/*` } }],
        grants: grant([{ expr: "workload.claims.role_id == 'AROALEASHE2EROLEID01'" }]),
      },
    );
  }
}
