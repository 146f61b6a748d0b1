import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { DURATION_KEYWORD } from './duration.js';

/**
 * The one source of truth for Leash's configuration file: the TypeScript types below are
 * derived from it, `schemas/leash-config.schema.json` is generated from it for editors,
 * and docs/configuration.md is generated from its descriptions. Every object rejects
 * unknown keys; defaults are filled in by the loader.
 */

const Strict = { additionalProperties: false } as const;

/** Duration settings: the loader also takes `15m`, `1h`... and converts them to this unit (config/duration.ts). */
const InSeconds = { [DURATION_KEYWORD]: 's' } as const;
const InMs = { [DURATION_KEYWORD]: 'ms' } as const;
const InDays = { [DURATION_KEYWORD]: 'd' } as const;

const Seconds = (description: string, dflt?: number, min = 1) => Type.Integer({ ...InSeconds, minimum: min, description, ...(dflt !== undefined ? { default: dflt } : {}) });

const Identifier = (description: string) => Type.String({ pattern: '^[a-z0-9][a-z0-9._-]{0,62}$', description });

export const SIGNING_ALGORITHMS = ['ES256', 'EdDSA'] as const;
/** Asymmetric algorithms an attestation may use. `none` and HMAC are never accepted. */
export const ATTESTATION_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'] as const;
export const ISSUER_KINDS = ['kubernetes', 'spiffe', 'github-actions', 'gitlab', 'gcp', 'azure', 'aws', 'oidc', 'x509-svid'] as const;
/** Kinds whose attestation is a JWT verified against the issuer's keys (every kind but `aws` and `x509-svid`). */
export const JWT_ISSUER_KINDS: ReadonlySet<string> = new Set(ISSUER_KINDS.filter((k) => k !== 'aws' && k !== 'x509-svid'));
export const CREDENTIAL_KINDS = ['jwt', 'aws-sts', 'vault'] as const;
export const RISK_TIERS = ['low', 'medium', 'high', 'critical'] as const;
export const EFFECTS = ['read', 'read-sensitive', 'write', 'exfiltrate', 'admin'] as const;
export const APPROVAL_RULES = ['none', 'human', 'step-up'] as const;
/** Effects whose grants need a human approval unless the grant says `approval` explicitly. */
export const APPROVAL_BY_DEFAULT_EFFECTS: ReadonlySet<string> = new Set(['write', 'exfiltrate', 'admin']);
export const ADMIN_ROLES = ['orchestrator', 'ops', 'security'] as const;
/**
 * Stable ids of the guardrails (docs/configuration.md, validation errors and exceptions
 * name them). Each is one limit every grant or plugin must meet.
 */
export const GUARDRAIL_IDS = [
  'max-ttl',
  'approval-for-effect',
  'approval-for-risk',
  'dpop-for-risk',
  'no-broad-binding',
  'task-required',
  'no-broad-scope',
  'vendor-risk-floor',
  'vendor-dpop',
  'vendor-approval',
] as const;

const literals = <T extends readonly string[]>(values: T, description: string, dflt?: T[number]) =>
  Type.Union(
    values.map((v) => Type.Literal(v)),
    { description, ...(dflt !== undefined ? { default: dflt } : {}) },
  ) as unknown as TSchema & { static: T[number] };

/** A UTC day (`2026-12-31`, meaning its 00:00Z) or an RFC 3339 date-time with a zone. */
const DateTime = (description: string) => Type.String({ pattern: '^[0-9]{4}-[0-9]{2}-[0-9]{2}(T[0-9]{2}:[0-9]{2}(:[0-9]{2}(\\.[0-9]+)?)?(Z|[+-][0-9]{2}:[0-9]{2}))?$', description });

// ---------------------------------------------------------------- settings

export const KEY_BACKENDS = ['local', 'vault-kv', 'vault-transit'] as const;

export const KeysSettings = Type.Object(
  {
    backend: literals(
      KEY_BACKENDS,
      'Key backend: `local` (files under `dir`, one replica or a shared volume), `vault-kv` (private keys in Vault KV v2, loaded by every replica, never on disk), `vault-transit` (Vault signs; the private key never leaves Vault). Vault backends need `settings.vault`.',
      'local',
    ),
    dir: Type.String({ description: '`local`: folder of the keys (created on first start, private files 0600).', default: './keys' }),
    algorithm: literals(SIGNING_ALGORITHMS, 'Signing algorithm of new keys.', 'ES256'),
    key_lifetime: Seconds('How long a key signs before the scheduled rotation promotes the next one.', 30 * 86400, 60),
    prepublish: Seconds('How long a new key is published in the JWKS before it may sign (longer than any verifier caches the JWKS).', 3600, 0),
    max_published: Type.Integer({
      minimum: 2,
      maximum: 20,
      default: 5,
      description: 'Most keys the JWKS may hold (next + current + retired). A rotation that would exceed it is refused until a retired key has left.',
    }),
    rotate_on_schedule: Type.Boolean({ default: true, description: 'Rotate automatically when the current key reaches `key_lifetime` (one replica does it; the others follow).' }),
    refresh_interval_ms: Type.Integer({
      ...InMs,
      minimum: 100,
      maximum: 600000,
      default: 10000,
      description: "How often each replica re-reads the keyring (other replicas' rotations) and applies due transitions.",
    }),
    max_vault_outage: Seconds('`vault-kv`: how long keys already loaded keep signing while Vault is unreachable; after that exchanges are refused.', 300, 0),
    vault_kv: Type.Object(
      {
        mount: Type.String({ pattern: '^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$', default: 'secret', description: 'KV v2 mount holding the keyring (and, for `vault-kv`, the private keys).' }),
        path: Type.String({ pattern: '^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$', default: 'leash/signing', description: 'Path under the mount: `<path>/keyring` and `<path>/keys/<kid>`.' }),
      },
      { ...Strict, description: 'Vault KV v2 location of the keyring (both Vault backends) and of the private keys (`vault-kv`).', default: {} },
    ),
    vault_transit: Type.Object(
      {
        mount: Type.String({ pattern: '^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$', default: 'transit', description: 'Transit mount.' }),
        key: Type.String({ pattern: '^[A-Za-z0-9_.-]+$', default: 'leash-signing', description: 'Transit key name; each Leash key is one version of it.' }),
      },
      { ...Strict, description: '`vault-transit`: the Transit key that signs.', default: {} },
    ),
  },
  { ...Strict, description: 'Signing keys and their rotation.', default: {} },
);

export const VaultSettings = Type.Object(
  {
    address: Type.String({ pattern: '^https?://[^?#]+$', description: 'Vault address, e.g. `https://vault.example.com:8200`.' }),
    namespace: Type.Optional(Type.String({ minLength: 1, description: 'Vault Enterprise namespace (`X-Vault-Namespace`).' })),
    timeout_ms: Type.Integer({ ...InMs, minimum: 100, maximum: 60000, default: 3000, description: 'Timeout of one Vault call.' }),
    auth: Type.Object(
      {
        method: Type.Union([Type.Literal('token'), Type.Literal('approle'), Type.Literal('kubernetes')], { default: 'token', description: 'How Leash logs in to Vault.' }),
        mount: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$', description: 'Auth mount path (default `approle` or `kubernetes`).' })),
        token_env: Type.String({ default: 'VAULT_TOKEN', pattern: '^[A-Z_][A-Z0-9_]*$', description: '`token`: environment variable holding the token (never in config).' }),
        role_id: Type.Optional(Type.String({ minLength: 1, description: '`approle`: the role id.' })),
        secret_id_env: Type.String({ default: 'VAULT_SECRET_ID', pattern: '^[A-Z_][A-Z0-9_]*$', description: '`approle`: environment variable holding the secret id.' }),
        role: Type.Optional(Type.String({ minLength: 1, description: '`kubernetes`: the Vault role.' })),
        jwt_file: Type.String({ default: '/var/run/secrets/kubernetes.io/serviceaccount/token', description: '`kubernetes`: the service-account token file (re-read at every login).' }),
      },
      { ...Strict, description: "Leash's own Vault login.", default: {} },
    ),
  },
  { ...Strict, description: 'Vault, for the Vault key backends and `vault` grants.' },
);

export const ApprovalSettings = Type.Object(
  {
    poll_interval: Seconds('Minimum seconds between two polls of one pending approval (faster polls get `slow_down`).', 5),
    pending_ttl: Seconds('How long an approval waits for a decision before it expires.', 900),
    redeem_ttl: Seconds('How long an approved request may be redeemed (once) after the decision.', 300),
    max_pending_per_plugin: Type.Integer({
      minimum: 1,
      maximum: 1000,
      default: 10,
      description:
        'Most approvals of one plugin that may wait for a decision at once; past it a new request gets `slow_down` (`ERR_APPROVAL_LIMIT`, audited). The same request asked again (whatever its `expires_in` or DPoP key) gets the approval already pending and does not count twice.',
    }),
    max_pending_per_task: Type.Integer({
      minimum: 1,
      maximum: 1000,
      default: 20,
      description: 'Most approvals of one task (all its plugins together) that may wait for a decision at once; past it: `slow_down`, as above.',
    }),
    approver_groups: Type.Array(Type.String({ minLength: 1 }), {
      default: [],
      uniqueItems: true,
      description: 'Admin groups (API-key `groups` or the admin JWT groups claim) that may decide approvals besides the `security` role.',
    }),
    required_for_risk: Type.Array(literals(RISK_TIERS, 'risk tier'), {
      default: ['critical'],
      uniqueItems: true,
      description: 'Every grant of plugins of these risk tiers needs a human approval unless the grant says `approval` explicitly (as `write`, `exfiltrate` and `admin` effects do).',
    }),
    webhook: Type.Optional(
      Type.Object(
        {
          url: Type.String({ format: 'uri', description: 'Where Leash POSTs a notice of each new pending approval.' }),
          format: Type.Union([Type.Literal('json'), Type.Literal('slack')], {
            default: 'json',
            description: "`json` (Leash's document) or `slack` (an incoming-webhook payload with `text` and `blocks`).",
          }),
          max_attempts: Type.Integer({ minimum: 1, maximum: 10, default: 3, description: 'Deliveries tried per notice.' }),
          secret_env: Type.Optional(
            Type.String({
              pattern: '^[A-Z_][A-Z0-9_]*$',
              description:
                'Environment variable with the signing secret: each delivery is signed with Standard Webhooks (webhook-id, webhook-timestamp, webhook-signature: HMAC-SHA256 of id, timestamp and body), so it cannot be altered or replayed. `whsec_<base64>`, or any string taken as raw key bytes.',
            }),
          ),
        },
        { ...Strict, description: 'Approver notification.' },
      ),
    ),
  },
  { ...Strict, description: 'Human approval of high-risk grants (CIBA-style polling).', default: {} },
);

export const TOXIC_ACTIONS = ['deny', 'approval'] as const;

