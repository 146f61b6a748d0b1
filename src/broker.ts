import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { LoadedConfig } from './config/load.js';
import type { LeashConfig } from './config/schema.js';
import { createAttestation, tokenDigest } from './attestation/registry.js';
import { createKeySource } from './attestation/key-source.js';
import { AuditRecorder } from './audit/recorder.js';
import { compilePolicy } from './policy/compile.js';
import { createLocalKeyManager } from './keys/local/local-key-manager.js';
import type { KeyManager } from './keys/key-manager.js';
import { openSqliteStore } from './store/sqlite/sqlite-store.js';
import type { Store } from './store/store.js';
import { createJwtIssuer } from './issuance/jwt/jwt-issuer.js';
import type { CredentialIssuer } from './issuance/credential-issuer.js';
import { createMetrics, type Metrics } from './metrics/metrics.js';
import { TaskService } from './tasks/task-service.js';
import { createAdminAuthenticator, type AdminAuthenticator } from './http/admin/authenticate.js';
import type { ExchangeDeps, ExchangeRuntime } from './exchange/exchange.js';
import { buildProvider } from './http/oauth/provider.js';
import { tokenExchangeGrant } from './http/oauth/token-exchange-grant.js';
import { createHttpApp, type NodeHandler } from './http/app.js';
import { systemClock, type Clock } from './time/clock.js';

export interface BrokerOptions {
  readonly clock?: Clock;
  /** Where JSON audit lines and logs go (default stdout). */
  readonly write?: (line: string) => void;
  /** Override the store (tests of fail-closed behaviour). */
  readonly store?: Store;
  readonly defaultMetrics?: boolean;
}

/** Everything that changes together on a policy reload, swapped as one reference. */
interface Generation extends ExchangeRuntime {
  readonly config: LeashConfig;
  readonly digest: string;
  readonly oauth: NodeHandler;
  readonly authenticator: AdminAuthenticator;
}

/**
 * The composition root: builds every part from a loaded config, wires the exchange
 * pipeline into oidc-provider and express, and swaps policy atomically on reload.
 */
export class Broker {
  readonly clock: Clock;
  readonly store: Store;
  readonly keys: KeyManager;
  readonly metrics: Metrics;
  readonly audit: AuditRecorder;
  readonly tasks: TaskService;
  readonly app: ReturnType<typeof createHttpApp>;
  #generation!: Generation;
  #server: Server | undefined;
  readonly #issuers: Map<string, CredentialIssuer>;
  readonly #exchangeDeps: ExchangeDeps;
  readonly #write: (line: string) => void;

