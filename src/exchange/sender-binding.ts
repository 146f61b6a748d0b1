import type { Settings } from '../config/schema.js';
import { verifyDpopProof } from '../dpop/verify-proof.js';
import { LeashError } from '../errors/leash-error.js';
import type { ReplayCache } from '../store/store.js';

export interface DpopInput {
  /** The `DPoP` request header(s), as received. */
  readonly header: string | readonly string[] | undefined;
  readonly method: string;
  /** The token endpoint URL the proof must name (`htu`). */
  readonly url: string;
}

/**
 * Step "bind sender" (RFC 9449): a proof, when sent, binds the token to its key even if
 * the grant does not require it; a grant or risk tier that requires DPoP refuses without one.
 */
export async function bindSender(dpop: DpopInput, required: boolean, settings: Settings, replay: ReplayCache, now: number): Promise<string | undefined> {
  if (dpop.header === undefined) {
    if (required) throw new LeashError('ERR_DPOP_REQUIRED', 'this grant requires a DPoP proof (RFC 9449): send a DPoP header');
    return undefined;
  }
  const { jkt } = await verifyDpopProof({
    proof: typeof dpop.header === 'string' ? dpop.header : [...dpop.header],
    method: dpop.method,
    url: dpop.url,
    now,
    maxAgeSeconds: settings.dpop.max_proof_age,
    clockSkewSeconds: settings.tokens.clock_skew,
    algorithms: [...settings.dpop.algorithms],
    replay,
  });
  return jkt;
}
