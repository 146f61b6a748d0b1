import type { NextFunction, RequestHandler, Response } from 'express';
import type { IncomingMessage, ServerResponse } from 'node:http';

/** `settings.admission` of the generation in force (read per request, so a reload applies at once). */
export interface AdmissionLimits {
  readonly max_in_flight: number;
  readonly max_queue: number;
  readonly queue_timeout_ms: number;
  readonly max_event_loop_delay_ms: number;
}

/**
 * Why a request was not admitted: the queue was full (answered at once), it waited past the
 * deadline (answered then, unprocessed), or its client left while it waited (no answer).
 */
export type AdmissionRejection = 'queue_full' | 'queue_timeout' | 'event_loop_delay' | 'client_gone';

export interface AdmissionOptions {
  readonly limits: () => AdmissionLimits;
  /** Which requests are subject to admission (method and raw URL only: it also runs before express); the others pass untouched. */
  readonly applies: (req: IncomingMessage) => boolean;
  /**
   * Answer a refused request (`503 temporarily_unavailable` with `Retry-After`) on the bare
   * node:http response; `shed`: refused before express ran (no access-log middleware saw it).
   */
  readonly refuse: (res: ServerResponse, reason: Exclude<AdmissionRejection, 'client_gone'>, shed: boolean) => void;
  readonly onRejected: (reason: AdmissionRejection) => void;
  /** Called whenever the number in flight or queued changes (the gauges). */
  readonly onLoad: (inFlight: number, queued: number) => void;
  /**
   * How long a request waited before it was admitted or refused, in ms: the event loop's lag
   * when it was read (its unseen wait in the socket) plus its time in the queue. Not called
   * for a request whose client left (it gets no answer).
   */
  readonly onWaited?: (ms: number, outcome: 'admitted' | 'refused') => void;
  /** Milliseconds, monotonic (default performance.now). */
  readonly now?: () => number;
}

interface Waiter {
  readonly res: Response;
  readonly next: NextFunction;
  /** When its wait began: when it was read, less the loop's lag then (it waited that long unseen). */
  readonly since: number;
  timer: NodeJS.Timeout | undefined;
  readonly onClose: () => void;
}

/**
 * True once the client has closed its connection: nothing written to `res` will reach it.
 * (`req.destroyed` is no sign: a request is destroyed as soon as its body has been read.)
 */
export function clientGone(res: ServerResponse): boolean {
  // A socket no longer writable before the answer: the client half-closed and Node ended our side too.
  return res.destroyed || res.socket?.destroyed === true || res.socket?.writable === false;
}

const LOOP_TICK_MS = 10;
/** Ticks whose lag `recentMax` remembers: the last ~100 ms of turns. */
const RECENT_TICKS = 10;

interface LoopDelay {
  /** How late the loop runs now (ms); starts the probe. */
  readonly lag: () => number;
  /** The longest lag of the last RECENT_TICKS ticks (ms): how long the next turn may well take. */
  readonly recentMax: () => number;
}

/**
 * How late the event loop is running now, in ms. A request waits for the loop before any
 * middleware sees it (in the socket, unparsed): on a CPU-bound process that is where the
 * queue really is, and the in-flight count cannot see it. A 10 ms timer that is late by N ms
 * means requests read now may have waited that long. The timer runs only while requests come.
 */
function loopDelay(now: () => number): LoopDelay {
  let timer: NodeJS.Timeout | undefined;
  let last = 0;
  let lag = 0;
  let lastUse = 0;
  const recent = new Array<number>(RECENT_TICKS).fill(0);
  let at = 0;
  const tick = () => {
    const t = now();
    lag = Math.max(0, t - last - LOOP_TICK_MS);
    last = t;
    recent[at] = lag;
    at = (at + 1) % RECENT_TICKS;
    if (t - lastUse > 1000 && timer) {
      clearInterval(timer);
      timer = undefined;
    }
  };
  return {
    lag: () => {
      const t = now();
      lastUse = t;
      if (!timer) {
        last = t;
        lag = 0;
        recent.fill(0);
        timer = setInterval(tick, LOOP_TICK_MS);
        timer.unref();
      }
      // An overdue tick counts too: the loop may be late right now.
      return Math.max(lag, t - last - LOOP_TICK_MS);
    },
    recentMax: () => (timer ? Math.max(...recent) : 0),
  };
}

/**
 * Admission control: at most `max_in_flight` requests are worked on at once; up to
 * `max_queue` more wait, each at most `queue_timeout_ms` counted with the loop's lag when it
 * was read (the time it sat unseen in its socket); the rest are refused at once.
 * Under overload a queue without bounds only makes every answer late (and issues tokens to
 * clients that have given up); a quick 503 lets a client back off or try another replica.
 * A slot is held until the response closes (finished, or the client left).
 */
