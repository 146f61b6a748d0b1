import type { Database } from 'better-sqlite3';

/**
 * Schema migrations, applied in order; the `schema_version` table says how many ran.
 * Append only: a released migration is never edited, a change is a new entry. Statements
 * also use IF NOT EXISTS so a half-applied step (impossible inside the transaction, but
 * cheap insurance) re-runs cleanly.
 */
export const MIGRATIONS: readonly string[] = [
  // 1: the initial schema
  `
  CREATE TABLE IF NOT EXISTS tasks (
    id          TEXT PRIMARY KEY,
    plugins     TEXT NOT NULL,                -- JSON array of plugin ids
    attributes  TEXT NOT NULL,                -- JSON object of string values
    created_at  INTEGER NOT NULL,             -- ms since the epoch
    expires_at  INTEGER NOT NULL,
    created_by  TEXT NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('active', 'ended')),
    ended_at    INTEGER,
    ended_by    TEXT
  );
  CREATE INDEX IF NOT EXISTS tasks_active ON tasks (state, expires_at);

  CREATE TABLE IF NOT EXISTS issued_tokens (
    jti         TEXT PRIMARY KEY,
    plugin      TEXT NOT NULL,
    task        TEXT,
    audience    TEXT NOT NULL,
    scopes      TEXT NOT NULL,                -- JSON array
    kind        TEXT NOT NULL,
    kid         TEXT,
    issued_at   INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    jkt         TEXT
  );
  CREATE INDEX IF NOT EXISTS issued_tokens_task ON issued_tokens (task);
  CREATE INDEX IF NOT EXISTS issued_tokens_expires ON issued_tokens (expires_at);

  CREATE TABLE IF NOT EXISTS audit (
    seq         INTEGER PRIMARY KEY,          -- the rowid: appends are sequential B-tree inserts
    ts          INTEGER NOT NULL,
    type        TEXT NOT NULL,
    event       TEXT NOT NULL,                -- canonical JSON (keys sorted), exactly what was hashed
    prev_hash   TEXT NOT NULL,
    hash        TEXT NOT NULL
  );

  CREATE TABLE IF NOT EXISTS replay (
    key         TEXT PRIMARY KEY,
    expires_at  INTEGER NOT NULL
  ) WITHOUT ROWID;
  CREATE INDEX IF NOT EXISTS replay_expires ON replay (expires_at);
  `,
  // 2: revocation (issue 3): revocation feed, plugin suspensions, quota counters, lookups
  `
  -- live tokens of one plugin (kill switch, live-token quota)
  CREATE INDEX IF NOT EXISTS issued_tokens_plugin ON issued_tokens (plugin, expires_at);

  CREATE TABLE IF NOT EXISTS revocations (
    -- AUTOINCREMENT, not a plain rowid: a purged highest seq is never handed out again, so a
    -- feed cursor can never skip a revocation that reuses an old number.
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    scope         TEXT NOT NULL CHECK (scope IN ('token', 'task', 'plugin', 'key')),
    id            TEXT NOT NULL,
    issued_before INTEGER NOT NULL,
    revoked_at    INTEGER NOT NULL,
    keep_until    INTEGER NOT NULL,
    reason        TEXT NOT NULL,
    actor         TEXT NOT NULL
  );
  CREATE INDEX IF NOT EXISTS revocations_keep ON revocations (keep_until);

  CREATE TABLE IF NOT EXISTS suspensions (
    plugin      TEXT PRIMARY KEY,
    since       INTEGER NOT NULL,
    actor       TEXT NOT NULL,
    reason      TEXT NOT NULL
  ) WITHOUT ROWID;

  CREATE TABLE IF NOT EXISTS counters (
    key          TEXT NOT NULL,
    window_ms    INTEGER NOT NULL,            -- a window size is part of the counter's identity
    window_start INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,            -- end of the window: purged lazily after it
    count        INTEGER NOT NULL,
    PRIMARY KEY (key, window_ms, window_start)
  ) WITHOUT ROWID;
  CREATE INDEX IF NOT EXISTS counters_expires ON counters (expires_at);
  `,
  // 3: human approvals and Vault leases (issues 4 and 6)
  `
  CREATE TABLE IF NOT EXISTS approvals (
    id              TEXT PRIMARY KEY,
    request_hash    TEXT NOT NULL,
    plugin          TEXT NOT NULL,
    owner           TEXT NOT NULL,
    task            TEXT,
    audience        TEXT NOT NULL,
    scopes          TEXT NOT NULL,            -- JSON array
    ttl             INTEGER NOT NULL,
    kind            TEXT NOT NULL,
    effect          TEXT NOT NULL,
    risk            TEXT NOT NULL,
    justification   TEXT,
    chain           TEXT,                     -- JSON array (root first), NULL when not delegated
    cause           TEXT NOT NULL,
    requested_at    INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('pending', 'approved', 'denied', 'used')),
    decided_at      INTEGER,
    decided_by      TEXT,
    decision_reason TEXT,
    redeem_by       INTEGER,
    used_at         INTEGER,
    last_poll_at    INTEGER
  );
  -- listing newest first, all or by state (pending also filters on expires_at)
  CREATE INDEX IF NOT EXISTS approvals_requested ON approvals (requested_at);
  CREATE INDEX IF NOT EXISTS approvals_state ON approvals (state, requested_at);

  CREATE TABLE IF NOT EXISTS vault_leases (
    jti         TEXT PRIMARY KEY,
    lease_id    TEXT NOT NULL,
    plugin      TEXT NOT NULL,
    task        TEXT,
    expires_at  INTEGER NOT NULL,
    revoked_at  INTEGER
  );
  -- the lease sweeper reads only unrevoked leases, by expiry
  CREATE INDEX IF NOT EXISTS vault_leases_due ON vault_leases (expires_at) WHERE revoked_at IS NULL;
  CREATE INDEX IF NOT EXISTS vault_leases_revoked ON vault_leases (revoked_at) WHERE revoked_at IS NOT NULL;
  `,
  // 4: AWS session denies per IAM role (the revoked-sessions inline policy Leash wants there)
  `
  CREATE TABLE IF NOT EXISTS aws_denies (
    role_arn    TEXT PRIMARY KEY,
    state       TEXT NOT NULL                 -- JSON, compared whole for compare-and-set
  ) WITHOUT ROWID;
  `,
  // 5: authorization (issue 10): approval dedupe and limits, audiences of revocations
  `
  -- the request without its TTL and DPoP key (approval dedupe); NULL for records from before
  ALTER TABLE approvals ADD COLUMN dedupe_key TEXT;
  -- pending approvals of one plugin or task, by expiry (the limits and the dedupe lookup)
  CREATE INDEX IF NOT EXISTS approvals_pending_plugin ON approvals (plugin, expires_at) WHERE state = 'pending';
  CREATE INDEX IF NOT EXISTS approvals_pending_task ON approvals (task, expires_at) WHERE state = 'pending';

  -- JSON array of the audiences a revocation concerns (the feed shows it to their resource
  -- servers only); NULL: every resource server (plugin and key scopes, records from before)
  ALTER TABLE revocations ADD COLUMN audiences TEXT;
  `,
  // 6: the governance review's decision history (issue 12): audit decisions folded per day,
  // off the request path, from a cursor, so a review reads thousands of rows, not millions
  `
  CREATE TABLE IF NOT EXISTS decision_rollup (
    day         INTEGER NOT NULL,             -- ts / 86400000 (UTC day)
    type        TEXT NOT NULL,
    plugin      TEXT NOT NULL,                -- '' when the event named none
    reason      TEXT NOT NULL,                -- denials: the ERR_* code; '' otherwise
    audience    TEXT NOT NULL,                -- issued: the audience; '' otherwise
    scopes      TEXT NOT NULL,                -- issued: JSON array as written; '' otherwise
    n           INTEGER NOT NULL,
    last_at     INTEGER NOT NULL,
    PRIMARY KEY (day, type, plugin, reason, audience, scopes)
  ) WITHOUT ROWID;
  CREATE TABLE IF NOT EXISTS decision_rollup_cursor (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    seq         INTEGER NOT NULL              -- the last audit seq folded in
  );
  `,
  // 7: the store's identity (epoch, reset marker, audit genesis); rows are written at open
  `
  CREATE TABLE IF NOT EXISTS meta (
    key         TEXT PRIMARY KEY,
    value       TEXT NOT NULL
  ) WITHOUT ROWID;
  `,
  // 8: usage (issue 13): what resource servers report, aggregated per jti/route/minute;
  // token sources, task budget counters, last-used evidence, task timelines, downstream events
  `
  CREATE TABLE IF NOT EXISTS usage_minutes (
    minute          INTEGER NOT NULL,         -- start of the minute, ms
    task            TEXT NOT NULL,            -- '' when unknown
    jti             TEXT NOT NULL,            -- '' when the server read no token id
    server          TEXT NOT NULL,
    audience        TEXT NOT NULL,
    method          TEXT NOT NULL,
    route           TEXT NOT NULL,
    outcome         TEXT NOT NULL,
    plugin          TEXT NOT NULL,
    calls           INTEGER NOT NULL,
    errors          INTEGER NOT NULL,
    bytes           INTEGER NOT NULL,
    duration_ms     INTEGER NOT NULL,
    max_duration_ms INTEGER NOT NULL,
    first_at        INTEGER NOT NULL,         -- first and last call within the minute
    last_at         INTEGER NOT NULL,
    PRIMARY KEY (task, minute, jti, server, audience, method, route, outcome)
  ) WITHOUT ROWID;
  CREATE INDEX IF NOT EXISTS usage_minutes_minute ON usage_minutes (minute);

  CREATE TABLE IF NOT EXISTS usage_tokens (
    jti         TEXT PRIMARY KEY,
    first_at    INTEGER NOT NULL,
    last_at     INTEGER NOT NULL,
    calls       INTEGER NOT NULL,
    sources     TEXT NOT NULL,                -- JSON array, at most 8 distinct sources
    keep_until  INTEGER NOT NULL
  ) WITHOUT ROWID;
  CREATE INDEX IF NOT EXISTS usage_tokens_keep ON usage_tokens (keep_until);

  CREATE TABLE IF NOT EXISTS usage_task_totals (
    task         TEXT NOT NULL,
    audience     TEXT NOT NULL,               -- '*': every audience of the task
    calls        INTEGER NOT NULL,
    bytes        INTEGER NOT NULL,
    exhausted_at INTEGER,                     -- when its budget ran out
    keep_until   INTEGER NOT NULL,
    PRIMARY KEY (task, audience)
  ) WITHOUT ROWID;
  CREATE INDEX IF NOT EXISTS usage_task_totals_keep ON usage_task_totals (keep_until);

  CREATE TABLE IF NOT EXISTS usage_evidence (
    plugin      TEXT NOT NULL,
    audience    TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('grant', 'route', 'scope')),
    name        TEXT NOT NULL,
    first_at    INTEGER NOT NULL,
    last_at     INTEGER NOT NULL,
    calls       INTEGER NOT NULL,
    PRIMARY KEY (plugin, audience, kind, name)
  ) WITHOUT ROWID;
  CREATE INDEX IF NOT EXISTS usage_evidence_last ON usage_evidence (last_at);

  CREATE TABLE IF NOT EXISTS task_events (
    task        TEXT NOT NULL,
    seq         INTEGER NOT NULL,             -- the audit record
    ts          INTEGER NOT NULL,
    type        TEXT NOT NULL,
    keep_until  INTEGER NOT NULL,
    PRIMARY KEY (task, seq)
  ) WITHOUT ROWID;
  CREATE INDEX IF NOT EXISTS task_events_keep ON task_events (keep_until);

  CREATE TABLE IF NOT EXISTS downstream_events (
    id             TEXT PRIMARY KEY,          -- the source's event id: ingesting twice stores once
    source         TEXT NOT NULL,
    at             INTEGER NOT NULL,
    task           TEXT NOT NULL,
    plugin         TEXT NOT NULL,
    jti            TEXT NOT NULL,
    action         TEXT NOT NULL,
    target         TEXT NOT NULL,
    outcome        TEXT NOT NULL,
    principal      TEXT NOT NULL,
    link           TEXT NOT NULL,
    source_address TEXT NOT NULL,
    keep_until     INTEGER NOT NULL
  );
  CREATE INDEX IF NOT EXISTS downstream_task ON downstream_events (task, at);
  CREATE INDEX IF NOT EXISTS downstream_plugin ON downstream_events (plugin, at);
  CREATE INDEX IF NOT EXISTS downstream_keep ON downstream_events (keep_until);

  -- downstream names of issued credentials (AWS access key ids, Vault lease ids and accessors)
  CREATE TABLE IF NOT EXISTS credential_links (
    kind        TEXT NOT NULL,
    id          TEXT NOT NULL,
    jti         TEXT NOT NULL,
    plugin      TEXT NOT NULL,
    task        TEXT NOT NULL,
    keep_until  INTEGER NOT NULL,
    PRIMARY KEY (kind, id)
  ) WITHOUT ROWID;
  CREATE INDEX IF NOT EXISTS credential_links_keep ON credential_links (keep_until);

  -- a task's call and byte budgets (JSON); NULL: none
  ALTER TABLE tasks ADD COLUMN budgets TEXT;
  `,
  // 9: MCP tool calls (issue 15): what an approval of one tool call shows (tool, exposed
  // argument values, the hash of all arguments), JSON; NULL for other approvals
  `
  ALTER TABLE approvals ADD COLUMN tool_call TEXT;
  -- the person a plugin acts for (<issuer>#<sub>), and whether they may decide (0/1); NULL otherwise
  ALTER TABLE approvals ADD COLUMN on_behalf_of TEXT;
  ALTER TABLE approvals ADD COLUMN person_may_decide INTEGER;
  `,
  // 10: tokens per task and plugin, counted as they are recorded (issue 18: the
  // tokens-per-task quota read every token of the task on every exchange); tasks already
  // on record are counted once here
  `
  CREATE TABLE IF NOT EXISTS task_token_counts (
    task        TEXT NOT NULL,
    plugin      TEXT NOT NULL,
    n           INTEGER NOT NULL,
    PRIMARY KEY (task, plugin)
  ) WITHOUT ROWID;
  INSERT INTO task_token_counts (task, plugin, n) SELECT task, plugin, count(*) FROM issued_tokens WHERE task IS NOT NULL GROUP BY task, plugin;
  `,
  // 11: a token's use row keeps only what decides (first use, its sources): a repeat use from
  // a known source writes nothing (issue 13: one UPDATE per use was a third of ingestion with
  // many live tokens); per-token calls and last use are in usage_minutes
  `
  ALTER TABLE usage_tokens DROP COLUMN last_at;
  ALTER TABLE usage_tokens DROP COLUMN calls;
  `,
  // 12: a counter every change to a token's recorded sources moves (a source added to a row,
  // rows purged), so a process can trust what it remembers of the rows while the counter
  // has not moved under it (issue 13: reading every known token's row per commit was a
  // tenth of ingestion with thousands of live tokens)
  `
  CREATE TABLE IF NOT EXISTS usage_sources_version (
    id          INTEGER PRIMARY KEY CHECK (id = 0),
    v           INTEGER NOT NULL
  );
  INSERT INTO usage_sources_version (id, v) VALUES (0, 0) ON CONFLICT (id) DO NOTHING;
  `,
];

