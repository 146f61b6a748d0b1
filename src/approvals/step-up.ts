import type { WorkloadIdentity } from '../attestation/attestor.js';
import { LeashError } from '../errors/leash-error.js';
import type { CompiledGrant } from '../policy/types.js';

/** What `approval: step-up` asks for when the grant has no `step_up` block. */
export const DEFAULT_STEP_UP = Object.freeze({ max_attestation_age: 300, dpop: false, justification: true });

export interface StepUpRequirements {
  readonly max_attestation_age: number | undefined;
  readonly dpop: boolean;
  readonly justification: boolean;
}

/** The grant's step-up requirements, or undefined when it has none (most grants). */
export function stepUpFor(grant: CompiledGrant): StepUpRequirements | undefined {
  const su = grant.config.step_up;
  if (su) return { max_attestation_age: su.max_attestation_age, dpop: su.dpop === true, justification: su.justification === true };
  return grant.approval === 'step-up' ? DEFAULT_STEP_UP : undefined;
}

export interface StepUpInput {
  readonly identity: WorkloadIdentity;
  readonly dpopPresent: boolean;
  readonly justification: string | undefined;
  /** ms since epoch */
  readonly now: number;
}

/**
 * Step-up proof, per grant: a fresh attestation, a DPoP proof, a justification. Runs for
 * every grant and is a no-op for a grant with no `step_up` and an approval rule other than
 * `step-up`. Throws the first requirement that is not met.
 */
export function checkStepUp(grant: CompiledGrant, input: StepUpInput): void {
  const req = stepUpFor(grant);
  if (!req) return;
  if (req.justification && input.justification === undefined) {
    throw new LeashError('ERR_STEP_UP_JUSTIFICATION', 'this grant requires a justification parameter saying why the access is needed');
  }
  if (req.max_attestation_age !== undefined) {
    const iat = input.identity.issuedAt;
    // An attestation without `iat` cannot prove it is fresh: fail closed.
    const age = iat === undefined ? Number.POSITIVE_INFINITY : Math.floor(input.now / 1000) - iat;
    if (age > req.max_attestation_age) {
      throw new LeashError('ERR_STEP_UP_ATTESTATION_AGE', `this grant requires an attestation issued at most ${req.max_attestation_age} seconds ago; present a fresh one`, {
        max_attestation_age: req.max_attestation_age,
        age: Number.isFinite(age) ? age : 'no iat',
      });
    }
  }
  if (req.dpop && !input.dpopPresent) throw new LeashError('ERR_DPOP_REQUIRED', 'this grant requires a DPoP proof (step-up)');
}
