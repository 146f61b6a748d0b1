import { describe, expect, it } from '@jest/globals';
import { randomId } from '../../src/formats/random-id.js';

describe('random ids (jtis, task and approval ids)', () => {
  it('are 128 bits as 22 base64url characters, never repeated across many pool refills', () => {
    const ids = Array.from({ length: 20_000 }, () => randomId());
    for (const id of ids.slice(0, 300)) {
      expect(id).toMatch(/^[A-Za-z0-9_-]{22}$/);
      expect(Buffer.from(id, 'base64url')).toHaveLength(16);
    }
    expect(new Set(ids).size).toBe(ids.length);
  });

  it('look uniformly random byte by byte (no zeroed or repeated region of the pool)', () => {
    // 4,096 ids: 16 pool fills. Every byte position should take most of its 256 values, and
    // the mean byte should sit near 127.5 (a zeroed or constant pool fails both).
    const bytes = Array.from({ length: 4096 }, () => Buffer.from(randomId(), 'base64url'));
    for (let pos = 0; pos < 16; pos++) {
      const seen = new Set(bytes.map((b) => b[pos]));
      expect(seen.size).toBeGreaterThan(230);
    }
    const mean = bytes.reduce((a, b) => a + b.reduce((x, y) => x + y, 0), 0) / (4096 * 16);
    expect(Math.abs(mean - 127.5)).toBeLessThan(3);
  });
});