export const DelegationSettings = Type.Object(
  {
    max_depth: Type.Integer({ minimum: 1, maximum: 10, default: 3, description: 'Most actors a delegation chain may hold (hops after the root).' }),
    toxic_combinations: Type.Array(
      Type.Object(
        {
          upstream: literals(EFFECTS, 'An effect somewhere upstream in the chain.'),
          downstream: literals(EFFECTS, 'An effect the downstream plugin is capable of (any of its grants).'),
          action: literals(TOXIC_ACTIONS, '`deny`, or `approval` (a human decides).', 'deny'),
        },
        { ...Strict, description: 'A pair of effects that must not meet in one chain.' },
      ),
      { default: [{ upstream: 'read-sensitive', downstream: 'exfiltrate', action: 'deny' }], description: 'Toxic combinations: a sensitive read upstream driving a plugin that can send data out.' },
    ),
  },
  { ...Strict, description: 'Delegation chains (RFC 8693 `actor_token`).', default: {} },
);

export const StoreSettings = Type.Object(
  {
    kind: Type.Union([Type.Literal('sqlite'), Type.Literal('redis')], {
      description: 'State backend: `sqlite` (embedded default, one process) or `redis` (shared by several replicas).',
      default: 'sqlite',
    }),
    path: Type.String({ description: '`sqlite`: the database file (`:memory:` for tests only).', default: './data/leash.db' }),
    url: Type.String({
      pattern: '^rediss?://',
      description: '`redis`: server URL (`redis://` or `rediss://` for TLS). Credentials may be given with LEASH_REDIS_PASSWORD instead of in the URL.',
      default: 'redis://127.0.0.1:6379',
    }),
    key_prefix: Type.String({ pattern: '^[A-Za-z0-9:_-]{1,64}$', description: '`redis`: prefix of every key, so several deployments can share one server.', default: 'leash:' }),
    allow_volatile: Type.Boolean({
      default: false,
      description:
        '`redis`: serve even when the Redis server does not persist with AOF (`appendonly yes`). Without AOF a Redis restart loses every revocation, task and the audit chain; Leash then detects the reset (store epoch) and refuses until `leash store accept-reset`. Default: refuse to start, and refuse calls after reconnecting to such a server.',
    }),
  },
  { ...Strict, description: 'Durable state: tasks, issued-token index, revocations, suspensions, audit chain, replay caches, counters.', default: {} },
);

export const RevocationSettings = Type.Object(
  {
    sync_interval_ms: Type.Integer({
      ...InMs,
      minimum: 50,
      maximum: 60000,
      default: 500,
      description: 'How often each replica re-reads revocations from the store, in addition to pub/sub (a safety net for missed messages).',
    }),
    max_staleness_ms: Type.Integer({
      ...InMs,
      minimum: 500,
      maximum: 300000,
      default: 5000,
      description: 'If a replica has not synced revocations for this long, it refuses exchanges and introspection (`temporarily_unavailable`) rather than trust a stale list.',
    }),
    sweep_interval_ms: Type.Integer({ ...InMs, minimum: 100, maximum: 60000, default: 1000, description: 'How often expired tasks are ended (and their credentials revoked).' }),
  },
  { ...Strict, description: 'Revocation propagation and task-expiry sweeping.', default: {} },
);

export const SINK_FORMATS = ['native', 'ocsf'] as const;

export const SINK_KINDS = ['file', 'webhook', 'syslog'] as const;

/** Fields each sink kind takes besides the common ones (checked in config/semantic.ts). */
export const SINK_FIELDS: Readonly<Record<(typeof SINK_KINDS)[number], { readonly required: readonly string[]; readonly optional: readonly string[] }>> = {
  file: { required: ['path'], optional: ['max_bytes', 'max_files'] },
  webhook: { required: ['url', 'secret_env'], optional: ['timeout_ms'] },
  syslog: { required: ['host'], optional: ['port', 'tls', 'ca_file', 'facility', 'app_name', 'timeout_ms'] },
};

// One object for every kind (not a union: the validator fills defaults only outside unions);
// a kind's own fields are optional here, required per kind in config/semantic.ts, and their
// defaults are applied where the sink is built (audit/sinks/sinks.ts).
export const AuditSink = Type.Object(
  {
    name: Identifier('Name of the sink (metrics label, backlog folder).'),
    kind: literals(SINK_KINDS, '`file` (with rotation), `webhook` (Standard Webhooks-signed) or `syslog` (RFC 5424 over TCP or TLS).'),
    format: literals(
      SINK_FORMATS,
      "`native` (Leash's JSON line: ts, seq, type, the event, prev, hash) or `ocsf` (OCSF 1.8.0: exchanges as Authorize Session, usage as API Activity, anomalies as Detection Finding, other events as Entity Management; see docs/usage.md).",
      'native',
    ),
    include_usage: Type.Boolean({ default: false, description: 'Also send every accepted usage record (per call: volume) as its own event (`ocsf`: API Activity).' }),
    backlog_dir: Type.String({
      minLength: 1,
      default: './data/sink-backlog',
      description: "Folder of the sinks' on-disk backlogs (one subfolder per sink): events a sink could not take wait there, across restarts.",
    }),
    max_backlog_bytes: Type.Integer({
      minimum: 65536,
      maximum: 17179869184,
      default: 268435456,
      description: 'Largest backlog on disk; past it the oldest events are dropped (counted in leash_audit_sink_deliveries_total{outcome="dropped"}).',
    }),
    batch_size: Type.Integer({ minimum: 1, maximum: 5000, default: 100, description: 'Events per delivery.' }),
    path: Type.Optional(Type.String({ minLength: 1, description: '`file`: the file events are appended to (one JSON document per line, mode 0600).' })),
    max_bytes: Type.Optional(Type.Integer({ minimum: 4096, description: '`file`: rotate when the file would pass this size (default 100 MiB).' })),
    max_files: Type.Optional(Type.Integer({ minimum: 1, maximum: 100, description: '`file`: rotated files kept, `<path>.1` newest (default 5).' })),
    url: Type.Optional(Type.String({ format: 'uri', description: '`webhook`: where batches `{"events": [...]}` are POSTed.' })),
    secret_env: Type.Optional(
      Type.String({
        pattern: '^[A-Z_][A-Z0-9_]*$',
        description:
          '`webhook`: environment variable with the signing secret (Standard Webhooks `whsec_<base64>`, or any string taken as raw key bytes); deliveries carry webhook-id, webhook-timestamp and webhook-signature.',
      }),
    ),
    timeout_ms: Type.Optional(Type.Integer({ ...InMs, minimum: 100, maximum: 60000, description: '`webhook`, `syslog`: timeout of one delivery or connection (default 5000).' })),
    host: Type.Optional(Type.String({ minLength: 1, description: '`syslog`: the collector.' })),
    port: Type.Optional(Type.Integer({ minimum: 1, maximum: 65535, description: '`syslog`: its port (default 6514, syslog over TLS, RFC 5425).' })),
    tls: Type.Optional(Type.Boolean({ description: '`syslog`: TLS (RFC 5425; default true). Off: plain TCP (RFC 6587), for a local relay only.' })),
    ca_file: Type.Optional(Type.String({ minLength: 1, description: "`syslog`: PEM bundle that verifies the collector's certificate (default: the system CAs)." })),
    facility: Type.Optional(Type.Integer({ minimum: 0, maximum: 23, description: '`syslog`: RFC 5424 facility (default 10, security/authorization).' })),
    app_name: Type.Optional(Type.String({ pattern: '^[\\x21-\\x7e]{1,48}$', description: '`syslog`: APP-NAME of every message (default `leash`).' })),
  },
  { ...Strict, description: 'Where security events are sent besides the store.' },
);

export const AuditSettings = Type.Object(
  {
    stdout: Type.Boolean({ description: 'Also write every security event as one JSON line to stdout.', default: true }),
    checkpoint_every_events: Type.Integer({
      minimum: 1,
      maximum: 1000000,
      default: 256,
      description:
        'Write a signed audit checkpoint (`audit.checkpoint`: head seq and hash, a JWS verifiable with the JWKS) after this many events. A cut-off tail shorter than the gap since the last checkpoint cannot be shown.',
    }),
    checkpoint_interval_ms: Type.Integer({
      ...InMs,
      minimum: 100,
      maximum: 3600000,
      default: 10000,
      description: 'And at the latest this long after an event no checkpoint covers yet (an idle chain gets none).',
    }),
    sinks: Type.Array(AuditSink, {
      default: [],
      description:
        'Sinks beyond stdout and the store. A sink that fails never blocks an exchange (only the store-backed chain does, failing closed): its events wait in a bounded on-disk backlog and are retried.',
    }),
  },
  { ...Strict, description: 'Security events.', default: {} },
);

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

export const LogSettings = Type.Object(
  {
    level: Type.Union(
      LOG_LEVELS.map((l) => Type.Literal(l)),
      {
        default: 'info',
        description:
          'Lowest level written to the log stream (stderr, one JSON object per line): `fatal`, `error`, `warn`, `info`, `debug`, `trace`, or `silent` for nothing. Security events are not logs: `audit.stdout` decides those.',
      },
    ),
    access: Type.Boolean({
      default: true,
      description:
        "One `info` line per request on the public port: request id, method, route, status, duration and the plugin of an exchange (never a token, a header or a query string). The management port's probes and scrapes are logged at `debug`.",
    }),
  },
  { ...Strict, description: 'The operational log (not the audit trail).', default: {} },
);

export const TokenSettings = Type.Object(
  {
    default_ttl: Seconds('TTL of an issued token when neither the request nor the grant says less.', 300),
    max_ttl: Seconds('Hard ceiling on any issued token, whatever a grant says.', 3600),
    clock_skew: Seconds('Tolerance for `iat`/`nbf`/`exp` of presented tokens.', 30, 0),
  },
  { ...Strict, description: 'Issued tokens.', default: {} },
);

export const TaskSettings = Type.Object(
  {
    default_ttl: Seconds('Task lifetime when `POST /tasks` does not say.', 3600),
    max_ttl: Seconds('Longest task an orchestrator may open.', 86400),
    toxic_combinations: Type.Array(
      Type.Object(
        {
          effects: Type.Array(literals(EFFECTS, 'effect'), { minItems: 2, maxItems: 2, description: 'Two effects that must not meet in one task, in either order.' }),
          action: literals(TOXIC_ACTIONS, '`deny`, or `approval` (a human decides).', 'deny'),
        },
        { ...Strict, description: 'A pair of effects that must not meet in one task.' },
      ),
      {
        default: [{ effects: ['read-sensitive', 'exfiltrate'], action: 'deny' }],
        description:
          'Task-level toxic combinations, without delegation: a task that already holds a live credential of one effect and asks for the other is refused (or waits for a person). An empty list turns the check off.',
      },
    ),
  },
  { ...Strict, description: 'Tasks.', default: {} },
);

