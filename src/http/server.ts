import type { Settings } from '../config/schema.js';
import type { Logger } from '../log/logger.js';
import { createHttpApp, type HttpDeps } from './app.js';
import type { SecureContextOptions } from 'node:tls';
import { bindListeners, type BoundListeners, type ListenOverrides } from './listener.js';
import { createManagementApp } from './management.js';

/**
 * The broker's two ports: the public app (OAuth endpoints, feed, tasks, admin API) and the
 * management app (`/healthz`, `/readyz`, `/metrics`), served on listeners bound before the
 * broker was built (`bindListeners`) or bound here by `listen`.
 */
export class BrokerHttp {
  readonly app: ReturnType<typeof createHttpApp>;
  /** `/healthz`, `/readyz`, `/metrics`: served on the management port only. */
  readonly managementApp: ReturnType<typeof createManagementApp>;
  readonly #log: Logger;
  #listeners: BoundListeners | undefined;

  constructor(deps: HttpDeps & { readonly ready: () => Promise<void>; readonly log: Logger; readonly scrape?: () => Promise<string> }) {
    this.app = createHttpApp(deps);
    this.managementApp = createManagementApp({ metrics: deps.metrics, ready: deps.ready, logger: deps.logger, ...(deps.scrape ? { scrape: deps.scrape } : {}) });
    this.#log = deps.log;
  }

  /** Serve on ports already bound. */
  serve(listeners: BoundListeners): void {
    if (this.#listeners) throw new TypeError('already listening');
    this.#listeners = listeners;
    listeners.public.serve(this.app);
    listeners.management.serve(this.managementApp);
  }

  /** Bind the public and management ports from the settings (or these overrides) and serve; returns the public URL. */
  async listen(settings: Settings, overrides: ListenOverrides): Promise<string> {
    if (this.#listeners) throw new TypeError('Broker.listen: already listening');
    const listeners = await bindListeners(settings, overrides);
    this.serve(listeners);
    return listeners.public.url;
  }

  /** New TLS connections of the public port get this certificate, key and client CAs (a reload re-read them). */
  setSecureContext(context: SecureContextOptions): void {
    this.#listeners?.public.setSecureContext(context);
  }

  /** Where `/healthz`, `/readyz` and `/metrics` are served, once listening. */
  get managementUrl(): string | undefined {
    return this.#listeners?.management.url;
  }

  /**
   * The public port stops accepting; requests in flight finish for up to `graceMs` (or until
   * `cutNow` aborts), what is still open then is cut and logged.
   */
  async drain(graceMs: number, cutNow: AbortSignal | undefined): Promise<void> {
    if (!this.#listeners) return;
    const cut = await this.#listeners.public.drain(graceMs, cutNow);
    if (cut.connections > 0)
      this.#log.warn('shutdown: connections still open were cut', { connections: cut.connections, requests_in_flight: cut.requests, grace_ms: graceMs, early: cutNow?.aborted === true });
  }

  /** The management port closes last of the two (readiness answers until then). */
  async closeManagement(): Promise<void> {
    await this.#listeners?.management.close();
  }
}
