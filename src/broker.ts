import type { LoadedConfig } from './config/load.js';
import { assertReloadable, policyDigests, unchangedConfig } from './config/reload-check.js';
import { checkAddedVaultCapabilities } from './vault/reload-capabilities.js';
import type { CredentialKind, LeashConfig } from './config/schema.js';
import { maxTokenLifeMs } from './config/token-life.js';
import { createAttestation, tokenDigest } from './attestation/registry.js';
import { createUserTokens } from './users/user-tokens.js';
import { createKeySource } from './attestation/key-source.js';
import { AuditRecorder } from './audit/recorder.js';
import { CheckpointWriter } from './audit/checkpoint.js';
import { describeReset, type IdentityChange } from './store/store-identity.js';
import type { AuditEventType } from './audit/events.js';
import type { AuditRecord } from './store/records.js';
import { LeashError } from './errors/leash-error.js';
import { compilePolicy } from './policy/compile.js';
import { createKeyManager } from './keys/create-key-manager.js';
import type { KeyManager } from './keys/key-manager.js';
import { KeyTicker } from './key-lifecycle/key-ticker.js';
import { recordKeyTransitions } from './audit/key-events.js';
import { checkCapabilities, openVaultSession, type VaultSession } from './vault/vault-session.js';
import type { VaultClient } from './vault/vault-client.js';
import { requiredVaultCapabilities } from './vault/required-capabilities.js';
import { PeriodicPass } from './time/periodic-pass.js';
import { openStore } from './store/open-store.js';
import { RevocationView } from './revocation/revocation-view.js';
import { createAudienceResolver } from './revocation/revocation-audiences.js';
import { TaskSweeper } from './tasks/task-sweeper.js';
import { TOKEN_RETENTION_INTERVAL_MS, TokenRetention } from './store/token-retention.js';
import type { Store } from './store/store.js';
import { createIssuers } from './issuance/registry.js';
import type { CredentialIssuer } from './issuance/credential-issuer.js';
import { createMetrics, type Metrics } from './metrics/metrics.js';
import { TaskService } from './tasks/task-service.js';
import { createAdminAuthenticator, type AdminAuthenticator } from './http/admin/authenticate.js';
import type { ExchangeDeps, ExchangeRuntime } from './exchange/exchange.js';
import { createCandidateRunner, type CandidateRunner } from './exchange/candidate.js';
import { buildProvider, pinIssuerOrigin } from './http/oauth/provider.js';
import { tokenExchangeGrant } from './http/oauth/token-exchange-grant.js';
import { tokenClientGate } from './http/oauth/token-client.js';
import { auditClientRefusal, auditProtocolErrors, type ProtocolAuditDeps } from './http/oauth/protocol-audit.js';
import { createResourceServerAuthenticator, type ResourceServerAuthenticator } from './http/oauth/client-auth.js';
import { verifyLeashToken } from './issuance/jwt/verify-leash-token.js';
import type { NodeHandler } from './http/app.js';
import { BrokerHttp } from './http/server.js';
import type { BoundListeners } from './http/listener.js';
import { systemClock, type Clock } from './time/clock.js';
import { createLogger, type Logger } from './log/logger.js';
import { revocationFeedRouter, type RevocationFeedRouter } from './http/feed/feed-routes.js';
import { createSetPusher, type SetPusher } from './revocation/feed/set-push.js';
import { createIamClient } from './issuance/aws-sts/deny-sessions.js';
import { createAwsStsRevoker } from './issuance/aws-sts/aws-sts-revoker.js';
import { SessionDenier } from './issuance/aws-sts/session-denier.js';
import { revokeOnReload } from './revocation/reload-revocations.js';
import { createVaultRevoker } from './issuance/vault/vault-revoker.js';
import { LeaseSweeper } from './issuance/vault/lease-sweeper.js';
import { createLeaseReporter } from './issuance/vault/lease-reporter.js';
import type { IAMClient } from '@aws-sdk/client-iam';
import { createApprovalService } from './approvals/approval-service.js';
import { ApprovalDecisions } from './approvals/decisions.js';
import { createWebhookNotifier, type WebhookNotifier } from './approvals/notifier.js';
import { ExceptionWatcher } from './review/exception-watch.js';
import { BrokerReview } from './review/scheduler.js';
import { createX509SvidAttestation } from './attestation/x509-svid/x509-svid-attestation.js';
import { createPluginAuthenticator } from './exchange/client-authentication.js';
import { certificateSources } from './mtls/certificate-client-auth.js';
import { clientCertificateSource, readCertificateHeader } from './mtls/client-certificate.js';
import { tlsServerOptions, type TlsServerOptions } from './mtls/tls-material.js';
import { UsageService } from './usage/usage-service.js';
import { usageRouter } from './http/usage-routes.js';
import { TaskBudgetEnforcer } from './usage/budgets.js';
import { buildTimeline } from './usage/timeline.js';
import { linkingLeaseStore, linkingTokenIndex } from './usage/credential-links.js';
import { createAuditSinks, type AuditSinks } from './audit/sinks/sinks.js';
import type { ClusterLink } from './cluster/worker-link.js';

