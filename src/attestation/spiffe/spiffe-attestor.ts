import { ConfigError } from '../../config/config-error.js';
import type { TrustedIssuerConfig } from '../../config/schema.js';
import { LeashError } from '../../errors/leash-error.js';
import type { Attestor } from '../attestor.js';
import { requiredString } from '../claims.js';
import { createJwtAttestor, type AttestorDeps } from '../jwt-attestor.js';
import { parseSpiffeId, trustDomainError } from './spiffe-id.js';

/**
 * SPIFFE JWT-SVIDs: `sub` is the workload's SPIFFE ID, and it must belong to the configured
 * trust domain (a JWT authority of one trust domain cannot speak for another). `aud` is
 * mandatory for JWT-SVIDs, which the shared checks already enforce.
 */
export function createSpiffeAttestor(cfg: TrustedIssuerConfig, deps: AttestorDeps): Attestor {
  const configured = (cfg.trust_domain ?? '').replace(/^spiffe:\/\//, '');
  const problem = cfg.trust_domain === undefined ? 'is required for the spiffe kind' : trustDomainError(configured);
  if (problem) throw new ConfigError([{ path: `${deps.configPath ?? ''}/trust_domain`, message: `trust_domain ${problem}` }]);

  return createJwtAttestor('spiffe', cfg, deps, ({ payload }) => {
    const sub = requiredString(payload, 'sub');
    const id = parseSpiffeId(sub);
    if ('error' in id) throw new LeashError('ERR_ATTESTATION_CLAIM_INVALID', `the JWT-SVID's sub is not a valid SPIFFE ID: it ${id.error}`, { claim: 'sub' });
    if (id.path === '') throw new LeashError('ERR_ATTESTATION_CLAIM_INVALID', "the JWT-SVID's sub names a trust domain, not a workload (no path)", { claim: 'sub' });
    if (id.trustDomain !== configured) {
      throw new LeashError('ERR_ATTESTATION_CLAIM_INVALID', "the JWT-SVID's SPIFFE ID is not in this issuer's trust domain", { claim: 'sub', trust_domain: id.trustDomain });
    }
    return {
      subject: sub,
      attributes: [
        ['trust_domain', id.trustDomain],
        ['path', id.path],
      ],
    };
  });
}
