import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EXCHANGE, JWT_TYPE, loadedFrom, startTestBroker, testConfigInput, type TestBroker } from '../support/broker.js';
import { TestCluster } from '../support/cluster.js';
import { startVaultContract, type VaultContract } from '../support/vault-contract.js';

/**
 * A reload that adds a `vault` grant is checked against Leash's Vault token like a start:
 * a missing capability refuses the reload and names the path; an unreachable Vault does not
 * block a reload (a tightening of policy must always go through).
 */

const TOKEN_ENV = 'LEASH_VAULT_RELOAD_TEST_TOKEN';
let vault: VaultContract;
let dir: string;
let cluster: TestCluster;
let tb: TestBroker;

function withVault(cfg: Record<string, any>): void {
  cfg.settings.vault = { address: vault.url, timeout_ms: 5000, auth: { method: 'token', token_env: TOKEN_ENV } };
}

function configWithGrant(path: string | undefined): ReturnType<typeof loadedFrom> {
  const input = testConfigInput({ issuer: tb.url, dir, cluster }) as Record<string, any>;
  withVault(input);
  // Everything restart-only stays as the running broker has it.
  input.settings.listen = tb.broker.config.settings.listen;
  if (path) {
    input.plugins.push({
      id: 'db-reader',
      owner: 'team-data@example.com',
      risk: 'medium',
      bindings: [{ issuer: 'test-cluster', subject: 'system:serviceaccount:plugins:db-reader' }],
      grants: [{ audience: 'vault:db', scopes: ['db:read'], kind: 'vault', effect: 'read', max_ttl: 300, vault: { path } }],
    });
  }
  return loadedFrom(input, dir);
}

beforeAll(async () => {
  vault = await startVaultContract();
  // Leash's token may read one database role, nothing else beyond what it needs to run.
  process.env[TOKEN_ENV] = vault.createToken({
    capabilities: {
      'auth/token/*': ['read', 'update'],
      'sys/capabilities-self': ['update'],
      'database/creds/allowed': ['read'],
      'sys/leases/revoke': ['update'],
    },
  });
  cluster = await TestCluster.create();
  dir = await mkdtemp(join(tmpdir(), 'leash-vault-reload-'));
  tb = await startTestBroker({ dir, cluster, patch: withVault });
});

afterAll(async () => {
  await tb?.close();
  await vault?.close();
  delete process.env[TOKEN_ENV];
  await rm(dir, { recursive: true, force: true });
});

describe('reloading a policy that adds vault grants', () => {
  it('refuses a grant on a path the token cannot read, naming it, and keeps the running policy', async () => {
    const before = tb.broker.config;
    const result = await tb.broker.reload(configWithGrant('database/creds/forbidden'));
    expect(result.ok).toBe(false);
    expect(!result.ok && result.error.message).toContain("'read' on database/creds/forbidden");
    expect(tb.broker.config).toBe(before);
  });

  it('accepts a grant on a path the token can read', async () => {
    const result = await tb.broker.reload(configWithGrant('database/creds/allowed'));
    expect(result).toEqual({ ok: true });
    expect(tb.broker.config.plugins.some((p) => p.id === 'db-reader')).toBe(true);
  });

  it('a reload that removes the plugin revokes the Vault lease behind its live secret', async () => {
    const task = await tb.openTask({ plugins: ['db-reader'] });
    const res = await tb.exchange({
      grant_type: EXCHANGE,
      client_id: 'db-reader',
      subject_token: await cluster.saToken({ sa: 'db-reader' }),
      subject_token_type: JWT_TYPE,
      audience: 'vault:db',
      task,
    });
    expect(res.status).toBe(200);
    const password = (res.body.vault_secret as { data: Record<string, unknown> }).data['password'];
    const lease = vault.leases().find((l) => l.data['password'] === password)!;
    expect(lease.revokedAt).toBeUndefined();
    expect(await tb.broker.reload(configWithGrant(undefined))).toEqual({ ok: true });
    expect(vault.leases().find((l) => l.leaseId === lease.leaseId)?.revokedAt).toBeDefined();
    const events = (await tb.broker.testing.store.read(1, 10_000)).filter((r) => r.type === 'vault.lease_revoked');
    expect(events.at(-1)?.event).toMatchObject({ lease_id: lease.leaseId, cause: 'revocation', actor: 'system:reload', reason: 'policy.revoked_on_reload: plugin removed or disabled' });
    // Put the grant back for the next test.
    expect(await tb.broker.reload(configWithGrant('database/creds/allowed'))).toEqual({ ok: true });
  });

  it('does not block a reload while Vault is unreachable', async () => {
    await vault.down();
    try {
      const result = await tb.broker.reload(configWithGrant(undefined));
      expect(result).toEqual({ ok: true });
      const again = await tb.broker.reload(configWithGrant('database/creds/other'));
      expect(again).toEqual({ ok: true });
    } finally {
      await vault.up();
    }
  });
});
