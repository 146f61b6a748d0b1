import type { TrustedIssuerConfig } from '../../config/schema.js';
import { LeashError } from '../../errors/leash-error.js';
import type { Attestor } from '../attestor.js';
import { claimObject, copyAttributes, own, requiredString, scalarAttribute } from '../claims.js';
import { createJwtAttestor, type AttestorDeps } from '../jwt-attestor.js';

/** The `google.compute_engine` members of a Compute Engine identity token (`format=full`). */
const COMPUTE_ENGINE = ['project_id', 'project_number', 'zone', 'instance_id', 'instance_name', 'instance_creation_timestamp'] as const;

/** Service accounts (user-managed, default and Google-managed) live under this domain; people do not. */
const SERVICE_ACCOUNT_EMAIL = /^[^@\s]+@([a-z0-9-]+\.)*gserviceaccount\.com$/;

const invalid = (claim: string, why: string) => new LeashError('ERR_ATTESTATION_CLAIM_INVALID', `the attestation's '${claim}' claim ${why}`, { claim });

/**
 * Google ID tokens of a service account, as the metadata server of Compute Engine, GKE
 * (Workload Identity), Cloud Run or Cloud Functions issues them (`iss`
 * `https://accounts.google.com`). The workload is the service account: the subject is its
 * `email`, which Google must mark `email_verified` and which must be a service account
 * (a person's Google account is not a workload). `sub` (the account's unique numeric id)
 * becomes `unique_id`, and a Compute Engine token's `google.compute_engine` members become
 * `project_id`, `zone`, `instance_name`... Request the token with `format=full` so it
 * carries the email and the instance details.
 */
export function createGcpAttestor(cfg: TrustedIssuerConfig, deps: AttestorDeps): Attestor {
  return createJwtAttestor('gcp', cfg, deps, ({ payload }) => {
    const email = requiredString(payload, 'email');
    if (own(payload, 'email_verified') !== true) throw invalid('email_verified', 'is not true: Google has not verified the email');
    if (!SERVICE_ACCOUNT_EMAIL.test(email)) throw invalid('email', 'is not a service account (…gserviceaccount.com)');
    const attributes: Array<[string, string]> = [['email', email], ['unique_id', requiredString(payload, 'sub')], ...copyAttributes(payload, ['azp'])];
    const google = claimObject(payload, 'google', 'google', true);
    const gce = google ? claimObject(google, 'compute_engine', 'google.compute_engine', true) : undefined;
    if (gce) {
      for (const name of COMPUTE_ENGINE) {
        const value = scalarAttribute(gce, name);
        if (value !== undefined) attributes.push([name, value]);
      }
    }
    return { subject: email, attributes };
  });
}
