import { afterAll, describe, expect, it } from '@jest/globals';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { OPS_KEY, startTestBroker, type TestBroker } from '../support/broker.js';
import { TestCluster } from '../support/cluster.js';
import { redisAvailable, startRedis } from '../support/redis.js';
import { startVaultContract, type VaultContract } from '../support/vault-contract.js';
import { waitFor } from '../support/wait.js';

/**
 * Two replicas on one Redis store and one Vault KV keyring, with a keyring refresh interval
 * far longer than the test: an emergency key revocation made on A reaches B over the
 * revocation feed, and B re-reads the keyring at once, so B's JWKS drops the key within
 * about a second instead of at B's next scheduled refresh.
 */

const TOKEN_ENV = 'LEASH_REPLICA_KEY_REVOCATION_TOKEN';
const SECURITY_KEY = OPS_KEY; // the test config's ops key also holds the security role
const cleanup: Array<() => unknown> = [];

afterAll(async () => {
  for (const c of cleanup.reverse()) await c();
  delete process.env[TOKEN_ENV];
});

const RUN = redisAvailable('emergency key revocation across replicas');

describe('emergency key revocation across replicas', () => {
  (RUN ? it : it.skip)("B's JWKS drops a key revoked on A long before B's next keyring refresh", async () => {
    const redis = await startRedis();
    cleanup.push(() => redis.cleanup());
    const vault: VaultContract = await startVaultContract();
    cleanup.push(() => vault.close());
    process.env[TOKEN_ENV] = vault.rootToken;
    const cluster = await TestCluster.create();
    const dirA = await mkdtemp(join(tmpdir(), 'leash-replica-a-'));
    const dirB = await mkdtemp(join(tmpdir(), 'leash-replica-b-'));
    cleanup.push(() => rm(dirA, { recursive: true, force: true }), () => rm(dirB, { recursive: true, force: true }));
    const patch = (cfg: Record<string, any>) => {
      cfg.settings.store = { kind: 'redis', url: redis.url, key_prefix: 'replica-keys:' };
      cfg.settings.vault = { address: vault.url, timeout_ms: 5000, auth: { method: 'token', token_env: TOKEN_ENV } };
      // Ten minutes: anything B learns during this test it learns from the revocation feed.
      cfg.settings.keys = { backend: 'vault-kv', refresh_interval_ms: 600_000, vault_kv: { mount: 'secret', path: 'leash/replicas' } };
    };
    const a: TestBroker = await startTestBroker({ dir: dirA, cluster, patch });
    cleanup.push(() => a.close());
    const b: TestBroker = await startTestBroker({ dir: dirB, cluster, patch });
    cleanup.push(() => b.close());

    const kids = async (tb: TestBroker) => ((await (await fetch(`${tb.url}/jwks`)).json()) as { keys: { kid: string }[] }).keys.map((k) => k.kid).sort();
    expect(await kids(b)).toEqual(await kids(a));
    const current = a.broker.testing.keys.current().kid;
    expect(b.broker.testing.keys.current().kid).toBe(current);

    const started = Date.now();
    const res = await fetch(`${a.url}/admin/keys/${current}/revoke`, {
      method: 'POST',
      headers: { authorization: `Bearer ${SECURITY_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ reason: 'test: key compromised' }),
    });
    expect(res.status).toBe(200);
    expect(await kids(a)).not.toContain(current);
    await waitFor(async () => !(await kids(b)).includes(current), 5000);
    const elapsed = Date.now() - started;
    // Far below the 10-minute refresh interval: the feed triggered the re-read.
    expect(elapsed).toBeLessThan(5000);
    expect(b.broker.testing.keys.current().kid).not.toBe(current);
    expect(await kids(b)).toEqual(await kids(a));
  }, 60000);
});
