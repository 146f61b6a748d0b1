import { randomBytes } from 'node:crypto';
import { GENESIS_HASH, type ChainAnchor } from '../formats/chain-hash.js';
import { LeashError } from '../errors/leash-error.js';

/**
 * A store's identity. The *epoch* is a random id written once, when the store is
 * initialised; it never changes while the store keeps its data. A store that lost its data
 * (Redis restarted empty, FLUSHALL, a deleted database file) comes back without it, or with
 * another one written by a replica that did not know better. Every replica remembers the
 * epoch it opened, so a changed or missing epoch tells it the store was reset: it fails
 * closed and leaves a reset marker in the store, so every other replica (and any replica
 * that starts later) fails closed too, until an operator accepts the reset
 * (`leash store accept-reset`). The acceptance is recorded in the audit chain's genesis,
 * which is how running replicas learn of it and why `leash audit verify` reports the chain
 * of a reset store as broken.
 */

/** Left in the store by the replicas that found it reset; every replica refuses while it exists. */
export interface ResetMarker {
  /** The epoch the detecting replica had opened. */
  readonly previousEpoch: string;
  /** The epoch it found instead; null when the store had none. */
  readonly foundEpoch: string | null;
  /** ms since the epoch (the clock's), of the first detection. */
  readonly detectedAt: number;
  /** The highest audit head any detecting replica had seen in the previous epoch. */
  readonly auditHead: ChainAnchor;
  /** The highest revocation feed seq any detecting replica had seen in the previous epoch. */
  readonly revocationSeq: number;
}

/** Where the store's audit chain begins: the record before `seq` has hash `prevHash`. */
export interface AuditGenesis {
  readonly epoch: string;
  /** The first record's seq: 1 for a chain that began with the store. */
  readonly seq: number;
  /** The first record's `prev` (GENESIS_HASH for a chain that began with the store). */
  readonly prevHash: string;
  /** Set when an operator accepted a reset: what was lost, and when it was accepted. */
  readonly reset?: ResetMarker & { readonly acceptedAt: number; readonly acceptedBy: string };
}

/** Everything the store holds about its identity, read at once. */
export interface IdentityState {
  readonly epoch: string | null;
  readonly marker: ResetMarker | null;
  readonly genesis: AuditGenesis | null;
}

/** What a handle learns from a check, told to `onIdentityChange` listeners. */
export type IdentityChange =
  { readonly kind: 'reset'; readonly marker: ResetMarker } | { readonly kind: 'accepted'; readonly previousEpoch: string; readonly epoch: string; readonly genesis: AuditGenesis };

/** What `acceptReset` did. */
export interface AcceptedReset {
  readonly marker: ResetMarker;
  readonly epoch: string;
  readonly genesis: AuditGenesis;
  /** True when the new chain continues the lost one's numbering (it was still empty). */
  readonly continued: boolean;
}

/**
 * `serve`: a replica. Initialises an uninitialised store, refuses to open one with a
 * pending reset, and fails closed when it finds the store reset.
 * `inspect`: operator tooling (`leash audit verify`, `leash store accept-reset`): never
 * initialises, never refuses; reads what is there.
 */
export type IdentityMode = 'serve' | 'inspect';

/** The store identity role of a Store. */
export interface StoreIdentity {
  /** The epoch this handle works in; undefined only for an `inspect` handle on an uninitialised store. */
  epoch(): string | undefined;
  /**
   * Re-reads the store's identity. In step: resolves. Reset (missing or changed epoch, or a
   * marker left by any replica): leaves or raises the marker, fails this handle closed and
   * throws ERR_STORE_RESET. An accepted reset: adopts the new epoch and resolves.
   */
  checkEpoch(): Promise<void>;
  /** The pending reset this handle is failing closed for, if any (synchronous: for hot-path checks). */
  resetPending(): ResetMarker | undefined;
  /** Told when this handle finds a reset and when it adopts an accepted one. Returns an unsubscribe. */
  onIdentityChange(listener: (change: IdentityChange) => void): () => void;
  /** The raw identity state (operator tooling). */
  identity(): Promise<IdentityState>;
  /**
   * The operator's acknowledgement: ends a pending reset. Keeps the store's epoch (or
   * writes a new one if it has none), records the reset in the audit genesis, continues the
   * revocation feed's numbering above what replicas had seen and, when the new chain is
   * still empty, the audit chain's numbering from the lost head. Undefined when no reset is pending.
   */
  acceptReset(by: string, at: number): Promise<AcceptedReset | undefined>;
}

export function newEpoch(): string {
  return randomBytes(16).toString('base64url');
}

/** The genesis of a chain that begins with the store. */
export function freshGenesis(epoch: string): AuditGenesis {
  return { epoch, seq: 1, prevHash: GENESIS_HASH };
}

/** The head of an empty chain with this genesis. */
export function genesisAnchor(genesis: AuditGenesis | null | undefined): ChainAnchor {
  return genesis ? { seq: genesis.seq - 1, hash: genesis.prevHash } : { seq: 0, hash: GENESIS_HASH };
}

export type Judgement = { readonly verdict: 'in-step' } | { readonly verdict: 'adopt'; readonly epoch: string; readonly genesis: AuditGenesis } | { readonly verdict: 'reset' };

