import { backoffDelay } from '../client/backoff.js';
import { readFile } from 'node:fs/promises';
import type { VaultSettingsConfig } from '../config/schema.js';
import type { Clock } from '../time/clock.js';
import { VaultError, type VaultClient } from './vault-client.js';

/**
 * Leash's own Vault login: logs in once at startup (token from the environment, AppRole or
 * Kubernetes), then keeps the token alive: `renew-self` at ~2/3 of its TTL while Vault
 * allows it, a fresh login (AppRole/Kubernetes) when renewal is refused or the max TTL is
 * near, backoff when Vault is down. The client it hands out reads the current token on
 * every call. Tokens and secret ids never reach a log line, an error or `status()`.
 */

/** Startup failure with an operator-facing message: which Vault, and what failed. */
export class VaultStartupError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'VaultStartupError';
  }
}

export type VaultLog = (msg: string, fields?: Record<string, unknown>) => void;

/** Timers, injectable so renewal tests can fire them by hand; the default is unref'd setTimeout. */
export interface RenewalScheduler {
  set(fn: () => void, delayMs: number): unknown;
  clear(handle: unknown): void;
}

export const realScheduler: RenewalScheduler = {
  set(fn, delayMs) {
    const t = setTimeout(fn, delayMs);
    t.unref();
    return t;
  },
  clear(handle) {
    clearTimeout(handle as ReturnType<typeof setTimeout>);
  },
};

export interface VaultSessionDeps {
  readonly clock: Clock;
  readonly log: VaultLog;
  /** Where `token_env` / `secret_id_env` are read (default process.env). */
  readonly env?: Readonly<Record<string, string | undefined>>;
  readonly scheduler?: RenewalScheduler;
  /** Backoff after a failed renewal: first and longest delay in ms (default 1000 / 60000). */
  readonly backoff?: { readonly initialMs: number; readonly maxMs: number };
}

export interface VaultSessionStatus {
  readonly method: 'token' | 'approle' | 'kubernetes';
  /** false once the token expired or was refused and no new one could be had. */
  readonly authenticated: boolean;
  /** ms since epoch; undefined for a token that never expires. */
  readonly expiresAt: number | undefined;
  readonly renewable: boolean;
  readonly logins: number;
  readonly renewals: number;
  readonly consecutiveFailures: number;
  /** The VaultError reason of the last failure (no Vault text). */
  readonly lastFailure: string | undefined;
  /** ms since epoch of the next scheduled renewal or re-login. */
  readonly nextAttemptAt: number | undefined;
}

export interface VaultSession {
  readonly client: VaultClient;
  /** Renews (or logs in again) now; for tests and for an operator-triggered refresh. */
  refresh(): Promise<void>;
  close(): void;
  status(): VaultSessionStatus;
}

interface Lease {
  readonly token: string;
  /** seconds, 0 = never expires */
  readonly ttl: number;
  readonly renewable: boolean;
  readonly obtainedAt: number;
}

const DEFAULT_MOUNT = { approle: 'approle', kubernetes: 'kubernetes' } as const;

/** The address without any userinfo, for messages. */
function displayAddress(address: string): string {
  try {
    const u = new URL(address);
    u.username = '';
    u.password = '';
    return u.toString().replace(/\/$/, '');
  } catch {
    return '<unparsable address>';
  }
}

function describeFailure(err: unknown): string {
  if (!(err instanceof VaultError)) return err instanceof Error ? err.message : String(err);
  switch (err.reason) {
    case 'unreachable':
      return `is unreachable (${err.message.replace(/^.*unreachable \((.*)\)$/, '$1')})`;
    case 'sealed':
      return 'is sealed or unavailable (503)';
    case 'denied':
      return 'refused the credentials (403 permission denied: wrong, expired or revoked)';
    case 'invalid':
      return `refused the login (${err.status} ${err.message.replace(/^vault \S+ \S+: \d+ ?/, '')})`;
    case 'not_found':
      return 'has no such auth mount (404)';
    case 'malformed':
      return `answered something that is not a Vault answer (${err.message})`;
    default:
      return `failed (${err.status})`;
  }
}