export const DpopSettings = Type.Object(
  {
    required_for_risk: Type.Array(literals(RISK_TIERS, 'risk tier'), {
      description: 'Plugins of these risk tiers must present a DPoP proof for every grant.',
      default: ['high', 'critical'],
      uniqueItems: true,
    }),
    max_proof_age: Seconds('How old a DPoP proof (`iat`) may be.', 60),
    algorithms: Type.Array(literals(['ES256', 'EdDSA', 'Ed25519', 'RS256', 'PS256'] as const, 'DPoP proof algorithm'), {
      description:
        'Algorithms accepted for DPoP proofs, advertised as `dpop_signing_alg_values_supported`. `Ed25519` is the fully-specified name (RFC 9864) of `EdDSA` over an Ed25519 key, which current clients (openid-client 6) send.',
      default: ['ES256', 'EdDSA', 'Ed25519'],
      minItems: 1,
      uniqueItems: true,
    }),
  },
  { ...Strict, description: 'DPoP (RFC 9449) sender-constrained tokens.', default: {} },
);

export const AwsSettings = Type.Object(
  {
    region: Type.String({ pattern: '^[a-z]{2}(-[a-z]+)+-[0-9]$', default: 'us-east-1', description: 'AWS region of the STS (and IAM) calls.' }),
    sts_endpoint: Type.Optional(Type.String({ format: 'uri', description: 'STS endpoint override (a regional or VPC endpoint; tests use a contract server).' })),
    iam_endpoint: Type.Optional(Type.String({ format: 'uri', description: 'IAM endpoint override (for the deny-old-sessions action).' })),
    web_identity_audience: Type.String({
      minLength: 1,
      default: 'sts.amazonaws.com',
      description: "`aud` of the tokens Leash signs for AssumeRoleWithWebIdentity (the IAM OIDC provider's client id).",
    }),
    web_identity_token_ttl: Type.Integer({ ...InSeconds, minimum: 60, maximum: 3600, default: 300, description: 'Lifetime of those tokens, in seconds.' }),
    max_attempts: Type.Integer({ minimum: 1, maximum: 10, default: 3, description: 'STS calls tried (throttling and outages are retried with backoff).' }),
    deny_revoked_sessions: Type.Boolean({
      default: true,
      description:
        "Revoking a task, a plugin or an AWS session (task end, suspension, token revoke, reload) adds a Deny on its session tag or source identity to the role's `leash-revoked-sessions` inline policy through IAM (needs `iam:PutRolePolicy` and `iam:DeleteRolePolicy` on the roles, with Leash's own AWS credentials). Off: revoked sessions stay valid until they expire (a warning is logged).",
    }),
    deny_policy_max_chars: Type.Integer({
      minimum: 1024,
      maximum: 10240,
      default: 8192,
      description:
        "Size budget of that policy, in characters (whitespace-free JSON). AWS allows 10,240 for all inline policies of a role together; leave room for the role's other inline policies (the deny-sessions admin action's is ~230). Past it the entries collapse into one role-wide `aws:TokenIssueTime` deny.",
    }),
  },
  { ...Strict, description: 'AWS STS credentials (`aws-sts` grants).', default: {} },
);

export const ReviewSettings = Type.Object(
  {
    interval: Seconds(
      'How often the running broker reviews its policy and history (`review.finding` / `review.resolved` events, the `leash_review_findings` gauge). 0 turns the scheduled review off.',
      86400,
      0,
    ),
    window_days: Type.Integer({
      ...InDays,
      minimum: 1,
      maximum: 3650,
      default: 30,
      description: 'History the review reads (the "use" rules: unused plugins, grants and scopes, repeated denials, quota breaches).',
    }),
    exception_warning_days: Type.Integer({
      ...InDays,
      minimum: 0,
      maximum: 365,
      default: 14,
      description: 'An exception this close to its expiry emits `exception.expiring` and is a review finding.',
    }),
    exception_check_interval_ms: Type.Integer({
      ...InMs,
      minimum: 100,
      maximum: 600000,
      default: 1000,
      description: 'How often the broker looks for exceptions that expired: their grants are already refused at request time; this revokes the live tokens they allowed and emits the events.',
    }),
    exception_max_renewals: Type.Integer({ minimum: 0, default: 2, description: 'An exception renewed more often than this is a finding ("temporary became permanent").' }),
    exception_max_age_days: Type.Integer({
      ...InDays,
      minimum: 1,
      default: 180,
      description: 'An exception older than this in total (from `created_at`) is a finding ("temporary became permanent").',
    }),
    max_scopes_per_grant: Type.Integer({ minimum: 1, default: 8, description: 'A grant with more scopes than this is a finding.' }),
    max_plugins_per_scope: Type.Integer({ minimum: 2, default: 5, description: 'The same audience and scope reachable by more plugins than this is a finding.' }),
    repeated_denials: Type.Integer({ minimum: 1, default: 20, description: 'A plugin denied this often for one reason within the window is a finding (broken or probing).' }),
    suspended_days: Type.Integer({ ...InDays, minimum: 1, default: 14, description: 'A plugin suspended longer than this, and neither resumed nor removed, is a finding.' }),
  },
  { ...Strict, description: 'The governance review (`leash review`, `GET /admin/review`, the scheduled review) and exception expiry.', default: {} },
);

export const TLS_CLIENT_AUTH = ['none', 'optional', 'required'] as const;

export const TlsSettings = Type.Object(
  {
    cert_file: Type.String({
      minLength: 1,
      description:
        'PEM certificate chain of the public listener (leaf first), relative to the config file. Re-read on reload (SIGHUP or a change of the file): new connections get the new certificate, open ones keep theirs.',
    }),
    key_file: Type.String({ minLength: 1, description: 'PEM private key of that certificate. Re-read with it.' }),
    client_auth: literals(
      TLS_CLIENT_AUTH,
      'Client certificates (mutual TLS, RFC 8705): `none` (not asked for), `optional` (asked for; a connection without one, or with one no bundle verifies, is still accepted and Leash decides per request), `required` (the handshake fails without a certificate that chains to `client_ca_file`, or to the `x509-svid` bundles when it is not given). Leash verifies every presented certificate itself, per request, against the bundle of its trust domain, so a bundle update applies to open connections too.',
      'optional',
    ),
    client_ca_file: Type.Optional(
      Type.String({
        minLength: 1,
        description:
          'PEM bundle of the CAs the handshake asks client certificates from (and, with `client_auth: required`, verifies them against). Default: the bundles of every `x509-svid` trusted issuer. Re-read on reload.',
      }),
    ),
    min_version: literals(['TLSv1.2', 'TLSv1.3'] as const, 'Oldest TLS version accepted.', 'TLSv1.2'),
  },
  {
    ...Strict,
    description:
      'HTTPS on the public listener, with optional client certificates (X.509-SVID attestation, certificate-bound tokens). Turning it on or off, and `client_auth`, change only on restart; the files are re-read on reload.',
  },
);

export const ClientCertificateHeader = Type.Object(
  {
    name: Type.String({ pattern: '^[A-Za-z0-9-]+$', default: 'x-forwarded-client-cert', description: 'The request header the TLS-terminating proxy puts the client certificate in.' }),
    format: literals(
      ['xfcc', 'pem'] as const,
      "`xfcc`: Envoy's `x-forwarded-client-cert` (one element; its `Cert` and optional `Chain`, URL-encoded PEM). `pem`: the URL-encoded PEM certificate alone (nginx `$ssl_client_escaped_cert`).",
      'xfcc',
    ),
    trusted_proxies: Type.Array(Type.String({ pattern: '^[0-9A-Fa-f.:]+(/[0-9]{1,3})?$' }), {
      minItems: 1,
      uniqueItems: true,
      description:
        "Addresses (or CIDR ranges) of the proxies allowed to send the header, matched against the connection's peer address. A request carrying the header from any other address is refused.",
    }),
  },
  {
    ...Strict,
    description:
      'Behind a TLS-terminating proxy: read the client certificate from a header the proxy sets. Off unless given; only from `trusted_proxies`. The proxy must verify the certificate and replace (never append to) the header the client sent.',
  },
);

const listenAt = (port: number) => ({
  host: Type.String({ description: 'Address to bind.', default: '127.0.0.1' }),
  port: Type.Integer({ minimum: 0, maximum: 65535, description: 'TCP port (0 picks a free one).', default: port }),
});

const Listen = (description: string, port: number) => Type.Object(listenAt(port), { ...Strict, description, default: {} });

export const SHARED_TOKEN_RESPONSES = ['event', 'revoke', 'revoke-and-suspend'] as const;

export const UsageSettings = Type.Object(
  {
    enabled: Type.Boolean({
      default: true,
      description:
        'Accept usage reports from resource servers at `POST /usage` (and synchronous budget checks at `POST /usage/budget`), and record introspections as use. Off: both routes answer 404 and introspection records nothing.',
    }),
    retention_days: Type.Integer({
      ...InDays,
      minimum: 1,
      maximum: 400,
      default: 30,
      description: 'How long usage aggregates (per jti, route and minute), last-used evidence, task timelines and downstream events are kept.',
    }),
    max_batch: Type.Integer({ minimum: 1, maximum: 5000, default: 1000, description: 'Most records one `POST /usage` may carry.' }),
    max_body_bytes: Type.Integer({ minimum: 16384, maximum: 4194304, default: 524288, description: 'Largest `POST /usage` body (a batch of records); other routes keep `max_body_bytes`.' }),
    max_skew: Seconds("How far in the future (clock skew) a record's `at` may be; older than `retention_days` is refused too.", 300, 0),
    shared_token: Type.Object(
      {
        response: literals(
          SHARED_TOKEN_RESPONSES,
          'What a shared token (one jti from two DPoP keys or addresses, or at a server it was not issued for) triggers: `event` (audit only), `revoke` (revoke the token), `revoke-and-suspend` (also suspend the plugin until a security admin resumes it).',
          'event',
        ),
      },
      { ...Strict, description: 'Shared-token detection.', default: {} },
    ),
    drift: Type.Object(
      {
        min_token_age: Seconds(
          'A token used at a route its plugin had never used, at least this long after the token was issued, raises `usage.route_drift` (once the plugin has `min_history_calls` at the grant).',
          600,
          0,
        ),
        min_history_calls: Type.Integer({
          minimum: 1,
          default: 20,
          description: 'Calls the plugin must have made at the grant before drift is judged: a plugin without history has no route mix to drift from.',
        }),
      },
      { ...Strict, description: "Route-mix drift: a token used long after issuance at routes outside the plugin's history.", default: {} },
    ),
    purge_interval_ms: Type.Integer({ ...InMs, minimum: 1000, maximum: 3600000, default: 60000, description: 'How often usage past retention is purged.' }),
    commit_window_ms: Type.Integer({
      ...InMs,
      minimum: 0,
      maximum: 1000,
      default: 20,
      description:
        "How long a resource server's batches are gathered into one store write (group commit); each batch is answered after that write commits. Reports of the same tokens in the window share their rows, so the store work per record falls as the rate grows. 0: the batches of one event-loop turn.",
    }),
    listen: Type.Optional(
      Type.Object(
        {
          ...listenAt(8081),
          workers: Type.Integer({
            minimum: 0,
            maximum: 64,
            default: 1,
            description:
              '`leash serve`: processes that serve only this port, besides the `workers` that serve the public port (a primary then runs even with one public worker). Ingestion then never takes the event loop the exchanges run on. `0`: the public workers serve this port too (a port of its own, on the same event loop).',
          }),
        },
        {
          ...Strict,
          description:
            'A port of its own for the resource servers\' `POST /usage` and `POST /usage/budget`; the public port then serves neither. Absent: both are on the public port. It uses `settings.tls` as the public port does; point the reporters\' `usageUrl` at it. Changes only on restart (docs/usage.md, "A port of its own").',
        },
      ),
    ),
    flush_interval_ms: Type.Integer({
      ...InMs,
      minimum: 0,
      maximum: 10000,
      default: 1000,
      description:
        'How long the per-minute call aggregates (the volume: calls, errors, bytes, durations per token and route) gather in memory before they are written, one row per token, route and minute. What decides (first use, a new source, budget counters, last-used evidence, anomalies) is written before each batch is answered whatever this says; a crash loses at most this long of call counts. A graceful stop and a timeline read write them first. 0: with each batch, before it is answered.',
    }),
  },
  { ...Strict, description: 'What resource servers report about the use of Leash credentials: ingestion, anomalies, budgets, timelines.', default: {} },
);

