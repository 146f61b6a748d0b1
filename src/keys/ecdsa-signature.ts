/*
 * ECDSA signatures between JOSE's fixed-width form (r || s, RFC 7518 §3.4) and the DER form
 * node:crypto produces and reads by default. node:crypto can do the conversion itself
 * (`{ key, dsaEncoding: 'ieee-p1363' }`), but an options object instead of a bare KeyObject
 * sends every sign and verify through two failing key-type checks first: on plain node 24
 * here a P-256 sign cost 51 µs against 26 with the bare key, a verify 76-80 against 58-60
 * (docs/performance.md, "The bench runs what ships"). Both are on the hot path (the token's signature at /token; Leash tokens and DPoP proofs at
 * /introspect and /token), so the conversion is done here, in a few byte copies.
 */

/** Fixed-width r || s (each `size` bytes) as a DER `SEQUENCE { INTEGER r, INTEGER s }`. */
export function p1363ToDer(signature: Uint8Array, size: number): Buffer {
  if (signature.length !== 2 * size) throw new RangeError(`an ECDSA signature of ${2 * size} bytes is required (got ${signature.length})`);
  const r = derInteger(signature.subarray(0, size));
  const s = derInteger(signature.subarray(size));
  const body = r.length + s.length;
  // P-521 signatures pass 127 bytes: the long form of the length.
  const header = body < 0x80 ? Buffer.from([0x30, body]) : Buffer.from([0x30, 0x81, body]);
  return Buffer.concat([header, r, s], header.length + body);
}

/** The DER signature node:crypto returns, as fixed-width r || s (each `size` bytes). */
export function derToP1363(der: Uint8Array, size: number): Buffer {
  const fail = () => new RangeError('not a DER ECDSA signature');
  if (der[0] !== 0x30) throw fail();
  let at = 2;
  let length = der[1] ?? 0;
  if (length === 0x81) {
    length = der[2] ?? 0;
    at = 3;
  } else if (length > 0x7f) throw fail();
  if (at + length !== der.length) throw fail();
  const out = Buffer.alloc(2 * size);
  for (const half of [0, 1]) {
    if (der[at] !== 0x02) throw fail();
    const n = der[at + 1] ?? 0;
    let value = der.subarray(at + 2, at + 2 + n);
    if (value.length !== n || n === 0) throw fail();
    // A leading zero only keeps a high bit from reading as a sign.
    while (value.length > 1 && value[0] === 0) value = value.subarray(1);
    if (value.length > size) throw fail();
    out.set(value, half * size + size - value.length);
    at += 2 + n;
  }
  if (at !== der.length) throw fail();
  return out;
}

/** An unsigned big-endian integer as a DER INTEGER: minimal, with a zero byte before a high bit. */
function derInteger(value: Uint8Array): Buffer {
  let start = 0;
  while (start < value.length - 1 && value[start] === 0) start++;
  const digits = value.subarray(start);
  const pad = (digits[0] ?? 0) & 0x80 ? 1 : 0;
  const out = Buffer.alloc(2 + pad + digits.length);
  out[0] = 0x02;
  out[1] = pad + digits.length;
  out.set(digits, 2 + pad);
  return out;
}