export async function openVaultSession(settings: VaultSettingsConfig, deps: VaultSessionDeps): Promise<VaultSession> {
  const { clock, log } = deps;
  const env = deps.env ?? process.env;
  const scheduler = deps.scheduler ?? realScheduler;
  const backoff = deps.backoff ?? { initialMs: 1000, maxMs: 60_000 };
  const method = settings.auth.method;
  // node-vault (and its HTTP stack) loads only when Vault is configured.
  const { createVaultClient, createVaultTransport } = await import('./node-vault-client.js');
  const where = `Vault at ${displayAddress(settings.address)}`;
  const transport = createVaultTransport({ address: settings.address, ...(settings.namespace ? { namespace: settings.namespace } : {}), timeoutMs: settings.timeout_ms });

  let lease: Lease | undefined;
  let authenticated = false;
  let logins = 0;
  let renewals = 0;
  let failures = 0;
  let lastFailure: string | undefined;
  let timer: unknown;
  let nextAttemptAt: number | undefined;
  let closed = false;
  let inFlight: Promise<void> | undefined;

  const client = createVaultClient({
    address: settings.address,
    ...(settings.namespace ? { namespace: settings.namespace } : {}),
    timeoutMs: settings.timeout_ms,
    token: () => lease?.token,
  });

  /** One login; the thrown message is operator-facing and names what failed. */
  async function login(): Promise<Lease> {
    if (method === 'token') {
      const token = env[settings.auth.token_env];
      if (!token) throw new VaultStartupError(`${where}: no token: environment variable ${settings.auth.token_env} is empty or unset`);
      let data: Record<string, unknown>;
      try {
        const answer = await transport.call('GET', 'auth/token/lookup-self', undefined, token);
        data = asObject(answer?.['data']);
      } catch (err) {
        throw new VaultStartupError(`${where} ${describeFailure(err)}: looking up the token from ${settings.auth.token_env}`, { cause: err });
      }
      const ttl = data['ttl'];
      if (typeof ttl !== 'number' || !Number.isInteger(ttl) || ttl < 0) throw new VaultStartupError(`${where}: auth/token/lookup-self answered no ttl`);
      return { token, ttl, renewable: data['renewable'] === true, obtainedAt: clock.now() };
    }
    const mount = settings.auth.mount ?? DEFAULT_MOUNT[method];
    let body: Record<string, unknown>;
    if (method === 'approle') {
      if (!settings.auth.role_id) throw new VaultStartupError(`${where}: vault.auth.role_id is required for approle login`);
      const secretId = env[settings.auth.secret_id_env];
      if (!secretId) throw new VaultStartupError(`${where}: no AppRole secret id: environment variable ${settings.auth.secret_id_env} is empty or unset`);
      body = { role_id: settings.auth.role_id, secret_id: secretId };
    } else {
      if (!settings.auth.role) throw new VaultStartupError(`${where}: vault.auth.role is required for kubernetes login`);
      let jwt: string;
      try {
        // re-read at every login: the kubelet rotates projected service-account tokens
        jwt = (await readFile(settings.auth.jwt_file, 'utf8')).trim();
      } catch (err) {
        throw new VaultStartupError(`${where}: cannot read the service-account token file ${settings.auth.jwt_file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
      }
      if (jwt === '') throw new VaultStartupError(`${where}: the service-account token file ${settings.auth.jwt_file} is empty`);
      body = { role: settings.auth.role, jwt };
    }
    let auth: Record<string, unknown>;
    try {
      auth = asObject((await transport.call('POST', `auth/${mount}/login`, body))?.['auth']);
    } catch (err) {
      throw new VaultStartupError(`${where} ${describeFailure(err)}: ${method} login at auth/${mount}/login`, { cause: err });
    }
    return leaseFromAuth(auth, `${method} login`);
  }

  function leaseFromAuth(auth: Record<string, unknown>, what: string): Lease {
    const token = auth['client_token'];
    const ttl = auth['lease_duration'];
    if (typeof token !== 'string' || token === '' || typeof ttl !== 'number' || !Number.isInteger(ttl) || ttl < 0) {
      throw new VaultStartupError(`${where}: ${what} answered no client_token/lease_duration`);
    }
    return { token, ttl, renewable: auth['renewable'] === true, obtainedAt: clock.now() };
  }

  function expiresAt(l: Lease): number | undefined {
    return l.ttl === 0 ? undefined : l.obtainedAt + l.ttl * 1000;
  }

  function schedule(delayMs: number): void {
    if (closed) return;
    if (timer !== undefined) scheduler.clear(timer);
    nextAttemptAt = clock.now() + delayMs;
    timer = scheduler.set(
      () => {
        timer = undefined;
        void refresh();
      },
      Math.max(0, delayMs),
    );
  }

  /** Next renewal at 2/3 of the TTL; a never-expiring token needs none. */
  function scheduleRenewal(l: Lease): void {
    if (l.ttl === 0) {
      nextAttemptAt = undefined;
      return;
    }
    schedule(Math.floor((l.ttl * 1000 * 2) / 3));
  }

  function adopt(l: Lease): void {
    lease = l;
    authenticated = true;
    failures = 0;
    lastFailure = undefined;
    scheduleRenewal(l);
  }

  async function relogin(why: string): Promise<void> {
    const l = await login();
    logins += 1;
    loginTtl = l.ttl;
    log('vault: logged in again', { method, why, ttl: l.ttl });
    adopt(l);
  }

  async function renewOnce(): Promise<void> {
    const current = lease;
    if (!current) return relogin('no token');
    const canRelogin = method !== 'token';
    const expired = expiresAt(current) !== undefined && clock.now() >= expiresAt(current)!;
    if (expired) {
      authenticated = false;
      if (canRelogin) return relogin('token expired');
      throw new VaultError('denied', 403, 'vault: the static token expired');
    }
    if (!current.renewable) {
      if (canRelogin) return relogin('token not renewable');
      log('vault: the token is not renewable and will expire', { expires_at: new Date(expiresAt(current)!).toISOString() });
      nextAttemptAt = undefined;
      return;
    }
    let renewed: Lease;
    try {
      const answer = await transport.call('POST', 'auth/token/renew-self', {}, current.token);
      renewed = leaseFromAuth(asObject(answer?.['auth']), 'renew-self');
    } catch (err) {
      // refused (expired, revoked, past max TTL): a new login is the only way on
      if (canRelogin && err instanceof VaultError && (err.reason === 'denied' || err.reason === 'invalid')) return relogin(`renewal refused (${err.reason})`);
      throw err;
    }
    renewals += 1;
    adopt({ ...renewed, token: current.token });
    // Vault caps a renewal at the token's max TTL: once a renewal no longer restores at least
    // half of the login TTL, log in afresh (halfway to expiry) rather than ride it into expiry
    if (renewed.ttl * 2 < loginTtl) {
      if (canRelogin) {
        reloginNext = true;
        schedule(Math.floor((renewed.ttl * 1000) / 2));
      } else {
        log('vault: the token nears its max TTL; Leash cannot renew a static token past it', { expires_at: new Date(expiresAt(renewed)!).toISOString() });
      }
    }
  }

  /** Set when the next slot must be a fresh login, not a renewal. */
  let reloginNext = false;
  /** TTL granted by the last login: what a full renewal restores. */
  let loginTtl = 0;

  async function refresh(): Promise<void> {
    if (closed) return;
    if (inFlight) return inFlight;
    inFlight = (async () => {
      try {
        if (reloginNext) {
          reloginNext = false;
          await relogin('token near its max TTL');
        } else {
          await renewOnce();
        }
      } catch (err) {
        failures += 1;
        const cause = err instanceof VaultStartupError ? err.cause : err;
        lastFailure = cause instanceof VaultError ? cause.reason : 'login';
        const l = lease;
        const exp = l ? expiresAt(l) : undefined;
        if (exp !== undefined && clock.now() >= exp) authenticated = false;
        const delay = backoffDelay(failures, { baseMs: backoff.initialMs, capMs: backoff.maxMs });
        // retry sooner than the token's expiry if that is closer than the backoff
        const untilExpiry = exp === undefined ? Infinity : Math.max(backoff.initialMs, (exp - clock.now()) / 2);
        log('vault: token renewal failed; retrying', {
          method,
          reason: lastFailure,
          failures,
          retry_in_ms: Math.round(Math.min(delay, untilExpiry)),
          message: err instanceof VaultStartupError ? err.message : undefined,
        });
        schedule(Math.min(delay, untilExpiry));
      } finally {
        inFlight = undefined;
      }
    })();
    return inFlight;
  }

  // startup: a failure here is fatal and says why
  const first = await login();
  logins = 1;
  loginTtl = first.ttl;
  adopt(first);

  return {
    client,
    refresh,
    close() {
      closed = true;
      if (timer !== undefined) scheduler.clear(timer);
      timer = undefined;
      nextAttemptAt = undefined;
    },
    status() {
      return {
        method,
        authenticated: authenticated && (lease === undefined || expiresAt(lease) === undefined || clock.now() < expiresAt(lease)!),
        expiresAt: lease ? expiresAt(lease) : undefined,
        renewable: lease?.renewable ?? false,
        logins,
        renewals,
        consecutiveFailures: failures,
        lastFailure,
        nextAttemptAt,
      };
    },
  };
}

function asObject(v: unknown): Record<string, unknown> {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new VaultError('malformed', 200, 'vault answer: expected an object');
  return v as Record<string, unknown>;
}

export interface RequiredCapability {
  /** The full API path, as a policy names it (e.g. `secret/data/leash/keys/*` → ask for a concrete path). */
  readonly path: string;
  readonly capabilities: readonly string[];
}

/**
 * Startup check through `sys/capabilities-self`: throws a VaultStartupError naming every
 * missing capability and its path, so a thin policy fails at boot, not at the first exchange.
 */
export async function checkCapabilities(client: VaultClient, required: readonly RequiredCapability[], address?: string): Promise<void> {
  if (required.length === 0) return;
  const where = address ? `Vault at ${displayAddress(address)}` : 'Vault';
  let granted: Record<string, readonly string[]>;
  try {
    granted = await client.capabilities([...new Set(required.map((r) => r.path))]);
  } catch (err) {
    throw new VaultStartupError(`${where} ${describeFailure(err)}: checking the token's capabilities`, { cause: err });
  }
  const missing: string[] = [];
  for (const r of required) {
    const have = granted[r.path] ?? [];
    if (have.includes('root')) continue;
    const denied = have.includes('deny');
    for (const cap of r.capabilities) if (denied || !have.includes(cap)) missing.push(`'${cap}' on ${r.path}`);
  }
  if (missing.length > 0) throw new VaultStartupError(`${where}: Leash's token lacks ${missing.length === 1 ? 'a capability' : 'capabilities'}: ${missing.join(', ')}`);
}
