import type { LeashConfig } from '../config/schema.js';
import type { RequiredCapability } from './vault-session.js';

/**
 * What Leash's Vault token must be allowed to do for this config: checked at startup
 * (sys/capabilities-self) so a thin policy fails at boot with the missing path named,
 * not at the first exchange or the first scheduled rotation. docs/keys.md and
 * docs/vault.md show the matching policy.
 */
export function requiredVaultCapabilities(config: LeashConfig): RequiredCapability[] {
  const keys = config.settings.keys;
  const out: RequiredCapability[] = [];
  if (keys.backend !== 'local') {
    const { mount, path } = keys.vault_kv;
    out.push({ path: `${mount}/data/${path}/keyring`, capabilities: ['create', 'read', 'update'] });
    if (keys.backend === 'vault-kv') {
      // A concrete path under keys/: a policy grants `keys/*`, which covers every kid.
      out.push({ path: `${mount}/data/${path}/keys/capability-check`, capabilities: ['create', 'read'] });
      out.push({ path: `${mount}/metadata/${path}/keys/capability-check`, capabilities: ['delete'] });
    } else {
      const t = keys.vault_transit;
      out.push({ path: `${t.mount}/keys/${t.key}`, capabilities: ['read', 'create', 'update'] });
      out.push({ path: `${t.mount}/keys/${t.key}/rotate`, capabilities: ['update'] });
      // ECDSA signs at sign/<key>/sha2-256; Ed25519 takes no hash segment.
      out.push({ path: keys.algorithm === 'EdDSA' ? `${t.mount}/sign/${t.key}` : `${t.mount}/sign/${t.key}/sha2-256`, capabilities: ['update'] });
    }
  }
  const vaultGrants = config.plugins.flatMap((p) => p.grants.filter((g) => g.kind === 'vault' && g.vault !== undefined).map((g) => g.vault!));
  for (const g of vaultGrants) out.push({ path: g.path, capabilities: g.method === 'read' ? ['read'] : ['update'] });
  if (vaultGrants.length > 0) out.push({ path: 'sys/leases/revoke', capabilities: ['update'] });
  return out;
}