/**
 * The one rule every backend applies. A marker always means reset. The remembered epoch
 * still there means in step. Another epoch is adopted only when an operator accepted it
 * (its genesis records an accepted reset); anything else is a reset.
 */
export function judgeIdentity(adopted: string, seen: IdentityState): Judgement {
  if (seen.marker) return { verdict: 'reset' };
  if (seen.epoch === adopted) return { verdict: 'in-step' };
  if (seen.epoch !== null && seen.genesis?.epoch === seen.epoch && seen.genesis.reset !== undefined) return { verdict: 'adopt', epoch: seen.epoch, genesis: seen.genesis };
  return { verdict: 'reset' };
}

/** The marker a detecting replica leaves, merged with one already there (keeping the highest heads). */
export function mergeMarker(existing: ResetMarker | null, mine: ResetMarker): ResetMarker {
  if (!existing) return mine;
  if (existing.previousEpoch !== mine.previousEpoch) return existing;
  return {
    ...existing,
    auditHead: mine.auditHead.seq > existing.auditHead.seq ? mine.auditHead : existing.auditHead,
    revocationSeq: Math.max(existing.revocationSeq, mine.revocationSeq),
  };
}

export const STORE_RESET_DESCRIPTION = 'the state store was reset and an operator has not accepted the reset yet; retry later';

export function storeResetError(marker: ResetMarker, backend: string, op: string): LeashError {
  return new LeashError('ERR_STORE_RESET', STORE_RESET_DESCRIPTION, {
    backend,
    op,
    previous_epoch: marker.previousEpoch,
    found_epoch: marker.foundEpoch,
    detected_at: marker.detectedAt,
  });
}

/** One line for operators: what was found and what to do. */
export function describeReset(marker: ResetMarker): string {
  const found = marker.foundEpoch === null ? 'no epoch at all' : `epoch ${marker.foundEpoch}`;
  return `the store was reset: it held epoch ${marker.previousEpoch} (audit head seq ${marker.auditHead.seq}, revocation seq ${marker.revocationSeq}) and now has ${found}; revocations and audit records made before are lost. Accept it with \`leash store accept-reset --config <file>\``;
}

/** Parse helpers shared by the backends (JSON as stored). */
export function parseMarker(raw: string | null | undefined): ResetMarker | null {
  if (raw === null || raw === undefined || raw === '') return null;
  const m = JSON.parse(raw) as ResetMarker;
  if (typeof m?.previousEpoch !== 'string' || typeof m.detectedAt !== 'number' || typeof m.auditHead?.seq !== 'number') throw new Error('the store reset marker is malformed');
  return m;
}

export function parseGenesis(raw: string | null | undefined): AuditGenesis | null {
  if (raw === null || raw === undefined || raw === '') return null;
  const g = JSON.parse(raw) as AuditGenesis;
  if (typeof g?.epoch !== 'string' || !Number.isSafeInteger(g.seq) || g.seq < 1 || typeof g.prevHash !== 'string') throw new Error('the audit genesis record is malformed');
  return g;
}

/**
 * Listener fan-out and the fail-closed state of one handle; the backends own the reads and
 * writes. Not an EventEmitter, so a throwing listener cannot reach the store.
 */
export class IdentityTracker {
  #epoch: string | undefined;
  #reset: ResetMarker | undefined;
  readonly #listeners = new Set<(c: IdentityChange) => void>();

  constructor(epoch: string | undefined) {
    this.#epoch = epoch;
  }

  get epoch(): string | undefined {
    return this.#epoch;
  }

  get reset(): ResetMarker | undefined {
    return this.#reset;
  }

  /** The handle now works in `epoch` (initialised, or adopted in inspect mode). */
  set(epoch: string): void {
    this.#epoch = epoch;
  }

  failClosed(marker: ResetMarker): void {
    const first = this.#reset === undefined;
    this.#reset = marker;
    if (first) this.#emit({ kind: 'reset', marker });
  }

  adopt(epoch: string, genesis: AuditGenesis): void {
    const previous = this.#epoch ?? '';
    this.#epoch = epoch;
    this.#reset = undefined;
    this.#emit({ kind: 'accepted', previousEpoch: previous, epoch, genesis });
  }

  /** In step again without a new epoch (a false alarm was accepted: the store kept this handle's epoch). */
  clear(genesis: AuditGenesis | undefined): void {
    if (this.#reset === undefined) return;
    const epoch = this.#epoch ?? '';
    this.#reset = undefined;
    this.#emit({ kind: 'accepted', previousEpoch: epoch, epoch, genesis: genesis ?? freshGenesis(epoch) });
  }

  subscribe(listener: (c: IdentityChange) => void): () => void {
    const entry = (c: IdentityChange) => listener(c);
    this.#listeners.add(entry);
    return () => {
      this.#listeners.delete(entry);
    };
  }

  #emit(change: IdentityChange): void {
    for (const l of [...this.#listeners]) {
      try {
        l(change);
      } catch (err) {
        process.emitWarning(`a store identity listener threw: ${err instanceof Error ? err.message : String(err)}`, { code: 'LEASH_IDENTITY_LISTENER' });
      }
    }
  }
}