/** What a test may reach in a running broker (`broker.testing`). */
export interface BrokerTestHandle {
  readonly keys: KeyManager;
  readonly store: Store;
  /** The audit trail from its first record, optionally only events of one type. */
  auditEvents(type?: AuditEventType): Promise<AuditRecord[]>;
  /** Resolves once every candidate-policy evaluation started so far has finished (`serve --candidate`). */
  candidateIdle(): Promise<void>;
}

export interface BrokerOptions {
  readonly clock?: Clock;
  /**
   * The operational log. Default: a logger at `settings.log.level` writing to `write`
   * (tests capture lines there) or, without it, to stderr.
   */
  readonly logger?: Logger;
  /** Where log lines go when no `logger` is given (default stderr). */
  readonly write?: (line: string) => void;
  /** Where security events go as JSON lines when `settings.audit.stdout` is on (default stdout). */
  readonly auditWrite?: (line: string) => void;
  /** Override the store (tests of fail-closed behaviour). */
  readonly store?: Store;
  readonly defaultMetrics?: boolean;
  /**
   * Ports bound before the broker is built (`bindListeners`): a port in use then stops the
   * start before keys, store or audit events exist. Served once the broker is ready;
   * closed with it (or if it fails to start).
   */
  readonly listeners?: BoundListeners;
  /**
   * `serve --candidate FILE`: a candidate config (loaded by the same loader) whose policy
   * decides every exchange next to the live one, never enforced (exchange/candidate.ts).
   */
  readonly candidate?: LoadedConfig;
  /**
   * A worker of `serve --workers N` (cluster/worker-link.ts): revocations and suspensions
   * are relayed to the sibling workers before they resolve, and a changed key set makes
   * them re-read the keyring.
   */
  readonly cluster?: ClusterLink;
}

/** Everything that changes together on a policy reload, swapped as one reference. */
interface Generation extends ExchangeRuntime {
  readonly loaded: LoadedConfig;
  readonly config: LeashConfig;
  readonly digest: string;
  readonly oauth: NodeHandler;
  readonly authenticator: AdminAuthenticator;
  readonly resourceServers: ResourceServerAuthenticator;
  /** The public listener's TLS files as this generation read them (swapped into the listener with it). */
  readonly tls: TlsServerOptions | undefined;
}

/**
 * The composition root: builds every part from a loaded config, wires the exchange
 * pipeline into oidc-provider and express, and swaps policy atomically on reload.
 */
