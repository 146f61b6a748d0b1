import pino, { type DestinationStream, type Logger as PinoLogger } from 'pino';
import type { Clock } from '../time/clock.js';

/** Leash's operational log: one JSON object per line. Security events are not logs (src/audit/). */
export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
type EmitLevel = Exclude<LogLevel, 'silent'>;

/** Structured fields of a log line; never a token or secret (name tokens by jti or digest). */
export type LogFields = Record<string, unknown>;

type Emit = (msg: string, fields?: LogFields) => void;

/** What every part that logs is given: `log.warn('…', { … })`, or `log('warn', '…', { … })`. */
export interface Logger {
  (level: EmitLevel, msg: string, fields?: LogFields): void;
  readonly fatal: Emit;
  readonly error: Emit;
  readonly warn: Emit;
  readonly info: Emit;
  readonly debug: Emit;
  /** The threshold: lines below it are not written (a reload applies `settings.log.level`). */
  level: LogLevel;
  isLevelEnabled(level: EmitLevel): boolean;
}

/** What stands where a redacted value was. */
export const REDACTED = '[redacted]';

/**
 * Members that hold credentials: a value under one of these names is replaced before the
 * line is written, at the top level of a log call's fields and inside the containers a
 * request's parts travel in. Logging code names tokens by jti or digest; this is the
 * second line of defence, as `scrubSecrets` is for audit events. Explicit paths only:
 * pino's wildcard paths cost ~1 µs each on every line (measured: 60 wildcard paths made
 * an access line 20x dearer), these cost nothing measurable.
 */
const SECRET_KEYS = [
  'authorization',
  'cookie',
  'token',
  'access_token',
  'refresh_token',
  'id_token',
  'subject_token',
  'actor_token',
  'client_assertion',
  'client_secret',
  'secret',
  'secret_id',
  'password',
  'api_key',
  'private_key',
  'secret_access_key',
  'session_token',
  'vault_token',
  'x-vault-token',
  'dpop',
];

/** Where a log call may carry a request's parts. */
const CONTAINERS = ['', 'headers', 'req.headers', 'res.headers', 'body', 'params', 'query', 'form', 'detail', 'error'];

export const REDACT_PATHS: readonly string[] = CONTAINERS.flatMap((c) =>
  SECRET_KEYS.map((k) => {
    const key = /^[a-z_]+$/.test(k) ? k : `["${k}"]`;
    if (c === '') return key;
    return key.startsWith('[') ? `${c}${key}` : `${c}.${key}`;
  }),
);

export interface LoggerOptions {
  readonly level?: LogLevel;
  /** Times come from this clock (tests step it). Default: the system clock. */
  readonly clock?: Clock;
  /**
   * Where lines go, one JSON line per call (tests capture them here). Default: stderr,
   * written synchronously at the end of each event-loop turn (warnings and errors at once,
   * pending lines on exit) so the last lines before a crash are not lost. Stdout is the
   * audit trail's.
   */
  readonly write?: (line: string) => void;
  /** Fields on every line (`serve --workers N`: which worker, so one stream of N workers' lines can be told apart). */
  readonly base?: Readonly<Record<string, string | number>>;
}

/**
 * The one log stream (pino underneath): level names (`"level":"warn"`), ISO time (`"time"`),
 * the message as `msg`, fields beside it, secrets redacted by name. No pid or hostname: the
 * platform's log collector adds where a line came from (except for the workers of
 * `serve --workers N`, which share one stream: `base` names the worker and its pid).
 */
export function createLogger(opts: LoggerOptions = {}): Logger {
  const now = opts.clock ? () => opts.clock!.now() : Date.now;
  const write = opts.write;
  const stderr = write ? undefined : new TurnBuffer(pino.destination({ fd: 2, sync: true }));
  const destination: DestinationStream = write ? { write: (line: string) => write(line) } : stderr!;
  return wrap(
    pino(
      {
        level: opts.level ?? 'info',
        base: opts.base ?? undefined,
        timestamp: () => `,"time":"${new Date(now()).toISOString()}"`,
        formatters: { level: (label) => ({ level: label }) },
        redact: { paths: [...REDACT_PATHS], censor: REDACTED },
      },
      destination,
    ),
    stderr,
  );
}

/** Lines at these levels are written at once, never held for the end of the turn. */
const URGENT: ReadonlySet<EmitLevel> = new Set(['fatal', 'error', 'warn']);

/** Buffers with lines waiting, flushed by one exit handler if the process ends mid-turn. */
const pending = new Set<TurnBuffer>();
let exitHook = false;

/**
 * Lines gathered during one event-loop turn and written to stderr in one synchronous write
 * at its end (setImmediate), not one write per line: under load the access log wrote one
 * syscall per request, ~10 % of an exchange's CPU. A line still reaches stderr before
 * anything of a later turn runs, warnings and errors are written at once, and an exit
 * (a crash included) writes what is pending.
 */
export class TurnBuffer implements DestinationStream {
  #lines: string[] = [];
  constructor(readonly sink: { write(chunk: string): unknown }) {}

  write(line: string): void {
    this.#lines.push(line);
    if (this.#lines.length > 1) return;
    pending.add(this);
    if (!exitHook) {
      exitHook = true;
      process.once('exit', () => {
        for (const b of pending) b.flush();
      });
    }
    setImmediate(() => this.flush());
  }

  flush(): void {
    if (this.#lines.length === 0) return;
    const out = this.#lines.length === 1 ? this.#lines[0]! : this.#lines.join('');
    this.#lines = [];
    pending.delete(this);
    this.sink.write(out);
  }
}

/** A logger that writes nothing (library use, tests that do not look). */
export function silentLogger(): Logger {
  return wrap(pino({ level: 'silent' }));
}

function wrap(p: PinoLogger, buffer?: TurnBuffer): Logger {
  const emit = (level: EmitLevel, msg: string, fields?: LogFields) => {
    if (fields === undefined) p[level](msg);
    else p[level](fields, msg);
    if (buffer && URGENT.has(level)) buffer.flush();
  };
  const log = ((level: EmitLevel, msg: string, fields?: LogFields) => emit(level, msg, fields)) as Logger;
  for (const level of ['fatal', 'error', 'warn', 'info', 'debug'] as const) {
    Object.defineProperty(log, level, { value: (msg: string, fields?: LogFields) => emit(level, msg, fields) });
  }
  Object.defineProperty(log, 'level', { get: () => p.level as LogLevel, set: (l: LogLevel) => (p.level = l) });
  Object.defineProperty(log, 'isLevelEnabled', { value: (level: EmitLevel) => p.isLevelEnabled(level) });
  return log;
}

/** A short, single-line error text for a log field (never a stack). */
export function errorText(err: unknown): string {
  return err instanceof Error ? err.message.slice(0, 200) : String(err).slice(0, 200);
}
