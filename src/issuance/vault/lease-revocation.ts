import type { LeaseRecord } from '../../store/records.js';
import type { LeaseStore } from '../../store/store.js';
import type { Clock } from '../../time/clock.js';
import type { VaultClient } from '../../vault/vault-client.js';
import { vaultFailure, type VaultFailure } from './vault-errors.js';

/** Why a lease is revoked: its credential was revoked (task end, plugin suspension, token revoke) or the grant's TTL passed. */
export type LeaseRevokeCause = 'revocation' | 'ttl';

export interface LeaseRevokeContext {
  readonly cause: LeaseRevokeCause;
  /** Who: `system:lease-sweeper`, or the actor of the revocation. */
  readonly actor: string;
  readonly reason: string;
}

/** Where revocations and failures are reported (audit, metrics, log); never given secret data. Must not throw. */
export interface LeaseReporter {
  revoked(lease: LeaseRecord, ctx: LeaseRevokeContext): Promise<void>;
  failed(lease: LeaseRecord, ctx: LeaseRevokeContext, failure: VaultFailure): Promise<void>;
}

export interface LeaseRevocationDeps {
  readonly vault: () => VaultClient;
  readonly leases: LeaseStore;
  readonly clock: Clock;
  readonly report: LeaseReporter;
}

export interface LeaseRevokeOutcome {
  readonly revoked: number;
  readonly failed: readonly { readonly lease: LeaseRecord; readonly failure: VaultFailure }[];
  /** Revoked in Vault but not marked (store unavailable): due again at the next sweep. */
  readonly unmarked: number;
}

/**
 * Revokes each lease in Vault, then marks it revoked in the store: in that order, so a crash
 * in between leaves a lease Vault already forgot (revoking it again is a no-op), never a
 * lease marked revoked that Vault still honours. Only the caller whose mark wins reports it,
 * so a lease revoked by two replicas (or by a revoker and the sweeper) is audited once.
 */
export async function revokeLeases(leases: readonly LeaseRecord[], ctx: LeaseRevokeContext, deps: LeaseRevocationDeps): Promise<LeaseRevokeOutcome> {
  let revoked = 0;
  let unmarked = 0;
  const failed: { lease: LeaseRecord; failure: VaultFailure }[] = [];
  for (const lease of leases) {
    try {
      await deps.vault().revokeLease(lease.leaseId);
    } catch (err) {
      const failure = vaultFailure(err);
      failed.push({ lease, failure });
      await deps.report.failed(lease, ctx, failure);
      continue;
    }
    let won: boolean;
    try {
      won = await deps.leases.markLeaseRevoked(lease.jti, deps.clock.now());
    } catch {
      // Vault revoked it; the store will still list it as due, and revoking it again is a no-op.
      unmarked++;
      continue;
    }
    if (won) {
      revoked++;
      await deps.report.revoked(lease, ctx);
    }
  }
  return { revoked, failed, unmarked };
}
