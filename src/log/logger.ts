import type { Clock } from '../time/clock.js';

export type LogLevel = 'info' | 'warn' | 'error';

/** Structured fields of a log line; never a token or secret (name tokens by jti or digest). */
export type LogFields = Record<string, unknown>;

/** One log line: what every part that logs is given (`log.warn('…', { … })`). */
export interface Logger {
  (level: LogLevel, msg: string, fields?: LogFields): void;
  readonly info: (msg: string, fields?: LogFields) => void;
  readonly warn: (msg: string, fields?: LogFields) => void;
  readonly error: (msg: string, fields?: LogFields) => void;
}

/**
 * The one place a log line is formatted: one JSON object per line,
 * `{"level","msg",...fields,"ts"}`, written where the process writes its lines (stdout by
 * default, beside the audit lines).
 */
export function createLogger(write: (line: string) => void, clock: Clock): Logger {
  const log = ((level: LogLevel, msg: string, fields: LogFields = {}) => {
    write(`${JSON.stringify({ level, msg, ...fields, ts: new Date(clock.now()).toISOString() })}\n`);
  }) as Logger;
  return Object.assign(log, {
    info: (msg: string, fields?: LogFields) => log('info', msg, fields),
    warn: (msg: string, fields?: LogFields) => log('warn', msg, fields),
    error: (msg: string, fields?: LogFields) => log('error', msg, fields),
  });
}

/** A short, single-line error text for a log field (never a stack). */
export function errorText(err: unknown): string {
  return err instanceof Error ? err.message.slice(0, 200) : String(err).slice(0, 200);
}
