import { runKeyOperation, type KeyChange, type KeyOperationDeps } from '../key-lifecycle/key-operations.js';
import { KeyOperationError, type KeyTransition } from '../keys/key-manager.js';
import type { Revocation } from '../store/records.js';
import type { RevocationService } from './revocation-service.js';

/**
 * Emergency: withdraw a signing key and treat every token it signed as revoked. The tokens
 * go first: once the revocation is recorded every replica refuses the key's tokens, even if
 * withdrawing the key then fails (a retry withdraws it; revoking twice is harmless). Other
 * replicas re-read the keyring when the revocation reaches them (key-lifecycle/key-ticker.ts).
 */
export async function revokeSigningKey(
  deps: KeyOperationDeps & { readonly revocation: RevocationService },
  kid: string,
  by: { actor: string; reason: string },
): Promise<KeyChange & { revocation: Revocation }> {
  let revocation: Revocation | undefined;
  const change = await runKeyOperation(deps, { operation: 'revoke', kid, actor: by.actor, reason: by.reason, cause: 'emergency' }, async (): Promise<KeyTransition[]> => {
    revocation = await deps.revocation.revokeKey(kid, by);
    try {
      return await deps.keys.revoke(kid, by);
    } catch (err) {
      // Another replica withdrew it between the caller's check and now: the outcome is the same.
      if (err instanceof KeyOperationError && err.code === 'unknown_kid') return [];
      throw err;
    }
  });
  return { ...change, revocation: revocation! };
}
