import type { AuditPayload } from '../../audit/events.js';
import type { AuditSink } from '../../audit/recorder.js';
import type { LeaseRecord } from '../../store/records.js';
import type { LeaseReporter, LeaseRevokeContext } from './lease-revocation.js';
import type { VaultFailure } from './vault-errors.js';

export interface LeaseReporterDeps {
  readonly audit: AuditSink;
  readonly metrics: {
    readonly vaultLeasesRevoked: { inc(labels: { cause: string }): void };
    readonly vaultLeaseRevokeFailures: { inc(labels: { reason: string }): void };
  };
  readonly log: (msg: string, fields?: Record<string, unknown>) => void;
}

/** Which lease, by handle only: the jti and Vault's lease id (an identifier, not a secret), never the secret's data. */
function leaseFields(lease: LeaseRecord): { jti: string; lease_id: string; plugin: string; task: string | undefined } {
  return { jti: lease.jti, lease_id: lease.leaseId, plugin: lease.plugin, task: lease.task };
}

/**
 * Audits and counts lease revocations. A failure of the same lease is audited once per
 * process (the sweeper retries it every interval; the metric counts every attempt), and
 * again after it succeeded. An audit write that fails is logged, never thrown: the lease
 * state in Vault and the store is what matters, and the next lease must still be revoked.
 */
export function createLeaseReporter(deps: LeaseReporterDeps): LeaseReporter {
  const failing = new Set<string>();
  async function audit<T extends 'vault.lease_revoked' | 'vault.lease_revoke_failed'>(type: T, event: AuditPayload<T>): Promise<void> {
    try {
      await deps.audit.record(type, event);
    } catch (err) {
      deps.log('audit write failed for a vault lease event', { type, jti: event.jti, error: err instanceof Error ? err.name : 'Error' });
    }
  }
  return {
    async revoked(lease: LeaseRecord, ctx: LeaseRevokeContext): Promise<void> {
      failing.delete(lease.jti);
      deps.metrics.vaultLeasesRevoked.inc({ cause: ctx.cause });
      await audit('vault.lease_revoked', { ...leaseFields(lease), cause: ctx.cause, actor: ctx.actor, reason: ctx.reason });
    },
    async failed(lease: LeaseRecord, ctx: LeaseRevokeContext, failure: VaultFailure): Promise<void> {
      deps.metrics.vaultLeaseRevokeFailures.inc({ reason: failure.vault_reason });
      if (failing.has(lease.jti)) return;
      // Bounded: a lease another replica revoked never clears here.
      if (failing.size >= 10_000) failing.clear();
      failing.add(lease.jti);
      await audit('vault.lease_revoke_failed', { ...leaseFields(lease), cause: ctx.cause, actor: ctx.actor, reason: ctx.reason, ...failure });
    },
  };
}
