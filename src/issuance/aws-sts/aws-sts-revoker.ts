import type { IssuedToken } from '../../store/records.js';
import type { RevokeOptions, Revoker } from '../../revocation/revocation-service.js';
import { systemClock, type Clock } from '../../time/clock.js';

/** What the revoker reports: sessions AWS will keep honouring until they expire. */
export interface UnrevokableSessions {
  readonly count: number;
  /** `aws:<AccessKeyId>` per session, with its expiry (ISO 8601). */
  readonly sessions: readonly { readonly jti: string; readonly expires_at: string }[];
  /** ISO 8601: after this instant none of them is valid. */
  readonly valid_until: string;
  readonly actor: string;
  readonly reason: string;
}

/**
 * AWS cannot revoke one STS session: its credentials stay valid until their Expiration.
 * This revoker does not pretend otherwise: it reports the sessions that stay valid (to the
 * log hook, for the operator) so a revocation is never mistaken for a cut-off. Durations are
 * kept minimal, and the role-wide "deny sessions issued before now" admin action is the
 * emergency brake.
 */
export function createAwsStsRevoker(opts: { log?: (msg: string, fields: UnrevokableSessions) => void; clock?: Clock } = {}): Revoker {
  const clock = opts.clock ?? systemClock;
  return {
    kind: 'aws-sts',
    async revokeIssued(tokens: readonly IssuedToken[], revoke: RevokeOptions): Promise<void> {
      const live = tokens.filter((t) => t.kind === 'aws-sts' && t.expiresAt > clock.now());
      if (live.length === 0) return;
      const fields: UnrevokableSessions = {
        count: live.length,
        sessions: live.map((t) => ({ jti: t.jti, expires_at: new Date(t.expiresAt).toISOString() })),
        valid_until: new Date(Math.max(...live.map((t) => t.expiresAt))).toISOString(),
        actor: revoke.actor,
        reason: revoke.reason,
      };
      opts.log?.('AWS STS sessions cannot be revoked one by one; they stay valid until their expiration (deny the role\'s older sessions for an emergency)', fields);
    },
  };
}