/**
 * Admission control on the public listener's expensive routes. Defaults (docs/operations.md,
 * "Overload"): one process decides ~1,000 exchanges a second on two cores at ~1 ms of CPU
 * each, and a few dozen in flight keep every stage (crypto threads, store) busy; more in
 * flight only lengthens each one. What waits is bounded in count and in time, so that under
 * overload the excess is refused at once and a client can retry another replica.
 */
export const AdmissionSettings = Type.Object(
  {
    max_in_flight: Type.Integer({
      minimum: 1,
      maximum: 10000,
      default: 32,
      description: 'Requests to `POST /token`, `/introspect`, `/usage` and `/usage/budget` worked on at once (all four together). Past it a request waits in the queue.',
    }),
    max_queue: Type.Integer({
      minimum: 0,
      maximum: 100000,
      default: 64,
      description: 'Requests that may wait for a slot. A request arriving with the queue full is answered at once: `503 temporarily_unavailable` with `Retry-After`. `0`: no queue.',
    }),
    queue_timeout_ms: Type.Integer({
      minimum: 10,
      maximum: 60000,
      default: 200,
      description:
        "Longest wait before a request is worked on: in the queue, counting the event loop's lag when it was read. A request that cannot get a slot in time is answered `503 temporarily_unavailable` with `Retry-After` by the deadline (up to a loop turn early on a busy process), without being processed.",
    }),
    max_event_loop_delay_ms: Type.Integer({
      minimum: 0,
      maximum: 60000,
      default: 1000,
      description:
        "Refuse those routes at once (`503`, `Retry-After`) while the event loop runs this late: a request read then may have waited that long in its socket before Leash could see it (a CPU-bound process queues there, not in `max_queue`). A request that must queue has its `queue_timeout_ms` counted with the lag it was read with whatever this is; this rule also refuses requests that could be served at once, so keep it well above the process's occasional single long turn (at 200 ms, one such stall at 10,000 plugins refused 7 exchanges of a closed-loop bench). `0`: off.",
    }),
  },
  { ...Strict, description: 'Admission control (overload is refused at once, not queued). The management listener is never subject to it.', default: {} },
);

export const ConsoleSettings = Type.Object(
  {
    enabled: Type.Boolean({ default: false, description: 'Serve the security console under `/console` on the public listener. Off by default; a reload turns it on or off.' }),
    issuer: Type.Optional(
      Type.String({
        minLength: 1,
        description:
          "The admin issuer (`admin.issuers[].issuer`) people sign in with (OpenID Connect authorization code with PKCE; the provider's endpoints come from its discovery document). Required when `enabled`.",
      }),
    ),
    client_id: Type.Optional(
      Type.String({
        minLength: 1,
        description:
          "The console's client id at that issuer: a public client (no secret) whose redirect URI is `<settings.issuer>/console/callback`. It must equal that admin issuer's `audience`: the ID token is verified as an admin token. Required when `enabled`.",
      }),
    ),
    scope: Type.String({
      pattern: '^openid( [\\x21\\x23-\\x5B\\x5D-\\x7E]+)*$',
      default: 'openid',
      description: 'Scopes asked for at sign-in (space-separated, `openid` first): those that make the provider put the roles and groups claims in the ID token.',
    }),
    session_ttl: Seconds('Longest a console session lasts, in seconds; it also ends when the ID token it was opened with expires.', 28800, 60),
    live_interval_ms: Type.Integer({
      minimum: 250,
      maximum: 60000,
      default: 2000,
      description: 'How often the approvals inbox re-reads the store for its live update (server-sent events), in milliseconds.',
    }),
  },
  { ...Strict, description: 'The security console (docs/console.md): approvals, tasks, plugins, review findings and keys in a browser, for people signed in with the admin OIDC issuer.', default: {} },
);

export const Settings = Type.Object(
  {
    issuer: Type.String({
      format: 'uri',
      pattern: '^https?://[^?#]+[^/?#]$',
      description: 'Public issuer URL of this broker (the `iss` of every token). No trailing slash.',
      default: 'http://127.0.0.1:8080',
    }),
    listen: Type.Object(
      {
        ...listenAt(8080),
        accept_sockets: Type.Integer({
          minimum: 1,
          maximum: 64,
          default: 8,
          description:
            'Listening sockets bound to the public port (`SO_REUSEPORT`, Linux; elsewhere and in `--workers` processes always 1). The event loop accepts one new connection per socket per turn: on a CPU-bound process a single socket lets new clients in a few dozen a second, and the rest wait in the kernel past their time-out instead of reaching admission control and its fast `503`. Any process of the same user may bind a port that has `SO_REUSEPORT` set and take a share of its connections; `1` turns it off. Changes only on restart.',
        }),
      },
      { ...Strict, description: 'Where the public HTTP server listens (OAuth, JWKS, discovery, tasks, admin API).', default: {} },
    ),
    management: Type.Object(
      {
        listen: Listen(
          'Where the management server listens: `/healthz`, `/readyz` and `/metrics`, none of which the public port serves. Loopback by default; in Kubernetes bind it to the pod (`0.0.0.0`) so the kubelet can probe it, and admit only Prometheus to it. Changes only on restart.',
          9090,
        ),
      },
      { ...Strict, description: 'The management listener (health, readiness, metrics).', default: {} },
    ),
    tls: Type.Optional(TlsSettings),
    client_certificate_header: Type.Optional(ClientCertificateHeader),
    shutdown_grace: Type.Integer({
      ...InSeconds,
      minimum: 0,
      maximum: 600,
      default: 10,
      description:
        "On SIGTERM or SIGINT: how long requests in flight may take to finish once Leash has stopped accepting new ones; what is still running then is cut, and the stores close. Keep the preStop sleep plus this below the orchestrator's kill timeout (Kubernetes `terminationGracePeriodSeconds`).",
    }),
    workers: Type.Union([Type.Integer({ minimum: 1, maximum: 256 }), Type.Literal('auto')], {
      default: 'auto',
      description:
        '`leash serve`: how many worker processes serve the public and management ports (node:cluster), each a replica on the shared store and key folder. `auto`: one per core (`os.availableParallelism()`); `1`: one process, no primary. `--workers` (or `$LEASH_WORKERS`) overrides it. Changes only on restart (docs/operations.md, "Workers").',
    }),
    max_body_bytes: Type.Integer({ minimum: 1024, maximum: 57344, description: 'Largest request body accepted on OAuth and admin endpoints.', default: 16384 }),
    keys: KeysSettings,
    store: StoreSettings,
    audit: AuditSettings,
    log: LogSettings,
    tokens: TokenSettings,
    tasks: TaskSettings,
    dpop: DpopSettings,
    revocation: RevocationSettings,
    aws: AwsSettings,
    vault: Type.Optional(VaultSettings),
    approvals: ApprovalSettings,
    delegation: DelegationSettings,
    review: ReviewSettings,
    usage: UsageSettings,
    admission: AdmissionSettings,
    console: ConsoleSettings,
    production: Type.Boolean({ description: 'Production mode: refuses to start with an `http://` issuer or an in-memory store.', default: false }),
  },
  { ...Strict, description: 'Broker settings.', default: {} },
);

// ---------------------------------------------------------------- admin

export const AdminApiKey = Type.Object(
  {
    id: Identifier('Name of the key (appears in audit events as the actor).'),
    sha256: Type.String({ pattern: '^[0-9a-f]{64}$', description: 'Hex SHA-256 of the API key. The key itself is never in config.' }),
    roles: Type.Array(literals(ADMIN_ROLES, 'admin role'), { minItems: 1, uniqueItems: true, description: 'Roles this key holds.' }),
    groups: Type.Array(Type.String({ minLength: 1 }), {
      default: [],
      uniqueItems: true,
      description: "Groups this key's holder belongs to (approver groups, separation of duties against plugin owners).",
    }),
    rotate_by: Type.Optional(DateTime('When this key is to be replaced (a long-lived secret needs a date; the review reports keys without one or past it).')),
  },
  { ...Strict, description: 'A hashed admin API key.' },
);

export const JwksSource = Type.Object(
  {
    inline: Type.Optional(
      Type.Object({ keys: Type.Array(Type.Record(Type.String(), Type.Unknown()), { minItems: 1, description: 'Public JSON Web Keys.' }) }, { description: 'A JWKS given in place.' }),
    ),
    file: Type.Optional(Type.String({ description: 'Path of a JWKS JSON file (relative to the config file).' })),
    uri: Type.Optional(Type.String({ format: 'uri', description: 'JWKS URL, fetched with timeout, cache and cooldown.' })),
    discovery: Type.Optional(Type.Boolean({ description: 'Find the JWKS URL through `<issuer>/.well-known/openid-configuration`.' })),
    timeout_ms: Type.Integer({ ...InMs, minimum: 100, maximum: 30000, default: 2000, description: 'Timeout of a remote JWKS or discovery fetch.' }),
    cooldown_ms: Type.Integer({ ...InMs, minimum: 0, default: 30000, description: 'Minimum time between two JWKS refetches triggered by an unknown `kid`.' }),
    cache_max_age_ms: Type.Integer({ ...InMs, minimum: 1000, default: 600000, description: 'How long a fetched JWKS is used before it is refreshed.' }),
  },
  { ...Strict, description: "Where the issuer's verification keys come from: exactly one of `inline`, `file`, `uri`, `discovery`." },
);

