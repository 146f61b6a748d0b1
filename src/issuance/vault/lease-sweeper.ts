import { Sweeper } from '../../time/periodic-pass.js';
import { revokeLeases, type LeaseRevocationDeps } from './lease-revocation.js';

const BATCH = 100;
const ACTOR = 'system:lease-sweeper';

export interface LeaseSweeperDeps extends LeaseRevocationDeps {
  readonly intervalMs: number;
  readonly log?: (msg: string, fields?: Record<string, unknown>) => void;
}

/**
 * Revokes the Vault leases whose grant TTL has passed, driven by the store rather than by a
 * timer per lease: a lease that fell due while no replica ran is revoked on the first sweep
 * after start. Every replica sweeps; the store's mark-once rule reports each lease once.
 * A lease Vault cannot revoke stays due and is retried on the next sweep; while Vault is
 * unreachable a pass stops at the first failing batch instead of hammering it.
 */
export class LeaseSweeper extends Sweeper {
  readonly #deps: LeaseSweeperDeps;
  #failing = false;

  constructor(deps: LeaseSweeperDeps) {
    super(deps.intervalMs, (err) => deps.log?.('vault lease sweep failed', { error: err.name }));
    this.#deps = deps;
  }

  /** One pass; returns how many leases it revoked. */
  protected async pass(): Promise<number> {
    let revoked = 0;
    for (;;) {
      const due = await this.#deps.leases.dueLeases(this.#deps.clock.now(), BATCH);
      const outcome = await revokeLeases(due, { cause: 'ttl', actor: ACTOR, reason: 'grant ttl passed' }, this.#deps);
      revoked += outcome.revoked;
      if (outcome.failed.length > 0) {
        // One line per outage, not one per sweep.
        if (!this.#failing)
          this.#deps.log?.('vault leases due for revocation could not be revoked; retrying every sweep', {
            count: outcome.failed.length,
            reasons: [...new Set(outcome.failed.map((f) => f.failure.vault_reason))],
          });
        this.#failing = true;
        return revoked;
      }
      if (this.#failing) this.#deps.log?.('vault lease revocation recovered');
      this.#failing = false;
      // A short batch is the last; a full batch that made no progress (store marks failing) would loop.
      if (due.length < BATCH || outcome.unmarked > 0) return revoked;
    }
  }
}
