import type { Settings } from '../config/schema.js';
import type { Logger } from '../log/logger.js';
import { createAdmission, createHttpApp, createUsageApp, type HttpDeps } from './app.js';
import type { SecureContextOptions } from 'node:tls';
import { bindListeners, type BoundListeners, type ListenOverrides } from './listener.js';
import { createManagementApp } from './management.js';

/**
 * The broker's ports: the public app (OAuth endpoints, feed, tasks, admin API), the
 * management app (`/healthz`, `/readyz`, `/metrics`) and, with `settings.usage.listen`, the
 * usage app (`POST /usage`, `/usage/budget`), served on listeners bound before the broker
 * was built (`bindListeners`) or bound here by `listen`. Which apps exist follows the
 * settings at start (the ports change only on restart); which of them this process serves
 * follows the listeners it was given.
 */
export class BrokerHttp {
  readonly app: ReturnType<typeof createHttpApp>;
  /** `/healthz`, `/readyz`, `/metrics`: served on the management port only. */
  readonly managementApp: ReturnType<typeof createManagementApp>;
  /** With settings.usage.listen: the usage routes, which the public app then does not serve. */
  readonly usageApp: ReturnType<typeof createUsageApp> | undefined;
  readonly #log: Logger;
  #listeners: BoundListeners | undefined;

  constructor(deps: HttpDeps & { readonly ready: () => Promise<void>; readonly log: Logger; readonly scrape?: () => Promise<string> }) {
    // One admission control per process, whichever port a request came in on.
    const admission = createAdmission(deps);
    const ownPort = deps.usage !== undefined && deps.settings().usage.listen !== undefined;
    this.app = createHttpApp(deps, admission, { usageOnOwnPort: ownPort });
    this.usageApp = ownPort ? createUsageApp({ ...deps, usage: deps.usage! }, admission) : undefined;
    this.managementApp = createManagementApp({ metrics: deps.metrics, ready: deps.ready, logger: deps.logger, ...(deps.scrape ? { scrape: deps.scrape } : {}) });
    this.#log = deps.log;
  }

  /** Serve on ports already bound. */
  serve(listeners: BoundListeners): void {
    if (this.#listeners) throw new TypeError('already listening');
    if (listeners.usage && !this.usageApp) throw new TypeError('a usage listener without settings.usage.listen');
    this.#listeners = listeners;
    listeners.public?.serve(this.app);
    if (listeners.usage && this.usageApp) listeners.usage.serve(this.usageApp);
    listeners.management.serve(this.managementApp);
  }

  /** Bind the ports from the settings (or these overrides) and serve; returns the public URL. */
  async listen(settings: Settings, overrides: ListenOverrides): Promise<string> {
    if (this.#listeners) throw new TypeError('Broker.listen: already listening');
    const listeners = await bindListeners(settings, { ...overrides, serve: 'all' });
    this.serve(listeners);
    return listeners.public!.url;
  }

  /** New TLS connections of the public (and usage) port get this certificate, key and client CAs (a reload re-read them). */
  setSecureContext(context: SecureContextOptions): void {
    this.#listeners?.public?.setSecureContext(context);
    this.#listeners?.usage?.setSecureContext(context);
  }

  /** Where `/healthz`, `/readyz` and `/metrics` are served, once listening. */
  get managementUrl(): string | undefined {
    return this.#listeners?.management.url;
  }

  /** Where `POST /usage` is served when it has a port of its own, once listening. */
  get usageUrl(): string | undefined {
    return this.#listeners?.usage?.url;
  }

  /**
   * The public and usage ports stop accepting; requests in flight finish for up to `graceMs`
   * (or until `cutNow` aborts), what is still open then is cut and logged.
   */
  async drain(graceMs: number, cutNow: AbortSignal | undefined): Promise<void> {
    if (!this.#listeners) return;
    const ports = [this.#listeners.public, this.#listeners.usage].filter((l) => l !== undefined);
    const cuts = await Promise.all(ports.map((l) => l.drain(graceMs, cutNow)));
    const cut = cuts.reduce((a, c) => ({ connections: a.connections + c.connections, requests: a.requests + c.requests }), { connections: 0, requests: 0 });
    if (cut.connections > 0)
      this.#log.warn('shutdown: connections still open were cut', { connections: cut.connections, requests_in_flight: cut.requests, grace_ms: graceMs, early: cutNow?.aborted === true });
  }

  /** The management port closes last of the two (readiness answers until then). */
  async closeManagement(): Promise<void> {
    await this.#listeners?.management.close();
  }
}
