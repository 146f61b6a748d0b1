/**
 * Time as the SDK reads it: tests pass a clock they step. The same shape as the broker's
 * Clock (src/time/clock.ts), which the SDK does not import.
 */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };
