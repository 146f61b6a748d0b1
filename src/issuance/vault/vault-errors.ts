import { LeashError } from '../../errors/leash-error.js';
import { VaultError } from '../../vault/vault-client.js';

/** What the caller and the audit trail may learn about a failed Vault call: the reason and status, never Vault's text. */
export interface VaultFailure {
  readonly vault_reason: string;
  readonly vault_status: number | undefined;
}

export function vaultFailure(err: unknown): VaultFailure {
  if (err instanceof VaultError) return { vault_reason: err.reason, vault_status: err.status === 0 ? undefined : err.status };
  // Anything else (a bug, an error from another realm) says nothing about Vault we could trust.
  return { vault_reason: 'unknown', vault_status: undefined };
}

/**
 * The LeashError an OAuth client sees for a failed dynamic-secret request: a stable code and
 * a description of ours. Vault's error text stays in the VaultError (the `cause`), which is
 * never serialized to a client or into the audit event.
 */
export function vaultLeashError(err: unknown): LeashError {
  const detail = vaultFailure(err);
  const reason = err instanceof VaultError ? err.reason : undefined;
  switch (reason) {
    case 'denied':
      return new LeashError('ERR_UPSTREAM_REFUSED', "Vault refused to issue this secret; check Leash's Vault policy for the grant's path", { ...detail }, { cause: err });
    case 'not_found':
    case 'invalid':
      return new LeashError(
        'ERR_UPSTREAM_TARGET_INVALID',
        "Vault cannot issue a secret at this grant's path (no such role or engine, or bad parameters); the grant's vault settings need fixing",
        { ...detail },
        { cause: err },
      );
    default:
      // unreachable, sealed, 5xx, an answer that is not a Vault answer: an outage, fail closed
      return new LeashError('ERR_UPSTREAM_UNAVAILABLE', 'Vault cannot issue secrets right now; retry later', { ...detail }, { cause: err });
  }
}
