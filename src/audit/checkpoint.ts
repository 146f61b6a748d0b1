import { compactVerify, createLocalJWKSet, errors as joseErrors, type JSONWebKeySet } from 'jose';
import { signJwt } from '../keys/jws.js';
import type { KeyManager } from '../keys/key-manager.js';
import type { AuditRecord } from '../store/records.js';
import { epochSeconds, type Clock } from '../time/clock.js';
import type { ChainAnchor } from './chain.js';

/**
 * Signed audit checkpoints. A hash chain shows a changed, removed or reordered record, but
 * not a cut-off tail: delete the last rows and what remains still verifies. A checkpoint is
 * Leash's signed statement "the chain of store epoch E had record `seq` with hash `hash`",
 * written every N events and every M seconds into the audit stream itself (an
 * `audit.checkpoint` event), so it also leaves with the JSON lines to the log pipeline,
 * out of reach of whoever truncates the store. `leash audit verify --checkpoint` checks the
 * store's chain against the newest one: records up to its seq must be there, with its hash.
 */

/** JWS `typ` of a checkpoint, so no other Leash JWS (an access token, a SET) can pass for one. */
export const CHECKPOINT_TYP = 'leash-audit-checkpoint+jwt';
export const CHECKPOINT_EVENT = 'audit.checkpoint';

export interface CheckpointClaims {
  readonly iss: string;
  /** Seconds. */
  readonly iat: number;
  readonly epoch: string;
  readonly seq: number;
  readonly hash: string;
}

/** A checkpoint as verified, with where it came from. */
export interface VerifiedCheckpoint extends CheckpointClaims {
  readonly kid: string;
  readonly compact: string;
}

/**
 * The audit event of a checkpoint. The JWS travels as its three parts (RFC 7515 flattened
 * form) rather than as one compact string: the event scrubber replaces anything shaped like
 * a compact JWT, and a checkpoint is a signature over a hash, not a credential.
 */
export interface CheckpointEvent {
  readonly epoch: string;
  readonly head_seq: number;
  readonly head_hash: string;
  readonly kid: string;
  readonly jws: { readonly protected: string; readonly payload: string; readonly signature: string };
}

export async function signCheckpoint(keys: Pick<KeyManager, 'current'>, claims: CheckpointClaims): Promise<CheckpointEvent> {
  const key = keys.current();
  const compact = await signJwt(key, { typ: CHECKPOINT_TYP }, { ...claims });
  const [protectedHeader, payload, signature] = compact.split('.') as [string, string, string];
  return { epoch: claims.epoch, head_seq: claims.seq, head_hash: claims.hash, kid: key.kid, jws: { protected: protectedHeader, payload, signature } };
}

/** The compact JWS of a checkpoint event (or undefined when the event is not one). */
export function checkpointJws(event: Readonly<Record<string, unknown>>): string | undefined {
  const jws = event.jws as Partial<CheckpointEvent['jws']> | undefined;
  if (!jws || typeof jws.protected !== 'string' || typeof jws.payload !== 'string' || typeof jws.signature !== 'string') return undefined;
  return `${jws.protected}.${jws.payload}.${jws.signature}`;
}

export class CheckpointError extends Error {
  constructor(
    message: string,
    readonly reason: 'unknown_key' | 'invalid',
  ) {
    super(message);
    this.name = 'CheckpointError';
  }
}

/** Verifies a compact checkpoint JWS against a JWKS (and the issuer, when given). */
export async function verifyCheckpoint(compact: string, jwks: JSONWebKeySet, opts: { issuer?: string } = {}): Promise<VerifiedCheckpoint> {
  let result;
  try {
    result = await compactVerify(compact, createLocalJWKSet(jwks), { algorithms: ['ES256', 'EdDSA'] });
  } catch (err) {
    if (err instanceof joseErrors.JWKSNoMatchingKey)
      throw new CheckpointError('no key in the JWKS matches the checkpoint (its key may have left the JWKS: pass a saved JWKS with --jwks)', 'unknown_key');
    throw new CheckpointError(`the checkpoint does not verify: ${err instanceof Error ? err.message : String(err)}`, 'invalid');
  }
  const header = result.protectedHeader;
  if (header.typ !== CHECKPOINT_TYP) throw new CheckpointError(`not a checkpoint: typ is ${String(header.typ)}`, 'invalid');
  let claims: Partial<CheckpointClaims>;
  try {
    claims = JSON.parse(new TextDecoder().decode(result.payload)) as Partial<CheckpointClaims>;
  } catch {
    throw new CheckpointError('the checkpoint payload is not JSON', 'invalid');
  }
  const { iss, iat, epoch, seq, hash } = claims;
  if (
    typeof iss !== 'string' ||
    !Number.isSafeInteger(iat) ||
    typeof epoch !== 'string' ||
    !Number.isSafeInteger(seq) ||
    (seq as number) < 0 ||
    typeof hash !== 'string' ||
    !/^[0-9a-f]{64}$/.test(hash)
  ) {
    throw new CheckpointError('the checkpoint lacks iss, iat, epoch, seq or hash', 'invalid');
  }
  if (opts.issuer !== undefined && iss !== opts.issuer) throw new CheckpointError(`the checkpoint was issued by ${iss}, not ${opts.issuer}`, 'invalid');
  return { iss, iat: iat as number, epoch, seq: seq as number, hash, kid: String(header.kid ?? ''), compact };
}