export interface AdmissionControl {
  /**
   * Runs before express (the access log, the router, the response helpers): refuses at once
   * what needs no waiting (the loop is late, the queue is full, the client left), so that
   * under overload a refusal costs little and the process keeps reading its sockets. True
   * when it answered (or dropped) the request; otherwise a request subject to admission is
   * marked for the middleware.
   */
  readonly shed: (req: IncomingMessage, res: ServerResponse) => boolean;
  /** In express: admits or queues what `shed` marked (in the same turn, so the bounds it checked still hold); passes the rest. */
  readonly middleware: RequestHandler;
}

/** Set by `shed` on a request subject to admission that it did not refuse: the loop's lag (ms) when it was read. */
const SUBJECT = Symbol('leash.admission');
type Marked = IncomingMessage & { [SUBJECT]?: number };

export function admissionControl(opts: AdmissionOptions): AdmissionControl {
  const now = opts.now ?? (() => performance.now());
  let inFlight = 0;
  // A Set keeps arrival order and deletes in O(1) (a waiter leaves on timeout or disconnect).
  const queue = new Set<Waiter>();
  const report = () => opts.onLoad(inFlight, queue.size);
  const delay = loopDelay(now);

  const waited = (ms: number, outcome: 'admitted' | 'refused') => opts.onWaited?.(ms, outcome);

  const admit = (res: Response, next: NextFunction, waitedMs: number) => {
    waited(waitedMs, 'admitted');
    inFlight += 1;
    report();
    res.once('close', () => {
      inFlight -= 1;
      drain();
    });
    next();
  };

  const leave = (w: Waiter) => {
    queue.delete(w);
    if (w.timer) clearTimeout(w.timer);
    w.res.off('close', w.onClose);
  };

  // Hand freed slots to the oldest waiters still worth serving.
  function drain(): void {
    const limits = opts.limits();
    for (const w of queue) {
      if (inFlight >= limits.max_in_flight) break;
      leave(w);
      if (clientGone(w.res)) {
        opts.onRejected('client_gone');
        continue;
      }
      // A timer may fire late on a busy loop: the deadline is checked here too, so no request
      // that waited past it is worked on.
      const t = now();
      if (t - w.since > limits.queue_timeout_ms) {
        waited(t - w.since, 'refused');
        opts.onRejected('queue_timeout');
        opts.refuse(w.res, 'queue_timeout', false);
        continue;
      }
      admit(w.res, w.next, t - w.since);
    }
    report();
  }

  /** The refusals that need no waiting: undefined when the request may be admitted or queued. */
  const refuseAtOnce = (res: ServerResponse, lag: number): AdmissionRejection | undefined => {
    const limits = opts.limits();
    // Read while the loop was behind: it may have waited in the socket past any deadline.
    if (limits.max_event_loop_delay_ms > 0 && lag > limits.max_event_loop_delay_ms) return 'event_loop_delay';
    // Its client left before the loop got to it: no work, no answer.
    if (clientGone(res)) return 'client_gone';
    if ((inFlight >= limits.max_in_flight || queue.size > 0) && queue.size >= limits.max_queue) return 'queue_full';
    return undefined;
  };

  const shed = (req: Marked, res: ServerResponse): boolean => {
    if (!opts.applies(req)) return false;
    const lag = delay.lag();
    const refused = refuseAtOnce(res, lag);
    if (!refused) {
      req[SUBJECT] = lag;
      return false;
    }
    opts.onRejected(refused);
    if (refused === 'client_gone') res.destroy();
    else {
      waited(lag, 'refused');
      opts.refuse(res, refused, true);
    }
    return true;
  };

  const middleware = (req: Marked, res: Response, next: NextFunction) => {
    const lag = req[SUBJECT];
    if (lag === undefined) return next();
    const limits = opts.limits();
    // Waiters go first: a newcomer never overtakes the queue (shed refused it if the queue was full).
    if (inFlight < limits.max_in_flight && queue.size === 0) return admit(res, next, lag);
    // The deadline counts the wait the loop's lag hid: a request read late has less of it left.
    const since = now() - lag;
    const w: Waiter = {
      res,
      next,
      since,
      timer: undefined,
      onClose: () => {
        leave(w);
        opts.onRejected('client_gone');
        report();
      },
    };
    // A timer fires only when the loop gets to it: on a loaded loop up to a turn late. It is
    // set a turn early (the longest of the last ~100 ms, plus the probe's tick), so the 503 is
    // written by the deadline rather than a turn past it.
    const early = Math.min(delay.recentMax() + LOOP_TICK_MS, limits.queue_timeout_ms / 2);
    w.timer = setTimeout(
      () => {
        leave(w);
        waited(now() - since, 'refused');
        opts.onRejected('queue_timeout');
        opts.refuse(res, 'queue_timeout', false);
        report();
      },
      Math.max(0, limits.queue_timeout_ms - lag - early),
    );
    res.once('close', w.onClose);
    queue.add(w);
    report();
  };

  return { shed, middleware: middleware as RequestHandler };
}
