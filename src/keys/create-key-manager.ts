import type { KeysSettingsConfig } from '../config/schema.js';
import type { Clock } from '../time/clock.js';
import type { VaultClient } from '../vault/vault-client.js';
import type { KeyManager } from './key-manager.js';
import { createLocalKeyMaterial, createLocalKeyringRepository } from './local/local-backend.js';
import { createRotatingKeyManager } from './rotating-key-manager.js';
import type { RotationPolicy } from './rotation/keyring.js';
import { createVaultKvKeyMaterial } from './vault-kv/vault-kv-material.js';
import { createVaultKeyringRepository } from './vault-kv/vault-keyring.js';
import { createVaultTransitKeyMaterial } from './vault-transit/vault-transit-material.js';

export { createLocalKeyManager } from './local/local-key-manager.js';

export interface KeyManagerDeps {
  readonly clock: Clock;
  /** The shared Vault client; required for the Vault backends. */
  readonly vault?: (() => VaultClient) | undefined;
  /** Longest life of any token a key signs, clock skew included (ms); read at each transition. */
  readonly maxTokenLifeMs: () => number;
  readonly log?: ((msg: string, fields?: Record<string, unknown>) => void) | undefined;
}

/** The rotation rules from `settings.keys`. */
export function rotationPolicy(keys: KeysSettingsConfig, maxTokenLifeMs: number): RotationPolicy {
  return {
    keyLifetimeMs: keys.key_lifetime * 1000,
    prepublishMs: keys.prepublish * 1000,
    maxPublished: keys.max_published,
    maxTokenLifeMs,
    // A replica that has not re-read the keyring may sign with the old key for up to one
    // refresh interval after the rotation; two intervals keep its tokens verifiable.
    marginMs: 2 * keys.refresh_interval_ms,
    rotateOnSchedule: keys.rotate_on_schedule,
  };
}

/**
 * The KeyManager for `settings.keys.backend`. The caller calls init() before serving,
 * tick() every `refresh_interval_ms`, rebuilds key holders in onChange, and close() at stop.
 */
export function createKeyManager(keys: KeysSettingsConfig, deps: KeyManagerDeps): KeyManager {
  const policy = () => rotationPolicy(keys, deps.maxTokenLifeMs());
  const common = { algorithm: keys.algorithm, clock: deps.clock, policy, log: deps.log };
  if (keys.backend === 'local') {
    return createRotatingKeyManager({
      ...common,
      backend: 'local',
      repository: createLocalKeyringRepository(keys.dir),
      material: createLocalKeyMaterial(keys.dir),
    });
  }
  const vault = deps.vault;
  if (!vault) throw new TypeError(`keys.backend ${keys.backend} needs a Vault client (settings.vault)`);
  const repository = createVaultKeyringRepository(vault, keys.vault_kv);
  if (keys.backend === 'vault-kv') {
    return createRotatingKeyManager({
      ...common,
      backend: 'vault-kv',
      repository,
      material: createVaultKvKeyMaterial(vault, keys.vault_kv),
      maxOutageMs: keys.max_vault_outage * 1000,
    });
  }
  return createRotatingKeyManager({
    ...common,
    backend: 'vault-transit',
    repository,
    material: createVaultTransitKeyMaterial(vault, keys.vault_transit, deps.log),
  });
}
