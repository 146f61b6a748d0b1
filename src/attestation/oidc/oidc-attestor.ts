import type { TrustedIssuerConfig } from '../../config/schema.js';
import type { Attestor } from '../attestor.js';
import { copyAttributes, requiredString } from '../claims.js';
import { createJwtAttestor, type AttestorDeps } from '../jwt-attestor.js';

/**
 * Any OIDC issuer: the subject comes from `subject_claim` (default `sub`) and the claims
 * listed in `claims` become attributes (strings; numbers and booleans stringified).
 */
export function createOidcAttestor(cfg: TrustedIssuerConfig, deps: AttestorDeps): Attestor {
  const subjectClaim = cfg.subject_claim ?? 'sub';
  const claims = [...(cfg.claims ?? [])];
  return createJwtAttestor('oidc', cfg, deps, ({ payload }) => ({
    subject: requiredString(payload, subjectClaim),
    attributes: copyAttributes(payload, claims),
  }));
}
