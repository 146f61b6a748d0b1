import { DpopProofError, verifyDpopProof as checkProof, type DpopProofFailure, type DpopProofResult, type VerifyDpopProofOptions } from '../client/dpop-proof.js';
import type { ErrorCode } from '../errors/codes.js';
import { LeashError } from '../errors/leash-error.js';

export { accessTokenHash, type DpopProofResult, type VerifyDpopProofOptions } from '../client/dpop-proof.js';

const CODES: Readonly<Record<DpopProofFailure, ErrorCode>> = {
  required: 'ERR_DPOP_REQUIRED',
  invalid: 'ERR_DPOP_INVALID',
  replay: 'ERR_DPOP_REPLAY',
};

/**
 * The SDK's RFC 9449 proof check (src/client/dpop-proof.ts, the same code resource servers
 * run), with a refusal as a LeashError: ERR_DPOP_INVALID, ERR_DPOP_REPLAY or
 * ERR_DPOP_REQUIRED, the description unchanged. Misuse (a symmetric algorithm, a relative
 * URL) stays a TypeError.
 */
export async function verifyDpopProof(opts: VerifyDpopProofOptions): Promise<DpopProofResult> {
  try {
    return await checkProof(opts);
  } catch (err) {
    if (err instanceof DpopProofError) throw new LeashError(CODES[err.failure], err.description);
    throw err;
  }
}
