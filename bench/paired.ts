/**
 * Paired comparison of two servers measured round by round on a shared, noisy machine: each
 * round's ratio sees the same machine speed on both sides, so the spread of the ratios is
 * the measurement's own, and a t-interval over them says whether a difference is real.
 */

/** Two-sided 95 % Student t quantiles, by degrees of freedom (1-30; the normal beyond). */
const T95 = [
  12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.16, 2.145, 2.131, 2.12, 2.11, 2.101, 2.093, 2.086, 2.08, 2.074, 2.069, 2.064, 2.06, 2.056, 2.052, 2.048, 2.045,
  2.042,
];

export function t95(df: number): number {
  if (!Number.isInteger(df) || df < 1) throw new RangeError(`degrees of freedom must be a positive integer (got ${df})`);
  return T95[df - 1] ?? 1.96;
}

export interface PairedRatio {
  /** Mean of the per-round ratios. */
  readonly mean: number;
  /** 95 % t-interval of that mean; equal to the mean with a single round. */
  readonly low: number;
  readonly high: number;
  readonly rounds: number;
}

/** Ratio of `b` to `a` round by round (b[i] / a[i]), its mean and 95 % interval. */
export function pairedRatio(a: readonly number[], b: readonly number[]): PairedRatio {
  if (a.length !== b.length || a.length === 0) throw new RangeError(`paired rounds must match and be non-empty (got ${a.length} and ${b.length})`);
  const ratios = a.map((x, i) => (b[i] as number) / x);
  const n = ratios.length;
  const mean = ratios.reduce((s, r) => s + r, 0) / n;
  if (n === 1) return { mean, low: mean, high: mean, rounds: 1 };
  const sd = Math.sqrt(ratios.reduce((s, r) => s + (r - mean) ** 2, 0) / (n - 1));
  const half = (t95(n - 1) * sd) / Math.sqrt(n);
  return { mean, low: mean - half, high: mean + half, rounds: n };
}
