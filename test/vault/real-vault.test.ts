/**
 * The shared VaultClient suite against a REAL Vault (or OpenBao), opt-in.
 *
 * Setup (a dev server is enough):
 *   vault server -dev -dev-root-token-id=root &
 *   export VAULT_ADDR=http://127.0.0.1:8200 VAULT_TOKEN=root
 *   vault secrets enable transit          # KV v2 at secret/ exists in dev mode
 *   # (not dev mode: vault secrets enable -path=secret kv-v2)
 *   NODE_OPTIONS=--experimental-vm-modules npx jest test/vault/real-vault.test.ts
 *
 * VAULT_TOKEN must be able to use secret/ and transit/ and create a child token
 * (auth/token/create) with only the default policy for the "denied" cases. Each run uses
 * fresh paths and key names (Transit keys are left behind: deletion is off by default).
 * Optional: VAULT_NAMESPACE (Enterprise), VAULT_KV_MOUNT, VAULT_TRANSIT_MOUNT.
 */
import { describe, it } from '@jest/globals';
import { randomBytes } from 'node:crypto';
import { createVaultClient, createVaultTransport } from '../../src/vault/node-vault-client.js';
import { describeVaultClient } from './describe-vault.js';

const address = process.env['VAULT_ADDR'];
const rootToken = process.env['VAULT_TOKEN'];
const namespace = process.env['VAULT_NAMESPACE'];

if (address && rootToken) {
  describeVaultClient(`a real Vault at ${address}`, async () => {
    const ns = namespace ? { namespace } : {};
    const transport = createVaultTransport({ address, timeoutMs: 5000, ...ns });
    const created = await transport.call('POST', 'auth/token/create', { policies: ['default'], ttl: '10m', no_parent: false }, rootToken);
    const denied = (created?.['auth'] as { client_token?: unknown } | undefined)?.client_token;
    if (typeof denied !== 'string') throw new Error('auth/token/create answered no client_token');
    return {
      client: createVaultClient({ address, timeoutMs: 5000, token: () => rootToken, ...ns }),
      denied: createVaultClient({ address, timeoutMs: 5000, token: () => denied, ...ns }),
      tokens: [rootToken, denied],
      kvMount: process.env['VAULT_KV_MOUNT'] ?? 'secret',
      transitMount: process.env['VAULT_TRANSIT_MOUNT'] ?? 'transit',
      prefix: `leash-test-${Date.now()}-${randomBytes(3).toString('hex')}`,
      close: async () => {
        await transport.call('POST', 'auth/token/revoke-self', {}, denied).catch(() => undefined);
      },
    };
  });
} else {
  console.warn('real-Vault suite skipped: set VAULT_ADDR and VAULT_TOKEN (see test/vault/real-vault.test.ts)');
  describe.skip('VaultClient against a real Vault (set VAULT_ADDR and VAULT_TOKEN)', () => {
    it('runs the shared VaultClient suite', () => undefined);
  });
}
