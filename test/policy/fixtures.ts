import type { WorkloadIdentity } from '../../src/attestation/attestor.js';
import { ConfigError, type ConfigProblem } from '../../src/config/config-error.js';
import type { BindingConfig, GrantConfig, LeashConfig, PluginConfig, Settings, TrustedIssuerConfig } from '../../src/config/schema.js';
import type { Task } from '../../src/store/records.js';

/**
 * Plain LeashConfig objects with the schema defaults filled in by hand, so policy tests
 * do not depend on the YAML loader.
 */

export const NOW = Date.UTC(2026, 10, 25, 12, 0, 0); // a Wednesday, 12:00 UTC

/** The schema's defaults (test/config/load.test.ts checks it), except `store.path` ':memory:' and `audit.stdout` false. */
export function settings(over: Partial<Settings> = {}): Settings {
  return {
    issuer: 'http://127.0.0.1:8080',
    listen: { host: '127.0.0.1', port: 8080, accept_sockets: 8 },
    management: { listen: { host: '127.0.0.1', port: 9090 } },
    shutdown_grace: 10,
    workers: 'auto',
    max_body_bytes: 16384,
    keys: {
      backend: 'local',
      dir: './keys',
      algorithm: 'ES256',
      key_lifetime: 30 * 86400,
      prepublish: 3600,
      max_published: 5,
      rotate_on_schedule: true,
      refresh_interval_ms: 10000,
      max_vault_outage: 300,
      vault_kv: { mount: 'secret', path: 'leash/signing' },
      vault_transit: { mount: 'transit', key: 'leash-signing' },
    },
    store: { kind: 'sqlite', path: ':memory:', url: 'redis://127.0.0.1:6379', key_prefix: 'leash:', allow_volatile: false },
    audit: { stdout: false, checkpoint_every_events: 256, checkpoint_interval_ms: 10000, sinks: [] },
    log: { level: 'info', access: true },
    tokens: { default_ttl: 300, max_ttl: 3600, clock_skew: 30 },
    tasks: { default_ttl: 3600, max_ttl: 86400, toxic_combinations: [{ effects: ['read-sensitive', 'exfiltrate'], action: 'deny' }] },
    dpop: { required_for_risk: ['high', 'critical'], max_proof_age: 60, algorithms: ['ES256', 'EdDSA', 'Ed25519'] },
    revocation: { sync_interval_ms: 500, max_staleness_ms: 5000, sweep_interval_ms: 1000 },
    aws: { region: 'us-east-1', web_identity_audience: 'sts.amazonaws.com', web_identity_token_ttl: 300, max_attempts: 3, deny_revoked_sessions: true, deny_policy_max_chars: 8192 },
    approvals: { poll_interval: 5, pending_ttl: 900, redeem_ttl: 300, max_pending_per_plugin: 10, max_pending_per_task: 20, approver_groups: [], required_for_risk: ['critical'] },
    delegation: { max_depth: 3, toxic_combinations: [{ upstream: 'read-sensitive', downstream: 'exfiltrate', action: 'deny' }] },
    review: {
      interval: 86400,
      window_days: 30,
      exception_warning_days: 14,
      exception_check_interval_ms: 1000,
      exception_max_renewals: 2,
      exception_max_age_days: 180,
      max_scopes_per_grant: 8,
      max_plugins_per_scope: 5,
      repeated_denials: 20,
      suspended_days: 14,
    },
    usage: {
      enabled: true,
      retention_days: 30,
      max_batch: 1000,
      max_body_bytes: 524288,
      max_skew: 300,
      shared_token: { response: 'event' },
      drift: { min_token_age: 600, min_history_calls: 20 },
      purge_interval_ms: 60000,
      commit_window_ms: 20,
      flush_interval_ms: 1000,
    },
    admission: { max_in_flight: 32, max_queue: 64, queue_timeout_ms: 200, max_event_loop_delay_ms: 1000 },
    console: { enabled: false, scope: 'openid', session_ttl: 28800, live_interval_ms: 2000 },
    production: false,
    ...over,
  };
}

export function trustedIssuer(name: string, kind: TrustedIssuerConfig['kind'] = 'kubernetes'): TrustedIssuerConfig {
  return {
    name,
    kind,
    issuer: `https://${name}.example.com`,
    audience: 'leash',
    jwks: { inline: { keys: [{ kty: 'EC' }] }, timeout_ms: 2000, cooldown_ms: 30000, cache_max_age_ms: 600000 },
    algorithms: ['RS256', 'ES256'],
    max_token_age: 3600,
    clock_skew: 30,
    subject_claim: 'sub',
    claims: [],
  } as TrustedIssuerConfig;
}

export function grant(over: Partial<GrantConfig> = {}): GrantConfig {
  return {
    audience: 'https://api.example.com',
    scopes: ['read'],
    kind: 'jwt',
    effect: 'read',
    max_ttl: 300,
    task_required: true,
    outlive_attestation: false,
    dpop: 'optional',
    approval: 'none',
    conditions: [],
    ...over,
  };
}

export function binding(subject: BindingConfig['subject'], over: Partial<BindingConfig> = {}): BindingConfig {
  return { issuer: 'cluster', subject, claims: {}, ...over };
}

export function plugin(id: string, over: Partial<PluginConfig> = {}): PluginConfig {
  return {
    id,
    owner: 'team@example.com',
    risk: 'low',
    disabled: false,
    vendor_managed: false,
    delegate_to: [],
    allow_owner_approval: false,
    bindings: [binding(`system:serviceaccount:plugins:${id}`)],
    grants: [grant()],
    ...over,
  };
}

export function config(plugins: PluginConfig[], over: Partial<LeashConfig> = {}): LeashConfig {
  return {
    version: 1,
    settings: settings(),
    admin: { api_keys: [], issuers: [] },
    trusted_issuers: [trustedIssuer('cluster'), trustedIssuer('other-cluster'), trustedIssuer('github', 'github-actions')],
    plugins,
    resource_servers: [],
    user_identity_providers: [],
    exceptions: [],
    ...over,
  };
}

export function identity(subject: string, attributes: Record<string, string> = {}, issuer = 'cluster'): WorkloadIdentity {
  return {
    issuer,
    kind: issuer === 'github' ? 'github-actions' : 'kubernetes',
    subject,
    attributes,
    issuedAt: Math.floor(NOW / 1000) - 10,
    expiresAt: Math.floor(NOW / 1000) + 600,
    tokenDigest: 'digest',
  };
}

export function task(attributes: Record<string, string> = {}, plugins: string[] = ['p']): Task {
  return {
    id: 'task-1',
    plugins,
    attributes,
    createdAt: NOW - 1000,
    expiresAt: NOW + 3_600_000,
    createdBy: 'orchestrator',
    state: 'active',
    endedAt: undefined,
    endedBy: undefined,
  };
}

/** Runs `fn`, expects a ConfigError, returns its problems. */
export function problemsOf(fn: () => unknown): readonly ConfigProblem[] {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  throw new Error('expected a ConfigError, nothing was thrown');
}

/** Deterministic PRNG (mulberry32) so a failing property test reproduces. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