  private constructor(loaded: LoadedConfig, keys: KeyManager, opts: BrokerOptions) {
    const settings = loaded.config.settings;
    this.clock = opts.clock ?? systemClock;
    this.#write = opts.write ?? ((line) => process.stdout.write(line));
    this.store = opts.store ?? openSqliteStore({ path: settings.store.path, clock: this.clock });
    this.keys = keys;
    this.audit = new AuditRecorder(this.store, { clock: this.clock, stdout: settings.audit.stdout, write: this.#write });
    this.metrics = createMetrics(
      { activeTasks: () => this.store.countActiveTasks(this.clock.now()), signingKeys: () => this.keys.list() },
      { defaultMetrics: opts.defaultMetrics ?? true },
    );
    this.tasks = new TaskService(
      this.store,
      this.clock,
      () => ({ defaultTtl: this.#generation.settings.tasks.default_ttl, maxTtl: this.#generation.settings.tasks.max_ttl }),
      (id) => this.#generation.policy.plugins.has(id),
    );
    this.#issuers = new Map([['jwt', createJwtIssuer({ issuer: settings.issuer, keys })]]);
    this.#exchangeDeps = {
      clock: this.clock,
      tasks: this.tasks,
      tokens: this.store,
      replay: this.store,
      keys: this.keys,
      issuers: this.#issuers,
      audit: this.audit,
      metrics: this.metrics,
      runtime: () => this.#generation,
    };
    this.#generation = this.#build(loaded);
    this.app = createHttpApp({
      keys: this.keys,
      metrics: this.metrics,
      tasks: this.tasks,
      clock: this.clock,
      audit: this.audit,
      authenticator: () => this.#generation.authenticator,
      maxBodyBytes: () => this.#generation.settings.max_body_bytes,
      oauth: () => this.#generation.oauth,
      ready: () => this.store.ping(),
    });
  }

  static async create(loaded: LoadedConfig, opts: BrokerOptions = {}): Promise<Broker> {
    const settings = loaded.config.settings;
    const clock = opts.clock ?? systemClock;
    const bootedAt = clock.now();
    const keys = createLocalKeyManager({ dir: settings.keys.dir, algorithm: settings.keys.algorithm, clock });
    await keys.init();
    const broker = new Broker(loaded, keys, opts);
    for (const key of keys.list()) {
      if (key.createdAt >= bootedAt) await broker.audit.record('key.created', { kid: key.kid, alg: key.alg, state: key.state, backend: key.backend });
    }
    await broker.audit.record('policy.loaded', { digest: loaded.digest, plugins: loaded.config.plugins.length, trusted_issuers: loaded.config.trusted_issuers.length, initial: true });
    return broker;
  }

  get config(): LeashConfig {
    return this.#generation.config;
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
    const authenticator = createAdminAuthenticator(config.admin, {
      clock: this.clock,
      keyLookup: (cfg) => createKeySource(cfg.jwks, { issuer: cfg.issuer, baseDir: loaded.baseDir }),
    });
    const tokenEndpoint = `${config.settings.issuer}/token`;
    const provider = buildProvider({ settings: config.settings, policy, keys: this.keys, grant: tokenExchangeGrant(this.#exchangeDeps, tokenEndpoint) });
    provider.on('server_error', (_ctx, err) => this.#log('error', 'oauth server error', { error: err.message }));
    provider.on('grant.error', (ctx, err) => {
      // Rejected by the protocol layer before the exchange ran (unknown client,
      // duplicate or missing parameter, wrong content type): still one audit event.
      void this.audit
        .record('exchange.denied', { decision: 'denied', reason: 'ERR_PROTOCOL', error: err.error, description: err.error_description, client_id: ctx.oidc?.client?.clientId })
        .catch(() => undefined);
      this.metrics.exchanges.inc({ outcome: 'denied', reason: 'ERR_PROTOCOL' });
    });
    return { config, digest: loaded.digest, settings: config.settings, policy, attestation, tokenDigest, oauth: provider.callback(), authenticator };
  }

  /**
   * Swap in a new config. A config that does not compile leaves the running one in place
   * and says why (audit event + metric); settings that need a restart are refused.
   */
  async reload(loaded: LoadedConfig): Promise<{ ok: true } | { ok: false; error: Error }> {
    const current = this.#generation;
    if (loaded.digest === current.digest) return { ok: true };
    try {
      const restartOnly = ['listen', 'store', 'keys', 'issuer'] as const;
      const changed = restartOnly.filter((k) => JSON.stringify(loaded.config.settings[k]) !== JSON.stringify(current.settings[k]));
      if (changed.length > 0) throw new Error(`settings ${changed.join(', ')} change only on restart`);
      this.#generation = this.#build(loaded);
      this.metrics.policyReloads.inc({ result: 'ok' });
      await this.audit.record('policy.loaded', { digest: loaded.digest, plugins: loaded.config.plugins.length, trusted_issuers: loaded.config.trusted_issuers.length, initial: false });
      return { ok: true };
    } catch (error) {
      await this.rejectReload(error as Error, loaded.digest);
      return { ok: false, error: error as Error };
    }
  }

  /** A reload that failed (here or in the loader): the running policy stays; say why. */
  async rejectReload(error: Error, digest?: string): Promise<void> {
    this.metrics.policyReloads.inc({ result: 'rejected' });
    await this.audit.record('policy.reload_failed', { digest, error: error.message.slice(0, 2000) }).catch(() => undefined);
  }

  async listen(port = this.config.settings.listen.port, host = this.config.settings.listen.host): Promise<string> {
    const server = createServer(this.app);
    server.keepAliveTimeout = 65_000;
    server.headersTimeout = 66_000;
    server.requestTimeout = 30_000;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => resolve());
    });
    this.#server = server;
    const address = server.address() as AddressInfo;
    return `http://${host.includes(':') ? `[${host}]` : host}:${address.port}`;
  }

  async close(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    if (server) {
      server.closeIdleConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
    await this.store.close();
  }

  #log(level: 'info' | 'warn' | 'error', msg: string, fields: Record<string, unknown> = {}): void {
    this.#write(`${JSON.stringify({ level, msg, ...fields, ts: new Date(this.clock.now()).toISOString() })}\n`);
  }
}