export interface CheckpointWriterOptions {
  readonly issuer: string;
  readonly keys: Pick<KeyManager, 'current'>;
  readonly clock: Clock;
  /** The store's epoch now (undefined: not known, no checkpoint). */
  readonly epoch: () => string | undefined;
  /** Appends the checkpoint event (the recorder, so it is chained and shipped like any event). */
  readonly record: (event: CheckpointEvent) => Promise<AuditRecord>;
  /** A checkpoint after this many events since the last one. */
  readonly everyEvents: number;
  /** And at most this long after an event that no checkpoint covers yet. */
  readonly intervalMs: number;
  readonly log?: (msg: string, fields?: Record<string, unknown>) => void;
  /** Told about each attempt (metrics). */
  readonly onResult?: (outcome: 'written' | 'failed') => void;
}

/**
 * Writes checkpoints of the chain head this replica last saw: after `everyEvents` events,
 * and on a timer when events are waiting for one. One write at a time; a failure (the key
 * backend or the store down) is logged and retried at the next trigger, never thrown at the
 * request that happened to trigger it.
 */
export class CheckpointWriter {
  readonly #o: CheckpointWriterOptions;
  /** The newest record seen (any event but a checkpoint). */
  #head: ChainAnchor | undefined;
  /** Events since the last checkpoint. */
  #since = 0;
  /** The head the last checkpoint covered. */
  #covered = 0;
  #writing: Promise<void> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #failing = false;

  constructor(opts: CheckpointWriterOptions) {
    if (!Number.isSafeInteger(opts.everyEvents) || opts.everyEvents < 1) throw new TypeError('everyEvents must be a positive integer');
    if (!Number.isSafeInteger(opts.intervalMs) || opts.intervalMs < 1) throw new TypeError('intervalMs must be a positive integer');
    this.#o = opts;
  }

  /** Told about every appended record (the recorder's hook). */
  noted(record: AuditRecord): void {
    if (record.type === CHECKPOINT_EVENT) return;
    if (this.#head === undefined || record.seq > this.#head.seq) this.#head = { seq: record.seq, hash: record.hash };
    this.#since += 1;
    if (this.#since >= this.#o.everyEvents) void this.checkpoint();
  }

  start(): void {
    this.#timer = setInterval(() => void this.checkpoint(), this.#o.intervalMs);
    this.#timer.unref();
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** Resolves when no checkpoint is being written. */
  idle(): Promise<void> {
    return this.#writing ?? Promise.resolve();
  }

  /** Writes a checkpoint of the newest head seen, if one is not covered yet; resolves when done (never rejects). */
  checkpoint(): Promise<void> {
    this.#writing ??= this.#write().finally(() => (this.#writing = undefined));
    return this.#writing;
  }

  async #write(): Promise<void> {
    const head = this.#head;
    const epoch = this.#o.epoch();
    if (!head || head.seq <= this.#covered || epoch === undefined) return;
    const since = this.#since;
    try {
      const event = await signCheckpoint(this.#o.keys, { iss: this.#o.issuer, iat: epochSeconds(this.#o.clock), epoch, seq: head.seq, hash: head.hash });
      await this.#o.record(event);
      this.#covered = Math.max(this.#covered, head.seq);
      this.#since = Math.max(0, this.#since - since);
      this.#o.onResult?.('written');
      if (this.#failing) this.#o.log?.('audit checkpoints recovered');
      this.#failing = false;
    } catch (err) {
      this.#o.onResult?.('failed');
      if (!this.#failing) this.#o.log?.('could not write an audit checkpoint; retrying at the next one', { error: err instanceof Error ? err.message.slice(0, 200) : String(err) });
      this.#failing = true;
    }
  }
}
