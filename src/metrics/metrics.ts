import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { buildInfo } from '../config/build-info.js';

/**
 * Every metric name Leash exports, in one place (docs/metrics.md lists them and a test
 * checks both agree). Labels are low-cardinality only: never a task id, jti or subject.
 */
export const METRIC_NAMES = {
  buildInfo: 'leash_build_info',
  exchanges: 'leash_exchanges_total',
  exchangeDuration: 'leash_exchange_duration_seconds',
  attestationFailures: 'leash_attestation_failures_total',
  tokensIssued: 'leash_tokens_issued_total',
  activeTasks: 'leash_active_tasks',
  tasksOpened: 'leash_tasks_opened_total',
  tasksEnded: 'leash_tasks_ended_total',
  policyReloads: 'leash_policy_reloads_total',
  policyCandidateDiffs: 'leash_policy_candidate_diff_total',
  policyCandidateEvaluations: 'leash_policy_candidate_evaluations_total',
  adminRequests: 'leash_admin_requests_total',
  signingKeys: 'leash_signing_keys',
  introspections: 'leash_introspections_total',
  revocationRequests: 'leash_revocation_requests_total',
  revocations: 'leash_revocations_total',
  signingKeyAge: 'leash_signing_key_age_seconds',
  keyRotations: 'leash_key_rotations_total',
  keyOperationFailures: 'leash_key_operation_failures_total',
  approvals: 'leash_approvals_total',
  approvalsPending: 'leash_approvals_pending',
  vaultLeasesRevoked: 'leash_vault_leases_revoked_total',
  vaultLeaseRevokeFailures: 'leash_vault_lease_revoke_failures_total',
  awsDenyUpdates: 'leash_aws_deny_updates_total',
  awsDenyPendingRoles: 'leash_aws_deny_pending_roles',
  reviewFindings: 'leash_review_findings',
  storeResetPending: 'leash_store_reset_pending',
  walCheckpointThread: 'leash_store_wal_checkpoint_thread',
  walPages: 'leash_store_wal_pages',
  auditCheckpoints: 'leash_audit_checkpoints_total',
  usageRecords: 'leash_usage_records_total',
  usageBatchDuration: 'leash_usage_batch_duration_seconds',
  usageAnomalies: 'leash_usage_anomalies_total',
  budgetChecks: 'leash_budget_checks_total',
  auditSinkDeliveries: 'leash_audit_sink_deliveries_total',
  auditSinkBacklog: 'leash_audit_sink_backlog',
  admissionRejected: 'leash_admission_rejected_total',
  admissionInFlight: 'leash_admission_in_flight',
  admissionQueued: 'leash_admission_queued',
  admissionWait: 'leash_admission_wait_seconds',
} as const;

