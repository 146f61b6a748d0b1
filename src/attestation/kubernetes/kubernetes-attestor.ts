import type { TrustedIssuerConfig } from '../../config/schema.js';
import { LeashError } from '../../errors/leash-error.js';
import type { Attestor, WorkloadIdentity } from '../attestor.js';
import { claimObject, requiredString } from '../claims.js';
import { createJwtAttestor, type AttestorDeps } from '../jwt-attestor.js';
import { createTokenReviewer } from './token-review.js';

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

const invalid = (claim: string, why: string) => new LeashError('ERR_ATTESTATION_CLAIM_INVALID', `the attestation's '${claim}' claim ${why}`, { claim });

/**
 * Kubernetes projected service-account tokens. The workload is the service account:
 * subject `system:serviceaccount:<namespace>:<name>`, which must agree with the nested
 * `kubernetes.io` claims (names are checked as Kubernetes names, so the subject cannot be
 * made ambiguous with extra colons). A token bound to a pod (the projected-volume case)
 * also yields `pod`, `pod_uid` and, when the cluster adds it, `node`. With `token_review`
 * the cluster is also asked (TokenReview) whether the token still stands: a token of a
 * deleted pod is refused before its `exp`.
 */
export function createKubernetesAttestor(cfg: TrustedIssuerConfig, deps: AttestorDeps): Attestor {
  const attestor = createJwtAttestor('kubernetes', cfg, deps, ({ payload }) => {
    const k8s = claimObject(payload, 'kubernetes.io', 'kubernetes.io');
    const namespace = requiredString(k8s, 'namespace', 'kubernetes.io.namespace');
    if (!DNS_LABEL.test(namespace)) throw invalid('kubernetes.io.namespace', 'is not a Kubernetes namespace name');
    const sa = claimObject(k8s, 'serviceaccount', 'kubernetes.io.serviceaccount');
    const saName = requiredString(sa, 'name', 'kubernetes.io.serviceaccount.name');
    if (!DNS_SUBDOMAIN.test(saName)) throw invalid('kubernetes.io.serviceaccount.name', 'is not a Kubernetes service account name');
    const saUid = requiredString(sa, 'uid', 'kubernetes.io.serviceaccount.uid');

    const sub = requiredString(payload, 'sub');
    if (sub !== `system:serviceaccount:${namespace}:${saName}`) {
      throw invalid('sub', 'does not match its kubernetes.io namespace and service account');
    }

    const attributes: Array<[string, string]> = [
      ['namespace', namespace],
      ['service_account', saName],
      ['service_account_uid', saUid],
    ];
    const pod = claimObject(k8s, 'pod', 'kubernetes.io.pod', true);
    if (pod) {
      attributes.push(['pod', requiredString(pod, 'name', 'kubernetes.io.pod.name')], ['pod_uid', requiredString(pod, 'uid', 'kubernetes.io.pod.uid')]);
    }
    const node = claimObject(k8s, 'node', 'kubernetes.io.node', true);
    if (node) attributes.push(['node', requiredString(node, 'name', 'kubernetes.io.node.name')]);
    return { subject: sub, attributes };
  });
  if (cfg.token_review === undefined) return attestor;

  // Signature and claims first (cheap, local): only a token the cluster's keys vouch for
  // is sent to the API server, which then says whether it still stands.
  const reviewer = createTokenReviewer(cfg.token_review, {
    clock: deps.clock,
    audiences: cfg.token_review.audiences ?? (typeof cfg.audience === 'string' ? [cfg.audience] : (cfg.audience ?? [])),
  });
  return Object.freeze({
    ...attestor,
    async verify(token: string, digest: string): Promise<WorkloadIdentity> {
      const identity = await attestor.verify(token, digest);
      await reviewer.review(token, digest, {
        subject: identity.subject,
        serviceAccountUid: identity.attributes['service_account_uid'] as string,
        podUid: identity.attributes['pod_uid'],
        expiresAt: identity.expiresAt,
      });
      return identity;
    },
  });
}
