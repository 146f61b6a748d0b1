import type { JWK } from 'jose';
import type { SigningAlgorithm } from '../config/schema.js';
import { isLeashError, LeashError } from '../errors/leash-error.js';
import type { Clock } from '../time/clock.js';
import { KeyOperationError, type KeyInfo, type KeyManager, type KeyTransition, type SigningKey } from './key-manager.js';
import type { KeyMaterial, KeyringRepository } from './rotation/backend.js';
import {
  addKey,
  currentKey,
  dropped,
  genesis,
  plan,
  promote,
  retire,
  revoke,
  signsFrom,
  type NewKey,
  type Ring,
  type RingChange,
  type RotationPolicy,
} from './rotation/keyring.js';

export interface RotatingKeyManagerOptions {
  readonly backend: string;
  readonly repository: KeyringRepository;
  readonly material: KeyMaterial;
  /** Algorithm of keys this manager creates (existing keys keep theirs). */
  readonly algorithm: SigningAlgorithm;
  readonly clock: Clock;
  /** Read at every operation, so a reloaded configuration applies to the next transition. */
  readonly policy: () => RotationPolicy;
  /**
   * How long loaded keys keep signing after the last successful keyring read (vault-kv:
   * `max_vault_outage`); after that current() refuses until a read succeeds. undefined: no bound.
   */
  readonly maxOutageMs?: number | undefined;
  readonly log?: ((msg: string, fields?: Record<string, unknown>) => void) | undefined;
}

/** Compare-and-set attempts before an operation gives up (each loss means another replica wrote). */
const CAS_ATTEMPTS = 5;
/** Keys one operation may create: an emergency current and its next. */
const MAX_CREATED = 2;

/**
 * The one KeyManager: the pure rotation state machine (rotation/keyring.ts) over a shared
 * keyring with compare-and-set and a per-backend key store. Every operation is
 * load → decide → create material → save-if-unchanged; a replica that loses the race
 * reloads and decides again, so each transition happens once across replicas.
 */
