/**
 * The audit chain's hash: the store computes it as it appends (atomically, so SQLite and Redis
 * agree), audit/chain.ts verifies it. Kept apart from both so neither imports the other.
 */

import { createHash } from 'node:crypto';
import { canonicalJson } from './canonical-json.js';

/** The `prev` of the first record: 32 zero bytes, hex. */
export const GENESIS_HASH = '0'.repeat(64);

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

export interface ChainAnchor {
  /** Seq of the last record already trusted (0 = none). */
  readonly seq: number;
  /** Its hash (GENESIS_HASH when seq is 0). */
  readonly hash: string;
}
