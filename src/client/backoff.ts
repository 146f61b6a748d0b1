/**
 * Exponential backoff before retry `attempt + 1` (attempt counts from 1): `baseMs` doubled
 * per attempt, capped at `capMs`. With `random` ([0, 1)) it is AWS's "equal jitter": at
 * least half the step, so retries of many callers never bunch up at zero; without it the
 * delay is exact (for schedules tests assert step by step).
 */
export function backoffDelay(attempt: number, opts: { readonly baseMs: number; readonly capMs: number; readonly random?: (() => number) | undefined }): number {
  // The exponent is bounded so a long outage never overflows to Infinity before the cap applies.
  const ceiling = Math.min(opts.capMs, opts.baseMs * 2 ** Math.min(Math.max(attempt - 1, 0), 30));
  return opts.random ? Math.round(ceiling / 2 + opts.random() * (ceiling / 2)) : ceiling;
}
