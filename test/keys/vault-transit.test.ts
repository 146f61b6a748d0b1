import { describe, it, expect, afterAll, beforeAll } from '@jest/globals';
import { createLocalJWKSet, jwtVerify } from 'jose';
import { createKeyManager } from '../../src/keys/create-key-manager.js';
import { signJwt } from '../../src/keys/jws.js';
import { createVaultClient } from '../../src/vault/node-vault-client.js';
import type { VaultClient } from '../../src/vault/vault-client.js';
import { isLeashError } from '../../src/errors/leash-error.js';
import { ManualClock } from '../../src/time/clock.js';
import { startVaultContract, type VaultContract } from '../support/vault-contract.js';
import { describeKeyManager, describeRotation, keysSettings, MAX_TOKEN_LIFE_MS } from './describe-key-manager.js';

let vault: VaultContract;
let client: VaultClient;
let seq = 0;

beforeAll(async () => {
  vault = await startVaultContract();
  client = createVaultClient({ address: vault.url, timeoutMs: 2000, token: () => vault.rootToken });
});
afterAll(async () => {
  await vault.close();
});

function fixture(algorithm: 'ES256' | 'EdDSA' = 'ES256') {
  const clock = new ManualClock();
  const n = ++seq;
  const settings = keysSettings({
    backend: 'vault-transit',
    dir: '/nonexistent/leash-keys',
    algorithm,
    vault_kv: { mount: 'secret', path: `leash/transit${n}` },
    vault_transit: { mount: 'transit', key: `leash-signing-${n}` },
  });
  return {
    clock,
    settings,
    replica: () => createKeyManager(settings, { clock, vault: () => client, maxTokenLifeMs: () => MAX_TOKEN_LIFE_MS }),
    outage: { kind: 'per-sign' as const, down: () => vault.down(), up: () => vault.up() },
  };
}

describeKeyManager('vault-transit ES256', () => ({ manager: fixture('ES256').replica() }));
describeKeyManager('vault-transit EdDSA', () => ({ manager: fixture('EdDSA').replica() }));
describeRotation('vault-transit ES256', async () => fixture('ES256'));
describeRotation('vault-transit EdDSA', async () => fixture('EdDSA'));

describe('vault-transit specifics', () => {
  it('each Leash key is one version of one Transit key; the first start uses version 1 without rotating', async () => {
    const f = fixture();
    const km = f.replica();
    await km.init();
    const key = await client.transitReadKey('transit', f.settings.vault_transit.key);
    expect(key?.type).toBe('ecdsa-p256');
    expect(key?.latestVersion).toBe(2);
    const ring = await client.kvRead('secret', `${f.settings.vault_kv.path}/keyring`);
    const entries = ring?.data.keys as { kid: string; state: string; ref: number }[];
    expect(entries.map((e) => [e.state, e.ref])).toEqual([['current', 1], ['next', 2]]);
    await km.rotate({ actor: 'test', force: true });
    expect((await client.transitReadKey('transit', f.settings.vault_transit.key))?.latestVersion).toBe(3);
    await km.close();
  });

  it('refuses to start when the Transit key has the wrong type for the algorithm', async () => {
    const f = fixture('EdDSA');
    await client.transitCreateKey('transit', f.settings.vault_transit.key, 'ecdsa-p256');
    await expect(f.replica().init()).rejects.toThrow('ed25519');
  });

  it('a sign Vault refuses (403, 500) is ERR_SIGNING_UNAVAILABLE without Vault\'s text', async () => {
    const f = fixture();
    const km = f.replica();
    await km.init();
    for (const status of [403, 500, 503]) {
      vault.failNext(/\/sign\//, status);
      let caught: unknown;
      try {
        await signJwt(km.current(), { typ: 'at+jwt' }, { sub: 'p' });
      } catch (err) {
        caught = err;
      }
      expect(isLeashError(caught) && caught.code).toBe('ERR_SIGNING_UNAVAILABLE');
      expect((caught as Error).message).not.toMatch(/permission|vault|internal/i);
    }
    await km.close();
  });

  it('measures sign latency through the contract server (1000 sequential ES256 signs)', async () => {
    const f = fixture();
    const km = f.replica();
    await km.init();
    const jwks = createLocalJWKSet(km.jwks());
    const n = 1000;
    const started = process.hrtime.bigint();
    let last = '';
    for (let i = 0; i < n; i++) last = await signJwt(km.current(), { typ: 'at+jwt' }, { sub: `p${i}` });
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    // Reported, not asserted (no timed assertions): see the helper report.
    process.stdout.write(`vault-transit: ${n} signs in ${ms.toFixed(0)} ms, ${(ms / n).toFixed(2)} ms/sign\n`);
    await expect(jwtVerify(last, jwks)).resolves.toBeDefined();
    await km.close();
  });
});
