import { GENESIS_HASH, chainHash, type ChainAnchor } from '../formats/chain-hash.js';
import type { AuditRecord } from '../store/records.js';

export { canonicalJson } from '../formats/canonical-json.js';
export { GENESIS_HASH, chainHash, chainHashCanonical, type ChainAnchor } from '../formats/chain-hash.js';

export interface ChainVerdict {
  readonly ok: boolean;
  /** Records that verified before the first break (all of them when ok). */
  readonly count: number;
  /** The first seq that does not verify: a missing one, an out-of-place one, or one that does not check. */
  readonly brokenAt?: number;
  readonly reason?: string;
}

export interface VerifyChainOptions {
  /** Where the records start from: default the genesis (first record must be seq 1). */
  readonly anchor?: ChainAnchor;
  /**
   * The head the log must end at, kept elsewhere (a previous verification, an external
   * witness). A chain alone cannot show that its last records were cut off; this can.
   */
  readonly head?: ChainAnchor;
}

/**
 * Incremental verifier, fed one record at a time so a large log is checked in batches
 * without holding it in memory. Stops at the first break.
 */
export class ChainVerifier {
  #expectedSeq: number;
  #prevHash: string;
  #count = 0;
  #broken: { brokenAt: number; reason: string } | undefined;
  readonly #head: ChainAnchor | undefined;

  constructor(opts: VerifyChainOptions = {}) {
    const anchor = opts.anchor ?? { seq: 0, hash: GENESIS_HASH };
    this.#expectedSeq = anchor.seq + 1;
    this.#prevHash = anchor.hash;
    this.#head = opts.head;
  }

  get broken(): boolean {
    return this.#broken !== undefined;
  }

  /** Checks one record; returns false once the chain is broken (later records are ignored). */
  push(record: AuditRecord): boolean {
    if (this.#broken) return false;
    const expected = this.#expectedSeq;
    if (record.seq !== expected) {
      this.#broken =
        record.seq > expected
          ? { brokenAt: expected, reason: `record seq ${expected} is missing (next present is ${record.seq}): records were deleted` }
          : { brokenAt: expected, reason: `expected seq ${expected} but found seq ${record.seq} again: records were reordered or duplicated` };
      return false;
    }
    if (record.prevHash !== this.#prevHash) {
      this.#broken = { brokenAt: record.seq, reason: `record seq ${record.seq} does not link to the hash of the record before it` };
      return false;
    }
    let computed: string;
    try {
      computed = chainHash(record.prevHash, record.seq, record.ts, record.type, record.event);
    } catch {
      computed = '';
    }
    if (computed !== record.hash) {
      this.#broken = { brokenAt: record.seq, reason: `record seq ${record.seq} does not match its hash: its content was modified` };
      return false;
    }
    if (this.#head && record.seq === this.#head.seq && record.hash !== this.#head.hash) {
      this.#broken = { brokenAt: record.seq, reason: `record seq ${record.seq} differs from the known head: the log was rewritten from here or earlier` };
      return false;
    }
    this.#prevHash = record.hash;
    this.#expectedSeq = expected + 1;
    this.#count += 1;
    return true;
  }

  result(): ChainVerdict {
    if (this.#broken) return { ok: false, count: this.#count, ...this.#broken };
    const head = this.#head;
    if (head) {
      const lastSeq = this.#expectedSeq - 1;
      if (lastSeq < head.seq) {
        return { ok: false, count: this.#count, brokenAt: lastSeq + 1, reason: `the log ends at seq ${lastSeq} but the known head is seq ${head.seq}: records were cut off` };
      }
    }
    return { ok: true, count: this.#count };
  }
}

/**
 * Verifies a sequence of audit records: catches a modified record (hash), deleted records
 * (a seq gap), reordered records and a wrong `prev` link. Sync for an Iterable, a Promise
 * for an AsyncIterable.
 */
export function verifyChain(records: Iterable<AuditRecord>, opts?: VerifyChainOptions): ChainVerdict;
export function verifyChain(records: AsyncIterable<AuditRecord>, opts?: VerifyChainOptions): Promise<ChainVerdict>;
export function verifyChain(records: Iterable<AuditRecord> | AsyncIterable<AuditRecord>, opts?: VerifyChainOptions): ChainVerdict | Promise<ChainVerdict> {
  const verifier = new ChainVerifier(opts);
  if (Symbol.asyncIterator in records) {
    return (async () => {
      for await (const r of records) if (!verifier.push(r)) break;
      return verifier.result();
    })();
  }
  for (const r of records) if (!verifier.push(r)) break;
  return verifier.result();
}