export interface Metrics {
  readonly registry: Registry;
  /** `plugin` is a plugin id of the policy (resolved from the attestation) or `-`: never a caller-chosen string. */
  readonly exchanges: Counter<'outcome' | 'reason' | 'plugin'>;
  readonly exchangeDuration: Histogram<'outcome'>;
  readonly attestationFailures: Counter<'issuer' | 'reason'>;
  readonly tokensIssued: Counter<'kind' | 'plugin'>;
  readonly tasksOpened: Counter<string>;
  readonly tasksEnded: Counter<'cause'>;
  readonly policyReloads: Counter<'result'>;
  /** `serve --candidate`: exchanges the candidate policy decided differently, by both decisions (issue, approval, deny). */
  readonly policyCandidateDiffs: Counter<'live' | 'candidate'>;
  /** `serve --candidate`: every candidate evaluation, `result` same, different, skipped (refused before any policy, or the live run failed) or error. */
  readonly policyCandidateEvaluations: Counter<'result'>;
  readonly adminRequests: Counter<'route' | 'outcome'>;
  readonly introspections: Counter<'outcome'>;
  readonly revocationRequests: Counter<'outcome'>;
  readonly revocations: Counter<'scope'>;
  /** A key became current: `cause` schedule, api or emergency. */
  readonly keyRotations: Counter<'cause'>;
  /** A key operation failed (backend down, refused by the rotation rules): `operation` rotate, retire, revoke, tick. */
  readonly keyOperationFailures: Counter<'operation'>;
  readonly approvals: Counter<'outcome'>;
  /** Vault leases revoked by this replica: `cause` revocation (task end, suspension, token revoke) or ttl (the sweeper). */
  readonly vaultLeasesRevoked: Counter<'cause'>;
  /** Failed Vault lease revocations, by VaultError reason (unreachable, sealed, denied, ...). */
  readonly vaultLeaseRevokeFailures: Counter<'reason'>;
  /** Writes of the roles' revoked-sessions policies: `outcome` put, deleted, failed, overflow, unresolved. */
  readonly awsDenyUpdates: Counter<'outcome'>;
  /** Open findings of the last scheduled review, by severity and rule (both closed sets). */
  readonly reviewFindings: Gauge<'severity' | 'rule'>;
  /** Signed audit checkpoints this replica wrote, or failed to write. */
  readonly auditCheckpoints: Counter<'outcome'>;
  /** Usage records by outcome: accepted, rejected (malformed, another server's audience), dropped (a full introspection queue). */
  readonly usageRecords: Counter<'outcome'>;
  /** Time to ingest one batch of usage records (store write and anomaly checks). */
  readonly usageBatchDuration: Histogram<string>;
  /** Anomalies found in usage, by audit event type. */
  readonly usageAnomalies: Counter<'type'>;
  /** Synchronous budget checks (`POST /usage/budget`) by result: allowed, exhausted, unbudgeted. */
  readonly budgetChecks: Counter<'result'>;
  /** Audit sink deliveries by sink name and outcome: delivered, failed (retried), dropped. */
  readonly auditSinkDeliveries: Counter<'sink' | 'outcome'>;
  /** Events waiting in each sink's backlog (memory and disk). */
  readonly auditSinkBacklog: Gauge<'sink'>;
  /** Requests not admitted (src/http/admission.ts): `reason` queue_full, queue_timeout, event_loop_delay, client_gone. */
  readonly admissionRejected: Counter<'reason'>;
  /** Admitted requests being worked on now. */
  readonly admissionInFlight: Gauge<string>;
  /** Requests waiting for admission now. */
  readonly admissionQueued: Gauge<string>;
  /** How long requests waited before admission admitted or refused them (the loop's lag at read plus the queue). */
  readonly admissionWait: Histogram<'outcome'>;
}

export interface MetricsSources {
  /** Read at scrape time, so the gauge is exact without a timer. */
  activeTasks(): Promise<number>;
  /** Published keys (KeyManager.list()); kids are few (at most `max_published`), so a fine label. */
  signingKeys(): ReadonlyArray<{ readonly kid: string; readonly state: string; readonly createdAt: number }>;
  /** The broker's clock, for key ages (default Date.now). */
  now?: () => number;
  /** Pending, unexpired approvals (read at scrape time; capped by the source). */
  pendingApprovals?(): Promise<number>;
  /** IAM roles whose revoked-sessions policy lags what Leash wants (read at scrape time). */
  awsDenyPendingRoles?(): Promise<number>;
  /** True while this replica refuses because the store was found reset. */
  storeResetPending?(): boolean;
  /** SQLite stores only: who checkpoints the WAL (its gauges exist only when this is given; Store.walCheckpoint). */
  walCheckpoint?(): { readonly thread: boolean; readonly pages: number | undefined };
  /** Backlog per audit sink name (read at scrape time). */
  sinkBacklogs?(): ReadonlyArray<readonly [string, number]>;
}

/** The label value of `plugin` when the exchange never resolved one (bad attestation, unbound workload, protocol error). */
export const NO_PLUGIN = '-';

const PROCESS_PREFIX = 'leash_process_';

/**
 * prom-client's gauges of active handles, requests and resources carry a `_total` suffix,
 * which Prometheus reserves for counters (`promtool check metrics` refuses them). Their
 * per-type siblings without the suffix stay: `sum(leash_process_nodejs_active_handles)` is
 * the same number.
 */
const MISNAMED_DEFAULTS = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'];

