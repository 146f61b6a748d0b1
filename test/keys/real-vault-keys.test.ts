/**
 * The key-manager conformance suite (signing, JWKS, rotation timeline, replicas racing a
 * rotation, restart) on the two Vault backends against a REAL Vault (or OpenBao), opt-in.
 * Same setup as test/vault/real-vault.test.ts: VAULT_ADDR and VAULT_TOKEN, KV v2 at
 * `secret/` (or VAULT_KV_MOUNT), Transit at `transit/` (or VAULT_TRANSIT_MOUNT). Outage
 * cases need a Vault the test can stop, so they run only against the contract server.
 * Every run uses fresh KV paths and Transit key names (Transit keys are left behind:
 * deletion is off by default in Vault).
 */
import { describe, it } from '@jest/globals';
import { randomBytes } from 'node:crypto';
import { createKeyManager } from '../../src/keys/create-key-manager.js';
import { ManualClock } from '../../src/time/clock.js';
import { createVaultClient } from '../../src/vault/node-vault-client.js';
import { describeKeyManager, describeRotation, keysSettings, MAX_TOKEN_LIFE_MS } from './describe-key-manager.js';

const address = process.env['VAULT_ADDR'];
const token = process.env['VAULT_TOKEN'];
const namespace = process.env['VAULT_NAMESPACE'];

if (address && token) {
  const client = createVaultClient({ address, timeoutMs: 5000, token: () => token, ...(namespace ? { namespace } : {}) });
  const kvMount = process.env['VAULT_KV_MOUNT'] ?? 'secret';
  const transitMount = process.env['VAULT_TRANSIT_MOUNT'] ?? 'transit';
  const run = `leash-test-${Date.now()}-${randomBytes(3).toString('hex')}`;
  let seq = 0;
  const fixture = (backend: 'vault-kv' | 'vault-transit', algorithm: 'ES256' | 'EdDSA') => {
    const clock = new ManualClock();
    const n = ++seq;
    const settings = keysSettings({
      backend,
      dir: '/nonexistent/leash-keys',
      algorithm,
      vault_kv: { mount: kvMount, path: `${run}/k${n}` },
      vault_transit: { mount: transitMount, key: `${run}-t${n}` },
    });
    return { clock, settings, replica: () => createKeyManager(settings, { clock, vault: () => client, maxTokenLifeMs: () => MAX_TOKEN_LIFE_MS }) };
  };
  for (const backend of ['vault-kv', 'vault-transit'] as const) {
    for (const alg of ['ES256', 'EdDSA'] as const) {
      describeKeyManager(`${backend} ${alg} on a real Vault at ${address}`, () => ({ manager: fixture(backend, alg).replica() }));
      describeRotation(`${backend} ${alg} on a real Vault at ${address}`, async () => fixture(backend, alg));
    }
  }
} else {
  console.warn('real-Vault key backend suite skipped: set VAULT_ADDR and VAULT_TOKEN (see test/keys/real-vault-keys.test.ts)');
  describe.skip('key backends against a real Vault (set VAULT_ADDR and VAULT_TOKEN)', () => {
    it('runs the shared key-manager suite on vault-kv and vault-transit', () => undefined);
  });
}