export const AdminIssuer = Type.Object(
  {
    issuer: Type.String({ description: 'Expected `iss` of admin bearer tokens.' }),
    audience: Type.String({ description: 'Expected `aud` of admin bearer tokens.' }),
    jwks: JwksSource,
    algorithms: Type.Array(literals(ATTESTATION_ALGORITHMS, 'algorithm'), { minItems: 1, uniqueItems: true, default: ['ES256', 'RS256'], description: 'Accepted algorithms.' }),
    roles_claim: Type.String({ default: 'roles', description: 'Claim holding the roles (array of strings, or space-separated string).' }),
    subject_claim: Type.String({ default: 'sub', description: 'Claim naming the actor in audit events.' }),
    groups_claim: Type.String({ default: 'groups', description: "Claim holding the caller's groups (array of strings, or space-separated string)." }),
  },
  { ...Strict, description: 'An OIDC issuer whose bearer tokens authenticate admin callers.' },
);

export const Admin = Type.Object(
  {
    api_keys: Type.Array(AdminApiKey, { default: [], description: 'Hashed API keys with roles.' }),
    issuers: Type.Array(AdminIssuer, { default: [], description: 'Issuers of admin bearer JWTs.' }),
  },
  { ...Strict, description: 'Admin API authentication. There is no anonymous admin call.', default: {} },
);

// ---------------------------------------------------------------- trusted issuers

export const TokenReview = Type.Object(
  {
    api_server: Type.String({
      pattern: '^https?://[^?#]+[^/?#]$',
      description: "The cluster's API server, e.g. `https://kubernetes.default.svc` (no trailing slash). `https://` when settings.production is true.",
    }),
    ca_file: Type.Optional(
      Type.String({ minLength: 1, description: "PEM bundle that verifies the API server's certificate (in a pod: `/var/run/secrets/kubernetes.io/serviceaccount/ca.crt`). Default: the system CAs." }),
    ),
    token_file: Type.String({
      minLength: 1,
      default: '/var/run/secrets/kubernetes.io/serviceaccount/token',
      description:
        "Leash's own service-account token, sent as its bearer credential (re-read for every review, so a rotated projected token is picked up). Its service account needs the `system:auth-delegator` cluster role (create `tokenreviews`).",
    }),
    audiences: Type.Optional(
      Type.Array(Type.String({ minLength: 1 }), {
        minItems: 1,
        uniqueItems: true,
        description: "`spec.audiences` of the review; the answer must confirm one of them. Default: the issuer's `audience`.",
      }),
    ),
    cache_seconds: Type.Integer({
      ...InSeconds,
      minimum: 1,
      maximum: 300,
      default: 10,
      description: 'How long an answer (accepted or refused) is reused for the same token: a token whose pod is deleted is refused within this long.',
    }),
    timeout_ms: Type.Integer({
      ...InMs,
      minimum: 100,
      maximum: 30000,
      default: 2000,
      description: 'Timeout of one review. A review that fails or times out refuses the exchange (`temporarily_unavailable`).',
    }),
  },
  {
    ...Strict,
    description:
      '`kubernetes` kind: ask the cluster (TokenReview, `authentication.k8s.io/v1`) whether each token is still valid, so a token whose pod or service account was deleted is refused before its `exp`.',
  },
);

// One sub-schema per kind, discriminated on `kind` (ajv's `discriminator`): a key that does
// not apply to the kind is an error at its path, not silently ignored. Defaults are filled
// in per kind, which ajv does inside a `oneOf` only when it has a discriminator.

const IssuerName = () => Identifier('Name bindings refer to.');
const KindLiteral = <K extends IssuerKind>(kind: K, description: string) => Type.Literal(kind, { description });
const IssuerUrl = (description: string) => Type.String({ minLength: 1, description });
const IssuerAudience = (description: string) =>
  Type.Union([Type.String({ minLength: 1 }), Type.Array(Type.String({ minLength: 1 }), { minItems: 1 })], {
    description,
  });
const JWT_AUDIENCE = 'Expected `aud`: the token must name (one of) these.';
const IssuerAlgorithms = () =>
  Type.Array(literals(ATTESTATION_ALGORITHMS, 'algorithm'), {
    minItems: 1,
    uniqueItems: true,
    default: ['RS256', 'ES256'],
    description: 'Accepted signature algorithms (asymmetric only).',
  });
const MaxTokenAge = (what = 'Oldest `iat` accepted, in seconds (also bounds tokens without `iat` via `exp`).') => Seconds(what, 3600);
const IssuerClockSkew = () => Seconds('Clock tolerance for this issuer.', 30, 0);
const TrustDomain = (kinds: string) => Type.String({ description: `The trust domain the SVID must belong to (${kinds}).` });

/** The members every JWT kind shares, in the order the reference lists them. */
const jwtIssuer = <K extends IssuerKind>(kind: K, about: string) => ({
  name: IssuerName(),
  kind: KindLiteral(kind, about),
  issuer: IssuerUrl('Exact expected `iss` claim.'),
  audience: IssuerAudience(JWT_AUDIENCE),
  jwks: JwksSource,
  algorithms: IssuerAlgorithms(),
  max_token_age: MaxTokenAge(),
  clock_skew: IssuerClockSkew(),
});

const ISSUER_OPTIONS = (kind: string, description: string) => ({ ...Strict, title: `Trusted issuer: ${kind}`, description });

export const KubernetesIssuer = Type.Object(
  {
    ...jwtIssuer('kubernetes', 'A Kubernetes cluster: projected service-account tokens.'),
    token_review: Type.Optional(TokenReview),
  },
  ISSUER_OPTIONS('kubernetes', 'A Kubernetes cluster whose projected service-account tokens attest pods (docs/attestation.md).'),
);

export const SpiffeIssuer = Type.Object(
  {
    ...jwtIssuer('spiffe', 'A SPIFFE trust domain: JWT-SVIDs.'),
    trust_domain: TrustDomain('`spiffe://` prefix optional'),
  },
  ISSUER_OPTIONS('spiffe', 'A SPIFFE trust domain whose JWT-SVIDs attest workloads; the SPIFFE ID must be in `trust_domain`.'),
);

export const GitHubActionsIssuer = Type.Object(
  { ...jwtIssuer('github-actions', 'GitHub Actions OIDC tokens.') },
  ISSUER_OPTIONS('github-actions', 'GitHub Actions OIDC tokens; bindings must pin a repository (docs/attestation.md).'),
);

export const GitLabIssuer = Type.Object(
  { ...jwtIssuer('gitlab', 'GitLab CI ID tokens.') },
  ISSUER_OPTIONS('gitlab', 'GitLab CI ID tokens (gitlab.com or a self-managed instance); bindings must pin the project and the ref.'),
);

export const GcpIssuer = Type.Object(
  { ...jwtIssuer('gcp', 'Google-signed identity tokens.') },
  ISSUER_OPTIONS('gcp', 'Google-signed identity tokens (service accounts, Compute Engine); bindings must pin the service account or the project.'),
);

export const AzureIssuer = Type.Object(
  { ...jwtIssuer('azure', 'Microsoft Entra ID tokens of one tenant.') },
  ISSUER_OPTIONS('azure', 'Microsoft Entra ID tokens of one tenant (managed identities, workload identity); bindings must pin the workload.'),
);

export const OidcIssuer = Type.Object(
  {
    ...jwtIssuer('oidc', 'Any other OIDC issuer of workload tokens.'),
    subject_claim: Type.String({ default: 'sub', description: 'Claim that becomes the workload subject.' }),
    claims: Type.Array(Type.String({ minLength: 1, maxLength: 128 }), {
      default: [],
      maxItems: 64,
      description: 'Extra claims copied into the workload identity, for bindings and conditions.',
    }),
  },
  ISSUER_OPTIONS('oidc', 'Any other OIDC issuer of workload tokens, of your own (not a shared platform issuer: those have their own kind).'),
);

export const AwsIssuer = Type.Object(
  {
    name: IssuerName(),
    kind: KindLiteral('aws', 'AWS: a signed STS GetCallerIdentity request.'),
    issuer: IssuerUrl('The STS endpoint Leash sends the signed GetCallerIdentity request to (e.g. `https://sts.us-east-1.amazonaws.com`); never a URL from the request.'),
    audience: IssuerAudience('The value the signed `X-Leash-Server-ID` header must carry (it binds the request to this Leash, so it cannot be replayed elsewhere).'),
    region: Type.Optional(
      Type.String({
        pattern: '^[a-z]{2}(-[a-z]+)+-[0-9]$',
        description: "The region the request must be signed for (its SigV4 credential scope); default `us-east-1` (the global STS endpoint's).",
      }),
    ),
    max_token_age: MaxTokenAge('Oldest signature accepted (from `X-Amz-Date`), in seconds; at most 900 (STS accepts a signature for 15 minutes).'),
    clock_skew: IssuerClockSkew(),
  },
  ISSUER_OPTIONS('aws', 'AWS workloads (IAM roles): the attestation is a SigV4-signed STS GetCallerIdentity request, which Leash forwards to STS; Leash holds no AWS key.'),
);

export const X509SvidIssuer = Type.Object(
  {
    name: IssuerName(),
    kind: KindLiteral('x509-svid', 'A SPIFFE trust domain: X.509-SVIDs presented as TLS client certificates.'),
    issuer: IssuerUrl("`spiffe://<trust_domain>`: the trust domain's SPIFFE ID."),
    trust_domain: TrustDomain('`spiffe://` prefix optional'),
    bundle_file: Type.String({
      minLength: 1,
      description:
        "PEM file of the trust domain's X.509 authorities (its SPIFFE bundle's CA certificates), relative to the config file. Re-read on reload: a CA removed from it stops verifying certificates at once, on open connections too.",
    }),
    max_token_age: MaxTokenAge('Oldest certificate accepted (from its `notBefore`), in seconds.'),
    clock_skew: IssuerClockSkew(),
  },
  ISSUER_OPTIONS(
    'x509-svid',
    'A SPIFFE trust domain whose X.509-SVIDs, presented as TLS client certificates (mutual TLS or a trusted proxy header), attest workloads: no token, no audience, no JWKS.',
  ),
);

/** The sub-schema of each kind. */
export const TRUSTED_ISSUER_VARIANTS = {
  kubernetes: KubernetesIssuer,
  spiffe: SpiffeIssuer,
  'github-actions': GitHubActionsIssuer,
  gitlab: GitLabIssuer,
  gcp: GcpIssuer,
  azure: AzureIssuer,
  aws: AwsIssuer,
  oidc: OidcIssuer,
  'x509-svid': X509SvidIssuer,
} as const satisfies Record<IssuerKind, TSchema>;

/** The keys each kind takes: the loader names them when it refuses one (config/validate.ts). */
export const TRUSTED_ISSUER_FIELDS: Readonly<Record<IssuerKind, readonly string[]>> = Object.fromEntries(
  Object.entries(TRUSTED_ISSUER_VARIANTS).map(([kind, schema]) => [kind, Object.keys(schema.properties)]),
) as unknown as Record<IssuerKind, readonly string[]>;

