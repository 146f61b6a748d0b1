import type { AuditSink } from '../audit/recorder.js';
import type { Logger } from '../log/logger.js';
import { errorText } from '../log/logger.js';
import type { Metrics } from '../metrics/metrics.js';
import { PeriodicPass } from '../time/periodic-pass.js';
import { recordKeyTransitions } from '../audit/key-events.js';
import type { KeyManager } from '../keys/key-manager.js';

/** A key revoked elsewhere: re-read the keyring up to this many more times, this far apart, until it is gone. */
export const KEY_REVOCATION_RETRIES = 8;
export const KEY_REVOCATION_RETRY_MS = 250;

export interface KeyTickerDeps {
  readonly keys: KeyManager;
  readonly audit: AuditSink;
  readonly metrics: Pick<Metrics, 'keyRotations' | 'keyOperationFailures'>;
  readonly log: Logger;
  /** `keys.refresh_interval_ms`. */
  readonly intervalMs: number;
  /** Tells of every key revocation the revocation view applies (this replica's or another's); returns an unsubscribe. */
  readonly onKeyRevoked: (listener: (kid: string) => void) => () => void;
  /** The key set changed (here or on another replica): the caller rebuilds what holds the keys. */
  readonly onKeysChanged: () => void;
}

/**
 * Every replica re-reads the shared keyring on `refresh_interval_ms` and applies what is
 * due (scheduled rotation, removal of retired keys); the keyring's compare-and-set makes
 * each transition happen once across replicas. Transitions are audited and counted like an
 * admin call's (cause `schedule`); a failing backend leaves one event per outage.
 *
 * An emergency key revocation made on another replica arrives over the revocation feed in
 * milliseconds: the keyring is re-read then rather than at the next tick, so this replica's
 * JWKS drops the key as fast as its introspection already refuses its tokens. The revoking
 * replica records the revocation before it changes the keyring
 * (revocation/revoke-signing-key.ts), so the re-read is retried briefly until the keyring
 * no longer has the key.
 */
export class KeyTicker {
  readonly #deps: KeyTickerDeps;
  readonly #pass: PeriodicPass;
  #failing = false;
  #unsubscribe: (() => void)[] = [];

  constructor(deps: KeyTickerDeps) {
    this.#deps = deps;
    // One pass at a time: a scheduled tick and a revocation-triggered one share the running pass.
    this.#pass = new PeriodicPass(
      () => this.#tick(),
      deps.intervalMs,
      () => undefined,
    );
  }

  start(): void {
    const deps = this.#deps;
    this.#unsubscribe.push(deps.keys.onChange(() => deps.onKeysChanged()));
    this.#pass.start();
    this.#unsubscribe.push(deps.onKeyRevoked((kid) => void this.#reread(kid, KEY_REVOCATION_RETRIES)));
  }

  /** Re-read the keyring now (a sibling worker changed it); shares a pass already running. */
  async refresh(): Promise<void> {
    await this.#pass.run();
  }

  /** No new pass; one already running finishes. */
  async stop(): Promise<void> {
    await this.#pass.stop();
    for (const off of this.#unsubscribe.splice(0)) off();
  }

  async #tick(): Promise<number> {
    const deps = this.#deps;
    try {
      const transitions = await deps.keys.tick();
      await recordKeyTransitions(transitions, { audit: deps.audit, metrics: deps.metrics, cause: 'schedule', actor: 'system:schedule', backend: deps.keys.backend });
      this.#failing = false;
      return transitions.length;
    } catch (err) {
      deps.metrics.keyOperationFailures.inc({ operation: 'tick' });
      // One event per outage, not one per tick.
      if (!this.#failing) {
        this.#failing = true;
        deps.log.warn('key refresh failed', { error: errorText(err) });
        await deps.audit.record('key.rotation_failed', { operation: 'tick', actor: 'system:schedule', error: err instanceof Error ? err.name : 'Error' }).catch(() => undefined);
      }
      return 0;
    }
  }

  async #reread(kid: string, left: number): Promise<void> {
    const holds = () => this.#deps.keys.list().some((k) => k.kid === kid);
    if (!holds()) return;
    await this.#pass.run();
    if (holds() && left > 0) setTimeout(() => void this.#reread(kid, left - 1), KEY_REVOCATION_RETRY_MS).unref();
  }
}
