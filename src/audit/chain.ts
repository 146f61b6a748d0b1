import { createHash } from 'node:crypto';
import type { AuditRecord } from '../store/records.js';

/** The `prev` of the first record: 32 zero bytes, hex. */
export const GENESIS_HASH = '0'.repeat(64);

/**
 * JSON with object keys sorted recursively (UTF-16 code-unit order, as RFC 8785 sorts), so
 * the order in which code happened to build an event never changes its hash. Otherwise it
 * follows JSON.stringify exactly (toJSON, undefined members dropped, undefined in arrays and
 * non-finite numbers become null), so what is hashed is what a JSON store gives back.
 * A value JSON cannot carry (bigint, a cycle) is a programming error: TypeError.
 */
export function canonicalJson(value: unknown): string {
  const out = serialise(value, new Set());
  if (out === undefined) throw new TypeError('canonicalJson: the value has no JSON form');
  return out;
}

function serialise(value: unknown, seen: Set<object>): string | undefined {
  if (value !== null && typeof value === 'object' && typeof (value as { toJSON?: unknown }).toJSON === 'function') {
    value = (value as { toJSON: () => unknown }).toJSON();
  }
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return JSON.stringify(value);
    case 'number':
      return Number.isFinite(value) ? JSON.stringify(value) : 'null';
    case 'bigint':
      throw new TypeError('canonicalJson: bigint has no JSON form; convert it to a string or number');
    case 'undefined':
    case 'function':
    case 'symbol':
      return undefined;
  }
  if (value === null) return 'null';
  const obj = value as object;
  if (seen.has(obj)) throw new TypeError('canonicalJson: cyclic structure');
  seen.add(obj);
  let out: string;
  if (Array.isArray(obj)) {
    out = '[';
    for (let i = 0; i < obj.length; i++) out += (i === 0 ? '' : ',') + (serialise(obj[i], seen) ?? 'null');
    out += ']';
  } else {
    const rec = obj as Record<string, unknown>;
    out = '{';
    for (const key of Object.keys(rec).sort()) {
      const v = serialise(rec[key], seen);
      if (v !== undefined) out += (out.length === 1 ? '' : ',') + JSON.stringify(key) + ':' + v;
    }
    out += '}';
  }
  seen.delete(obj);
  return out;
}

/**
 * The hash of one record: sha256 hex of canonicalJson({ event, prev, seq, ts, type }).
 * Written out by hand in sorted key order so a store that already holds the canonical event
 * text (see `chainHashCanonical`) hashes without re-serialising it.
 */
export function chainHash(prevHash: string, seq: number, ts: number, type: string, event: Readonly<Record<string, unknown>>): string {
  return chainHashCanonical(prevHash, seq, ts, type, canonicalJson(event));
}

/** As `chainHash`, with the event already in canonical JSON form. */
export function chainHashCanonical(prevHash: string, seq: number, ts: number, type: string, canonicalEvent: string): string {
  const text = `{"event":${canonicalEvent},"prev":${JSON.stringify(prevHash)},"seq":${canonicalJson(seq)},"ts":${canonicalJson(ts)},"type":${JSON.stringify(type)}}`;
  return createHash('sha256').update(text, 'utf8').digest('hex');
}

export interface ChainVerdict {
  readonly ok: boolean;
  /** Records that verified before the first break (all of them when ok). */
  readonly count: number;
  /** The first seq that does not verify: a missing one, an out-of-place one, or one that does not check. */
  readonly brokenAt?: number;
  readonly reason?: string;
}

export interface ChainAnchor {
  /** Seq of the last record already trusted (0 = none). */
  readonly seq: number;
  /** Its hash (GENESIS_HASH when seq is 0). */
  readonly hash: string;
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
export function verifyChain(
  records: Iterable<AuditRecord> | AsyncIterable<AuditRecord>,
  opts?: VerifyChainOptions,
): ChainVerdict | Promise<ChainVerdict> {
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
