import type { AuditRecord } from '../store/records.js';
import type { AuditLog } from '../store/store.js';
import { ChainVerifier, type ChainVerdict, type VerifyChainOptions } from './chain.js';

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
