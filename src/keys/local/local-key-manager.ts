import type { SigningAlgorithm } from '../../config/schema.js';
import type { Clock } from '../../time/clock.js';
import type { KeyManager } from '../key-manager.js';
import type { RotationPolicy } from '../rotation/keyring.js';
import { createRotatingKeyManager } from '../rotating-key-manager.js';
import { createLocalKeyMaterial, createLocalKeyringRepository } from './local-backend.js';

export interface LocalKeyManagerOptions {
  /** Folder holding `keyring.json` and one `<kid>.jwk.json` per key; created 0700 if absent. */
  readonly dir: string;
  /** Algorithm of keys this manager generates (existing keys keep theirs). */
  readonly algorithm: SigningAlgorithm;
  readonly clock: Clock;
  /** Rotation rules; the defaults are the configuration defaults (30-day keys, 1 h prepublish, 5 keys). */
  readonly policy?: (() => RotationPolicy) | undefined;
  readonly log?: ((msg: string, fields?: Record<string, unknown>) => void) | undefined;
}

/** Configuration defaults, for callers (tests, CLI) that do not pass a policy. */
export const DEFAULT_ROTATION_POLICY: RotationPolicy = Object.freeze({
  keyLifetimeMs: 30 * 86_400_000,
  prepublishMs: 3_600_000,
  maxPublished: 5,
  maxTokenLifeMs: 3_600_000 + 60_000,
  marginMs: 20_000,
  rotateOnSchedule: true,
});

/**
 * The embedded key backend: private JWKs in files under `dir`, generated on first start.
 * Meant for a single replica (or replicas in one process): the keyring's compare-and-set is
 * not coordinated across processes; several replicas should use a Vault backend.
 */
export function createLocalKeyManager(opts: LocalKeyManagerOptions): KeyManager {
  if (!opts.dir) throw new TypeError('createLocalKeyManager: dir is required');
  return createRotatingKeyManager({
    backend: 'local',
    repository: createLocalKeyringRepository(opts.dir),
    material: createLocalKeyMaterial(opts.dir),
    algorithm: opts.algorithm,
    clock: opts.clock,
    policy: opts.policy ?? (() => DEFAULT_ROTATION_POLICY),
    log: opts.log,
  });
}
