import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/**
 * Every metric name Leash exports, in one place (docs/metrics.md lists them and a test
 * checks both agree). Labels are low-cardinality only: never a task id, jti or subject.
 */
export const METRIC_NAMES = {
  exchanges: 'leash_exchanges_total',
  exchangeDuration: 'leash_exchange_duration_seconds',
  attestationFailures: 'leash_attestation_failures_total',
  tokensIssued: 'leash_tokens_issued_total',
  activeTasks: 'leash_active_tasks',
  tasksOpened: 'leash_tasks_opened_total',
  tasksEnded: 'leash_tasks_ended_total',
  policyReloads: 'leash_policy_reloads_total',
  adminRequests: 'leash_admin_requests_total',
  signingKeys: 'leash_signing_keys',
  introspections: 'leash_introspections_total',
  revocationRequests: 'leash_revocation_requests_total',
  revocations: 'leash_revocations_total',
} as const;

export interface Metrics {
  readonly registry: Registry;
  readonly exchanges: Counter<'outcome' | 'reason'>;
  readonly exchangeDuration: Histogram<'outcome'>;
  readonly attestationFailures: Counter<'issuer' | 'reason'>;
  readonly tokensIssued: Counter<'kind'>;
  readonly tasksOpened: Counter<string>;
  readonly tasksEnded: Counter<'cause'>;
  readonly policyReloads: Counter<'result'>;
  readonly adminRequests: Counter<'route' | 'outcome'>;
  readonly introspections: Counter<'outcome'>;
  readonly revocationRequests: Counter<'outcome'>;
  readonly revocations: Counter<'scope'>;
}

export interface MetricsSources {
  /** Read at scrape time, so the gauge is exact without a timer. */
  activeTasks(): Promise<number>;
  signingKeys(): Array<{ state: string }>;
}

/** A registry per broker instance (tests run several in one process). */
export function createMetrics(sources: MetricsSources, opts: { defaultMetrics?: boolean } = {}): Metrics {
  const registry = new Registry();
  if (opts.defaultMetrics ?? true) collectDefaultMetrics({ register: registry, prefix: 'leash_process_' });
  const registers = [registry];
  new Gauge({
    name: METRIC_NAMES.activeTasks,
    help: 'Tasks that are open and not expired.',
    registers,
    async collect() {
      this.set(await sources.activeTasks());
    },
  });
  new Gauge({
    name: METRIC_NAMES.signingKeys,
    help: 'Signing keys published in the JWKS, by state.',
    labelNames: ['state'],
    registers,
    collect() {
      this.reset();
      for (const k of sources.signingKeys()) this.inc({ state: k.state });
    },
  });
  return {
    registry,
    exchanges: new Counter({ name: METRIC_NAMES.exchanges, help: 'Token exchanges by outcome (issued, denied, error) and reason code.', labelNames: ['outcome', 'reason'], registers }),
    exchangeDuration: new Histogram({
      name: METRIC_NAMES.exchangeDuration,
      help: 'Time to decide a token exchange, from parsed request to response.',
      labelNames: ['outcome'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers,
    }),
    attestationFailures: new Counter({ name: METRIC_NAMES.attestationFailures, help: 'Rejected attestations by trusted issuer and reason code.', labelNames: ['issuer', 'reason'], registers }),
    tokensIssued: new Counter({ name: METRIC_NAMES.tokensIssued, help: 'Credentials issued, by kind.', labelNames: ['kind'], registers }),
    tasksOpened: new Counter({ name: METRIC_NAMES.tasksOpened, help: 'Tasks opened.', registers }),
    tasksEnded: new Counter({ name: METRIC_NAMES.tasksEnded, help: 'Tasks ended, by cause.', labelNames: ['cause'], registers }),
    policyReloads: new Counter({ name: METRIC_NAMES.policyReloads, help: 'Policy reload attempts by result (ok, rejected).', labelNames: ['result'], registers }),
    adminRequests: new Counter({ name: METRIC_NAMES.adminRequests, help: 'Admin API calls by route and outcome (ok, unauthenticated, forbidden, invalid).', labelNames: ['route', 'outcome'], registers }),
    introspections: new Counter({ name: METRIC_NAMES.introspections, help: 'RFC 7662 introspection requests by outcome.', labelNames: ['outcome'], registers }),
    revocationRequests: new Counter({ name: METRIC_NAMES.revocationRequests, help: 'RFC 7009 revocation requests by outcome.', labelNames: ['outcome'], registers }),
    revocations: new Counter({ name: METRIC_NAMES.revocations, help: 'Revocations recorded on this replica, by scope (token, task, plugin, key).', labelNames: ['scope'], registers }),
  };
}
