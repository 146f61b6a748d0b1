import type { AuditSink } from '../audit/recorder.js';
import { LeashError } from '../errors/leash-error.js';
import type { Metrics } from '../metrics/metrics.js';
import { recordKeyTransitions, type KeyTransitionCause } from '../audit/key-events.js';
import { KeyOperationError, type KeyManager, type KeyTransition } from '../keys/key-manager.js';

/*
 * An audited key change. Not in keys/: the audit signs its checkpoints with the keys, so
 * keys/ cannot import the audit back; key-lifecycle/ sits above both.
 */

export type KeyOperation = 'rotate' | 'retire' | 'revoke';

export interface KeyOperationDeps {
  readonly keys: KeyManager;
  readonly audit: AuditSink;
  readonly metrics: Pick<Metrics, 'keyRotations' | 'keyOperationFailures'>;
}

/** What a key operation changed; `warning` when the change was made but could not be audited. */
export interface KeyChange {
  readonly transitions: readonly KeyTransition[];
  readonly warning?: string;
}

/**
 * Runs one requested key operation: every transition it made is audited (`key.*`), a
 * failure is audited as `key.rotation_failed` and counted, then rethrown. If the audit store
 * fails after the change, the change still happened: the result says so (a failure would
 * invite a retry that rotates a second time).
 */
export async function runKeyOperation(
  deps: KeyOperationDeps,
  op: { operation: KeyOperation; kid?: string | undefined; actor: string; reason?: string | undefined; cause: KeyTransitionCause },
  change: () => Promise<readonly KeyTransition[]>,
): Promise<KeyChange> {
  let transitions: readonly KeyTransition[];
  try {
    transitions = await change();
  } catch (err) {
    // Rotation-rule names and Leash codes only: never a backend's own error text.
    const code = err instanceof KeyOperationError ? err.code : err instanceof LeashError ? err.code : 'ERR_INTERNAL';
    deps.metrics.keyOperationFailures.inc({ operation: op.operation });
    await deps.audit.record('key.rotation_failed', { operation: op.operation, kid: op.kid, actor: op.actor, error: code }).catch(() => undefined);
    throw err;
  }
  try {
    await recordKeyTransitions(transitions, { audit: deps.audit, metrics: deps.metrics, cause: op.cause, actor: op.actor, reason: op.reason, backend: deps.keys.backend });
    return { transitions };
  } catch {
    return { transitions, warning: 'the change was made, but the audit trail could not record it (the store is unavailable)' };
  }
}

/** `POST /admin/keys/rotate`: the next key becomes current (or, forced, a new key at once). */
export function rotateKey(deps: KeyOperationDeps, by: { actor: string; reason?: string | undefined; force: boolean }): Promise<KeyChange> {
  return runKeyOperation(deps, { operation: 'rotate', actor: by.actor, reason: by.reason, cause: 'api' }, () => deps.keys.rotate(by));
}

/** `POST /admin/keys/{kid}/retire`: the key stops signing and stays published until its tokens have expired. */
export function retireKey(deps: KeyOperationDeps, kid: string, by: { actor: string; reason?: string | undefined }): Promise<KeyChange> {
  return runKeyOperation(deps, { operation: 'retire', kid, actor: by.actor, reason: by.reason, cause: 'api' }, () => deps.keys.retire(kid, by));
}
