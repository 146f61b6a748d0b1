import type { TrustedIssuerConfig } from '../../config/schema.js';
import type { Attestor } from '../attestor.js';
import { copyAttributes, requiredString } from '../claims.js';
import { createJwtAttestor, type AttestorDeps } from '../jwt-attestor.js';

/** The GitHub Actions OIDC claims bindings and conditions may test. */
export const GITHUB_ACTIONS_ATTRIBUTES = [
  'repository',
  'repository_owner',
  'repository_id',
  'repository_owner_id',
  'ref',
  'ref_type',
  'sha',
  'workflow',
  'workflow_ref',
  'job_workflow_ref',
  'environment',
  'event_name',
  'actor',
  'runner_environment',
] as const;

/**
 * GitHub Actions OIDC tokens: the subject is `sub` as GitHub builds it (e.g.
 * `repo:octo/app:ref:refs/heads/main`, or with `environment:`), the documented claims are
 * copied as attributes, and `repository` must be there.
 */
export function createGitHubActionsAttestor(cfg: TrustedIssuerConfig, deps: AttestorDeps): Attestor {
  return createJwtAttestor('github-actions', cfg, deps, ({ payload }) => {
    const subject = requiredString(payload, 'sub');
    requiredString(payload, 'repository');
    return { subject, attributes: copyAttributes(payload, GITHUB_ACTIONS_ATTRIBUTES) };
  });
}