/** A registry per broker instance (tests run several in one process). */
export function createMetrics(sources: MetricsSources, opts: { defaultMetrics?: boolean } = {}): Metrics {
  const registry = new Registry();
  if (opts.defaultMetrics ?? true) {
    collectDefaultMetrics({ register: registry, prefix: PROCESS_PREFIX });
    for (const name of MISNAMED_DEFAULTS) registry.removeSingleMetric(`${PROCESS_PREFIX}${name}`);
  }
  const registers = [registry];
  const build = buildInfo();
  // The Prometheus convention for "which build is this": a constant 1 whose labels say it.
  new Gauge({
    name: METRIC_NAMES.buildInfo,
    help: 'Always 1; the labels name the Leash version and the Node.js runtime of this process.',
    labelNames: ['version', 'node_version'],
    registers,
    aggregator: 'first',
  }).set({ version: build.version, node_version: build.nodeVersion }, 1);
  new Gauge({
    name: METRIC_NAMES.activeTasks,
    // The store's (or the shared keyring's) value, the same in every worker of `serve --workers`: taken once, not summed.
    aggregator: 'first',
    help: 'Tasks that are open and not expired.',
    registers,
    async collect() {
      // A store that cannot answer must not take the whole scrape down (and with it the
      // alerts on the outage): the gauge keeps its last value.
      try {
        this.set(await sources.activeTasks());
      } catch {
        // store unavailable
      }
    },
  });
  new Gauge({
    name: METRIC_NAMES.signingKeys,
    // The store's (or the shared keyring's) value, the same in every worker of `serve --workers`: taken once, not summed.
    aggregator: 'first',
    help: 'Signing keys published in the JWKS, by state.',
    labelNames: ['state'],
    registers,
    collect() {
      this.reset();
      for (const k of sources.signingKeys()) this.inc({ state: k.state });
    },
  });
  new Gauge({
    name: METRIC_NAMES.signingKeyAge,
    // The store's (or the shared keyring's) value, the same in every worker of `serve --workers`: taken once, not summed.
    aggregator: 'first',
    help: 'Age of each published signing key since it was created, by kid and state.',
    labelNames: ['kid', 'state'],
    registers,
    collect() {
      // Reset first: a removed key's series must disappear, not freeze at its last age.
      this.reset();
      const now = (sources.now ?? Date.now)();
      for (const k of sources.signingKeys()) this.set({ kid: k.kid, state: k.state }, Math.max(0, (now - k.createdAt) / 1000));
    },
  });
  new Gauge({
    name: METRIC_NAMES.approvalsPending,
    // The store's (or the shared keyring's) value, the same in every worker of `serve --workers`: taken once, not summed.
    aggregator: 'first',
    help: 'Approvals waiting for a decision (not expired).',
    registers,
    async collect() {
      try {
        this.set(sources.pendingApprovals ? await sources.pendingApprovals() : 0);
      } catch {
        // store unavailable: as above
      }
    },
  });
  new Gauge({
    name: METRIC_NAMES.awsDenyPendingRoles,
    // The store's (or the shared keyring's) value, the same in every worker of `serve --workers`: taken once, not summed.
    aggregator: 'first',
    help: 'IAM roles whose revoked-sessions deny policy is not yet in IAM (an update failed and is being retried).',
    registers,
    async collect() {
      try {
        this.set(sources.awsDenyPendingRoles ? await sources.awsDenyPendingRoles() : 0);
      } catch {
        // store unavailable: the gauge keeps its last value (see leash_active_tasks)
      }
    },
  });
  new Gauge({
    name: METRIC_NAMES.storeResetPending,
    // Any worker refusing is the process refusing.
    aggregator: 'max',
    help: 'Whether this replica found the store reset and refuses until an operator accepts it (leash store accept-reset).',
    registers,
    collect() {
      this.set(sources.storeResetPending?.() ? 1 : 0);
    },
  });
  const wal = sources.walCheckpoint?.bind(sources);
  if (wal) {
    new Gauge({
      name: METRIC_NAMES.walCheckpointThread,
      // Any worker whose thread is gone checkpoints on its event loop again.
      aggregator: 'min',
      help: "1 while the SQLite WAL is checkpointed by Leash's thread; 0 while SQLite checkpoints inside commits on the event loop (the thread not started yet, or failed).",
      registers,
      collect() {
        this.set(wal().thread ? 1 : 0);
      },
    });
    new Gauge({
      name: METRIC_NAMES.walPages,
      aggregator: 'max',
      help: "Pages in the SQLite WAL at the checkpoint thread's last checkpoint that moved any (4 KiB each; restarted past 1,000); 0 before the first.",
      registers,
      collect() {
        this.set(wal().pages ?? 0);
      },
    });
  }
  const auditSinkBacklog = new Gauge({
    name: METRIC_NAMES.auditSinkBacklog,
    help: "Security events waiting in an audit sink's backlog (in memory and on disk), by sink.",
    labelNames: ['sink'],
    registers,
    collect() {
      this.reset();
      for (const [sink, n] of sources.sinkBacklogs?.() ?? []) this.set({ sink }, n);
    },
  });
  return {
    registry,
    auditCheckpoints: new Counter({ name: METRIC_NAMES.auditCheckpoints, help: 'Signed audit checkpoints by outcome (written, failed).', labelNames: ['outcome'], registers }),
    usageRecords: new Counter({
      name: METRIC_NAMES.usageRecords,
      help: "Usage records from resource servers (and introspections) by outcome: accepted, rejected (malformed or for another server's audience), dropped (a full introspection queue or volume buffer).",
      labelNames: ['outcome'],
      registers,
    }),
    usageBatchDuration: new Histogram({
      name: METRIC_NAMES.usageBatchDuration,
      help: 'Time to ingest one batch of usage records: store write and anomaly checks.',
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
      registers,
    }),
    usageAnomalies: new Counter({ name: METRIC_NAMES.usageAnomalies, help: 'Anomalies found in usage, by audit event type.', labelNames: ['type'], registers }),
    budgetChecks: new Counter({
      name: METRIC_NAMES.budgetChecks,
      help: 'Synchronous task budget checks (POST /usage/budget) by result: allowed, exhausted, unbudgeted.',
      labelNames: ['result'],
      registers,
    }),
    auditSinkDeliveries: new Counter({
      name: METRIC_NAMES.auditSinkDeliveries,
      help: 'Security events handed to audit sinks, by sink and outcome: delivered, failed (kept and retried), dropped (backlog full).',
      labelNames: ['sink', 'outcome'],
      registers,
    }),
    auditSinkBacklog,
    admissionRejected: new Counter({
      name: METRIC_NAMES.admissionRejected,
      help: 'Requests to the token, introspection and usage endpoints refused by admission control, by reason: queue_full (answered 503 at once), queue_timeout (answered 503 at the queue deadline, unprocessed), event_loop_delay (answered 503 at once: the event loop was running later than max_event_loop_delay_ms), client_gone (the client left before it was worked on).',
      labelNames: ['reason'],
      registers,
    }),
    admissionInFlight: new Gauge({ name: METRIC_NAMES.admissionInFlight, help: 'Requests admitted and being worked on (at most settings.admission.max_in_flight).', registers }),
    admissionQueued: new Gauge({ name: METRIC_NAMES.admissionQueued, help: 'Requests waiting for admission (at most settings.admission.max_queue).', registers }),
    admissionWait: new Histogram({
      name: METRIC_NAMES.admissionWait,
      help: 'How long a request to the token, introspection and usage endpoints waited before admission control admitted (outcome admitted) or refused it (outcome refused): the event loop lag when it was read (its wait in the socket) plus its time in the queue. Above settings.admission.queue_timeout_ms means a wait past the deadline.',
      labelNames: ['outcome'],
      // Fine around the 200 ms default deadline: the bucket at it tells how many waited past it.
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.5, 1, 2.5],
      registers,
    }),
    exchanges: new Counter({
      name: METRIC_NAMES.exchanges,
      help: 'Token exchanges by outcome (issued, denied, error), reason code and plugin (a plugin id of the policy, or - when none was resolved).',
      labelNames: ['outcome', 'reason', 'plugin'],
      registers,
    }),
    exchangeDuration: new Histogram({
      name: METRIC_NAMES.exchangeDuration,
      help: 'Time to decide a token exchange, from parsed request to response.',
      labelNames: ['outcome'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers,
    }),
    attestationFailures: new Counter({ name: METRIC_NAMES.attestationFailures, help: 'Rejected attestations by trusted issuer and reason code.', labelNames: ['issuer', 'reason'], registers }),
    tokensIssued: new Counter({ name: METRIC_NAMES.tokensIssued, help: 'Credentials issued, by kind and plugin.', labelNames: ['kind', 'plugin'], registers }),
    tasksOpened: new Counter({ name: METRIC_NAMES.tasksOpened, help: 'Tasks opened.', registers }),
    tasksEnded: new Counter({ name: METRIC_NAMES.tasksEnded, help: 'Tasks ended, by cause.', labelNames: ['cause'], registers }),
    policyReloads: new Counter({ name: METRIC_NAMES.policyReloads, help: 'Policy reload attempts by result (ok, rejected).', labelNames: ['result'], registers }),
    policyCandidateDiffs: new Counter({
      name: METRIC_NAMES.policyCandidateDiffs,
      help: 'Exchanges the candidate policy (serve --candidate) decided differently from the live one, by each decision (issue, approval, deny).',
      labelNames: ['live', 'candidate'],
      registers,
    }),
    policyCandidateEvaluations: new Counter({
      name: METRIC_NAMES.policyCandidateEvaluations,
      help: 'Candidate policy evaluations by result (same, different, skipped, error).',
      labelNames: ['result'],
      registers,
    }),
    adminRequests: new Counter({
      name: METRIC_NAMES.adminRequests,
      help: 'Admin API calls by route and outcome (ok, unauthenticated, forbidden, invalid, not_found, conflict, unavailable).',
      labelNames: ['route', 'outcome'],
      registers,
    }),
    introspections: new Counter({ name: METRIC_NAMES.introspections, help: 'RFC 7662 introspection requests by outcome.', labelNames: ['outcome'], registers }),
    revocationRequests: new Counter({ name: METRIC_NAMES.revocationRequests, help: 'RFC 7009 revocation requests by outcome.', labelNames: ['outcome'], registers }),
    revocations: new Counter({ name: METRIC_NAMES.revocations, help: 'Revocations recorded on this replica, by scope (token, task, plugin, key).', labelNames: ['scope'], registers }),
    keyRotations: new Counter({
      name: METRIC_NAMES.keyRotations,
      help: 'Key rotations (a key became current) made by this replica, by cause (schedule, api, emergency).',
      labelNames: ['cause'],
      registers,
    }),
    keyOperationFailures: new Counter({
      name: METRIC_NAMES.keyOperationFailures,
      help: 'Key operations that failed on this replica (backend unreachable or refused by the rotation rules), by operation (rotate, retire, revoke, tick).',
      labelNames: ['operation'],
      registers,
    }),
    approvals: new Counter({
      name: METRIC_NAMES.approvals,
      help: 'Human approvals by outcome: requested, approved, denied, expired (a poll found it expired), redeemed, limited (refused: too many pending).',
      labelNames: ['outcome'],
      registers,
    }),
    vaultLeasesRevoked: new Counter({
      name: METRIC_NAMES.vaultLeasesRevoked,
      help: 'Vault leases behind issued secrets revoked by this replica, by cause (revocation: task end, plugin suspension or token revoke; ttl: the grant TTL passed).',
      labelNames: ['cause'],
      registers,
    }),
    awsDenyUpdates: new Counter({
      name: METRIC_NAMES.awsDenyUpdates,
      help: "Updates of IAM roles' revoked-sessions deny policies by this replica, by outcome (put, deleted, failed, overflow, unresolved).",
      labelNames: ['outcome'],
      registers,
    }),
    vaultLeaseRevokeFailures: new Counter({
      name: METRIC_NAMES.vaultLeaseRevokeFailures,
      help: 'Vault lease revocations that failed on this replica (retried by the lease sweeper), by reason (unreachable, sealed, denied, server, ...).',
      labelNames: ['reason'],
      registers,
    }),
    reviewFindings: new Gauge({
      name: METRIC_NAMES.reviewFindings,
      help: 'Findings of the last scheduled governance review, by severity and rule id.',
      labelNames: ['severity', 'rule'],
      registers,
    }),
  };
}