export class Broker {
  readonly clock: Clock;
  readonly #store: Store;
  readonly #keys: KeyManager;
  readonly metrics: Metrics;
  readonly audit: AuditRecorder;
  readonly tasks: TaskService;
  readonly revocation: RevocationView;
  readonly sweeper: TaskSweeper;
  /** Deletes token index rows long expired (SQLite; Redis records expire by TTL). */
  readonly tokenRetention: TokenRetention;
  /** Keeps each AWS role's revoked-sessions deny policy in IAM equal to what revocations asked for. */
  readonly awsDenier: SessionDenier;
  /** Revokes Vault leases whose grant TTL passed; only when `settings.vault` is set. */
  readonly leaseSweeper: LeaseSweeper | undefined;
  readonly revocationFeed: RevocationFeedRouter;
  #setPush: SetPusher | undefined;
  /** Approver webhook notices (fire-and-forget; `idle()` awaits those in flight). */
  readonly approvalNotifier: WebhookNotifier;
  readonly approvals: ApprovalDecisions;
  /** Usage reports, introspection as use, anomalies, budgets and task timelines (src/usage/). */
  readonly usage: UsageService;
  readonly budgets: TaskBudgetEnforcer;
  /** Audit sinks beyond stdout and the store (file, webhook, syslog), built at start. */
  readonly sinks: AuditSinks;
  #vault: VaultSession | undefined;
  #keyTicker: KeyTicker | undefined;
  /** Exception expiry: revokes what an expired exception allowed, emits exception.expired / .expiring. */
  readonly exceptions: ExceptionWatcher;
  readonly #exceptionPass: PeriodicPass;
  /** The governance review: on demand (`GET /admin/review`) and on `settings.review.interval`. */
  readonly review: BrokerReview;
  readonly #reviewPass: PeriodicPass | undefined;
  #reviewFirst: NodeJS.Timeout | undefined;
  /** Signed audit checkpoints (every N events and M seconds). */
  readonly #checkpoints: CheckpointWriter;
  readonly #unsubscribeIdentity: () => void;
  /** verifyLeashToken bound to this broker: introspection, RFC 7009 and delegation upstreams share it. */
  readonly #verifyToken = (token: string) =>
    verifyLeashToken(token, { issuer: this.#generation.settings.issuer, keys: this.#keys, clock: this.clock, clockSkewSeconds: this.#generation.settings.tokens.clock_skew });
  #iam: IAMClient | undefined;
  /** The public and management apps and their listeners. */
  readonly http: BrokerHttp;
  #generation!: Generation;
  /** Set when a shutdown begins: readiness turns false, so no orchestrator routes new work here. */
  #draining = false;
  #closing: Promise<void> | undefined;
  readonly #issuers: ReadonlyMap<CredentialKind, CredentialIssuer>;
  readonly #exchangeDeps: ExchangeDeps;
  /** `serve --candidate`: the second policy's evaluations, off the live path. */
  readonly #candidate: CandidateRunner | undefined;
  /** The operational log; security events go to `audit`, not here. */
  readonly logger: Logger;
  readonly #protocolAudit: ProtocolAuditDeps;
  readonly #cluster: ClusterLink | undefined;
  #offSiblingKeys: (() => void) | undefined;

  private constructor(loaded: LoadedConfig, keys: KeyManager, store: Store, opts: BrokerOptions, logger: Logger) {
    const settings = loaded.config.settings;
    this.clock = opts.clock ?? systemClock;
    const links = {
      store,
      retentionMs: () => (this.#generation?.settings ?? settings).usage.retention_days * 86_400_000,
      log: (msg: string, fields?: Record<string, unknown>) => this.logger.warn(msg, fields),
    };
    this.logger = logger;
    this.#cluster = opts.cluster;
    this.#store = store;
    this.#keys = keys;
    this.audit = new AuditRecorder(this.#store, {
      clock: this.clock,
      stdout: settings.audit.stdout,
      write: opts.auditWrite ?? ((line) => void process.stdout.write(line)),
      onRecorded: (r) => this.#checkpoints.noted(r),
    });
    this.metrics = createMetrics(
      {
        activeTasks: () => this.#store.countActiveTasks(this.clock.now()),
        signingKeys: () => this.#keys.list(),
        now: () => this.clock.now(),
        pendingApprovals: async () => (await this.#store.listApprovals({ state: 'pending', now: this.clock.now(), limit: 1000 })).length,
        awsDenyPendingRoles: () => this.awsDenier.pendingRoles(),
        storeResetPending: () => this.#store.resetPending() !== undefined,
        ...(this.#store.walCheckpoint ? { walCheckpoint: () => this.#store.walCheckpoint!() } : {}),
        sinkBacklogs: () => this.sinks?.backlogs() ?? [],
      },
      { defaultMetrics: opts.defaultMetrics ?? true },
    );
    this.#checkpoints = new CheckpointWriter({
      issuer: settings.issuer,
      keys,
      clock: this.clock,
      epoch: () => this.#store.epoch(),
      record: (event) => this.audit.record('audit.checkpoint', { ...event }),
      everyEvents: settings.audit.checkpoint_every_events,
      intervalMs: settings.audit.checkpoint_interval_ms,
      log: (msg, fields) => this.logger('warn', msg, fields),
      onResult: (outcome) => this.metrics.auditCheckpoints.inc({ outcome }),
    });
    this.#unsubscribeIdentity = this.#store.onIdentityChange((change) => this.#onIdentityChange(change));
    this.sinks = createAuditSinks(settings.audit.sinks, {
      onOutcome: (sink, outcome, n) => this.metrics.auditSinkDeliveries.inc({ sink, outcome }, n),
      log: (msg, fields) => this.logger('warn', msg, fields),
    });
    this.audit.subscribe(this.sinks.onRecord);
    this.#protocolAudit = { audit: this.audit, metrics: this.metrics, log: this.logger };
    // `vault` credentials: the session is set right after construction (Broker.create), before any exchange.
    const vaultLeases = settings.vault
      ? {
          vault: (): VaultClient => {
            if (!this.#vault) throw new LeashError('ERR_UPSTREAM_UNAVAILABLE', 'Vault cannot issue secrets right now; retry later', { vault_reason: 'no_session' });
            return this.#vault.client;
          },
          // Lease ids are remembered as links, so Vault audit logs can be tied to tasks (usage/downstream).
          leases: linkingLeaseStore(this.#store, links),
          clock: this.clock,
          report: createLeaseReporter({ audit: this.audit, metrics: this.metrics, log: (msg, fields) => this.logger('warn', msg, fields) }),
          log: (msg: string, fields?: Record<string, unknown>) => this.logger('warn', msg, fields),
        }
      : undefined;
    this.awsDenier = new SessionDenier({
      store: this.#store,
      iam: () => (this.#iam ??= createIamClient(this.#generation.settings.aws)),
      clock: this.clock,
      maxChars: () => this.#generation.settings.aws.deny_policy_max_chars,
      audit: this.audit,
      metrics: this.metrics,
      log: (msg, fields) => this.logger('warn', msg, fields),
      intervalMs: settings.revocation.sweep_interval_ms,
    });
    this.leaseSweeper = vaultLeases ? new LeaseSweeper({ ...vaultLeases, intervalMs: settings.revocation.sweep_interval_ms }) : undefined;
    this.revocation = new RevocationView({
      store: this.#store,
      clock: this.clock,
      syncIntervalMs: settings.revocation.sync_interval_ms,
      maxStalenessMs: settings.revocation.max_staleness_ms,
      maxTokenLifeMs: () => maxTokenLifeMs(this.#generation.settings),
      revokers: new Map([
        [
          'aws-sts',
          createAwsStsRevoker({
            clock: this.clock,
            policy: () => this.#generation.policy,
            denier: () => (this.#generation.settings.aws.deny_revoked_sessions ? this.awsDenier : undefined),
            skewMs: () => this.#generation.settings.tokens.clock_skew * 1000,
            metrics: this.metrics,
            log: (msg, fields) => this.logger('warn', msg, { ...fields }),
          }),
        ],
        ...(vaultLeases ? [['vault', createVaultRevoker(vaultLeases)] as const] : []),
      ]),
      log: (msg, fields) => this.logger('warn', msg, fields),
      audiences: createAudienceResolver({
        tokens: store,
        tasks: store,
        grantedAudiences: (plugin) => this.#generation.policy.plugins.get(plugin)?.grants.map((g) => g.audience) ?? [],
      }),
      onRevoked: async (r) => {
        // Only the replica that made the revocation pushes it: one SET per revocation.
        this.#setPush?.publish(r);
        this.metrics.revocations.inc({ scope: r.scope });
        await this.audit.record('token.revoked', { scope: r.scope, id: r.id, feed_seq: r.seq, actor: r.actor, reason: r.reason });
      },
    });
    this.budgets = new TaskBudgetEnforcer({ store: this.#store, clock: this.clock, settings: () => this.#generation.settings, revocation: this.revocation, audit: this.audit, metrics: this.metrics });
    // Before the revocation view starts, so it hears every live revocation with its time.
    this.usage = new UsageService({
      store: this.#store,
      clock: this.clock,
      settings: () => this.#generation.settings,
      revocation: this.revocation,
      audit: this.audit,
      metrics: this.metrics,
      purgeIntervalMs: settings.usage.purge_interval_ms,
      onTotals: this.budgets.onTotals,
      onCalls: this.sinks.wantsUsage
        ? (server, calls, tokens) =>
            this.sinks.onUsage(
              calls.map((c) => {
                const t = c.jti === undefined ? undefined : (tokens.get(c.jti) ?? undefined);
                return {
                  at: c.at,
                  method: c.method,
                  route: c.route,
                  plugin: t?.plugin ?? c.plugin,
                  jti: c.jti,
                  task: t?.task ?? c.task,
                  server: server.id,
                  audience: c.audience,
                  source: c.source,
                  outcome: c.outcome,
                  status: c.status,
                  calls: 1,
                  bytes: c.bytes,
                  durationMs: c.durationMs,
                };
              }),
            )
        : undefined,
      log: (msg, fields) => this.logger('warn', msg, fields),
    });
    this.tasks = new TaskService({
      store: this.#store,
      clock: this.clock,
      limits: () => ({ defaultTtl: this.#generation.settings.tasks.default_ttl, maxTtl: this.#generation.settings.tasks.max_ttl }),
      knownPlugin: (id) => this.#generation.policy.plugins.has(id),
      onOpened: async (task) => {
        this.metrics.tasksOpened.inc();
        await this.audit.record('task.opened', { task: task.id, plugins: task.plugins, expires_at: task.expiresAt, actor: task.createdBy, ...(task.budgets ? { budgets: task.budgets } : {}) });
      },
      onEnded: async (task, cause, actor) => {
        await this.revocation.revokeTask(task.id, { actor, reason: cause === 'expired' ? 'task expired' : 'task ended' });
        this.metrics.tasksEnded.inc({ cause });
        await this.audit.record('task.ended', { task: task.id, actor, cause });
      },
    });
    this.sweeper = new TaskSweeper(this.#store, this.tasks, this.clock, settings.revocation.sweep_interval_ms, (msg, fields) => this.logger('warn', msg, fields));
    this.tokenRetention = new TokenRetention(this.#store, this.clock, { intervalMs: TOKEN_RETENTION_INTERVAL_MS, taskMaxTtlSeconds: settings.tasks.max_ttl }, (msg, fields) =>
      this.logger('warn', msg, fields),
    );
    this.#issuers = createIssuers({ issuer: settings.issuer, keys, clock: this.clock, aws: () => this.#generation.settings.aws, vault: vaultLeases });
    this.#exchangeDeps = {
      clock: this.clock,
      tasks: this.tasks,
      // AWS access key ids are remembered as links, so CloudTrail can be tied to tasks (usage/downstream).
      tokens: linkingTokenIndex(this.#store, links),
      replay: this.#store,
      keys: this.#keys,
      issuers: this.#issuers,
      audit: this.audit,
      metrics: this.metrics,
      revocation: this.revocation,
      quotas: {
        store: this.#store,
        revocation: this.revocation,
        onSuspended: async (plugin, reason) => {
          await this.audit.record('plugin.suspended', { plugin, actor: 'system:quota', reason });
        },
      },
      delegation: {
        revocation: this.revocation,
        verifyToken: this.#verifyToken,
      },
      budgets: this.budgets,
      approvals: createApprovalService({
        store: this.#store,
        settings: () => this.#generation.settings.approvals,
        audit: this.audit,
        metrics: this.metrics,
        notifier: (this.approvalNotifier = createWebhookNotifier({
          webhook: () => this.#generation.settings.approvals.webhook,
          issuer: () => this.#generation.settings.issuer,
          audit: this.audit,
        })),
      }),
      runtime: () => this.#generation,
      candidate: (this.#candidate = opts.candidate
        ? createCandidateRunner({
            policy: compilePolicy(opts.candidate.config),
            digest: opts.candidate.digest,
            exchange: () => this.#exchangeDeps,
            replayView: this.#store,
            audit: this.audit,
            metrics: this.metrics,
            log: (msg, fields) => this.logger('warn', msg, fields),
          })
        : undefined),
    };
    this.#generation = this.#build(loaded);
    this.exceptions = new ExceptionWatcher({
      clock: this.clock,
      current: () => this.#generation,
      tokens: this.#store,
      revocation: this.revocation,
      audit: this.audit,
    });
    this.#exceptionPass = new PeriodicPass(
      () => this.exceptions.pass(),
      settings.review.exception_check_interval_ms,
      (err) => this.logger('warn', 'exception expiry pass failed', { error: err.message.slice(0, 200) }),
    );
    this.review = new BrokerReview({
      clock: this.clock,
      loaded: () => this.#generation.loaded,
      store: this.#store,
      keys: () => this.#keys.list(),
      metrics: this.metrics,
      audit: this.audit,
    });
    // The interval is read at start; a reload does not reschedule it.
    this.#reviewPass =
      settings.review.interval > 0
        ? new PeriodicPass(
            () => this.review.pass(),
            settings.review.interval * 1000,
            (err) => this.logger('warn', 'scheduled review failed', { error: err.message.slice(0, 200) }),
          )
        : undefined;
    this.revocationFeed = revocationFeedRouter({
      authenticate: (req) => this.#generation.resourceServers.authenticate(req),
      store: this.#store,
      revocation: this.revocation,
      clock: this.clock,
    });
    const cluster = opts.cluster;
    const localMetrics = () => this.metrics.registry.getMetricsAsJSON() as Promise<unknown[]>;
    cluster?.serveMetrics(localMetrics);
    this.http = new BrokerHttp({
      ...(cluster ? { scrape: () => cluster.scrapeAll(localMetrics) } : {}),
      ready: () => this.readiness(),
      log: this.logger,
      revocationFeed: this.revocationFeed,
      keys: this.#keys,
      metrics: this.metrics,
      tasks: this.tasks,
      clock: this.clock,
      audit: this.audit,
      authenticator: () => this.#generation.authenticator,
      maxBodyBytes: () => this.#generation.settings.max_body_bytes,
      settings: () => this.#generation.settings,
      oauth: () => this.#generation.oauth,
      revocation: this.revocation,
      suspensions: this.#store,
      knownPlugin: (id) => this.#generation.policy.plugins.has(id),
      resourceServers: () => this.#generation.resourceServers,
      verifyToken: this.#verifyToken,
      singleUse: this.#store,
      users: () => this.#generation.users,
      policy: () => this.#generation.policy,
      exceptions: () => this.#generation.config.exceptions,
      approvals: (this.approvals = new ApprovalDecisions({
        store: this.#store,
        clock: this.clock,
        settings: () => this.#generation.settings.approvals,
        policy: () => this.#generation.policy,
        audit: this.audit,
        metrics: this.metrics,
      })),
      iam: () => (this.#iam ??= createIamClient(this.#generation.settings.aws)),
      review: (opts) => this.review.report(opts),
      timeline: async (task) => {
        // Events this replica recorded a moment ago are indexed first.
        await this.usage.idle();
        return buildTimeline({ store: this.#store }, task);
      },
      usage: {
        router: usageRouter({
          authenticate: (req) => this.#generation.resourceServers.authenticate(req),
          ingestor: this.usage.ingestor,
          budgets: this.budgets,
          settings: () => this.#generation.settings,
          clock: this.clock,
          metrics: this.metrics,
        }),
        introspected: (server, claims, outcome) => this.usage.introspected({ id: server.id, audiences: server.audiences }, claims, outcome),
      },
      logger: () => this.logger,
      accessLog: () => this.#generation.settings.log.access,
      explain: {
        ...this.#exchangeDeps,
        replayView: this.#store,
        auditLog: this.#store,
        tokenEndpoint: () => `${this.#generation.settings.issuer}/token`,
        issuerKind: (name) => this.#generation.config.trusted_issuers.find((t) => t.name === name)?.kind,
        certificateHeader: (value) => readCertificateHeader(this.#generation.settings, value),
      },
      configDir: () => this.#generation.loaded.baseDir,
    });
  }

  /**
   * Whether this replica should take traffic (the management port's `/readyz`): not
   * shutting down, the store answers, the revocation view is fresh. Throws with a short
   * reason in Leash's words (never a backend's error text) when it should not.
   */
  async readiness(): Promise<void> {
    if (this.#draining) throw new Error('shutting down');
    try {
      await this.#store.ping();
    } catch {
      throw new Error('store unreachable');
    }
    try {
      this.revocation.assertFresh();
    } catch {
      throw new Error('revocation view not fresh');
    }
  }

  static async create(loaded: LoadedConfig, opts: BrokerOptions = {}): Promise<Broker> {
    try {
      return await Broker.#create(loaded, opts);
    } catch (err) {
      // Ports bound for a broker that never started are released, so the process can end.
      if (opts.listeners) await Promise.all([opts.listeners.public?.close(), opts.listeners.management.close(), opts.listeners.usage?.close()]);
      throw err;
    }
  }

  static async #create(loaded: LoadedConfig, opts: BrokerOptions): Promise<Broker> {
    const settings = loaded.config.settings;
    const clock = opts.clock ?? systemClock;
    const bootedAt = clock.now();
    const logger = opts.logger ?? createLogger({ level: settings.log.level, clock, write: opts.write });
    // Leash's own Vault login first: the key backends and `vault` grants share it.
    const vault = settings.vault ? await openVaultSession(settings.vault, { clock, log: logger.warn }) : undefined;
    let broker: Broker | undefined;
    let keys: KeyManager | undefined;
    try {
      if (vault) await checkCapabilities(vault.client, requiredVaultCapabilities(loaded.config), settings.vault?.address);
      keys = createKeyManager(settings.keys, {
        clock,
        vault: vault ? () => vault.client : undefined,
        // Read at each transition, so a reloaded token lifetime applies to the next retirement.
        maxTokenLifeMs: () => maxTokenLifeMs((broker?.config ?? loaded.config).settings),
        log: logger.warn,
      });
      await keys.init();
      const opened = opts.store ?? (await openStore(settings.store, clock, { log: logger.warn }));
      const store = opts.cluster ? opts.cluster.wrapStore(opened) : opened;
      broker = new Broker(loaded, keys, store, opts, logger);
      broker.#vault = vault;
      await broker.revocation.start();
      broker.#startPush(loaded.config);
      // A task that expired while no replica ran is ended now, then on every sweep.
      await broker.sweeper.sweep();
      broker.sweeper.start();
      // Not swept at start: the first pass runs one interval later, in small batches.
      broker.tokenRetention.start();
      // AWS denies still pending from before a restart are written now (not awaited: IAM being down must not stop the start), then on every sweep.
      void broker.awsDenier.sweep().catch(() => undefined);
      broker.awsDenier.start();
      // Leases that fell due while no replica ran are revoked now, then on every sweep.
      if (broker.leaseSweeper) {
        await broker.leaseSweeper.sweep();
        broker.leaseSweeper.start();
      }
      // The keys this start created, audited as every key transition is (cause init, not a rotation).
      const created = keys.list().filter((k) => k.createdAt >= bootedAt);
      await recordKeyTransitions(
        created.map((k) => ({ action: 'created', kid: k.kid, from: undefined, to: k.state })),
        { audit: broker.audit, metrics: broker.metrics, cause: 'init', actor: 'system:init', backend: keys.backend },
      );
      broker.#startKeyTicker();
      broker.#exceptionPass.start();
      broker.#startReview();
      broker.usage.start();
      await broker.audit.record('policy.loaded', { ...policyDigests(loaded), plugins: loaded.config.plugins.length, trusted_issuers: loaded.config.trusted_issuers.length, initial: true });
      if (opts.candidate) logger.info('candidate policy: decided next to the live one on every exchange, never enforced', { candidate: opts.candidate.path, digest: opts.candidate.digest });
      broker.#checkpoints.start();
      if (opts.listeners) broker.http.serve(opts.listeners);
      return broker;
    } catch (err) {
      if (broker) await broker.close({ graceMs: 0 }).catch(() => undefined);
      else {
        // The store could not open (or an earlier step failed): nothing may keep the process alive.
        await keys?.close().catch(() => undefined);
        vault?.close();
      }
      throw err;
    }
  }

  /** Keyring refresh on schedule and on a key revoked elsewhere (key-lifecycle/key-ticker.ts); a changed key set rebuilds the generation. */
  #startKeyTicker(): void {
    this.#keyTicker = new KeyTicker({
      keys: this.#keys,
      audit: this.audit,
      metrics: this.metrics,
      log: this.logger,
      intervalMs: this.#generation.settings.keys.refresh_interval_ms,
      onKeyRevoked: (listener) => this.revocation.onRevocation((r) => r.scope === 'key' && listener(r.id)),
      onKeysChanged: () => {
        this.#generation = this.#build(this.#generation.loaded);
        this.#cluster?.keysChanged();
      },
    });
    this.#keyTicker.start();
    const ticker = this.#keyTicker;
    this.#offSiblingKeys = this.#cluster?.onSiblingKeysChanged(() => void ticker.refresh().catch(() => undefined));
  }

  /**
   * The scheduled review: a first pass a minute after start (or after one interval, if
   * shorter), so a broker restarted more often than the interval still reviews; then every
   * interval. Off the start path: it reads the store's history.
   */
  #startReview(): void {
    const pass = this.#reviewPass;
    if (!pass) return;
    pass.start();
    this.#reviewFirst = setTimeout(() => void pass.run().catch(() => undefined), Math.min(60_000, this.#generation.settings.review.interval * 1000));
    this.#reviewFirst.unref();
  }

  /**
   * The deliberate way in for tests: the store, the key manager and the audit trail. The
   * broker does not expose them otherwise; nothing in src/ uses this.
   */
  get testing(): BrokerTestHandle {
    const store = this.#store;
    return {
      keys: this.#keys,
      store,
      candidateIdle: async () => this.#candidate?.idle(),
      auditEvents: async (type) => {
        const events = await store.read(1, 1_000_000);
        return type === undefined ? events : events.filter((e) => e.type === type);
      },
    };
  }

  get config(): LeashConfig {
    return this.#generation.config;
  }

  /** The config in force, as it was loaded (its digests are the reload baseline). */
  get loaded(): LoadedConfig {
    return this.#generation.loaded;
  }

  /** Compile everything a config implies; throws ConfigError without touching the running generation. */
  #build(loaded: LoadedConfig): Generation {
    const { config } = loaded;
    const policy = compilePolicy(config);
    const attestation = createAttestation(config.trusted_issuers, {
      clock: this.clock,
      baseDir: loaded.baseDir,
      onFailure: (issuer, code) => this.metrics.attestationFailures.inc({ issuer: issuer ?? 'unknown', reason: code }),
    });
    const users = createUserTokens(config.user_identity_providers ?? [], {
      clock: this.clock,
      baseDir: loaded.baseDir,
      leashIssuer: config.settings.issuer,
      workloadIssuers: config.trusted_issuers.map((t) => t.issuer),
    });
    const authenticator = createAdminAuthenticator(config.admin, {
      clock: this.clock,
      keyLookup: (cfg) => createKeySource(cfg.jwks, { issuer: cfg.issuer, baseDir: loaded.baseDir }),
    });
    const resourceServers = createResourceServerAuthenticator(config.resource_servers, {
      issuer: config.settings.issuer,
      endpointUrls: ['/introspect', '/revoke', '/revocations', '/revocations/stream', '/usage', '/usage/budget'].map((p) => `${config.settings.issuer}${p}`),
      clock: this.clock,
      replay: this.#store,
      baseDir: loaded.baseDir,
      clockSkewSeconds: config.settings.tokens.clock_skew,
    });
    const tokenEndpoint = `${config.settings.issuer}/token`;
    const onAttestationFailure = (issuer: string | undefined, code: string) => this.metrics.attestationFailures.inc({ issuer: issuer ?? 'unknown', reason: code });
    const x509 = createX509SvidAttestation(config.trusted_issuers, { clock: this.clock, onFailure: onAttestationFailure });
    const clientAuth = createPluginAuthenticator(config.plugins, {
      issuer: config.settings.issuer,
      clientCaFile: config.settings.tls?.client_ca_file,
      certificateSources: certificateSources(config.settings),
      tokenEndpoint,
      clock: this.clock,
      replay: this.#store,
      baseDir: loaded.baseDir,
      clockSkewSeconds: config.settings.tokens.clock_skew,
    });
    const tls = tlsServerOptions(config);
    const grant = tokenExchangeGrant(this.#exchangeDeps, tokenEndpoint, clientCertificateSource(config.settings));
    const provider = buildProvider({ settings: config.settings, policy, keys: this.#keys, grant, log: (level, msg, fields) => this.logger(level, msg, fields) });
    auditProtocolErrors(provider, this.#protocolAudit);
    // Client credentials Leash cannot verify are refused, and a request without client_id is identified by its attestation.
    // Koa settles its own errors (ctx.onerror): the promise its handler returns never rejects.
    const koa = provider.callback();
    const oauth = tokenClientGate((req, res) => void koa(req, res), { maxBodyBytes: () => config.settings.max_body_bytes, onRefused: auditClientRefusal(this.#protocolAudit) });
    return {
      loaded,
      config,
      digest: loaded.digest,
      settings: config.settings,
      policy,
      attestation,
      users,
      x509,
      clientAuth,
      tokenDigest,
      oauth: pinIssuerOrigin(oauth, config.settings.issuer),
      authenticator,
      resourceServers,
      tls,
    };
  }

  /**
   * Swap in a new config. A config that does not compile leaves the running one in place
   * and says why (audit event + metric); settings that need a restart are refused.
   */
  async reload(loaded: LoadedConfig): Promise<{ ok: true } | { ok: false; error: Error }> {
    const current = this.#generation;
    // Unchanged only if the files it names (JWKS files) are unchanged too.
    if (unchangedConfig(loaded, current.loaded)) return { ok: true };
    try {
      assertReloadable(loaded.config.settings, current.settings);
      if (this.#vault) await checkAddedVaultCapabilities(this.#vault.client, loaded.config, current.config, this.logger);
      this.#generation = this.#build(loaded);
      // New connections get the re-read certificate, key and client CAs.
      if (this.#generation.tls) this.http.setSecureContext(this.#generation.tls.context);
      this.logger.level = loaded.config.settings.log.level;
      // Queued SETs of a replaced pusher are dropped; receivers catch up from the poll feed.
      if (JSON.stringify(loaded.config.resource_servers) !== JSON.stringify(current.config.resource_servers)) this.#startPush(loaded.config);
      this.metrics.policyReloads.inc({ result: 'ok' });
      await this.audit.record('policy.loaded', { ...policyDigests(loaded), plugins: loaded.config.plugins.length, trusted_issuers: loaded.config.trusted_issuers.length, initial: false });
      // What the new policy no longer grants is revoked now, not left to expire.
      await revokeOnReload(current.policy, this.#generation.policy, loaded.digest, { revocation: this.revocation, tokens: this.#store, clock: this.clock, audit: this.audit }).catch((err: unknown) =>
        this.logger('error', 'revoking what the reloaded policy removed failed; those credentials stay valid until they expire', {
          error: err instanceof Error ? err.message.slice(0, 200) : String(err),
        }),
      );
      return { ok: true };
    } catch (error) {
      await this.rejectReload(error as Error, loaded.digest);
      return { ok: false, error: error as Error };
    }
  }

  /** SET push to resource servers with a `push.url`; rebuilt when they change on reload. */
  #startPush(config: LeashConfig): void {
    this.#setPush?.stop();
    this.#setPush = createSetPusher({ issuer: config.settings.issuer, keys: this.#keys, servers: config.resource_servers, clock: this.clock, epoch: () => this.#store.epoch() });
  }

  /** A reload that failed (here or in the loader): the running policy stays; say why. */
  async rejectReload(error: Error, digest?: string): Promise<void> {
    this.metrics.policyReloads.inc({ result: 'rejected' });
    await this.audit.record('policy.reload_failed', { digest, error: error.message.slice(0, 2000) }).catch(() => undefined);
  }

  /** Bind the public and management ports from the settings (or these overrides) and serve; returns the public URL. */
  listen(port?: number, host?: string): Promise<string> {
    return this.http.listen(this.config.settings, { port, host, tls: this.#generation.tls });
  }

  /** Where `/healthz`, `/readyz` and `/metrics` are served, once listening. */
  get managementUrl(): string | undefined {
    return this.http.managementUrl;
  }

  /** Where `POST /usage` is served when settings.usage.listen gives it a port of its own, once listening. */
  get usageUrl(): string | undefined {
    return this.http.usageUrl;
  }

  /**
   * A store found reset: every replica fails closed (the store and the revocation view
   * refuse) and says so, as an unchained audit line (the chain it belongs to is gone), a
   * log line and `leash_store_reset_pending`. An accepted reset is logged when adopted.
   */
  #onIdentityChange(change: IdentityChange): void {
    if (change.kind === 'reset') {
      const m = change.marker;
      this.logger('error', `refusing every request: ${describeReset(m)}`, { previous_epoch: m.previousEpoch, found_epoch: m.foundEpoch });
      this.audit.recordUnchained('store.reset_detected', {
        previous_epoch: m.previousEpoch,
        found_epoch: m.foundEpoch,
        detected_at: m.detectedAt,
        audit_head_seq: m.auditHead.seq,
        audit_head_hash: m.auditHead.hash,
        revocation_seq: m.revocationSeq,
        store: this.#store.kind,
      });
    } else if (change.previousEpoch === change.epoch) {
      this.logger('warn', "the store holds this replica's epoch again and no reset is pending; serving again", { epoch: change.epoch });
    } else {
      this.logger('warn', 'store reset accepted by an operator; serving again in the new epoch', { previous_epoch: change.previousEpoch, epoch: change.epoch, audit_genesis_seq: change.genesis.seq });
    }
  }

  /** Writes a checkpoint of the audit chain now, if events wait for one (also done on close). */
  checkpointAudit(): Promise<void> {
    return this.#checkpoints.checkpoint();
  }

  /**
   * Shut down gracefully: readiness turns false, the public port stops accepting, requests
   * in flight finish (their audit events included) for up to `graceMs` (default
   * `settings.shutdown_grace`) and anything still open after that is cut, or at once when
   * `cutNow` aborts; only then do background work, the management port, the store, the
   * keys and the Vault session close. Calling it again returns the same shutdown.
   */
  close(opts: { graceMs?: number; cutNow?: AbortSignal } = {}): Promise<void> {
    this.#closing ??= this.#shutdown(opts.graceMs ?? this.config.settings.shutdown_grace * 1000, opts.cutNow);
    return this.#closing;
  }

  async #shutdown(graceMs: number, cutNow: AbortSignal | undefined): Promise<void> {
    this.#draining = true;
    // Long-lived feed streams would hold the drain for the whole grace; subscribers resume from their cursor.
    this.revocationFeed.closeStreams();
    await this.http.drain(graceMs, cutNow);
    // No new background pass; one already running finishes before the store closes.
    this.#checkpoints.stop();
    if (this.#reviewFirst) clearTimeout(this.#reviewFirst);
    this.#offSiblingKeys?.();
    await Promise.all([
      this.sweeper.stop(),
      this.tokenRetention.stop(),
      this.leaseSweeper?.stop(),
      this.awsDenier.stop(),
      this.#keyTicker?.stop(),
      this.#exceptionPass.stop(),
      this.#reviewPass?.stop(),
    ]);
    this.revocation.stop();
    await this.usage.stop();
    await this.usage.idle().catch(() => undefined);
    // Candidate evaluations of the last exchanges record their diffs before the store closes.
    await this.#candidate?.idle();
    this.#setPush?.stop();
    await this.http.closeManagement();
    // The last events of this replica get a checkpoint too (a failure is logged, not thrown).
    await this.#checkpoints.checkpoint();
    this.#unsubscribeIdentity();
    await this.sinks.close();
    await this.#store.close();
    await this.#keys.close();
    this.#vault?.close();
  }
}
