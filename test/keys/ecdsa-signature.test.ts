import { describe, expect, it } from '@jest/globals';
import { generateKeyPairSync, randomBytes, sign, verify } from 'node:crypto';
import { derToP1363, p1363ToDer } from '../../src/keys/ecdsa-signature.js';

const CURVES = [
  { curve: 'prime256v1', hash: 'sha256', size: 32 },
  { curve: 'secp384r1', hash: 'sha384', size: 48 },
  { curve: 'secp521r1', hash: 'sha512', size: 66 },
] as const;

describe('ECDSA signatures between JOSE (r || s) and DER', () => {
  for (const { curve, hash, size } of CURVES) {
    it(`${curve}: converts exactly as node:crypto's own dsaEncoding does, both ways, over many signatures`, () => {
      const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: curve });
      // 300 signatures: short r or s (leading zero bytes) and high-bit values (a padding zero in DER) all occur.
      for (let i = 0; i < 300; i++) {
        const data = randomBytes(40);
        const der = sign(hash, data, privateKey);
        const fixed = sign(hash, data, { key: privateKey, dsaEncoding: 'ieee-p1363' });
        expect(derToP1363(der, size).length).toBe(2 * size);
        expect(verify(hash, data, { key: publicKey, dsaEncoding: 'ieee-p1363' }, derToP1363(der, size))).toBe(true);
        // node's DER is minimal, so it round-trips byte for byte.
        expect(p1363ToDer(derToP1363(der, size), size).equals(der)).toBe(true);
        expect(verify(hash, data, publicKey, p1363ToDer(fixed, size))).toBe(true);
        // The same (r, s) round-trips byte for byte.
        expect(derToP1363(p1363ToDer(fixed, size), size).equals(fixed)).toBe(true);
      }
    });
  }

  it('writes minimal integers: leading zeros dropped, a zero byte before a high bit', () => {
    const r = Buffer.alloc(32);
    r[31] = 0x05; // r = 5
    const s = Buffer.alloc(32, 0xff); // s with the high bit set
    const der = p1363ToDer(Buffer.concat([r, s]), 32);
    expect([...der.subarray(0, 5)]).toEqual([0x30, 3 + 35, 0x02, 0x01, 0x05]);
    expect([...der.subarray(5, 8)]).toEqual([0x02, 33, 0x00]);
    expect(der.length).toBe(2 + 3 + 35);
    // Zero is one zero byte.
    expect([...p1363ToDer(Buffer.alloc(64), 32)]).toEqual([0x30, 6, 0x02, 1, 0, 0x02, 1, 0]);
  });

  it('uses the long form of the length past 127 bytes (P-521)', () => {
    const der = p1363ToDer(Buffer.alloc(132, 0xff), 66);
    expect([...der.subarray(0, 3)]).toEqual([0x30, 0x81, 2 * (2 + 67)]);
    expect(derToP1363(der, 66).equals(Buffer.alloc(132, 0xff))).toBe(true);
  });

  it('refuses a fixed-width signature of the wrong length and malformed DER', () => {
    expect(() => p1363ToDer(Buffer.alloc(63), 32)).toThrow(RangeError);
    const good = p1363ToDer(Buffer.alloc(64, 0x11), 32);
    const bad = [
      Buffer.from([0x31, ...good.subarray(1)]), // not a SEQUENCE
      good.subarray(0, good.length - 1), // truncated
      Buffer.concat([good, Buffer.from([0])]), // trailing byte
      Buffer.from([0x30, 0x82, 0, 0]), // a length form node never writes
      Buffer.from([0x30, 4, 0x03, 1, 1, 0x02]), // not an INTEGER
      Buffer.from([0x30, 6, 0x02, 0, 0x02, 1, 1, 0]), // an empty INTEGER
      Buffer.from([0x30, 38, 0x02, 33, 0x01, ...Buffer.alloc(32, 0x22), 0x02, 0x01, 0x01]), // r wider than the curve
    ];
    for (const der of bad) expect(() => derToP1363(der, 32)).toThrow(RangeError);
  });
});
