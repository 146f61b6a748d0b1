import type { AuditRecord } from '../store/records.js';
import type { AuditLog } from '../store/store.js';
import type { Clock } from '../time/clock.js';
import { isAuditEventType, type AuditEventType } from './events.js';
import { scrubSecrets } from './scrub.js';

export interface AuditRecorderOptions {
  readonly clock: Clock;
  /** Also write each event as one JSON line (default false). */
  readonly stdout?: boolean;
  /** Where lines go (default process.stdout.write). */
  readonly write?: (line: string) => void;
  /** Told when an event had to be scrubbed (a bug to fix: wire it to a metric or a test). */
  readonly onScrubbed?: (type: AuditEventType, paths: readonly string[]) => void;
}

/** Keys of the JSON line that belong to the record, not the event. */
export const RESERVED_EVENT_KEYS: readonly string[] = ['ts', 'seq', 'type', 'prev', 'hash'];
const RESERVED = new Set(RESERVED_EVENT_KEYS);

/**
 * Turns a security decision into a record in the hash chain and, optionally, a JSON line:
 *   {"ts":…,"seq":…,"type":…, …event, "prev":…, "hash":…}
 * `prev` is included so a log pipeline can verify the chain from the lines alone
 * (`parseAuditLine` + verifyChain).
 *
 * Secrets: events are built by our own code and should name tokens by digest only. As
 * defence in depth, any member named like a credential (token, secret, password…) or any
 * string holding a JWT is replaced before the event reaches the chain or the line, and the
 * event is flagged with `scrubbed: [paths]`. Scrubbing, not throwing: a throw here would
 * lose the security event and, because an exchange that cannot be audited is refused,
 * turn a logging slip into an outage; a redacted, flagged event keeps the trail complete
 * and the slip visible. It is scrubbed before the append because the chain is append-only:
 * a secret written into it could never be removed without breaking every later hash.
 */
export class AuditRecorder {
  readonly #log: AuditLog;
  readonly #clock: Clock;
  readonly #stdout: boolean;
  readonly #write: (line: string) => void;
  readonly #onScrubbed: ((type: AuditEventType, paths: readonly string[]) => void) | undefined;

  constructor(store: AuditLog, opts: AuditRecorderOptions) {
    this.#log = store;
    this.#clock = opts.clock;
    this.#stdout = opts.stdout ?? false;
    this.#write = opts.write ?? ((line) => void process.stdout.write(line));
    this.#onScrubbed = opts.onScrubbed;
  }

  async record(type: AuditEventType, event: Record<string, unknown>): Promise<AuditRecord> {
    if (!isAuditEventType(type)) throw new TypeError(`unknown audit event type '${String(type)}': add it to AUDIT_EVENT_TYPES`);
    if (event === null || typeof event !== 'object' || Array.isArray(event)) throw new TypeError('an audit event must be a plain object');
    for (const key of Object.keys(event)) {
      if (RESERVED.has(key)) throw new TypeError(`audit event member '${key}' is reserved for the record itself`);
    }
    const { value, paths } = scrubSecrets(event);
    const clean = paths.length > 0 ? { ...value, scrubbed: paths } : value;
    if (paths.length > 0) this.#onScrubbed?.(type, paths);
    const record = await this.#log.append(type, clean, this.#clock.now());
    if (this.#stdout) this.#write(formatAuditLine(record));
    return record;
  }
}

/** The JSON line of a record, newline-terminated. */
export function formatAuditLine(record: AuditRecord): string {
  return `${JSON.stringify({ ts: record.ts, seq: record.seq, type: record.type, ...record.event, prev: record.prevHash, hash: record.hash })}\n`;
}

/** The record back from a JSON line, for verifying a shipped log with verifyChain. */
export function parseAuditLine(line: string): AuditRecord {
  const obj = JSON.parse(line) as Record<string, unknown>;
  const { ts, seq, type, prev, hash, ...event } = obj;
  if (typeof ts !== 'number' || typeof seq !== 'number' || typeof type !== 'string' || typeof prev !== 'string' || typeof hash !== 'string') {
    throw new TypeError('not an audit line: ts, seq, type, prev and hash are required');
  }
  return { ts, seq, type, event, prevHash: prev, hash };
}
