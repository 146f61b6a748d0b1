import type { LeashConfig } from '../config/schema.js';
import type { Logger } from '../log/logger.js';
import { requiredVaultCapabilities } from './required-capabilities.js';
import { VaultError, type VaultClient } from './vault-client.js';
import { checkCapabilities, VaultStartupError } from './vault-session.js';

/**
 * A reload that adds a `vault` grant on a new path is checked like a start: a token that
 * lacks the capability refuses the reload, naming the path, rather than failing every
 * exchange for that grant later. Vault being unreachable does not block a reload (an
 * emergency tightening of policy must always go through); it is logged instead.
 */
export async function checkAddedVaultCapabilities(client: VaultClient, next: LeashConfig, current: LeashConfig, log: Logger): Promise<void> {
  const had = new Set(requiredVaultCapabilities(current).flatMap((r) => r.capabilities.map((c) => `${r.path}#${c}`)));
  const added = requiredVaultCapabilities(next).filter((r) => r.capabilities.some((c) => !had.has(`${r.path}#${c}`)));
  if (added.length === 0) return;
  try {
    await checkCapabilities(client, added, next.settings.vault?.address);
  } catch (err) {
    if (err instanceof VaultStartupError && err.cause instanceof VaultError) {
      log.warn('could not check the Vault capabilities a reloaded policy needs; accepted unchecked', { reason: err.cause.reason });
      return;
    }
    throw err;
  }
}
