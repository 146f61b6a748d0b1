import type { AuditRecord } from '../store/records.js';
import type { AuditLog } from '../store/store.js';
import { describeReset, type StoreIdentity } from '../store/store-identity.js';
import { ChainVerifier, GENESIS_HASH, type ChainVerdict, type VerifyChainOptions } from './chain.js';
import type { CheckpointClaims } from './checkpoint.js';

export interface VerifyAuditLogOptions extends VerifyChainOptions {
  /** Records read per call (default 1000). */
  readonly batch?: number;
}

/** Every record of a log, in order, read `batch` at a time. */
export async function* readAuditLog(store: AuditLog, opts: { from?: number; batch?: number } = {}): AsyncGenerator<AuditRecord> {
  const batch = opts.batch ?? 1000;
  if (!Number.isSafeInteger(batch) || batch < 1) throw new TypeError('batch must be a positive integer');
  let from = opts.from ?? 1;
  for (;;) {
    const page = await store.read(from, batch);
    for (const r of page) yield r;
    if (page.length < batch) return;
    from = page[page.length - 1]!.seq + 1;
  }
}

/**
 * Verifies the whole stored chain without loading it at once. A store error (unreachable
 * backend) propagates: "could not verify" must not read as "verified".
 */
export async function verifyAuditLog(store: AuditLog, opts: VerifyAuditLogOptions = {}): Promise<ChainVerdict> {
  const verifier = new ChainVerifier(opts);
  // With an anchor, trust starts after it; without, at seq 1 (a deleted seq 1 then shows as a gap).
  const from = (opts.anchor?.seq ?? 0) + 1;
  for await (const record of readAuditLog(store, { from, batch: opts.batch })) {
    if (!verifier.push(record)) break;
  }
  return verifier.result();
}

export interface StoreAuditVerdict extends ChainVerdict {
  /** The store's epoch (null: a store no Leash replica has opened since epochs exist). */
  readonly epoch: string | null;
  /** Seq range of the records that verified (first > last when there were none). */
  readonly first: number;
  readonly last: number;
  /** Set when the chain was checked against a checkpoint. */
  readonly checkpoint?: CheckpointClaims;
}

/**
 * Verifies a store's audit chain as `leash audit verify` reports it: from the chain's
 * genesis, in the store's epoch, against a checkpoint when one is given. A chain is never
 * reported intact when records are known to be missing: a store reset (pending, or
 * accepted and recorded in the genesis), a chain that begins after seq 1 with no reset to
 * explain it, or (with a checkpoint) a checkpoint of another epoch or a head that is not
 * there. Without a checkpoint a cut-off tail cannot show; the caller should say so.
 */
export async function verifyStoreAudit(store: AuditLog & Pick<StoreIdentity, 'identity'>, opts: { readonly checkpoint?: CheckpointClaims; readonly batch?: number } = {}): Promise<StoreAuditVerdict> {
  const id = await store.identity();
  const cp = opts.checkpoint;
  const base = { epoch: id.epoch, ...(cp ? { checkpoint: cp } : {}) };
  if (id.marker) {
    return {
      ok: false,
      count: 0,
      first: 1,
      last: 0,
      brokenAt: 1,
      reason: `${describeReset(id.marker)} (not accepted yet): every audit record up to seq ${id.marker.auditHead.seq} is gone from the store`,
      ...base,
    };
  }
  const genesis = id.genesis ?? { epoch: id.epoch ?? '', seq: 1, prevHash: GENESIS_HASH };
  const anchor = { seq: genesis.seq - 1, hash: genesis.prevHash };
  const sameEpoch = cp === undefined || cp.epoch === id.epoch;
  const verifier = new ChainVerifier({ anchor, ...(cp && sameEpoch ? { head: { seq: cp.seq, hash: cp.hash } } : {}) });
  let last = anchor.seq;
  for await (const record of readAuditLog(store, { from: genesis.seq, batch: opts.batch })) {
    if (!verifier.push(record)) break;
    last = record.seq;
  }
  const chain = verifier.result();
  const range = { first: genesis.seq, last };
  if (!chain.ok) return { ...chain, ...range, ...base };
  if (id.genesis && id.epoch !== null && id.genesis.epoch !== id.epoch) {
    return {
      ok: false,
      count: chain.count,
      brokenAt: genesis.seq,
      reason: `the chain began in store epoch ${id.genesis.epoch} but the store is epoch ${id.epoch}: the store was replaced`,
      ...range,
      ...base,
    };
  }
  if (cp && !sameEpoch) {
    return {
      ok: false,
      count: chain.count,
      brokenAt: Math.min(genesis.seq, cp.seq),
      reason: `the checkpoint (seq ${cp.seq}) is of store epoch ${cp.epoch} but the store is epoch ${id.epoch ?? 'none'}: the store was reset or replaced, and the records the checkpoint covers are not in it`,
      ...range,
      ...base,
    };
  }
  if (genesis.reset) {
    const r = genesis.reset;
    return {
      ok: false,
      count: chain.count,
      brokenAt: genesis.seq > 1 ? 1 : genesis.seq,
      reason: `the store was reset: epoch ${r.previousEpoch} and its audit records up to seq ${r.auditHead.seq} were lost (reset accepted by ${r.acceptedBy} at ${new Date(r.acceptedAt).toISOString()}); the ${chain.count} records since, seq ${genesis.seq}..${last}, verify`,
      ...range,
      ...base,
    };
  }
  if (genesis.seq > 1) {
    return { ok: false, count: chain.count, brokenAt: 1, reason: `the chain begins at seq ${genesis.seq}: records 1..${genesis.seq - 1} are not in the store`, ...range, ...base };
  }
  return { ok: true, count: chain.count, ...range, ...base };
}