export function createRotatingKeyManager(opts: RotatingKeyManagerOptions): KeyManager {
  const { repository, material, clock, backend } = opts;
  const log = opts.log ?? (() => undefined);
  let ring: Ring | undefined;
  let signers = new Map<string, SigningKey>();
  /** The signer of the current key, kept apart: current() is on the token endpoint's hot path. */
  let signing: SigningKey | undefined;
  let lastRead = Number.NEGATIVE_INFINITY;
  let fingerprint: string | undefined;
  let published: { keys: JWK[] } = Object.freeze({ keys: [] });
  let closed = false;
  const listeners = new Set<() => void>();
  // Operations of this replica run one at a time (a tick and an API rotation must not both create a next).
  let queue: Promise<unknown> = Promise.resolve();

  function serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = queue.then(fn, fn);
    queue = run.catch(() => undefined);
    return run;
  }

  /** Loads signers for a ring read from the store and makes it the one this replica serves. */
  async function apply(next: Ring): Promise<void> {
    const loaded = new Map<string, SigningKey>();
    for (const entry of next.keys) loaded.set(entry.kid, signers.get(entry.kid) ?? (await material.load(entry)));
    ring = next;
    signers = loaded;
    // Built once per key-set change: every verification reads it, and callers cache by identity.
    published = Object.freeze({ keys: next.keys.flatMap((k) => { const sk = loaded.get(k.kid); return sk ? [Object.freeze({ ...sk.publicJwk })] : []; }) });
    const cur = currentKey(next)?.kid ?? '';
    signing = loaded.get(cur);
    const print = `${cur}|${next.keys.map((k) => k.kid).sort().join(',')}`;
    const changed = fingerprint !== undefined && fingerprint !== print;
    fingerprint = print;
    if (changed) {
      for (const listener of [...listeners]) {
        try {
          listener();
        } catch (err) {
          log('key change listener failed', { error: (err as Error).message });
        }
      }
    }
  }

  async function destroyQuietly(entries: readonly Pick<NewKey, 'kid' | 'ref'>[], why: string): Promise<void> {
    for (const entry of entries) {
      try {
        await material.destroy(entry);
      } catch (err) {
        log('could not destroy signing key material', { kid: entry.kid, why, error: (err as Error).name });
      }
    }
  }

  async function load(): Promise<{ ring: Ring; version: number }> {
    const loaded = await repository.load();
    if (!loaded) throw new Error(`the ${backend} keyring does not exist (it is created by init)`);
    lastRead = clock.now();
    return loaded;
  }

  /** load → op → create what is missing → save with compare-and-set; retried on conflict. */
  async function mutate(op: (ring: Ring, now: number, policy: RotationPolicy) => RingChange): Promise<KeyTransition[]> {
    for (let attempt = 0; attempt < CAS_ATTEMPTS; attempt++) {
      const loaded = await load();
      const now = clock.now();
      const policy = opts.policy();
      let result = op(loaded.ring, now, policy);
      const created: NewKey[] = [];
      let saved: boolean;
      let saving = false;
      try {
        while (result.need && created.length < MAX_CREATED) {
          const key = await material.create(opts.algorithm);
          created.push({ kid: key.kid, alg: opts.algorithm, ref: key.ref });
          const added = addKey(result.ring, created[created.length - 1] as NewKey, result.need, now, policy);
          result = { ring: added.ring, transitions: [...result.transitions, ...added.transitions], need: added.need };
        }
        if (result.transitions.length === 0) {
          await apply(loaded.ring);
          return [];
        }
        saving = true;
        saved = await repository.save(result.ring, loaded.version);
      } catch (err) {
        // A save that failed may still have been applied (a timeout after Vault wrote): then
        // the keyring names the new keys, so their material must stay.
        if (!saving) await destroyQuietly(created, 'operation failed');
        throw err;
      }
      if (!saved) {
        // Another replica wrote first: our fresh keys are orphans; decide again on its ring.
        await destroyQuietly(created, 'lost compare-and-set');
        continue;
      }
      await destroyQuietly(dropped(loaded.ring, result.ring), 'removed from the keyring');
      try {
        await apply(result.ring);
      } catch (err) {
        // The transition is done (saved); this replica catches up at its next refresh.
        log('key transition saved but its keys could not be loaded yet', { error: (err as Error).name });
      }
      return [...result.transitions];
    }
    throw new Error(`the ${backend} keyring changed ${CAS_ATTEMPTS} times while this replica tried to update it`);
  }

  /** Refusals pass as they are; a store that cannot be reached is a 503, its text for logs only. */
  async function guarded(fn: () => Promise<KeyTransition[]>): Promise<KeyTransition[]> {
    if (closed) throw new LeashError('ERR_BACKEND_UNAVAILABLE', 'the key manager is closed');
    try {
      return await fn();
    } catch (err) {
      if (err instanceof KeyOperationError || isLeashError(err)) throw err;
      const e = err as Error & { reason?: unknown; status?: unknown };
      throw new LeashError('ERR_BACKEND_UNAVAILABLE', 'the signing key store is unavailable', { backend, error: e.name, reason: e.reason, status: e.status }, { cause: err });
    }
  }

  function info(): KeyInfo[] {
    const policy = opts.policy();
    return (ring?.keys ?? []).map((k) => ({
      kid: k.kid,
      alg: k.alg,
      state: k.state,
      backend,
      createdAt: k.createdAt,
      activatedAt: k.activatedAt ?? (k.state === 'current' ? k.createdAt : undefined),
      retiredAt: k.retiredAt,
      removeAt: k.removeAt,
      signsFrom: k.state === 'next' ? signsFrom(k, policy) : undefined,
    }));
  }

  return {
    backend,

    init: () =>
      serial(async () => {
        if (!(await repository.load())) {
          const now = clock.now();
          const a = await material.create(opts.algorithm);
          const b = await material.create(opts.algorithm);
          const first = genesis({ kid: a.kid, alg: opts.algorithm, ref: a.ref }, { kid: b.kid, alg: opts.algorithm, ref: b.ref }, now);
          // Another replica may have created the keyring meanwhile: then its keys win.
          if (!(await repository.save(first.ring, 0))) await destroyQuietly([a, b], 'lost compare-and-set at first start');
        }
        await mutate(plan);
      }),

    current(): SigningKey {
      const key = signing;
      if (!key) throw new LeashError('ERR_SIGNING_UNAVAILABLE', 'no signing key is loaded', { backend });
      if (opts.maxOutageMs !== undefined && clock.now() - lastRead > opts.maxOutageMs) {
        throw new LeashError('ERR_SIGNING_UNAVAILABLE', 'the signing keys could not be refreshed for longer than the allowed outage', {
          backend,
          last_refresh: new Date(lastRead).toISOString(),
        });
      }
      return key;
    },

    jwks(): { keys: JWK[] } {
      return published;
    },

    list: info,

    rotate: (by) => guarded(() => serial(() => mutate((r, now, policy) => promote(r, now, policy, { force: by.force })))),
    retire: (kid) => guarded(() => serial(() => mutate((r, now, policy) => retire(r, kid, now, policy)))),
    revoke: (kid) => guarded(() => serial(() => mutate((r, now, policy) => revoke(r, kid, now, policy)))),
    tick: () => (closed ? Promise.resolve([]) : guarded(() => serial(() => mutate(plan)))),

    onChange(listener: () => void): () => void {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },

    async close(): Promise<void> {
      closed = true;
      listeners.clear();
      await queue;
    },
  };
}
