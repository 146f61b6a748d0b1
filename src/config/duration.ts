/**
 * Durations in config: every duration setting takes `15m`, `1h`, `30s`, `1d` (or a sum such
 * as `1h30m`) as well as its integer in the setting's own unit (seconds, or the unit its
 * name says: `_ms`, `_days`). The loader turns a written duration into that integer before
 * the schema sees it, so the loaded config holds what it always held.
 */

/** Schema annotation (an ajv keyword with no effect on validation): the unit of an integer duration setting. */
export const DURATION_KEYWORD = 'x-leash-duration';

export type DurationUnit = 's' | 'ms' | 'd';

/** One or more `<digits><unit>` terms, no sign, no spaces, no fractions. */
export const DURATION_PATTERN = '^([0-9]+(ms|s|m|h|d))+$';

const TERM = /([0-9]+)(ms|s|m|h|d)/g;
const MS_PER: Readonly<Record<string, number>> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const UNIT_NAME: Readonly<Record<DurationUnit, string>> = { ms: 'milliseconds', s: 'seconds', d: 'days' };
const FORMS: Readonly<Record<DurationUnit, string>> = {
  s: 'a duration such as 30s, 15m, 1h or 1d, or an integer number of seconds',
  ms: 'a duration such as 500ms, 10s or 1m, or an integer number of milliseconds',
  d: 'a duration in whole days such as 30d, or an integer number of days',
};

/** What a written form means in `unit`, or why it means nothing. */
export function parseDuration(text: string, unit: DurationUnit): { readonly value: number } | { readonly error: string } {
  if (!new RegExp(DURATION_PATTERN).test(text)) return { error: `must be ${FORMS[unit]} (not '${text}')` };
  let ms = 0;
  for (const [, digits, u] of text.matchAll(TERM)) ms += Number(digits) * MS_PER[u!]!;
  if (!Number.isSafeInteger(ms)) return { error: `is too long a duration ('${text}')` };
  const per = unit === 'ms' ? 1 : MS_PER[unit]!;
  if (ms % per !== 0) return { error: `must be a whole number of ${UNIT_NAME[unit]} ('${text}' is not)` };
  return { value: ms / per };
}

/** How the reference and the editor schema describe the string form. */
export function durationForms(unit: DurationUnit): string {
  return FORMS[unit];
}
