import { describe, expect, it } from '@jest/globals';
import { pairedRatio, t95 } from '../../bench/paired.js';

describe('paired ratio over rounds (bench)', () => {
  it('takes the ratio round by round, so a machine that slows both sides together does not widen it', () => {
    // The machine's speed doubles between rounds; the second server costs 20 % more in each.
    const r = pairedRatio([100, 200, 150, 300], [120, 240, 180, 360]);
    expect(r.mean).toBeCloseTo(1.2, 10);
    expect(r.low).toBeCloseTo(1.2, 10);
    expect(r.high).toBeCloseTo(1.2, 10);
    expect(r.rounds).toBe(4);
  });

  it('gives the 95 % t-interval of the mean ratio', () => {
    // Ratios 1.0, 1.2, 1.1: mean 1.1, sd 0.1, half-width t(2) * 0.1 / sqrt(3).
    const r = pairedRatio([100, 100, 100], [100, 120, 110]);
    const half = (4.303 * 0.1) / Math.sqrt(3);
    expect(r.mean).toBeCloseTo(1.1, 10);
    expect(r.low).toBeCloseTo(1.1 - half, 6);
    expect(r.high).toBeCloseTo(1.1 + half, 6);
  });

  it('uses the t quantile for small samples and the normal one beyond the table', () => {
    expect(t95(1)).toBe(12.706);
    expect(t95(5)).toBe(2.571);
    expect(t95(30)).toBe(2.042);
    expect(t95(200)).toBe(1.96);
    expect(() => t95(0)).toThrow(RangeError);
  });

  it('refuses rounds that do not pair', () => {
    expect(() => pairedRatio([1, 2], [1])).toThrow(RangeError);
    expect(() => pairedRatio([], [])).toThrow(RangeError);
  });
});
