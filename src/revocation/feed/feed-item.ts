import type { Revocation, RevocationScope } from '../../store/records.js';

/**
 * One revocation as the feed (poll, SSE) publishes it to a resource server. Times are epoch
 * seconds, as in the JWTs they apply to. Who revoked and why (the actor and the admin's
 * free-text reason) stay in the audit trail: a resource server needs what to refuse, not
 * an operator's notes. Which servers see a record at all: `concerns` (revocation-audiences).
 */
export interface FeedRevocation {
  readonly seq: number;
  readonly scope: RevocationScope;
  /** jti, task id, plugin id or kid, by scope. */
  readonly id: string;
  /** `plugin` scope: tokens with `iat` at or before this are revoked. */
  readonly issued_before: number;
  readonly revoked_at: number;
  /** After this no token the record covers can still be valid: a follower may forget it. */
  readonly keep_until: number;
  /**
   * The store epoch the record belongs to (a random id the store keeps for life). A
   * follower that sees it change knows the store was reset: its cursor means nothing in the
   * new epoch, so it starts again from 0 (and refuses until it has caught up).
   */
  readonly epoch: string;
}

/**
 * Rounding errs toward revoking: a token's `iat` is floor(issuedAt / 1000), so flooring
 * `issued_before` still covers every token issued before the instant, and `keep_until` is
 * rounded up so a follower never forgets a record early.
 */
export function toFeedItem(r: Revocation, epoch: string): FeedRevocation {
  return {
    seq: r.seq,
    scope: r.scope,
    id: r.id,
    issued_before: Math.floor(r.issuedBefore / 1000),
    revoked_at: Math.floor(r.revokedAt / 1000),
    keep_until: Math.ceil(r.keepUntil / 1000),
    epoch,
  };
}