export const SCHEMA_VERSION = MIGRATIONS.length;

/**
 * Brings the database to SCHEMA_VERSION inside one IMMEDIATE transaction, so two processes
 * opening the same new file cannot both migrate. Refuses a database written by a newer
 * Leash rather than guess at its schema.
 */
export function migrate(db: Database): number {
  const run = db.transaction(() => {
    db.exec('CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)');
    const row = db.prepare('SELECT version FROM schema_version').get() as { version: number } | undefined;
    const current = row?.version ?? 0;
    if (current > SCHEMA_VERSION) {
      throw new SchemaTooNewError(current);
    }
    for (let v = current; v < SCHEMA_VERSION; v++) db.exec(MIGRATIONS[v]!);
    if (row === undefined) db.prepare('INSERT INTO schema_version (version) VALUES (?)').run(SCHEMA_VERSION);
    else if (current !== SCHEMA_VERSION) db.prepare('UPDATE schema_version SET version = ?').run(SCHEMA_VERSION);
    return current;
  });
  return run.immediate();
}

export class SchemaTooNewError extends Error {
  constructor(readonly found: number) {
    super(`the database schema is version ${found}, newer than this Leash supports (${SCHEMA_VERSION}); upgrade Leash`);
    this.name = 'SchemaTooNewError';
  }
}