/**
 * `oneOf` with ajv's (OpenAPI) `discriminator` keyword: ajv validates the object against the
 * one branch its `kind` names, so every error comes from that branch and its defaults are
 * filled in. The editor schema drops `discriminator`, which draft-07 does not know
 * (config/json-schema.ts); the `const` of each branch's `kind` selects the branch there.
 */
type KeysOfUnion<U> = U extends unknown ? keyof U : never;
/** Each member of a union, with the keys only other members have typed as absent: `cfg.jwks` reads as `JwksSource | undefined` until `kind` narrows it. */
type Exclusive<U, K extends PropertyKey = KeysOfUnion<U>> = U extends unknown ? U & { readonly [P in Exclude<K, keyof U>]?: undefined } : never;

export const TrustedIssuer = Type.Unsafe<Exclusive<Static<(typeof TRUSTED_ISSUER_VARIANTS)[IssuerKind]>>>({
  type: 'object',
  discriminator: { propertyName: 'kind' },
  oneOf: Object.values(TRUSTED_ISSUER_VARIANTS),
  description:
    'A workload-identity authority whose attestations Leash accepts, one sub-schema per `kind` (docs/attestation.md describes each kind, its claims and its anti-spoofing defaults). A key that does not apply to the kind is an error.',
});

// ---------------------------------------------------------------- people (agents acting for a human)

export const UserIdentityProvider = Type.Object(
  {
    name: Identifier('Name grants refer to (`users.providers`).'),
    issuer: Type.String({ minLength: 1, description: "Exact expected `iss` of the human's access or ID token. Must differ from Leash's own issuer and from every trusted issuer." }),
    audience: Type.Union([Type.String({ minLength: 1 }), Type.Array(Type.String({ minLength: 1 }), { minItems: 1 })], {
      description: 'Expected `aud`: the token must name (one of) these (the client id Leash is registered as at the IdP).',
    }),
    jwks: JwksSource,
    algorithms: Type.Array(literals(ATTESTATION_ALGORITHMS, 'algorithm'), {
      minItems: 1,
      uniqueItems: true,
      default: ['RS256', 'ES256'],
      description: 'Accepted signature algorithms (asymmetric only).',
    }),
    max_token_age: Seconds('Oldest `iat` accepted, in seconds.', 3600),
    clock_skew: Seconds('Clock tolerance for this provider.', 30, 0),
    groups_claim: Type.String({ minLength: 1, default: 'groups', description: "Claim holding the human's groups (an array of strings, or one string)." }),
    roles_claim: Type.String({ minLength: 1, default: 'roles', description: "Claim holding the human's roles (an array of strings, or one string)." }),
  },
  {
    ...Strict,
    description:
      "A trusted OIDC identity provider for people: an exchange may present a human's access or ID token from it as `subject_token` with the plugin's attestation as `actor_token`; the token is then issued with `sub` = the human (`<issuer>#<sub>`) and `act` = the plugin. Without one, human subject tokens are refused.",
  },
);

export const GrantUsers = Type.Object(
  {
    providers: Type.Optional(Type.Array(Identifier('user identity provider name'), { minItems: 1, uniqueItems: true, description: 'The human must come from one of these providers (default: any).' })),
    groups: Type.Optional(Type.Array(Type.String({ minLength: 1 }), { minItems: 1, uniqueItems: true, description: 'The human must be in one of these groups.' })),
    roles: Type.Optional(Type.Array(Type.String({ minLength: 1 }), { minItems: 1, uniqueItems: true, description: 'The human must hold one of these roles.' })),
    approver: Type.Union([Type.Literal('security'), Type.Literal('person')], {
      default: 'security',
      description:
        "Who decides this grant's approvals: `security` (the security role or an approver group, as for every grant) or `person` (also the person the agent acts for, with their own token). Separation of duties: `person` is refused on grants of high or critical plugins and on `exfiltrate` or `admin` grants and tools.",
    }),
  },
  {
    ...Strict,
    description:
      "This grant is used on behalf of a human (subject_token from a user identity provider, actor_token the plugin's attestation), who must meet these requirements. A grant without `users` refuses requests on behalf of a human; a grant with it refuses requests without one.",
  },
);

// ---------------------------------------------------------------- resource servers

export const ResourceServer = Type.Object(
  {
    id: Identifier('Client id the resource server authenticates with at `/introspect` and the revocation feed.'),
    audiences: Type.Array(Type.String({ minLength: 1 }), {
      minItems: 1,
      uniqueItems: true,
      description: 'Audiences this server answers for: introspection reports `active: false` for tokens meant for anyone else.',
    }),
    client_secret_sha256: Type.Optional(Type.String({ pattern: '^[0-9a-f]{64}$', description: 'Hex SHA-256 of its client secret (`client_secret_basic` / `client_secret_post`).' })),
    jwks: Type.Optional(JwksSource),
    push: Type.Optional(
      Type.Object(
        {
          url: Type.String({ format: 'uri', description: 'Where Leash POSTs signed Security Event Tokens (RFC 8417/8935) for revocations.' }),
          max_attempts: Type.Integer({ minimum: 1, maximum: 20, default: 6, description: 'Deliveries tried per event before it is dropped (and counted).' }),
        },
        { ...Strict, description: 'Push delivery of revocation events.' },
      ),
    ),
  },
  { ...Strict, description: 'An API that trusts Leash: may introspect tokens and follow the revocation feed. Exactly one of `client_secret_sha256` or `jwks` (private_key_jwt).' },
);

// ---------------------------------------------------------------- plugins

export const Match = Type.Object(
  {
    equals: Type.Optional(Type.String({ description: 'Exact value.' })),
    glob: Type.Optional(Type.String({ minLength: 1, description: 'Anchored pattern: `*` matches any run of characters except `/` and `:`; nothing else is special.' })),
  },
  { ...Strict, description: 'Exactly one of `equals` or `glob`.' },
);

export const Binding = Type.Object(
  {
    issuer: Identifier('Name of a trusted issuer.'),
    subject: Type.Union([Type.String({ minLength: 1 }), Match], { description: 'The workload subject: a string (exact) or `{glob}`.' }),
    claims: Type.Record(Type.String(), Type.Union([Type.String(), Match]), { default: {}, description: 'Further attested attributes that must match (exact string or `{glob}`).' }),
  },
  { ...Strict, description: 'Which attested workload identity may act as the plugin.' },
);

export const Condition = Type.Object(
  {
    expr: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 4096,
        description:
          'A CEL expression that must be true, over `workload.*`, `request.*`, `task.*`, `plugin.*`, `now`, `approval.rule` and `delegation.*` (docs/conditions.md). Checked at load (names, types, a cost bound); an expression that cannot be evaluated denies. Stands alone: no `attr` or operator beside it.',
      }),
    ),
    attr: Type.Optional(Type.String({ pattern: '^(workload|task|request)\\.[A-Za-z0-9_./:-]+$', description: 'What is tested: `workload.<claim>`, `task.<attribute>` or `request.<parameter>`.' })),
    equals: Type.Optional(Type.String({ description: 'The attribute equals this value.' })),
    in: Type.Optional(Type.Array(Type.String(), { minItems: 1, description: 'The attribute equals one of these values.' })),
    glob: Type.Optional(Type.String({ minLength: 1, description: 'The attribute matches this anchored pattern (same syntax as in bindings).' })),
    present: Type.Optional(Type.Boolean({ description: '`true`: the attribute must be present; `false`: it must be absent.' })),
  },
  { ...Strict, description: 'A request-time test: an `expr` (CEL), or an `attr` with exactly one of `equals`, `in`, `glob`, `present`.' },
);

export const TimeWindow = Type.Object(
  {
    days: Type.Array(literals(['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'] as const, 'weekday'), {
      minItems: 1,
      uniqueItems: true,
      default: ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'],
      description: 'UTC weekdays on which the grant may be used.',
    }),
    from: Type.String({ pattern: '^([01][0-9]|2[0-3]):[0-5][0-9]$', default: '00:00', description: 'UTC time of day, inclusive.' }),
    to: Type.String({ pattern: '^([01][0-9]|2[0-4]):[0-5][0-9]$', default: '24:00', description: 'UTC time of day, exclusive.' }),
  },
  { ...Strict, description: 'When (UTC) the grant may be used.' },
);

export const AwsGrant = Type.Object(
  {
    role_arn: Type.String({ pattern: '^arn:aws[a-z-]*:iam::[0-9]{12}:role/[A-Za-z0-9+=,.@_/-]{1,512}$', description: 'The IAM role assumed for the plugin.' }),
    mode: Type.Union([Type.Literal('web-identity'), Type.Literal('assume-role')], {
      default: 'web-identity',
      description:
        "`web-identity` (recommended): Leash signs a token and calls AssumeRoleWithWebIdentity, holding no AWS secret. `assume-role`: Leash's own AWS credentials (default provider chain) call AssumeRole.",
    }),
    actions: Type.Array(Type.String({ pattern: '^[a-z0-9-]+:[A-Za-z0-9*]+$' }), { minItems: 1, uniqueItems: true, description: 'IAM actions the session policy allows (e.g. `s3:GetObject`).' }),
    resources: Type.Array(Type.String({ pattern: '^(\\*|arn:aws[a-z-]*:[^\\s]+)$' }), { minItems: 1, uniqueItems: true, description: 'Resource ARNs the session policy allows.' }),
    transitive_tags: Type.Boolean({ default: false, description: 'Make the `leash:*` session tags transitive (they follow role chaining).' }),
    role_max_session: Type.Integer({ ...InSeconds, minimum: 900, maximum: 43200, default: 3600, description: "The role's MaxSessionDuration, in seconds: the longest session Leash will ask for." }),
  },
  { ...Strict, description: '`aws-sts` grants: which role, narrowed to which actions and resources.' },
);

export const VaultGrant = Type.Object(
  {
    path: Type.String({ pattern: '^[A-Za-z0-9_-]+(/[A-Za-z0-9_.@-]+)+$', description: 'Vault path that issues a dynamic secret, e.g. `database/creds/crm-readonly` or `pki/issue/plugins`.' }),
    method: Type.Union([Type.Literal('read'), Type.Literal('write')], { default: 'read', description: '`read` (GET, e.g. database/aws creds) or `write` (POST with `params`, e.g. PKI issue).' }),
    params: Type.Record(Type.String(), Type.String(), { default: {}, description: '`write`: the request body.' }),
  },
  { ...Strict, description: "`vault` grants: where the dynamic secret comes from. Its lease is revoked when the task ends, the plugin is suspended, or the grant's TTL passes." },
);

