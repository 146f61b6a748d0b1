/**
 * A pass of work run on an interval (the task-expiry and lease sweepers): one pass at a
 * time (concurrent calls share the running one), timers unref'd so they never keep the
 * process alive, and a failed timed pass is reported, never thrown into the event loop.
 */
export class PeriodicPass {
  readonly #pass: () => Promise<number>;
  readonly #intervalMs: number;
  readonly #onError: (err: Error) => void;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<number> | undefined;

  constructor(pass: () => Promise<number>, intervalMs: number, onError: (err: Error) => void) {
    this.#pass = pass;
    this.#intervalMs = intervalMs;
    this.#onError = onError;
  }

  start(): void {
    this.#timer = setInterval(() => void this.run().catch((err: Error) => this.#onError(err)), this.#intervalMs);
    this.#timer.unref();
  }

  /** No further timed pass; resolves once a pass already running is over (its outcome is not re-reported). */
  stop(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    return this.#running
      ? this.#running.then(
          () => undefined,
          () => undefined,
        )
      : Promise.resolve();
  }

  /** One pass; returns what the pass counted. */
  run(): Promise<number> {
    this.#running ??= this.#pass().finally(() => (this.#running = undefined));
    return this.#running;
  }
}

/**
 * A background sweeper over a PeriodicPass: `start` the timer, `stop` (resolves once a pass
 * already running is over, so a shutdown can close the store after it), `sweep` one pass
 * now (concurrent calls share it). Subclasses write the pass.
 */
export abstract class Sweeper {
  readonly #periodic: PeriodicPass;

  constructor(intervalMs: number, onError: (err: Error) => void) {
    this.#periodic = new PeriodicPass(() => this.pass(), intervalMs, onError);
  }

  start(): void {
    this.#periodic.start();
  }

  stop(): Promise<void> {
    return this.#periodic.stop();
  }

  /** One pass; returns what it counted (rows deleted, tasks ended, leases revoked, writes made). */
  sweep(): Promise<number> {
    return this.#periodic.run();
  }

  protected abstract pass(): Promise<number>;
}
