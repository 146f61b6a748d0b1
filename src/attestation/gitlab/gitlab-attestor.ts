import type { TrustedIssuerConfig } from '../../config/schema.js';
import { LeashError } from '../../errors/leash-error.js';
import type { Attestor } from '../attestor.js';
import { copyAttributes, requiredString } from '../claims.js';
import { createJwtAttestor, type AttestorDeps } from '../jwt-attestor.js';

/** The GitLab CI/CD ID token claims bindings and conditions may test (GitLab's ID token docs). */
export const GITLAB_ATTRIBUTES = [
  'namespace_id',
  'namespace_path',
  'project_id',
  'project_path',
  'user_id',
  'user_login',
  'pipeline_id',
  'pipeline_source',
  'job_id',
  'ref',
  'ref_type',
  'ref_path',
  'ref_protected',
  'environment',
  'environment_protected',
  'deployment_tier',
  'runner_id',
  'runner_environment',
  'sha',
  'project_visibility',
  'ci_config_ref_uri',
  'ci_config_sha',
] as const;

/**
 * GitLab CI/CD ID tokens (`id_tokens:` in .gitlab-ci.yml). The subject is `sub` as GitLab
 * builds it, `project_path:{group}/{project}:ref_type:{type}:ref:{ref}`, and it must agree
 * with the `project_path`, `ref_type` and `ref` claims, so a binding on the subject and a
 * binding on the claims mean the same thing. Every project on the instance shares this
 * issuer: config validation refuses a binding that does not pin the project and the ref.
 */
export function createGitLabAttestor(cfg: TrustedIssuerConfig, deps: AttestorDeps): Attestor {
  return createJwtAttestor('gitlab', cfg, deps, ({ payload }) => {
    const sub = requiredString(payload, 'sub');
    const project = requiredString(payload, 'project_path');
    const refType = requiredString(payload, 'ref_type');
    const ref = requiredString(payload, 'ref');
    if (sub !== `project_path:${project}:ref_type:${refType}:ref:${ref}`) {
      throw new LeashError('ERR_ATTESTATION_CLAIM_INVALID', "the attestation's 'sub' claim does not match its project_path, ref_type and ref", { claim: 'sub' });
    }
    return { subject: sub, attributes: copyAttributes(payload, GITLAB_ATTRIBUTES) };
  });
}
