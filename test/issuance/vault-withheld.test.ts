import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openStore } from '../../src/store/open-store.js';
import type { Store } from '../../src/store/store.js';
import { systemClock } from '../../src/time/clock.js';
import { EXCHANGE, JWT_TYPE, startTestBroker, type TestBroker } from '../support/broker.js';
import { TestCluster } from '../support/cluster.js';
import { startVaultContract, type VaultContract } from '../support/vault-contract.js';

/**
 * A Vault secret that was issued but cannot be handed out (the issued-token index or the
 * audit write fails afterwards) must not leave a live lease behind: the exchange discards
 * the credential, which revokes the lease in Vault at once.
 */

const AUDIENCE = 'vault:crm-db';
const TOKEN_ENV = 'LEASH_VAULT_WITHHELD_TEST_TOKEN';

let vault: VaultContract;
let dir: string;
let tb: TestBroker;
let cluster: TestCluster;
/** Which Store method fails next (by name), to break one write after issuing. */
let failing: string | undefined;

beforeAll(async () => {
  vault = await startVaultContract({ roles: { database: ['crm-readonly'] } });
  process.env[TOKEN_ENV] = vault.rootToken;
  cluster = await TestCluster.create();
  dir = await mkdtemp(join(tmpdir(), 'leash-vault-withheld-'));
  const real = await openStore({ kind: 'sqlite', path: join(dir, 'leash.db'), url: 'redis://127.0.0.1:6379', key_prefix: 'leash:', allow_volatile: false }, systemClock);
  // The real store, with one chosen write failing the way a lost backend does.
  const store = new Proxy(real, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver) as unknown;
      if (typeof value !== 'function') return value;
      return (...args: unknown[]) => {
        if (prop === failing && (prop !== 'append' || (args[0] as string) === 'exchange.issued')) {
          return Promise.reject(new Error(`${String(prop)}: store unavailable (test)`));
        }
        return (value as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  }) as Store;
  tb = await startTestBroker({
    dir,
    cluster,
    broker: { store },
    patch: (cfg) => {
      cfg.settings.vault = { address: vault.url, timeout_ms: 5000, auth: { method: 'token', token_env: TOKEN_ENV } };
      cfg.plugins.push({
        id: 'db-reader',
        owner: 'team-data@example.com',
        risk: 'medium',
        bindings: [{ issuer: 'test-cluster', subject: 'system:serviceaccount:plugins:db-reader' }],
        grants: [{ audience: AUDIENCE, scopes: ['db:read'], kind: 'vault', effect: 'read', max_ttl: 300, vault: { path: 'database/creds/crm-readonly' } }],
      });
    },
  });
});

afterAll(async () => {
  failing = undefined;
  await tb?.close();
  await vault?.close();
  delete process.env[TOKEN_ENV];
  await rm(dir, { recursive: true, force: true });
});

async function exchange(): Promise<{ status: number; body: Record<string, unknown> }> {
  const task = await tb.openTask({ plugins: ['db-reader'] });
  return tb.exchange({
    grant_type: EXCHANGE,
    client_id: 'db-reader',
    subject_token: await cluster.saToken({ sa: 'db-reader' }),
    subject_token_type: JWT_TYPE,
    audience: AUDIENCE,
    task,
  });
}

describe('a Vault secret that cannot be handed out', () => {
  it.each(['recordIssued', 'append'])('is revoked in Vault at once when %s fails after issuing', async (method) => {
    const before = vault.leases().length;
    failing = method;
    let res: { status: number; body: Record<string, unknown> };
    try {
      res = await exchange();
    } finally {
      failing = undefined;
    }
    expect(res.status).toBe(503);
    expect(res.body.error).toBe('temporarily_unavailable');
    expect(res.body).not.toHaveProperty('vault_secret');
    const issued = vault.leases().slice(before);
    // Vault did hand out a secret; Leash withheld it and revoked its lease.
    expect(issued).toHaveLength(1);
    expect(issued[0]!.revokedAt).toBeDefined();
  });

  it('control: with the store healthy the lease stays live', async () => {
    const before = vault.leases().length;
    const res = await exchange();
    expect(res.status).toBe(200);
    const issued = vault.leases().slice(before);
    expect(issued).toHaveLength(1);
    expect(issued[0]!.revokedAt).toBeUndefined();
  });
});
