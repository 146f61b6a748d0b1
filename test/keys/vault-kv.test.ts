import { describe, it, expect, afterAll, beforeAll } from '@jest/globals';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createKeyManager } from '../../src/keys/create-key-manager.js';
import { createVaultClient } from '../../src/vault/node-vault-client.js';
import { VaultError, type VaultClient } from '../../src/vault/vault-client.js';
import { ManualClock } from '../../src/time/clock.js';
import { isLeashError } from '../../src/errors/leash-error.js';
import { startVaultContract, type VaultContract } from '../support/vault-contract.js';
import { describeKeyManager, describeRotation, keysSettings, MAX_TOKEN_LIFE_MS } from './describe-key-manager.js';

let vault: VaultContract;
let client: VaultClient;
const root = mkdtempSync(join(tmpdir(), 'leash-vkv-'));
/** The local key folder the settings name: a vault-kv manager must never write there. */
const keysDir = join(root, 'keys');
let seq = 0;

beforeAll(async () => {
  vault = await startVaultContract();
  client = createVaultClient({ address: vault.url, timeoutMs: 2000, token: () => vault.rootToken });
});
afterAll(async () => {
  await vault.close();
  rmSync(root, { recursive: true, force: true });
});

function fixture(algorithm: 'ES256' | 'EdDSA' = 'ES256') {
  const clock = new ManualClock();
  const settings = keysSettings({ backend: 'vault-kv', dir: keysDir, algorithm, vault_kv: { mount: 'secret', path: `leash/kv${++seq}` } });
  return {
    clock,
    settings,
    replica: () => createKeyManager(settings, { clock, vault: () => client, maxTokenLifeMs: () => MAX_TOKEN_LIFE_MS }),
    outage: { kind: 'bounded' as const, down: () => vault.down(), up: () => vault.up() },
  };
}

describeKeyManager('vault-kv ES256', () => ({ manager: fixture('ES256').replica() }));
describeKeyManager('vault-kv EdDSA', () => ({ manager: fixture('EdDSA').replica() }));
describeRotation('vault-kv ES256', async () => fixture('ES256'));
describeRotation('vault-kv EdDSA', async () => fixture('EdDSA'));

describe('vault-kv storage', () => {
  it('keeps the keyring and private keys in KV v2 and writes nothing to the broker disk', async () => {
    const f = fixture();
    const km = f.replica();
    await km.init();
    const path = f.settings.vault_kv.path;
    const ring = await client.kvRead('secret', `${path}/keyring`);
    expect((ring?.data.keys as { kid: string }[]).map((k) => k.kid).sort()).toEqual(km.list().map((k) => k.kid).sort());
    for (const k of km.list()) {
      const secret = await client.kvRead('secret', `${path}/keys/${k.kid}`);
      expect(typeof (secret?.data.jwk as { d?: unknown }).d).toBe('string');
    }
    // A removed key's material is destroyed in Vault.
    const a = km.current().kid;
    await km.revoke(a, { actor: 'test' });
    expect(await client.kvRead('secret', `${path}/keys/${a}`)).toBeUndefined();
    await km.close();
    // Every vault-kv test in this file has run against keysDir by now or runs after: none created it.
    expect(existsSync(keysDir) ? readdirSync(keysDir) : []).toEqual([]);
  });

  it('a racing replica loses the keyring compare-and-set, destroys its orphan key and follows the winner', async () => {
    const f = fixture();
    const [a, b] = [f.replica(), f.replica()];
    await a.init();
    await b.init();
    f.clock.advance(86_400);
    const from = vault.calls.length;
    const [ta, tb] = await Promise.all([a.tick(), b.tick()]);
    const keyringPath = `secret/data/${f.settings.vault_kv.path}/keyring`;
    const writes = vault.calls.slice(from).filter((c) => c.path === keyringPath && c.method !== 'GET');
    expect(writes.map((c) => c.status).sort()).toEqual([200, 400]); // one won, one lost the cas
    expect([...ta, ...tb].filter((t) => t.action === 'promoted')).toHaveLength(1);
    // The loser's freshly written key secret was destroyed: only keyring keys remain in KV.
    const created = vault.calls.slice(from).filter((c) => c.method !== 'GET' && c.path.startsWith(`secret/data/${f.settings.vault_kv.path}/keys/`));
    expect(created).toHaveLength(2);
    const destroyed = vault.calls.slice(from).filter((c) => c.method === 'DELETE' && c.path.startsWith(`secret/metadata/${f.settings.vault_kv.path}/keys/`));
    expect(destroyed).toHaveLength(1);
    for (const k of a.list()) expect(await client.kvRead('secret', `${f.settings.vault_kv.path}/keys/${k.kid}`)).toBeDefined();
    await a.close();
    await b.close();
  });

  /** The real client, with keyring writes failing: refused before Vault, or applied by Vault with the answer lost. */
  function faulty(mode: 'refused' | 'answer-lost') {
    let failing = 0;
    const wrapped: VaultClient = {
      ...client,
      async kvWrite(mount, path, data, cas) {
        if (failing > 0 && path.endsWith('/keyring')) {
          failing--;
          if (mode === 'answer-lost') await client.kvWrite(mount, path, data, cas);
          throw new VaultError('unreachable', 0, 'vault: socket hang up (injected)');
        }
        return client.kvWrite(mount, path, data, cas);
      },
    };
    return { wrapped, failOnce: () => (failing = 1) };
  }

  it.each(['refused', 'answer-lost'] as const)('a keyring write that fails (%s) is ERR_BACKEND_UNAVAILABLE without Vault text; the keyring stays consistent', async (mode) => {
    const f = fixture();
    const fault = faulty(mode);
    const km = createKeyManager(f.settings, { clock: f.clock, vault: () => fault.wrapped, maxTokenLifeMs: () => MAX_TOKEN_LIFE_MS });
    await km.init();
    const before = km.list();
    fault.failOnce();
    let caught: unknown;
    try {
      await km.rotate({ actor: 'test', force: true });
    } catch (err) {
      caught = err;
    }
    expect(isLeashError(caught) && caught.code).toBe('ERR_BACKEND_UNAVAILABLE');
    expect(isLeashError(caught) && caught.description).not.toMatch(/socket|vault/i);
    expect(km.list()).toEqual(before);
    await km.tick();
    if (mode === 'refused') {
      expect(km.list()).toEqual(before);
    } else {
      // Vault did apply it: the next refresh finds the rotation, and the new keys' material was kept.
      expect(km.current().kid).toBe(before.find((k) => k.state === 'next')?.kid);
      expect(km.list().filter((k) => k.state === 'next')).toHaveLength(1);
      const restarted = f.replica();
      await restarted.init();
      expect(restarted.list()).toEqual(km.list());
      await restarted.close();
    }
    await km.close();
  });

  it('refuses to start on a keyring naming a key Vault does not hold, with a message naming the path', async () => {
    const f = fixture();
    await f.replica().init();
    const kid = (await client.kvRead('secret', `${f.settings.vault_kv.path}/keyring`))?.data.keys as { kid: string; state: string }[];
    const current = kid.find((k) => k.state === 'current')?.kid as string;
    await client.kvDestroy('secret', `${f.settings.vault_kv.path}/keys/${current}`);
    await expect(f.replica().init()).rejects.toThrow(`secret/data/${f.settings.vault_kv.path}/keys/${current}`);
  });
});

afterAll(() => {
  expect(existsSync(keysDir) ? readdirSync(keysDir) : []).toEqual([]);
});
