import { mkdirSync, readFileSync, rmSync, writeFileSync, appendFileSync, existsSync, statSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { backoffDelay } from '../../client/backoff.js';

/** One event as a sink delivers it: its formatted payload (one JSON document) and what a transport may need. */
export interface SinkItem {
  readonly payload: string;
  /** The Leash event type (`exchange.issued`, `usage`): syslog's MSGID. */
  readonly type: string;
  /** syslog severity: 4 warning (anomalies), 5 notice (refusals), 6 informational. */
  readonly severity: 4 | 5 | 6;
}

/** Where a sink's events go; throws when they did not get there (the runner keeps and retries them). */
export interface SinkTransport {
  send(items: readonly SinkItem[]): Promise<void>;
  close(): Promise<void>;
}

export interface SinkRunnerOptions {
  readonly name: string;
  /** Folder of this sink's on-disk backlog (created, mode 0700). */
  readonly backlogDir: string;
  /** The backlog never grows past this: the oldest events are dropped (and counted) first. */
  readonly maxBacklogBytes: number;
  readonly batchSize: number;
  /** First retry delay, doubled per failure up to 30 s. Default 500 ms. */
  readonly retryBaseMs?: number;
  readonly onOutcome: (outcome: 'delivered' | 'failed' | 'dropped', n: number) => void;
  readonly log?: (msg: string, fields?: Record<string, unknown>) => void;
}

/** Events held in memory before they are spilled to the backlog file. */
const MEMORY = 5000;
const MAX_BACKOFF_MS = 30_000;

/**
 * Runs one audit sink: events wait in memory and go out in batches, one batch at a time;
 * a batch that fails is written to an on-disk backlog with everything after it, and the
 * backlog is retried with backoff until the sink takes it, oldest first (at least once: a
 * batch cut off mid-delivery may arrive twice; events carry their seq to tell). It never
 * blocks the caller: `enqueue` returns at once, whatever the sink does. The backlog is
 * bounded (`maxBacklogBytes`, oldest dropped and counted) and survives a restart.
 */
export class SinkRunner {
  readonly name: string;
  readonly #t: SinkTransport;
  readonly #o: SinkRunnerOptions;
  readonly #file: string;
  #memory: SinkItem[] = [];
  #diskCount = 0;
  #running: Promise<void> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #failures = 0;
  #closed = false;
  /** Oldest events the size bound dropped from the file while a pass was delivering a copy of it. */
  #trimmed = 0;

  constructor(transport: SinkTransport, opts: SinkRunnerOptions) {
    this.name = opts.name;
    this.#t = transport;
    this.#o = opts;
    mkdirSync(opts.backlogDir, { recursive: true, mode: 0o700 });
    this.#file = join(opts.backlogDir, 'backlog.jsonl');
    // A backlog left by a previous run goes first.
    if (existsSync(this.#file)) {
      this.#diskCount = this.#readDisk().length;
      if (this.#diskCount > 0) this.#schedule(0);
    }
  }

  /** Events waiting, in memory and on disk. */
  backlog(): number {
    return this.#memory.length + this.#diskCount;
  }

  enqueue(item: SinkItem): void {
    if (this.#closed) return;
    if (this.#diskCount > 0 || this.#memory.length >= MEMORY) {
      // Order is kept: once anything waits on disk, new events queue behind it there.
      this.#spill([item]);
      return;
    }
    this.#memory.push(item);
    if (!this.#running && !this.#timer) this.#schedule(0);
  }

  /** Resolves when everything waiting was delivered, or a delivery failed (tests, shutdown). */
  async flush(): Promise<void> {
    if (this.#timer) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    await this.#run();
  }

  async close(): Promise<void> {
    await this.flush().catch(() => undefined);
    this.#closed = true;
    if (this.#timer) clearTimeout(this.#timer);
    // What could not be delivered stays on disk for the next start.
    if (this.#memory.length > 0) this.#spill(this.#memory.splice(0));
    await this.#t.close().catch(() => undefined);
  }

  #schedule(ms: number): void {
    if (this.#closed) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.#run();
    }, ms);
    this.#timer.unref();
  }

  #run(): Promise<void> {
    this.#running ??= this.#drain().finally(() => {
      this.#running = undefined;
    });
    return this.#running;
  }

  async #drain(): Promise<void> {
    // The disk backlog first, read once per pass; what is appended meanwhile stays for the next.
    if (this.#diskCount > 0) {
      const loaded = this.#readDisk();
      this.#trimmed = 0;
      let sent = 0;
      while (sent < loaded.length) {
        const batch = loaded.slice(sent, sent + this.#o.batchSize);
        if (!(await this.#send(batch))) {
          this.#dropFromDisk(sent);
          return;
        }
        sent += batch.length;
      }
      this.#dropFromDisk(sent);
      if (this.#diskCount > 0) return this.#drain();
    }
    for (;;) {
      const batch = this.#memory.splice(0, this.#o.batchSize);
      if (batch.length === 0) return;
      if (!(await this.#send(batch))) {
        this.#spill([...batch, ...this.#memory.splice(0)]);
        return;
      }
    }
  }

  /** One delivery; on failure the retry is scheduled and false returned. */
  async #send(batch: readonly SinkItem[]): Promise<boolean> {
    try {
      await this.#t.send(batch);
    } catch (err) {
      this.#failures += 1;
      this.#o.onOutcome('failed', batch.length);
      if (this.#failures === 1) this.#o.log?.('audit sink failing; events kept on disk and retried', { sink: this.name, error: err instanceof Error ? err.message.slice(0, 200) : String(err) });
      this.#schedule(backoffDelay(this.#failures, { baseMs: this.#o.retryBaseMs ?? 500, capMs: MAX_BACKOFF_MS, random: Math.random }));
      return false;
    }
    if (this.#failures > 0) this.#o.log?.('audit sink recovered', { sink: this.name, failures: this.#failures });
    this.#failures = 0;
    this.#o.onOutcome('delivered', batch.length);
    return true;
  }

  #readDisk(): SinkItem[] {
    let text: string;
    try {
      text = readFileSync(this.#file, 'utf8');
    } catch {
      return [];
    }
    const items: SinkItem[] = [];
    for (const line of text.split('\n')) {
      if (line === '') continue;
      try {
        items.push(JSON.parse(line) as SinkItem);
      } catch {
        // a torn last line (crash mid-append): skipped
      }
    }
    return items;
  }

  #spill(items: readonly SinkItem[]): void {
    if (items.length === 0) return;
    appendFileSync(this.#file, items.map((i) => `${JSON.stringify(i)}\n`).join(''), { mode: 0o600 });
    this.#diskCount += items.length;
    this.#bound();
  }

  /** Keeps the backlog file under its size: the oldest events go first, counted. */
  #bound(): void {
    const size = statSync(this.#file).size;
    if (size <= this.#o.maxBacklogBytes) return;
    const items = this.#readDisk();
    let bytes = size;
    let drop = 0;
    while (drop < items.length && bytes > this.#o.maxBacklogBytes * 0.9) bytes -= Buffer.byteLength(JSON.stringify(items[drop++])) + 1;
    this.#rewrite(items.slice(drop));
    this.#trimmed += drop;
    this.#o.onOutcome('dropped', drop);
    this.#o.log?.('audit sink backlog full; oldest events dropped', { sink: this.name, dropped: drop });
  }

  /** Removes the `n` oldest events a pass delivered (less those the size bound already removed). */
  #dropFromDisk(n: number): void {
    const remove = Math.max(0, n - this.#trimmed);
    this.#trimmed = 0;
    if (remove === 0) return;
    this.#rewrite(this.#readDisk().slice(remove));
  }

  #rewrite(items: readonly SinkItem[]): void {
    if (items.length === 0) {
      rmSync(this.#file, { force: true });
      this.#diskCount = 0;
      return;
    }
    const tmp = `${this.#file}.tmp`;
    writeFileSync(tmp, items.map((i) => `${JSON.stringify(i)}\n`).join(''), { mode: 0o600 });
    renameSync(tmp, this.#file);
    this.#diskCount = items.length;
  }
}
