import cluster, { type Worker } from 'node:cluster';
import { AggregatorRegistry } from 'prom-client';
import type { Logger } from '../log/logger.js';
import { SERVES_ENV, isLeashMessage, type PrimaryToWorker, type WorkerToPrimary } from './messages.js';
import type { ServedPorts } from '../http/listener.js';

export interface PrimaryOptions {
  /** Workers that serve the public port (and, without usage workers, the usage port too). */
  readonly workers: number;
  /** Workers that serve only the usage port (settings.usage.listen.workers); default 0. */
  readonly usageWorkers?: number;
  readonly logger: Logger;
  /** A relayed change not acknowledged by every other worker within this is answered anyway (the safety-net sync covers the rest). */
  readonly relayTimeoutMs?: number;
  /** First restart delay after an unexpected exit; doubles with each crash in a row, up to `maxBackoffMs`. */
  readonly backoffMs?: number;
  readonly maxBackoffMs?: number;
  /** Crashes in a row of a worker that never became ready before the primary gives up (exit 1). */
  readonly maxStartFailures?: number;
  /** Environment of the workers (default: the primary's). */
  readonly env?: NodeJS.ProcessEnv;
  /** Forward SIGTERM, SIGINT and SIGHUP to the workers (default true; the bench stops its primary itself). */
  readonly handleSignals?: boolean;
}

export interface Primary {
  /** Resolves once every worker has been ready once. */
  readonly ready: Promise<void>;
  /** The exit code: 0 after a stop, 1 when workers kept failing at start. */
  readonly finished: Promise<number>;
  /** Sends `signal` to every worker (SIGTERM: drain) and restarts none. */
  stop(signal: NodeJS.Signals): void;
}

interface Slot {
  readonly index: number;
  /** The ports its worker serves (`LEASH_WORKER_SERVES`, listener.ts ServedPorts). */
  readonly serves: ServedPorts;
  worker: Worker | undefined;
  ready: boolean;
  /** Exits in a row that came before the worker was ready. */
  startFailures: number;
  /** Unexpected exits in a row (reset once a worker has served for a while). */
  crashes: number;
  readyAt: number;
  /** Why the worker's last start failed, as it said before exiting. */
  startError: string | undefined;
  restart: NodeJS.Timeout | undefined;
}

interface PendingScrape {
  readonly requester: Worker;
  readonly requestId: number;
  readonly waiting: Set<number>;
  readonly parts: object[];
  readonly timer: NodeJS.Timeout;
}

interface PendingRelay {
  readonly waiting: Set<number>;
  readonly timer: NodeJS.Timeout;
}

/** A worker that served this long before it died is restarted without the accumulated backoff. */
const HEALTHY_MS = 30_000;

/**
 * The primary of `leash serve --workers N`: serves nothing itself. It forks the workers
 * (the first alone, so one process creates the keyring and migrates the store, then the
 * rest together), and node:cluster hands each of them the shared public and management
 * listeners. It relays state changes between workers (messages.ts), gathers every
 * worker's metrics for a scrape of /metrics (whichever worker it reaches), restarts a worker
 * that dies unexpectedly with backoff, forwards SIGTERM/SIGINT (drain) and SIGHUP
 * (reload) to every worker, and exits 1 if workers keep failing at start.
 */
export function runPrimary(opts: PrimaryOptions): Promise<number> {
  return startPrimary(opts).finished;
}

