import type { CryptoKey } from 'jose';

/** Enough for a key set mid-rotation; bounded so a hostile JWKS cannot make us loop. */
const MAX_CANDIDATE_KEYS = 8;

/**
 * Runs `verify` with the key set; when a token has no `kid` and the set holds several keys
 * of its type, jose says so (ERR_JWKS_MULTIPLE_MATCHING_KEYS) and offers them: try each,
 * bounded, as jose's docs suggest. `noneMatched` is what to throw when none verifies.
 */
export async function verifyWithCandidates<T>(verify: (key?: CryptoKey) => Promise<T>, noneMatched: () => Error, mapError: (err: unknown) => Error): Promise<T> {
  try {
    return await verify();
  } catch (err) {
    if ((err as { code?: unknown }).code !== 'ERR_JWKS_MULTIPLE_MATCHING_KEYS' || !(Symbol.asyncIterator in (err as object))) throw mapError(err);
    let tried = 0;
    for await (const key of err as AsyncIterable<CryptoKey>) {
      if (++tried > MAX_CANDIDATE_KEYS) break;
      try {
        return await verify(key);
      } catch {
        // next candidate
      }
    }
    throw noneMatched();
  }
}
