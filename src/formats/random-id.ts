import { randomFillSync } from 'node:crypto';

/*
 * Random identifiers (token jtis, task and approval ids): 128 bits from the CSPRNG,
 * base64url. Drawn from a pool filled 256 ids at a time, as node's own randomUUID does: a
 * synchronous randomBytes(16) per id cost ~5 µs here, most of it the call into OpenSSL,
 * and every exchange makes one. Ids are not secrets (a jti travels in its token), so
 * holding the next ones in memory gives nothing away; secrets keep their own randomBytes.
 */

const ID_BYTES = 16;
const POOL = Buffer.alloc(ID_BYTES * 256);
let next = POOL.length;

/** 128 random bits as 22 base64url characters. */
export function randomId(): string {
  if (next === POOL.length) {
    randomFillSync(POOL);
    next = 0;
  }
  const id = POOL.toString('base64url', next, next + ID_BYTES);
  next += ID_BYTES;
  return id;
}