export const StepUp = Type.Object(
  {
    max_attestation_age: Type.Optional(Seconds('The attestation must have been issued (`iat`) at most this many seconds ago.')),
    dpop: Type.Boolean({ default: false, description: 'A DPoP proof is required (the token is sender-constrained).' }),
    justification: Type.Boolean({ default: false, description: 'The request must carry a `justification` parameter (recorded in the audit event, shown to approvers).' }),
  },
  { ...Strict, description: 'Extra proof asked of the requester.' },
);

export const TOOL_APPROVAL_RULES = ['none', 'human'] as const;

export const ToolArgumentTest = Type.Object(
  {
    equals: Type.Optional(Type.Union([Type.String(), Type.Number(), Type.Boolean()], { description: 'The argument equals this value (same JSON type).' })),
    in: Type.Optional(Type.Array(Type.Union([Type.String(), Type.Number()]), { minItems: 1, description: 'The argument equals one of these values.' })),
    glob: Type.Optional(Type.String({ minLength: 1, description: 'The argument is a string matching this anchored pattern (`*`: any run of characters except `/` and `:`).' })),
    max: Type.Optional(Type.Number({ description: 'The argument is a number at most this.' })),
    min: Type.Optional(Type.Number({ description: 'The argument is a number at least this.' })),
  },
  {
    ...Strict,
    description:
      "A test on one argument of a tool call, checked on the value the caller exposes in its `leash_mcp_tool_call` detail (the MCP server checks that value is the call's own). At least one member; all must hold.",
  },
);

export const McpTool = Type.Object(
  {
    name: Type.String({
      pattern: '^[A-Za-z0-9_./*-]{1,128}$',
      description: 'The tool name, or an anchored glob over tool names (`*`: any run of characters except `/` and `:`). The first tool of the list that matches decides.',
    }),
    effect: literals(EFFECTS, 'What the tool can do; drives its approval default and the review.'),
    approval: Type.Optional(
      literals(TOOL_APPROVAL_RULES, '`human`: a person approves each call, bound to its exact arguments. Default: `human` for `write`, `exfiltrate` and `admin` effects, `none` otherwise.'),
    ),
    per_call: Type.Optional(
      Type.Boolean({
        description:
          'Whether each call needs its own credential (`authorization_details`, single use); `false` lets a session token carry `tool:<name>`. Default: `false` for `read`, `true` otherwise; always `true` with `approval: human`.',
      }),
    ),
    expose: Type.Array(Type.String({ pattern: '^[A-Za-z0-9_.-]{1,64}$' }), {
      default: [],
      uniqueItems: true,
      description: 'Arguments whose values the per-call request must carry in clear, for the approver to see (every argument named in `arguments` must be carried too).',
    }),
    arguments: Type.Record(Type.String({ pattern: '^[A-Za-z0-9_.-]{1,64}$' }), ToolArgumentTest, { default: {}, description: 'Tests on argument values, per argument name; all must hold.' }),
    max_ttl: Seconds("Lifetime of a per-call credential, in seconds (at most the grant's `max_ttl`).", 60),
  },
  { ...Strict, description: 'One MCP tool (or tool glob) a grant reaches, with its effect and rule.' },
);

export const Grant = Type.Object(
  {
    audience: Type.String({ minLength: 1, description: 'The API (resource / audience) this grant reaches. Exactly one per grant.' }),
    scopes: Type.Array(Type.String({ pattern: '^[\\x21\\x23-\\x5B\\x5D-\\x7E]+$' }), { minItems: 1, uniqueItems: true, description: 'Scopes the plugin may ask for at that audience.' }),
    default_scopes: Type.Optional(Type.Array(Type.String(), { minItems: 1, uniqueItems: true, description: 'Scopes issued when the request names none (default: the first of `scopes`, never all).' })),
    kind: literals(CREDENTIAL_KINDS, 'Credential kind issued: `jwt` (a Leash token), `aws-sts` (AWS credentials; needs `aws`), `vault` (a Vault dynamic secret; needs `vault`).', 'jwt'),
    effect: literals(EFFECTS, 'What the access can do; drives review and approval defaults.'),
    max_ttl: Seconds('Longest token this grant issues, in seconds.', 300),
    task_required: Type.Boolean({ default: true, description: 'Whether a live task is required (default yes).' }),
    outlive_attestation: Type.Boolean({
      default: false,
      description:
        'Let credentials of this grant live past the `exp` of the attestation they were exchanged for. Off (default): a credential never outlives its attestation. Turning it on widens the grant, and reviews should flag it.',
    }),
    dpop: Type.Union([Type.Literal('required'), Type.Literal('optional')], { default: 'optional', description: '`required`: the token is bound to a DPoP key (`cnf.jkt`).' }),
    approval: Type.Optional(
      literals(
        APPROVAL_RULES,
        'Approval rule: `none`, `human` (a person approves each request), `step-up` (no person, but `step_up` proof is required). Default: `human` for `write`, `exfiltrate` and `admin` effects, `none` otherwise.',
      ),
    ),
    step_up: Type.Optional(StepUp),
    conditions: Type.Array(Condition, { default: [], description: 'All must hold at request time.' }),
    time: Type.Optional(TimeWindow),
    aws: Type.Optional(AwsGrant),
    vault: Type.Optional(VaultGrant),
    users: Type.Optional(GrantUsers),
    tools: Type.Optional(
      Type.Array(McpTool, {
        minItems: 1,
        description:
          'The audience is an MCP server: the tools this grant reaches. A session token carries `tool:<name>` scopes for tools without `per_call`; every other call needs a per-call credential (RFC 9396 `authorization_details` of type `leash_mcp_tool_call`). A tool no entry matches is refused. `jwt` grants only.',
      }),
    ),
  },
  { ...Strict, description: 'One narrow permission of a plugin.' },
);

/** Asymmetric algorithms a plugin's client assertion may use (never `none` or HMAC: its keys are public). */
export const PLUGIN_ASSERTION_ALGORITHMS = ['ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519', 'PS256', 'PS384', 'PS512', 'RS256', 'RS384', 'RS512'] as const;

/** RFC 7591 `token_endpoint_auth_method` values a plugin may register (RFC 7523, RFC 8705 §2.1 and §2.2). */
export const PLUGIN_CLIENT_AUTH_METHODS = ['private_key_jwt', 'tls_client_auth', 'self_signed_tls_client_auth'] as const;

export const PluginClientAuth = Type.Object(
  {
    method: literals(
      PLUGIN_CLIENT_AUTH_METHODS,
      '`private_key_jwt` (RFC 7523 §2.2): the plugin signs a short-lived, single-use assertion with a key of `jwks` at every exchange. `tls_client_auth` (RFC 8705 §2.1): it presents a client certificate that chains to `ca_file` and carries the one registered `tls_client_auth_*` subject. `self_signed_tls_client_auth` (RFC 8705 §2.2): it presents a certificate registered as the `x5c` of a key of `jwks` (matched by SHA-256 thumbprint).',
    ),
    jwks: Type.Optional(JwksSource),
    ca_file: Type.Optional(
      Type.String({
        minLength: 1,
        description: '`tls_client_auth`: PEM bundle of the CAs its certificate must chain to (relative to the config file; re-read on reload). Default: `settings.tls.client_ca_file`.',
      }),
    ),
    tls_client_auth_subject_dn: Type.Optional(
      Type.String({
        minLength: 1,
        description: '`tls_client_auth`: the expected subject DN, an RFC 4514 string (e.g. `CN=crm-reader,O=Example`), compared attribute by attribute, case-insensitively.',
      }),
    ),
    tls_client_auth_san_dns: Type.Optional(Type.String({ minLength: 1, description: '`tls_client_auth`: an expected dNSName SAN of the certificate.' })),
    tls_client_auth_san_uri: Type.Optional(Type.String({ minLength: 1, description: '`tls_client_auth`: an expected uniformResourceIdentifier SAN (e.g. a SPIFFE ID).' })),
    tls_client_auth_san_ip: Type.Optional(Type.String({ minLength: 1, description: '`tls_client_auth`: an expected iPAddress SAN (IPv4 or IPv6 text form).' })),
    tls_client_auth_san_email: Type.Optional(Type.String({ minLength: 1, description: '`tls_client_auth`: an expected rfc822Name SAN.' })),
    algorithms: Type.Array(literals(PLUGIN_ASSERTION_ALGORITHMS, 'algorithm'), {
      minItems: 1,
      uniqueItems: true,
      default: ['ES256', 'EdDSA', 'Ed25519'],
      description: 'Algorithms its assertions may use (asymmetric only).',
    }),
    attestation: literals(
      ['required', 'optional'] as const,
      '`required` (default): the plugin sends its attestation and authenticates with its key; both must name it. `optional`: it may also exchange with its key alone (no platform identity: a vendor-hosted plugin, a laptop in a demo), as `subject_token_type` `urn:leash:params:oauth:token-type:client` with its id as `subject_token`; then `bindings` may be empty. A standing key is a long-lived secret: the review flags every such plugin.',
      'required',
    ),
  },
  {
    ...Strict,
    description:
      'Client authentication of the plugin at the token endpoint (its `token_endpoint_auth_method`), in addition to (or instead of) its attestation. When set, every exchange of the plugin must authenticate. `tls_client_auth` takes exactly one `tls_client_auth_*` subject.',
  },
);

export const Plugin = Type.Object(
  {
    id: Identifier('The plugin identity: becomes `sub`, `client_id` and `plugin` of its tokens.'),
    owner: Type.String({ minLength: 1, description: 'Accountable owner (team or person).' }),
    risk: literals(RISK_TIERS, 'Risk tier.'),
    description: Type.Optional(Type.String({ description: 'Free text for reviewers.' })),
    disabled: Type.Boolean({ default: false, description: 'A disabled plugin gets no tokens.' }),
    vendor_managed: Type.Boolean({
      default: false,
      description: 'A third-party plugin whose privilege boundaries are opaque: the vendor guardrails apply (risk floor, DPoP, human approval for anything but `read`).',
    }),
    delegate_to: Type.Array(Identifier('plugin id'), {
      default: [],
      uniqueItems: true,
      description: 'Plugins this plugin may delegate to: they may present its token as `subject_token` with their own attestation as `actor_token` (RFC 8693 `may_act`).',
    }),
    allow_owner_approval: Type.Boolean({ default: false, description: "Let the plugin's owner approve its own plugin's requests (off: separation of duties)." }),
    quotas: Type.Optional(
      Type.Object(
        {
          exchanges_per_minute: Type.Optional(Type.Integer({ minimum: 1, description: 'Token exchanges (issued or not) per minute, across replicas.' })),
          tokens_per_task: Type.Optional(
            Type.Integer({
              minimum: 1,
              description:
                'Credentials issued to this plugin within one task. Checked before the decision and again in the write that records the token, so concurrent exchanges on other workers or replicas cannot pass it.',
            }),
          ),
          live_tokens: Type.Optional(Type.Integer({ minimum: 1, description: 'Unexpired, unrevoked credentials this plugin may hold at once.' })),
          on_breach: Type.Union([Type.Literal('refuse'), Type.Literal('suspend')], {
            default: 'refuse',
            description: '`suspend`: a breach also suspends the plugin (kill switch) until a security admin resumes it.',
          }),
        },
        { ...Strict, description: 'Limits that stop a runaway plugin (the "API bill spike").' },
      ),
    ),
    client_auth: Type.Optional(PluginClientAuth),
    bindings: Type.Array(Binding, { default: [], description: 'Attested workloads that may act as this plugin. At least one, unless `client_auth.attestation` is `optional`.' }),
    grants: Type.Array(Grant, { minItems: 1, description: 'What it may ask for.' }),
  },
  { ...Strict, description: 'A governed non-human identity.' },
);

