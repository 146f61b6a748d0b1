import type { AuditEventType } from '../audit/events.js';
import type { AuditRecord } from '../store/records.js';
import type { Settings } from '../config/schema.js';
import type { LeashTokenClaims } from '../issuance/jwt/verify-leash-token.js';
import type { Metrics } from '../metrics/metrics.js';
import type { RevocationService } from '../revocation/revocation-service.js';
import type { Store } from '../store/store.js';
import type { Clock } from '../time/clock.js';
import { PeriodicPass } from '../time/periodic-pass.js';
import { UsageIngestor, type ReportingServer, type UsageIngestorDeps } from './ingest.js';
import { RevocationTimes } from './revocation-times.js';
import { TimelineIndex } from './timeline-index.js';

export interface UsageServiceDeps {
  readonly store: Store;
  readonly clock: Clock;
  readonly settings: () => Settings;
  readonly revocation: RevocationService;
  readonly audit: { record(type: AuditEventType, event: Record<string, unknown>): Promise<unknown>; subscribe(listener: (r: AuditRecord) => void): () => void };
  readonly metrics: Metrics;
  readonly onTotals?: UsageIngestorDeps['onTotals'];
  readonly onCalls?: UsageIngestorDeps['onCalls'];
  /** How often usage past retention is purged (settings.usage.purge_interval_ms at start). */
  readonly purgeIntervalMs: number;
  readonly log?: (msg: string, fields?: Record<string, unknown>) => void;
}

const DAY = 86_400_000;

/** Which introspection answers count as a use (an unknown or foreign token is nobody's use). */
const INTROSPECTION_OUTCOMES = { active: 'ok', revoked: 'revoked', wrong_audience: 'wrong_audience' } as const;

/**
 * The usage domain as the broker holds it: ingestion (with anomalies), introspection as
 * use, the task timeline index and the retention purge. Built before the revocation view
 * starts, so it hears every live revocation with its time.
 */
export class UsageService {
  readonly ingestor: UsageIngestor;
  readonly timeline: TimelineIndex;
  readonly revocationTimes: RevocationTimes;
  readonly #d: UsageServiceDeps;
  readonly #purge: PeriodicPass;
  readonly #unsubscribe: () => void;

  constructor(deps: UsageServiceDeps) {
    this.#d = deps;
    this.revocationTimes = new RevocationTimes(deps.revocation);
    this.ingestor = new UsageIngestor({
      store: deps.store,
      clock: deps.clock,
      settings: deps.settings,
      revocation: deps.revocation,
      revokedAt: this.revocationTimes,
      audit: deps.audit,
      metrics: deps.metrics,
      onTotals: deps.onTotals,
      onCalls: deps.onCalls,
      log: deps.log,
    });
    this.timeline = new TimelineIndex({ store: deps.store, retentionMs: () => deps.settings().usage.retention_days * DAY, log: deps.log });
    this.#unsubscribe = deps.audit.subscribe(this.timeline.onRecord);
    this.#purge = new PeriodicPass(
      async () => {
        const now = deps.clock.now();
        this.revocationTimes.prune(now);
        return deps.store.purgeUsage(now, deps.settings().usage.retention_days * DAY);
      },
      deps.purgeIntervalMs,
      (err) => deps.log?.('usage purge failed', { error: err.message.slice(0, 200) }),
    );
  }

  start(): void {
    this.#purge.start();
  }

  /** Runs the purge now (tests, operations). */
  purge(): Promise<number> {
    return this.#purge.run();
  }

  /**
   * The introspection endpoint's hook: an answer about a Leash token is that server's use of
   * it (queued, ingested in the background; never slows the introspection).
   */
  introspected(server: ReportingServer, claims: LeashTokenClaims, outcome: string): void {
    const mapped = INTROSPECTION_OUTCOMES[outcome as keyof typeof INTROSPECTION_OUTCOMES];
    if (mapped === undefined || !this.#d.settings().usage.enabled) return;
    const jkt = (claims.cnf as { jkt?: unknown } | undefined)?.jkt;
    this.ingestor.recordIntrospection(server, {
      at: this.#d.clock.now(),
      jti: claims.jti,
      plugin: claims.plugin,
      task: claims.task,
      // The server's own audience: a foreign token is reported against the first it answers for.
      audience: server.audiences.includes(claims.aud) ? claims.aud : server.audiences[0]!,
      method: 'INTROSPECT',
      route: '/introspect',
      status: 200,
      durationMs: 0,
      bytes: 0,
      outcome: mapped,
      jkt: typeof jkt === 'string' ? jkt : undefined,
      source: undefined,
      scopes: [],
      charged: false,
    });
  }

  /** Waits for queued introspections and timeline entries (tests, shutdown). */
  async idle(): Promise<void> {
    await this.ingestor.idle();
    await this.timeline.flush();
  }

  /** Stops the purge pass (a pass already running finishes first) and the revocation listener. */
  async stop(): Promise<void> {
    await this.#purge.stop();
    this.#unsubscribe();
    this.revocationTimes.close();
  }
}