export function startPrimary(opts: PrimaryOptions): Primary {
  const log = opts.logger;
  const relayTimeoutMs = opts.relayTimeoutMs ?? 1000;
  const backoffMs = opts.backoffMs ?? 500;
  const maxBackoffMs = opts.maxBackoffMs ?? 15_000;
  const maxStartFailures = opts.maxStartFailures ?? 3;
  const usageWorkers = opts.usageWorkers ?? 0;
  const slots: Slot[] = Array.from({ length: opts.workers + usageWorkers }, (_, index) => ({
    index,
    // The first slot (started alone: it creates the keyring, migrates the store) is always a public one.
    serves: usageWorkers === 0 ? 'all' : index < opts.workers ? 'public' : 'usage',
    worker: undefined,
    ready: false,
    startFailures: 0,
    crashes: 0,
    readyAt: 0,
    startError: undefined,
    restart: undefined,
  }));
  const pending = new Map<string, PendingRelay>();
  const scrapes = new Map<number, PendingScrape>();
  let nextScrape = 0;
  let stopping = false;
  let everReady = false;
  let exitCode = 0;
  let done!: (code: number) => void;
  const finished = new Promise<number>((resolve) => (done = resolve));
  let allReady!: () => void;
  const ready = new Promise<void>((resolve) => (allReady = resolve));

  const live = (): Worker[] => slots.flatMap((s) => (s.worker && !s.worker.isDead() ? [s.worker] : []));
  const send = (w: Worker, m: PrimaryToWorker) => {
    if (w.isConnected()) w.send(m, undefined, () => undefined);
  };

  const settle = (key: string, from: Worker | undefined, id: number) => {
    const p = pending.get(key);
    if (!p) return;
    clearTimeout(p.timer);
    pending.delete(key);
    if (from) send(from, { leash: 'relayed', id, missing: p.waiting.size });
    if (p.waiting.size > 0) log.warn('a relayed state change was not acknowledged by every worker in time; they catch up at their next revocation sync', { missing: p.waiting.size });
  };

  const onMessage = (slot: Slot, w: Worker, m: unknown) => {
    if (!isLeashMessage(m)) return;
    const msg = m as WorkerToPrimary;
    switch (msg.leash) {
      case 'ready':
        slot.ready = true;
        slot.readyAt = Date.now();
        slot.startFailures = 0;
        slot.startError = undefined;
        if (!everReady) {
          everReady = true;
          // The first worker created the keyring and migrated the store: the rest start together.
          for (const s of slots) if (!s.worker && !stopping) fork(s);
        }
        if (slots.every((s) => s.ready)) allReady();
        break;
      case 'change': {
        const others = live().filter((o) => o !== w);
        const key = `${w.id}:${msg.id}`;
        if (others.length === 0) {
          send(w, { leash: 'relayed', id: msg.id, missing: 0 });
          break;
        }
        pending.set(key, { waiting: new Set(others.map((o) => o.id)), timer: setTimeout(() => settle(key, w, msg.id), relayTimeoutMs) });
        for (const o of others) send(o, { ...msg, from: w.id });
        break;
      }
      case 'applied': {
        const key = `${msg.from}:${msg.id}`;
        const p = pending.get(key);
        if (!p) break;
        p.waiting.delete(w.id);
        if (p.waiting.size === 0) settle(key, cluster.workers?.[msg.from], msg.id);
        break;
      }
      case 'start-failed':
        slot.startError = msg.error;
        break;
      case 'keys-changed':
        for (const o of live()) if (o !== w) send(o, msg);
        break;
      case 'metrics-request': {
        // One scrape sees every worker: counters and histograms summed, store-wide gauges taken once (their `aggregator`).
        const workers = live();
        const id = ++nextScrape;
        scrapes.set(id, { requester: w, requestId: msg.id, waiting: new Set(workers.map((o) => o.id)), parts: [], timer: setTimeout(() => void finishScrape(id), relayTimeoutMs) });
        for (const o of workers) send(o, { leash: 'metrics-collect', id });
        break;
      }
      case 'metrics-part': {
        const scrape = scrapes.get(msg.id);
        if (!scrape || !scrape.waiting.delete(w.id)) break;
        scrape.parts.push(msg.metrics);
        if (scrape.waiting.size === 0) void finishScrape(msg.id);
        break;
      }
    }
  };

  const finishScrape = async (id: number) => {
    const scrape = scrapes.get(id);
    if (!scrape) return;
    scrapes.delete(id);
    clearTimeout(scrape.timer);
    let text: string;
    try {
      text = await AggregatorRegistry.aggregate(scrape.parts).metrics();
    } catch (err) {
      log.warn("aggregating the workers' metrics failed", { error: err instanceof Error ? err.message : String(err) });
      text = '';
    }
    send(scrape.requester, { leash: 'metrics-result', id: scrape.requestId, text, missing: scrape.waiting.size });
  };

  const fork = (slot: Slot) => {
    slot.restart = undefined;
    slot.ready = false;
    const w = cluster.fork({ ...(opts.env ?? process.env), [SERVES_ENV]: slot.serves });
    slot.worker = w;
    w.on('message', (m: unknown) => onMessage(slot, w, m));
    // A worker process that could not be spawned (EACCES, EAGAIN, ENOMEM) is a start failure
    // with that reason, never an unhandled 'error'; node:cluster emits no 'exit' for it.
    let exited = false;
    const exit = (code: number | null, signal: NodeJS.Signals | null) => {
      if (exited) return;
      exited = true;
      onExit(slot, w, code, signal);
    };
    w.on('error', (err: Error) => {
      if (!slot.ready) slot.startError = `could not start a worker process: ${err.message}`;
      log.error('a worker process reported an error', { worker: w.id, error: err.message });
      if (w.process.pid === undefined) exit(null, null);
    });
    w.once('exit', (code: number | null, signal: NodeJS.Signals | null) => exit(code, signal));
  };

  const onExit = (slot: Slot, w: Worker, code: number | null, signal: NodeJS.Signals | null) => {
    if (slot.worker === w) slot.worker = undefined;
    // A worker that is gone acknowledges nothing: its pending acknowledgements no longer hold the writer.
    for (const [key, p] of pending) {
      if (p.waiting.delete(w.id) && p.waiting.size === 0) {
        const [from, id] = key.split(':').map(Number) as [number, number];
        settle(key, cluster.workers?.[from], id);
      }
      if (key.startsWith(`${w.id}:`)) {
        clearTimeout(p.timer);
        pending.delete(key);
      }
    }
    for (const [id, scrape] of scrapes) if (scrape.waiting.delete(w.id) && scrape.waiting.size === 0) void finishScrape(id);
    if (stopping) {
      if (live().length === 0) done(exitCode);
      return;
    }
    const wasReady = slot.ready;
    slot.ready = false;
    if (!wasReady) slot.startFailures += 1;
    if (wasReady && Date.now() - slot.readyAt > HEALTHY_MS) slot.crashes = 0;
    slot.crashes += 1;
    log.error('a worker exited unexpectedly', {
      worker: w.id,
      pid: w.process.pid,
      code,
      signal,
      ready: wasReady,
      crashes: slot.crashes,
      ...(!wasReady && slot.startError ? { error: slot.startError } : {}),
    });
    // The first start failing (config, port, store, keys) fails the same in every worker; later, a worker that cannot start again and again.
    if (!everReady || slot.startFailures >= maxStartFailures) {
      log.fatal(everReady ? `a worker failed to start ${slot.startFailures} times in a row; stopping` : 'the first worker failed to start; stopping', {
        worker: w.id,
        code,
        ...(slot.startError ? { error: slot.startError } : {}),
      });
      exitCode = 1;
      stop('SIGTERM');
      return;
    }
    const delay = Math.min(maxBackoffMs, backoffMs * 2 ** (slot.crashes - 1));
    log.warn(`restarting the worker in ${delay} ms`, { delay_ms: delay });
    slot.restart = setTimeout(() => fork(slot), delay);
  };

  const stop = (signal: NodeJS.Signals) => {
    stopping = true;
    for (const s of slots) if (s.restart) clearTimeout(s.restart);
    const workers = live();
    if (workers.length === 0) return done(exitCode);
    for (const w of workers) w.process.kill(signal);
  };

  let signals = 0;
  const onStop = (signal: NodeJS.Signals) => {
    signals += 1;
    if (signals === 1) log.info(`${signal}: stopping the workers`, { signal, workers: live().length });
    // Each signal is forwarded: the first drains every worker, a second cuts their drains short.
    stop(signal);
  };
  const onReload = () => {
    log.info('SIGHUP: every worker reloads the policy', { workers: live().length });
    for (const w of live()) w.process.kill('SIGHUP');
  };
  const forwardSignals = opts.handleSignals !== false;
  if (forwardSignals) {
    process.on('SIGTERM', onStop);
    process.on('SIGINT', onStop);
    process.on('SIGHUP', onReload);
  }

  log.info(usageWorkers > 0 ? `starting ${opts.workers} workers and ${usageWorkers} for the usage port` : `starting ${opts.workers} workers`, {
    workers: opts.workers,
    ...(usageWorkers > 0 ? { usage_workers: usageWorkers } : {}),
    pid: process.pid,
  });
  fork(slots[0]!);
  const result = finished.finally(() => {
    if (forwardSignals) {
      process.off('SIGTERM', onStop);
      process.off('SIGINT', onStop);
      process.off('SIGHUP', onReload);
    }
    for (const p of pending.values()) clearTimeout(p.timer);
    for (const p of scrapes.values()) clearTimeout(p.timer);
  });
  return { ready, finished: result, stop };
}
