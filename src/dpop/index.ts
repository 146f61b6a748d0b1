export { verifyDpopProof, accessTokenHash, type VerifyDpopProofOptions, type DpopProofResult } from './verify-proof.js';
export { normalizeHtu } from '../client/htu.js';
