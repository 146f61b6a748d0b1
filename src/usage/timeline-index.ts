import type { AuditRecord } from '../store/records.js';
import type { TokenIndex } from '../store/store.js';
import type { TaskEventRef, UsageStore } from '../store/usage-store.js';

export interface TimelineIndexDeps {
  readonly store: Pick<UsageStore, 'indexTaskEvents'> & Pick<TokenIndex, 'getIssued'>;
  /** How long a task's index lives past the event (the usage retention). */
  readonly retentionMs: () => number;
  readonly log?: (msg: string, fields?: Record<string, unknown>) => void;
  /** Flush after this long, or at `maxBuffered` refs. Default 200 ms. */
  readonly flushMs?: number;
}

const MAX_BUFFERED = 500;
/** Past this many waiting refs (the store is down) new ones are dropped: the chain still has them. */
const MAX_WAITING = 20_000;

/**
 * Indexes each audit record that concerns a task (its `task` member, a task-scoped
 * revocation, a token revocation by its token's task), so a task's timeline reads its
 * own records by seq instead of scanning the chain. Fed by AuditRecorder.subscribe,
 * buffered and written in batches in the background: the exchange that recorded the
 * event never waits for it. An index entry lost in a crash leaves the event in the chain,
 * only missing from that timeline.
 */
export class TimelineIndex {
  readonly #d: TimelineIndexDeps;
  #buffer: Array<{ record: AuditRecord; task: string | undefined; jti: string | undefined }> = [];
  #timer: NodeJS.Timeout | undefined;
  #flushing: Promise<void> | undefined;
  dropped = 0;

  constructor(deps: TimelineIndexDeps) {
    this.#d = deps;
  }

  /** The AuditRecorder listener. */
  readonly onRecord = (record: AuditRecord): void => {
    const e = record.event;
    const task = typeof e.task === 'string' ? e.task : e.scope === 'task' && typeof e.id === 'string' ? e.id : undefined;
    const jti = task === undefined && e.scope === 'token' && typeof e.id === 'string' ? e.id : undefined;
    if (task === undefined && jti === undefined) return;
    if (this.#buffer.length >= MAX_WAITING) {
      this.dropped += 1;
      return;
    }
    this.#buffer.push({ record, task, jti });
    if (this.#buffer.length >= MAX_BUFFERED) void this.flush();
    else this.#timer ??= setTimeout(() => void this.flush(), this.#d.flushMs ?? 200).unref();
  };

  /** Writes what is buffered; resolves when done (tests, shutdown). */
  flush(): Promise<void> {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#flushing ??= this.#write().finally(() => (this.#flushing = undefined));
    return this.#flushing;
  }

  async #write(): Promise<void> {
    while (this.#buffer.length > 0) {
      const batch = this.#buffer.splice(0, MAX_BUFFERED);
      try {
        const refs: TaskEventRef[] = [];
        for (const b of batch) {
          const task = b.task ?? (b.jti === undefined ? undefined : (await this.#d.store.getIssued(b.jti))?.task);
          if (task !== undefined) refs.push({ task, seq: b.record.seq, ts: b.record.ts, type: b.record.type });
        }
        const newest = Math.max(...batch.map((b) => b.record.ts));
        await this.#d.store.indexTaskEvents(refs, newest + this.#d.retentionMs());
      } catch (err) {
        // Put them back and stop; the next event or flush tries again.
        this.#buffer.unshift(...batch);
        this.#d.log?.('indexing task timeline events failed; retrying with the next event', { error: err instanceof Error ? err.message.slice(0, 200) : String(err), waiting: this.#buffer.length });
        return;
      }
    }
  }
}
