import type { IssuedToken } from '../../store/records.js';
import type { RevokeOptions, Revoker } from '../../revocation/revocation-service.js';
import { revokeLeases, type LeaseRevocationDeps } from './lease-revocation.js';

export interface VaultRevokerDeps extends LeaseRevocationDeps {
  readonly log?: (msg: string, fields?: Record<string, unknown>) => void;
}

/**
 * Revoking a `vault` credential revokes its Vault lease, so the secret stops working at once
 * (the database user is dropped, the AWS key deleted, the certificate revoked). Runs when the
 * task ends, the plugin is suspended or revoked, or the credential is revoked by jti. A lease
 * Vault cannot revoke now is left unrevoked in the store: the lease sweeper revokes it when
 * the grant's TTL passes, and Vault's own lease TTL bounds it regardless. Never throws: the
 * revocation itself is already recorded, and a Vault outage must not undo it.
 */
export function createVaultRevoker(deps: VaultRevokerDeps): Revoker {
  return {
    kind: 'vault',
    async revokeIssued(tokens: readonly IssuedToken[], opts: RevokeOptions): Promise<void> {
      const jtis = tokens.filter((t) => t.kind === 'vault').map((t) => t.jti);
      if (jtis.length === 0) return;
      try {
        const leases = await deps.leases.leasesForTokens(jtis);
        const { failed } = await revokeLeases(leases, { cause: 'revocation', actor: opts.actor, reason: opts.reason }, deps);
        if (failed.length > 0) {
          deps.log?.('vault leases could not be revoked now; the lease sweeper revokes them when their TTL passes', {
            count: failed.length,
            jtis: failed.map((f) => f.lease.jti),
            reasons: [...new Set(failed.map((f) => f.failure.vault_reason))],
          });
        }
      } catch (err) {
        // The store (leasesForTokens, markLeaseRevoked) or the reporter failed: the leases stay unrevoked and due at their TTL.
        deps.log?.('vault lease revocation failed; the lease sweeper revokes them when their TTL passes', { count: jtis.length, error: err instanceof Error ? err.name : 'Error' });
      }
    },
  };
}
