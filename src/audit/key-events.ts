import type { AuditEventType } from './events.js';
import type { AuditSink } from './recorder.js';
import type { KeyTransition } from '../keys/key-manager.js';

/** Why a transition happened: the schedule (tick), an admin call, an emergency revoke, or the first start. */
export type KeyTransitionCause = 'schedule' | 'api' | 'emergency' | 'init';

export interface KeyEventSinks {
  readonly audit: AuditSink;
  readonly metrics: { readonly keyRotations: { inc(labels: { cause: string }): void } };
}

const EVENT_OF: Readonly<Record<KeyTransition['action'], AuditEventType>> = {
  created: 'key.created',
  promoted: 'key.promoted',
  retired: 'key.retired',
  removed: 'key.removed',
  revoked: 'key.revoked',
};

/**
 * Audits and counts what a key operation changed, one event per transition, the same way
 * for the scheduled tick and the admin API. A key that becomes current (promoted, or created
 * straight into `current` by a forced or emergency rotation) counts as one rotation; the
 * first start's keys do not.
 */
export async function recordKeyTransitions(
  transitions: readonly KeyTransition[],
  opts: KeyEventSinks & { readonly cause: KeyTransitionCause; readonly actor: string; readonly reason?: string | undefined; readonly backend?: string | undefined },
): Promise<void> {
  for (const t of transitions) {
    await opts.audit.record(EVENT_OF[t.action], {
      kid: t.kid,
      from: t.from,
      to: t.to,
      cause: opts.cause,
      actor: opts.actor,
      ...(opts.reason === undefined ? {} : { reason: opts.reason }),
      ...(opts.backend === undefined ? {} : { backend: opts.backend }),
    });
    if (t.to === 'current' && opts.cause !== 'init') opts.metrics.keyRotations.inc({ cause: opts.cause });
  }
}
