import type { LoadedConfig } from '../config/load.js';
import type { AuditSink } from '../audit/recorder.js';
import type { Metrics } from '../metrics/metrics.js';
import type { Store } from '../store/store.js';
import type { Clock } from '../time/clock.js';
import type { KeyFact } from './checks/context.js';
import { issuanceEvidence } from './evidence.js';
import type { Finding } from './finding.js';
import { runReview, type ReviewReport } from './review.js';
import { sourceMap } from './source-map.js';

export interface BrokerReviewDeps {
  readonly clock: Clock;
  /** The policy in force now. */
  readonly loaded: () => LoadedConfig;
  readonly store: Pick<Store, 'decisionRollup' | 'listSuspensions'>;
  readonly keys: () => readonly KeyFact[];
  readonly metrics: Pick<Metrics, 'reviewFindings'>;
  readonly audit: AuditSink;
}

/**
 * The review on a running broker: the policy in force, the store's decision history over
 * `settings.review.window_days`, suspensions and the published keys. `GET /admin/review`
 * asks for one; the schedule runs `pass()`, which emits `review.finding` for findings the
 * previous pass did not have and `review.resolved` for the ones gone, and sets the
 * `leash_review_findings` gauge. The previous pass is remembered in memory: after a restart
 * the first pass reports every open finding once more.
 */
export class BrokerReview {
  readonly #deps: BrokerReviewDeps;
  #previous: Map<string, Finding> | undefined;

  constructor(deps: BrokerReviewDeps) {
    this.#deps = deps;
  }

  async report(opts: { windowDays?: number } = {}): Promise<ReviewReport> {
    const loaded = this.#deps.loaded();
    const { config } = loaded;
    const now = this.#deps.clock.now();
    const days = opts.windowDays ?? config.settings.review.window_days;
    const use = await issuanceEvidence(this.#deps.store).collect({ since: now - days * 86_400_000, until: now + 1 });
    return runReview({
      config,
      now,
      use,
      suspensions: await this.#deps.store.listSuspensions(),
      keys: this.#deps.keys(),
      source: loaded.text !== undefined ? sourceMap(loaded.path, loaded.text) : undefined,
      policy: { path: loaded.path, digest: loaded.digest },
    }).report;
  }

  /** One scheduled pass; returns how many events it emitted. */
  async pass(): Promise<number> {
    const report = await this.report();
    const current = new Map(report.findings.map((f) => [`${f.fingerprint}:${f.severity}`, f]));
    const gauge = this.#deps.metrics.reviewFindings;
    gauge.reset();
    for (const f of report.findings) gauge.inc({ severity: f.severity, rule: f.rule });
    let emitted = 0;
    const event = (f: Finding) => ({
      rule: f.rule,
      severity: f.severity,
      plugin: f.plugin,
      grant: f.grant,
      exception: f.exception,
      fingerprint: f.fingerprint,
      pointer: f.pointer,
      message: f.message.slice(0, 500),
    });
    for (const [key, f] of current) {
      if (this.#previous?.has(key)) continue;
      await this.#deps.audit.record('review.finding', event(f));
      emitted++;
    }
    for (const [key, f] of this.#previous ?? []) {
      if (current.has(key)) continue;
      await this.#deps.audit.record('review.resolved', { rule: f.rule, severity: f.severity, plugin: f.plugin, fingerprint: f.fingerprint });
      emitted++;
    }
    this.#previous = current;
    return emitted;
  }
}
