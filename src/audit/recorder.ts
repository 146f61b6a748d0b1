import type { AuditRecord } from '../store/records.js';
import type { AuditLog } from '../store/store.js';
import type { Clock } from '../time/clock.js';
import { isAuditEventType, type AuditEventType, type AuditPayload } from './events.js';
import { scrubSecrets } from './scrub.js';
import { currentRequest } from '../log/request-context.js';

export interface AuditRecorderOptions {
  readonly clock: Clock;
  /** Also write each event as one JSON line (default false). */
  readonly stdout?: boolean;
  /** Where lines go (default process.stdout.write). */
  readonly write?: (line: string) => void;
  /** Told when an event had to be scrubbed (a bug to fix: wire it to a metric or a test). */
  readonly onScrubbed?: (type: AuditEventType, paths: readonly string[]) => void;
  /** Told about every record once it is in the chain (audit checkpoints count them). */
  readonly onRecorded?: (record: AuditRecord) => void;
}

/** What a part that records security events needs of the recorder (tests pass their own). */
export interface AuditSink {
  record<T extends AuditEventType>(type: T, event: AuditPayload<T>): Promise<unknown>;
}

/** Keys of the JSON line that belong to the record, not the event. */
export const RESERVED_EVENT_KEYS: readonly string[] = ['ts', 'seq', 'type', 'prev', 'hash', 'chained'];
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
  readonly #onRecorded: ((record: AuditRecord) => void) | undefined;
  readonly #listeners = new Set<(record: AuditRecord) => void>();

  constructor(store: AuditLog, opts: AuditRecorderOptions) {
    this.#log = store;
    this.#clock = opts.clock;
    this.#stdout = opts.stdout ?? false;
    this.#write = opts.write ?? ((line) => void process.stdout.write(line));
    this.#onScrubbed = opts.onScrubbed;
    this.#onRecorded = opts.onRecorded;
  }

  async record<T extends AuditEventType>(type: T, payload: AuditPayload<T>): Promise<AuditRecord> {
    // Typed per event type for the code that builds events; checked again here, at run time, as data.
    const clean = this.#clean(type, payload);
    const record = await this.#log.append(type, clean, this.#clock.now());
    if (this.#stdout) this.#write(formatAuditLine(record));
    this.#onRecorded?.(record);
    for (const listener of this.#listeners) {
      try {
        listener(record);
      } catch {
        // A listener (a sink, the timeline index) must never undo a recorded decision.
      }
    }
    return record;
  }

  /**
   * An event that cannot go into the chain because the chain it belongs to is gone (the
   * store was reset): written as a JSON line only, marked `"chained": false`, with no seq
   * or hashes. Written even when `stdout` is off, since there is nowhere else for it.
   */
  recordUnchained<T extends AuditEventType>(type: T, payload: AuditPayload<T>): void {
    const clean = this.#clean(type, payload);
    this.#write(`${JSON.stringify({ ts: this.#clock.now(), type, ...clean, chained: false })}\n`);
  }

  #clean(type: AuditEventType, event: Record<string, unknown>): Record<string, unknown> {
    if (!isAuditEventType(type)) throw new TypeError(`unknown audit event type '${String(type)}': add it to AUDIT_EVENT_TYPES`);
    if (event === null || typeof event !== 'object' || Array.isArray(event)) throw new TypeError('an audit event must be a plain object');
    for (const key of Object.keys(event)) {
      if (RESERVED.has(key)) throw new TypeError(`audit event member '${key}' is reserved for the record itself`);
    }
    const { value, paths } = scrubSecrets(event);
    if (paths.length > 0) this.#onScrubbed?.(type, paths);
    // Recorded while serving an HTTP request: the same id as its access log line and X-Request-Id.
    const request = currentRequest();
    const withRequest = request && value.http_request_id === undefined ? { ...value, http_request_id: request.id } : value;
    return paths.length > 0 ? { ...withRequest, scrubbed: paths } : withRequest;
  }

  /**
   * Told of every record once it is in the chain (audit sinks, the task timeline index).
   * Synchronous and never awaited: a listener queues its own work. Returns an unsubscribe.
   */
  subscribe(listener: (record: AuditRecord) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
}

/** The JSON line of a record, newline-terminated. */
export function formatAuditLine(record: AuditRecord): string {
  return `${JSON.stringify({ ts: record.ts, seq: record.seq, type: record.type, ...record.event, prev: record.prevHash, hash: record.hash })}\n`;
}

/** A JSON line of the audit stream that is not a chain record (`"chained": false`). */
export function isUnchainedLine(obj: Readonly<Record<string, unknown>>): boolean {
  return obj.chained === false;
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