// ---------------------------------------------------------------- guardrails and exceptions

const TtlByEffect = Type.Object(
  {
    read: Seconds('`read` grants.', 3600),
    'read-sensitive': Seconds('`read-sensitive` grants.', 900),
    write: Seconds('`write` grants.', 900),
    exfiltrate: Seconds('`exfiltrate` grants.', 300),
    admin: Seconds('`admin` grants.', 300),
  },
  { ...Strict, description: 'Guardrail `max-ttl`: the longest `max_ttl` a grant of each effect may have.', default: {} },
);

export const Guardrails = Type.Object(
  {
    max_ttl: TtlByEffect,
    approval_for_effects: Type.Array(literals(EFFECTS, 'effect'), {
      default: ['exfiltrate', 'admin'],
      uniqueItems: true,
      description: 'Guardrail `approval-for-effect`: grants of these effects need `approval: human`.',
    }),
    approval_for_risk: Type.Array(literals(RISK_TIERS, 'risk tier'), {
      default: ['critical'],
      uniqueItems: true,
      description: 'Guardrail `approval-for-risk`: every grant of plugins of these tiers needs `approval: human` (an explicit `approval: none` no longer silently overrides the tier).',
    }),
    dpop_for_risk: Type.Array(literals(RISK_TIERS, 'risk tier'), {
      default: ['high', 'critical'],
      uniqueItems: true,
      description: 'Guardrail `dpop-for-risk`: `jwt` grants of plugins of these tiers must be DPoP-bound (by the grant or by `settings.dpop.required_for_risk`).',
    }),
    allow_broad_bindings: Type.Boolean({
      default: false,
      description: 'Guardrail `no-broad-binding`: when false, a binding may not match a whole namespace, repository owner or trust domain (a glob whose whole subject or claim segment is `*`).',
    }),
    task_required_for_effects: Type.Array(literals(EFFECTS, 'effect'), {
      default: ['write', 'exfiltrate', 'admin'],
      uniqueItems: true,
      description: 'Guardrail `task-required`: grants of these effects may not say `task_required: false`.',
    }),
    forbidden_scopes: Type.Array(Type.String({ minLength: 1 }), {
      default: ['.*\\*.*', '(.*[:._/-])?(admin|root|superuser|all|full[_-]?access)([:._/-].*)?'],
      uniqueItems: true,
      description: 'Guardrail `no-broad-scope`: regular expressions (anchored to the whole scope, case-insensitive) no granted scope may match: wildcards and admin-like scopes.',
    }),
    vendor: Type.Object(
      {
        min_risk: literals(RISK_TIERS, 'Guardrail `vendor-risk-floor`: the lowest risk tier a `vendor_managed` plugin may declare.', 'high'),
        dpop: Type.Boolean({ default: true, description: 'Guardrail `vendor-dpop`: `jwt` grants of `vendor_managed` plugins must be DPoP-bound.' }),
        approval_unless_read: Type.Boolean({ default: true, description: 'Guardrail `vendor-approval`: grants of `vendor_managed` plugins other than `read` need `approval: human`.' }),
      },
      { ...Strict, description: 'Vendor-managed (third-party) plugins are high risk by default.', default: {} },
    ),
    exceptions: Type.Object(
      {
        max_days: Type.Integer({ ...InDays, minimum: 1, maximum: 3650, default: 90, description: 'Longest an exception may run: from `created_at` (or its last renewal) to `expires_at`.' }),
      },
      { ...Strict, description: 'Limits on exceptions.', default: {} },
    ),
  },
  {
    ...Strict,
    description:
      "Organisation-level limits every grant must meet. Defaults are on. Given with `leash serve --guardrails FILE` (a file platform security owns) they set the baseline; the policy file's own `guardrails` may only tighten it.",
    default: {},
  },
);

export const GuardrailsFile = Type.Object(
  {
    $schema: Type.Optional(Type.String({ description: 'Editor hint; ignored.' })),
    version: Type.Literal(1, { description: 'Guardrails file format version.' }),
    guardrails: Guardrails,
  },
  { ...Strict, title: 'Leash guardrails', description: 'The guardrails file (`leash serve --guardrails FILE`, `leash review --guardrails FILE`).' },
);

export const ExceptionRenewal = Type.Object(
  {
    date: DateTime('When it was renewed.'),
    by: Type.String({ minLength: 1, description: 'Who approved the renewal.' }),
    reason: Type.String({ minLength: 3, description: 'Why it is still needed.' }),
  },
  { ...Strict, description: 'One renewal of an exception.' },
);

export const PolicyException = Type.Object(
  {
    id: Identifier('Stable id of the exception (events and findings name it).'),
    plugin: Identifier('The plugin it covers.'),
    grant: Type.Optional(Type.String({ minLength: 1, description: 'The audience of the grant it covers; omitted, it covers the plugin as a whole (bindings, risk tier, every grant).' })),
    guardrail: literals(GUARDRAIL_IDS, 'The guardrail it lets the plugin or grant break.'),
    reason: Type.String({ minLength: 3, description: 'Why the deviation is needed.' }),
    ticket: Type.Optional(Type.String({ minLength: 1, description: 'The ticket that tracks it (its removal, most of all).' })),
    owner: Type.Optional(Type.String({ minLength: 1, description: 'Who answers for it.' })),
    approved_by: Type.String({ minLength: 1, description: 'Who approved it.' }),
    created_at: DateTime('When it was granted.'),
    expires_at: DateTime(
      'When it stops applying, at request time: from that second the grant it covers is refused (`ERR_EXCEPTION_EXPIRED`) and the live tokens it allowed are revoked. At most `guardrails.exceptions.max_days` after `created_at` or the last renewal.',
    ),
    renewals: Type.Array(ExceptionRenewal, { default: [], description: 'Each renewal, oldest first (the review counts them).' }),
  },
  { ...Strict, description: 'A time-boxed deviation from one guardrail: the only way around it.' },
);

export const LeashConfig = Type.Object(
  {
    $schema: Type.Optional(Type.String({ description: 'Editor hint; ignored.' })),
    version: Type.Literal(1, { description: 'Config format version.' }),
    settings: Settings,
    admin: Admin,
    trusted_issuers: Type.Array(TrustedIssuer, { minItems: 1, description: 'Workload-identity authorities.' }),
    user_identity_providers: Type.Array(UserIdentityProvider, { default: [], description: 'OIDC providers whose people agents may act for (docs/mcp.md).' }),
    plugins: Type.Array(Plugin, { default: [], description: 'Governed plugins.' }),
    resource_servers: Type.Array(ResourceServer, { default: [], description: 'APIs that introspect Leash tokens and follow its revocation feed.' }),
    guardrails: Type.Optional(Guardrails),
    exceptions: Type.Array(PolicyException, { default: [], description: 'Time-boxed exceptions to guardrails.' }),
  },
  { ...Strict, title: 'Leash configuration', description: 'Settings, trusted issuers, plugins and grants: policy as code.' },
);

export type LeashConfig = Static<typeof LeashConfig>;
export type Settings = Static<typeof Settings>;
/** A trusted issuer as loaded: one member per kind, discriminated on `kind`. */
export type TrustedIssuerConfig = Static<typeof TrustedIssuer>;
/** The trusted issuer of one kind. */
export type TrustedIssuerOf<K extends IssuerKind> = Extract<TrustedIssuerConfig, { kind: K }>;
export type TokenReviewConfig = Static<typeof TokenReview>;
export type JwksSourceConfig = Static<typeof JwksSource>;
export type PluginConfig = Static<typeof Plugin>;
export type GrantConfig = Static<typeof Grant>;
export type BindingConfig = Static<typeof Binding>;
export type MatchConfig = Static<typeof Match>;
export type ConditionConfig = Static<typeof Condition>;
export type AdminConfig = Static<typeof Admin>;
export type AdminIssuerConfig = Static<typeof AdminIssuer>;
export type ResourceServerConfig = Static<typeof ResourceServer>;
export type QuotaConfig = NonNullable<PluginConfig['quotas']>;
export type PluginClientAuthConfig = Static<typeof PluginClientAuth>;
export type TlsSettingsConfig = Static<typeof TlsSettings>;
export type AwsGrantConfig = Static<typeof AwsGrant>;
export type AwsSettingsConfig = Static<typeof AwsSettings>;
export type KeysSettingsConfig = Static<typeof KeysSettings>;
export type VaultSettingsConfig = Static<typeof VaultSettings>;
export type VaultGrantConfig = Static<typeof VaultGrant>;
export type StepUpConfig = Static<typeof StepUp>;
export type McpToolConfig = Static<typeof McpTool>;
export type UserIdentityProviderConfig = Static<typeof UserIdentityProvider>;
export type GrantUsersConfig = Static<typeof GrantUsers>;
export type ToolArgumentTestConfig = Static<typeof ToolArgumentTest>;
export type ApprovalSettingsConfig = Static<typeof ApprovalSettings>;
export type DelegationSettingsConfig = Static<typeof DelegationSettings>;
export type GuardrailsConfig = Static<typeof Guardrails>;
export type GuardrailsFileConfig = Static<typeof GuardrailsFile>;
export type ExceptionConfig = Static<typeof PolicyException>;
export type ReviewSettingsConfig = Static<typeof ReviewSettings>;
export type GuardrailId = (typeof GUARDRAIL_IDS)[number];
export type UsageSettingsConfig = Static<typeof UsageSettings>;
export type AdmissionSettingsConfig = Static<typeof AdmissionSettings>;
export type AuditSinkConfig = Static<typeof AuditSink>;
export type KeyBackend = (typeof KEY_BACKENDS)[number];
export type ApprovalRule = (typeof APPROVAL_RULES)[number];
export type Effect = (typeof EFFECTS)[number];
export type IssuerKind = (typeof ISSUER_KINDS)[number];
export type CredentialKind = (typeof CREDENTIAL_KINDS)[number];
export type RiskTier = (typeof RISK_TIERS)[number];
export type AdminRole = (typeof ADMIN_ROLES)[number];
export type SigningAlgorithm = (typeof SIGNING_ALGORITHMS)[number];
export type ConsoleSettingsConfig = Static<typeof ConsoleSettings>;
