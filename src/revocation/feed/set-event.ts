import type { Revocation } from '../../store/records.js';
import { toFeedItem } from './feed-item.js';

/** Leash's own event type: one revocation record, in the same terms as the poll feed. */
export const TOKEN_REVOKED_EVENT = 'https://leash.dev/secevent/token-revoked';
/** OpenID CAEP 1.0 session revoked: added for `task` and `plugin` scopes, whose end is a session's end. */
export const CAEP_SESSION_REVOKED_EVENT = 'https://schemas.openid.net/secevent/caep/event-type/session-revoked';
/** RFC 8417 §2.3 media type (`typ` header `secevent+jwt`); RFC 8935 push bodies use it as Content-Type. */
export const SET_MEDIA_TYPE = 'application/secevent+jwt';

export interface SetClaimsInput {
  readonly issuer: string;
  /** The receiver (resource server id). */
  readonly audience: string;
  readonly jti: string;
  /** Seconds. */
  readonly iat: number;
  readonly revocation: Revocation;
  /** The store epoch (see FeedRevocation.epoch). */
  readonly epoch: string | undefined;
}

/**
 * The claims of one Security Event Token (RFC 8417) announcing one revocation (no
 * `reason_admin`: the admin's free text stays in the audit trail, as on the poll feed). The subject
 * is an RFC 9493 `opaque` identifier (the jti, task id, plugin id or kid) qualified by
 * `scope`; `txn` is the same for every receiver of one revocation, `jti` differs per SET.
 */
export function buildSetClaims(input: SetClaimsInput): Record<string, unknown> {
  const item = toFeedItem(input.revocation, input.epoch ?? '');
  const subject = { format: 'opaque', id: item.id };
  const events: Record<string, unknown> = {
    [TOKEN_REVOKED_EVENT]: {
      subject,
      scope: item.scope,
      seq: item.seq,
      issued_before: item.issued_before,
      keep_until: item.keep_until,
      event_timestamp: item.revoked_at,
      ...(input.epoch ? { epoch: input.epoch } : {}),
    },
  };
  if (item.scope === 'task' || item.scope === 'plugin') {
    events[CAEP_SESSION_REVOKED_EVENT] = {
      subject: { format: 'opaque', id: `${item.scope}:${item.id}` },
      event_timestamp: item.revoked_at,
      initiating_entity: initiatingEntity(input.revocation.actor),
    };
  }
  return {
    iss: input.issuer,
    aud: input.audience,
    iat: input.iat,
    jti: input.jti,
    txn: `revocation-${item.seq}`,
    toe: item.revoked_at,
    events,
  };
}

/** CAEP `initiating_entity` from the actor kind; the actor itself stays in the audit trail. */
function initiatingEntity(actor: string): 'admin' | 'user' | 'policy' | 'system' {
  if (actor.startsWith('system:quota')) return 'policy';
  if (actor.startsWith('system:')) return 'system';
  if (actor.startsWith('plugin:')) return 'user';
  return 'admin';
}
