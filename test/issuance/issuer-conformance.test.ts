import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from '@jest/globals';
import type { AwsSettingsConfig } from '../../src/config/schema.js';
import { createIssuer, createIssuers, ISSUER_FACTORIES, type IssuerDeps } from '../../src/issuance/registry.js';
import type { AwsCredentialsBody } from '../../src/issuance/aws-sts/aws-sts-issuer.js';
import type { VaultSecretBody } from '../../src/issuance/vault/vault-issuer.js';
import type { KeyManager } from '../../src/keys/key-manager.js';
import { createLocalKeyManager } from '../../src/keys/local/local-key-manager.js';
import { openSqliteStore } from '../../src/store/sqlite/sqlite-store.js';
import { ManualClock, systemClock } from '../../src/time/clock.js';
import { createVaultClient } from '../../src/vault/node-vault-client.js';
import { StsContractServer } from '../support/sts-contract.js';
import { startVaultContract } from '../support/vault-contract.js';
import { describeIssuer } from './describe-issuer.js';

/** A local key manager in a temp dir, for the kinds that sign (jwt, AWS web-identity tokens). */
async function localKeys(): Promise<{ keys: KeyManager; dir: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'leash-issuer-conformance-'));
  const keys = createLocalKeyManager({ dir: join(dir, 'keys'), algorithm: 'ES256', clock: systemClock });
  await keys.init();
  return { keys, dir };
}

const awsSettings = (stsUrl: string): AwsSettingsConfig => ({
  region: 'us-east-1',
  sts_endpoint: stsUrl,
  web_identity_audience: 'sts.amazonaws.com',
  web_identity_token_ttl: 300,
  max_attempts: 1,
  deny_revoked_sessions: true,
  deny_policy_max_chars: 8192,
});

describeIssuer('jwt', async () => {
  const { keys, dir } = await localKeys();
  const deps: IssuerDeps = { issuer: 'https://leash.example', keys, clock: systemClock, aws: () => awsSettings('http://127.0.0.1:1') };
  return {
    issuer: createIssuer('jwt', deps)!,
    grant: {},
    now: () => Date.now(),
    secrets: (body) => [body.access_token as string],
    close: async () => {
      await keys.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
});

describeIssuer('aws-sts', async () => {
  const { keys, dir } = await localKeys();
  // Leash as an OIDC provider, as far as AWS looks at it: its JWKS.
  const jwks: Server = createServer((req, res) => {
    if (req.url === '/jwks') res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(keys.jwks()));
    else res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => jwks.listen(0, '127.0.0.1', resolve));
  const issuerUrl = `http://127.0.0.1:${(jwks.address() as AddressInfo).port}`;
  const sts = await StsContractServer.start({ oidc: { issuer: issuerUrl, jwksUrl: `${issuerUrl}/jwks`, audiences: ['sts.amazonaws.com'] }, roleMaxSession: 3600 });
  const deps: IssuerDeps = { issuer: issuerUrl, keys, clock: systemClock, aws: () => awsSettings(sts.url) };
  return {
    issuer: createIssuer('aws-sts', deps)!,
    grant: {
      aws: {
        role_arn: 'arn:aws:iam::123456789012:role/leash-conformance',
        mode: 'web-identity',
        actions: ['s3:GetObject'],
        resources: ['arn:aws:s3:::reports/*'],
        transitive_tags: false,
        role_max_session: 3600,
      },
    },
    now: () => Date.now(),
    secrets: (body) => {
      const c = body.aws_credentials as AwsCredentialsBody;
      return [c.secret_access_key, c.session_token];
    },
    breakBackend: async () => {
      sts.failNext(1, 'ServiceUnavailable', 503, 'injected fault at 127.0.0.1');
      return async () => undefined;
    },
    close: async () => {
      await sts.close();
      jwks.closeAllConnections();
      await new Promise<void>((resolve) => jwks.close(() => resolve()));
      await keys.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
});

describeIssuer('vault', async () => {
  const clock = new ManualClock();
  const vault = await startVaultContract({ now: () => clock.now(), leaseTtl: 3600, roles: { database: ['conformance'] } });
  const client = createVaultClient({ address: vault.url, timeoutMs: 2000, token: () => vault.rootToken });
  const store = openSqliteStore({ path: ':memory:', clock });
  const { keys, dir } = await localKeys();
  const deps: IssuerDeps = { issuer: 'https://leash.example', keys, clock, aws: () => awsSettings('http://127.0.0.1:1'), vault: { vault: () => client, leases: store, clock } };
  return {
    issuer: createIssuer('vault', deps)!,
    grant: { vault: { path: 'database/creds/conformance', method: 'read', params: {} } },
    now: () => clock.now(),
    secrets: (body) => Object.values((body.vault_secret as VaultSecretBody).data).map(String),
    breakBackend: async () => {
      await vault.down();
      return () => vault.up();
    },
    close: async () => {
      await store.close();
      await vault.close();
      await keys.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
});

describe('the issuer registry (src/issuance/registry.ts)', () => {
  const deps = (vault: boolean): IssuerDeps => ({
    issuer: 'https://leash.example',
    keys: {} as KeyManager,
    clock: systemClock,
    aws: () => awsSettings('http://127.0.0.1:1'),
    ...(vault
      ? {
          vault: {
            vault: () => {
              throw new Error('unused');
            },
            leases: {} as never,
            clock: systemClock,
          },
        }
      : {}),
  });

  it('covers exactly the credential kinds of the config schema', () => {
    expect(Object.keys(ISSUER_FACTORIES).sort()).toEqual(['aws-sts', 'jwt', 'vault']);
  });

  it('builds the vault issuer only when Vault is configured', () => {
    expect([...createIssuers(deps(false)).keys()]).toEqual(['jwt', 'aws-sts']);
    expect([...createIssuers(deps(true)).keys()]).toEqual(['jwt', 'aws-sts', 'vault']);
  });

  it('refuses an unknown kind by listing the valid ones', () => {
    expect(() => createIssuer('gcp-sts', deps(false))).toThrow("unknown credential kind 'gcp-sts': valid kinds are jwt, aws-sts, vault");
  });
});
