import { describe, expect, it } from '@jest/globals';
import { backoffDelay } from '../../src/client/backoff.js';

describe('backoffDelay', () => {
  it('doubles from the base per attempt and stops at the cap; exact without jitter', () => {
    const steps = [1, 2, 3, 4, 5, 6].map((a) => backoffDelay(a, { baseMs: 100, capMs: 1000 }));
    expect(steps).toEqual([100, 200, 400, 800, 1000, 1000]);
    // a very long outage neither overflows nor passes the cap
    expect(backoffDelay(5000, { baseMs: 1000, capMs: 60_000 })).toBe(60_000);
  });

  it('equal jitter: between half the step and the whole step', () => {
    expect(backoffDelay(3, { baseMs: 100, capMs: 1000, random: () => 0 })).toBe(200);
    expect(backoffDelay(3, { baseMs: 100, capMs: 1000, random: () => 0.999999 })).toBe(400);
    expect(backoffDelay(9, { baseMs: 100, capMs: 1000, random: () => 0.5 })).toBe(750);
  });
});
