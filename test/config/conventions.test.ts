import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, type ConfigProblem } from '../../src/config/config-error.js';
import { parseDuration } from '../../src/config/duration.js';
import { ENV_OVERRIDABLE_SETTINGS, envNameOf } from '../../src/config/env-overrides.js';
import { loadConfigBytes, loadConfigFile, parseConfig, readGuardrailsFile } from '../../src/config/load.js';
import type { Env } from '../../src/config/interpolate.js';
import { minimalConfig, problemsOf } from './fixtures.js';

/**
 * The config conventions (docs/configuration.md, "Conventions"): `${VAR}` interpolation,
 * durations written as `15m`, and LEASH_* overrides, through the real loader and real files.
 */

const ISSUER = `trusted_issuers:
  - name: cluster
    kind: kubernetes
    issuer: https://k8s.example.com
    audience: leash
    jwks:
      file: cluster.jwks.json
`;

const load = (yaml: string, env: Env = {}) => loadConfigBytes(new TextEncoder().encode(`version: 1\n${yaml}`), '/etc/leash/leash.yaml', { env });

function loadProblems(yaml: string, env: Env = {}): readonly ConfigProblem[] {
  try {
    load(yaml, env);
  } catch (e) {
    if (e instanceof ConfigError) return e.problems;
    throw e;
  }
  throw new Error('expected a ConfigError, but the config was accepted');
}

const messageOf = (yaml: string, env: Env = {}): string => {
  try {
    load(yaml, env);
  } catch (e) {
    return (e as Error).message;
  }
  throw new Error('expected a ConfigError, but the config was accepted');
};

describe('${ENV} interpolation', () => {
  it('replaces ${VAR} in any string value, and reads a number or boolean setting from it', () => {
    const { config } = load(
      `settings:
  issuer: \${PUBLIC_URL}
  listen:
    port: \${PORT}
  audit:
    stdout: \${AUDIT_STDOUT}
  tokens:
    max_ttl: \${TOKEN_TTL}
${ISSUER}`,
      { PUBLIC_URL: 'https://leash.example.com', PORT: '8443', AUDIT_STDOUT: 'false', TOKEN_TTL: '30m' },
    );
    expect(config.settings.issuer).toBe('https://leash.example.com');
    expect(config.settings.listen.port).toBe(8443);
    expect(config.settings.audit.stdout).toBe(false);
    expect(config.settings.tokens.max_ttl).toBe(1800);
  });

  it('${VAR:-default} takes the default when the variable is unset or empty; a set variable wins', () => {
    const yaml = `settings:
  store:
    path: \${DB:-/var/lib/leash/leash.db}
${ISSUER}`;
    expect(load(yaml).config.settings.store.path).toBe('/var/lib/leash/leash.db');
    expect(load(yaml, { DB: '' }).config.settings.store.path).toBe('/var/lib/leash/leash.db');
    expect(load(yaml, { DB: '/data/x.db' }).config.settings.store.path).toBe('/data/x.db');
  });

  it('several references in one string, and $${ for a literal ${', () => {
    const { config } = load(
      `settings:
  store:
    kind: redis
    url: redis://\${REDIS_HOST}:\${REDIS_PORT:-6379}/0
${ISSUER.replace('audience: leash', () => 'audience: "$${not-a-var}"')}`,
      { REDIS_HOST: 'redis.internal' },
    );
    expect(config.settings.store.url).toBe('redis://redis.internal:6379/0');
    expect(config.trusted_issuers[0]!.audience).toBe('${not-a-var}');
  });

  it('a missing variable with no default is a problem naming the path and the variable, with the other problems', () => {
    expect(loadProblems(`settings:\n  issuer: \${PUBLIC_URL}\n  listen:\n    hots: x\n${ISSUER}`)).toEqual([
      { path: '/settings/issuer', message: 'environment variable PUBLIC_URL is not set (write ${PUBLIC_URL:-default} to give a default)' },
      { path: '/settings/listen/hots', message: "unknown key 'hots' (allowed: host, port, accept_sockets)" },
    ]);
  });

  it('a value from a variable that the setting refuses names the variable, not the value', () => {
    expect(loadProblems(`settings:\n  listen:\n    port: \${PORT}\n${ISSUER}`, { PORT: '80a' })).toEqual([{ path: '/settings/listen/port', message: 'must be an integer (from ${PORT})' }]);
    expect(loadProblems(`settings:\n  listen:\n    port: \${PORT}\n${ISSUER}`, { PORT: '99999' })).toEqual([{ path: '/settings/listen/port', message: 'must be <= 65535 (from ${PORT})' }]);
  });

  it('a malformed reference is a problem, not left to surprise', () => {
    expect(loadProblems(`settings:\n  issuer: https://\${}.example.com\n${ISSUER}`)).toEqual([
      { path: '/settings/issuer', message: "'${}' is not a valid reference: write ${NAME} or ${NAME:-default} (NAME of letters, digits and _), or $${ for a literal ${" },
    ]);
    expect(loadProblems(`settings:\n  issuer: https://\${HOST\n${ISSUER}`)[0]!.message).toMatch(/^'\$\{HOST' is not a valid reference/);
  });

  it('never prints the value of a variable: not in a pattern, duration or unknown-name message', () => {
    const secret = 'hunter2-very-secret';
    const env = { PREFIX: secret, TTL: `${secret}-ttl`, ISSUER_NAME: `${secret}-issuer` };
    const text = messageOf(
      `settings:
  store:
    key_prefix: "\${PREFIX}!"
  tokens:
    max_ttl: \${TTL}
plugins:
  - id: p
    owner: o
    risk: low
    bindings:
      - issuer: \${ISSUER_NAME}
        subject: s
    grants:
      - audience: https://api.example.com
        scopes: [read]
        effect: read
${ISSUER}`,
      env,
    );
    expect(text).not.toContain(secret);
    expect(text).toContain('/settings/store/key_prefix: must be 1-64 characters');
    expect(text).toContain('/settings/tokens/max_ttl: must be a duration such as 30s, 15m, 1h or 1d, or an integer number of seconds (from ${TTL})\n');
    expect(text).toContain('/settings/store/key_prefix: must be 1-64 characters of A-Z, a-z, 0-9, `:`, `_`, `-` (from ${PREFIX})\n');
    expect(text).toContain("/plugins/0/bindings/0/issuer: names no trusted issuer: '${ISSUER_NAME}'");
  });

  it('leaves configs given as values alone: parseConfig does not read the environment', () => {
    const cfg = minimalConfig();
    cfg.plugins[0].owner = '${OWNER}';
    expect(parseConfig(cfg).plugins[0]!.owner).toBe('${OWNER}');
  });
});

describe('durations', () => {
  it.each([
    ['30s', 's', 30],
    ['15m', 's', 900],
    ['1h', 's', 3600],
    ['1d', 's', 86400],
    ['1h30m', 's', 5400],
    ['0s', 's', 0],
    ['500ms', 'ms', 500],
    ['10s', 'ms', 10000],
    ['30d', 'd', 30],
    ['48h', 'd', 2],
  ] as const)('%s in %s is %d', (text, unit, value) => {
    expect(parseDuration(text, unit)).toEqual({ value });
  });

  it.each([
    ['15x', 's', "must be a duration such as 30s, 15m, 1h or 1d, or an integer number of seconds (not '15x')"],
    ['-1m', 's', "must be a duration such as 30s, 15m, 1h or 1d, or an integer number of seconds (not '-1m')"],
    ['1.5h', 's', "must be a duration such as 30s, 15m, 1h or 1d, or an integer number of seconds (not '1.5h')"],
    ['15 m', 's', "must be a duration such as 30s, 15m, 1h or 1d, or an integer number of seconds (not '15 m')"],
    ['', 's', "must be a duration such as 30s, 15m, 1h or 1d, or an integer number of seconds (not '')"],
    ['1500ms', 's', "must be a whole number of seconds ('1500ms' is not)"],
    ['36h', 'd', "must be a whole number of days ('36h' is not)"],
    ['99999999999999999d', 's', "is too long a duration ('99999999999999999d')"],
  ] as const)('%j in %s is refused: %s', (text, unit, error) => {
    expect(parseDuration(text, unit)).toEqual({ error });
  });

  it('every duration setting takes either form, and the loaded config holds the integer of its unit', () => {
    const cfg = minimalConfig();
    cfg.settings = {
      tokens: { default_ttl: '5m', max_ttl: '1h', clock_skew: '30s' },
      tasks: { default_ttl: 3600, max_ttl: '1d' },
      keys: { key_lifetime: '30d', prepublish: '1h', refresh_interval_ms: '10s' },
      revocation: { sync_interval_ms: '500ms', max_staleness_ms: '5s' },
      usage: { retention_days: '30d', purge_interval_ms: '1m' },
      review: { interval: '0s', window_days: '2d' },
      shutdown_grace: '10s',
    };
    cfg.trusted_issuers[0].max_token_age = '1h';
    cfg.plugins[0].grants[0].max_ttl = '5m';
    const { settings, trusted_issuers, plugins } = parseConfig(cfg);
    expect(settings.tokens).toMatchObject({ default_ttl: 300, max_ttl: 3600, clock_skew: 30 });
    expect(settings.tasks).toMatchObject({ default_ttl: 3600, max_ttl: 86400 });
    expect(settings.keys).toMatchObject({ key_lifetime: 2592000, prepublish: 3600, refresh_interval_ms: 10000 });
    expect(settings.revocation).toMatchObject({ sync_interval_ms: 500, max_staleness_ms: 5000 });
    expect(settings.usage).toMatchObject({ retention_days: 30, purge_interval_ms: 60000 });
    expect(settings.review).toMatchObject({ interval: 0, window_days: 2 });
    expect(settings.shutdown_grace).toBe(10);
    expect(trusted_issuers[0]!.max_token_age).toBe(3600);
    expect(plugins[0]!.grants[0]!.max_ttl).toBe(300);
  });

  it('a bad duration is one problem at its path; limits apply to the converted value', () => {
    const cfg = minimalConfig();
    cfg.settings = { tokens: { max_ttl: '15x', default_ttl: '-1m' }, usage: { retention_days: '36h' }, revocation: { sync_interval_ms: '10ms' } };
    expect(problemsOf(cfg)).toEqual([
      { path: '/settings/tokens/max_ttl', message: "must be a duration such as 30s, 15m, 1h or 1d, or an integer number of seconds (not '15x')" },
      { path: '/settings/tokens/default_ttl', message: "must be a duration such as 30s, 15m, 1h or 1d, or an integer number of seconds (not '-1m')" },
      { path: '/settings/usage/retention_days', message: "must be a whole number of days ('36h' is not)" },
      { path: '/settings/revocation/sync_interval_ms', message: 'must be >= 50' },
    ]);
  });

  it('a written duration counts as written for the rules that tell written values from defaults', () => {
    // aws: a written max_token_age above 15 minutes is refused (the default is clamped instead).
    const cfg = minimalConfig();
    cfg.trusted_issuers.push({ name: 'aws', kind: 'aws', issuer: 'https://sts.us-east-1.amazonaws.com', audience: 'leash', max_token_age: '1h' });
    expect(problemsOf(cfg)).toEqual([{ path: '/trusted_issuers/1/max_token_age', message: expect.stringContaining('must be at most 900') }]);
  });

  it('a duration that is not a string or an integer is still the schema’s problem', () => {
    const cfg = minimalConfig();
    cfg.settings = { tokens: { max_ttl: true } };
    expect(problemsOf(cfg)).toEqual([{ path: '/settings/tokens/max_ttl', message: 'must be an integer' }]);
  });

  it('the guardrails file takes durations too', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'leash-guardrails-'));
    try {
      const path = join(dir, 'guardrails.yaml');
      await writeFile(path, 'version: 1\nguardrails:\n  max_ttl:\n    read: 30m\n    admin: 2m\n');
      expect(readGuardrailsFile(path).guardrails.max_ttl).toMatchObject({ read: 1800, admin: 120 });
      await writeFile(path, 'version: 1\nguardrails:\n  max_ttl:\n    read: 30 minutes\n');
      expect(() => readGuardrailsFile(path)).toThrow("/guardrails/max_ttl/read: must be a duration such as 30s, 15m, 1h or 1d, or an integer number of seconds (not '30 minutes')");
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('LEASH_* overrides', () => {
  const FILE = `settings:
  issuer: https://leash.example.com
  listen:
    host: 127.0.0.1
    port: 8080
  store:
    kind: sqlite
    path: ./data/leash.db
  log:
    level: info
${ISSUER}`;

  it('one naming rule: LEASH_ + the settings path, upper case, . as _', () => {
    expect(ENV_OVERRIDABLE_SETTINGS.map(envNameOf)).toEqual([
      'LEASH_ISSUER',
      'LEASH_LISTEN_HOST',
      'LEASH_LISTEN_PORT',
      'LEASH_MANAGEMENT_LISTEN_HOST',
      'LEASH_MANAGEMENT_LISTEN_PORT',
      'LEASH_STORE_KIND',
      'LEASH_STORE_PATH',
      'LEASH_STORE_URL',
      'LEASH_STORE_KEY_PREFIX',
      'LEASH_KEYS_BACKEND',
      'LEASH_KEYS_DIR',
      'LEASH_LOG_LEVEL',
      'LEASH_PRODUCTION',
    ]);
  });

  it('the environment wins over the file, and the loaded config names which overrides applied (not their values)', () => {
    const loaded = load(FILE, {
      LEASH_ISSUER: 'https://leash.staging.example.com',
      LEASH_LISTEN_HOST: '0.0.0.0',
      LEASH_LISTEN_PORT: '9443',
      LEASH_MANAGEMENT_LISTEN_PORT: '9191',
      LEASH_STORE_KIND: 'redis',
      LEASH_STORE_URL: 'rediss://:pw@redis.staging:6380',
      LEASH_LOG_LEVEL: 'debug',
      LEASH_PRODUCTION: 'true',
      LEASH_UNRELATED: 'x',
    });
    const { settings } = loaded.config;
    expect(settings.issuer).toBe('https://leash.staging.example.com');
    expect(settings.listen).toEqual({ host: '0.0.0.0', port: 9443, accept_sockets: 8 });
    expect(settings.management.listen).toEqual({ host: '127.0.0.1', port: 9191 });
    expect(settings.store).toMatchObject({ kind: 'redis', url: 'rediss://:pw@redis.staging:6380' });
    expect(settings.log.level).toBe('debug');
    expect(settings.production).toBe(true);
    expect(loaded.envOverrides).toEqual([
      { env: 'LEASH_ISSUER', path: '/settings/issuer' },
      { env: 'LEASH_LISTEN_HOST', path: '/settings/listen/host' },
      { env: 'LEASH_LISTEN_PORT', path: '/settings/listen/port' },
      { env: 'LEASH_MANAGEMENT_LISTEN_PORT', path: '/settings/management/listen/port' },
      { env: 'LEASH_STORE_KIND', path: '/settings/store/kind' },
      { env: 'LEASH_STORE_URL', path: '/settings/store/url' },
      { env: 'LEASH_LOG_LEVEL', path: '/settings/log/level' },
      { env: 'LEASH_PRODUCTION', path: '/settings/production' },
    ]);
    expect(JSON.stringify(loaded.envOverrides)).not.toContain('pw@');
  });

  it('an override wins over an interpolated value too, and an empty variable counts as unset', () => {
    const yaml = FILE.replace('level: info', 'level: ${LEVEL:-warn}');
    expect(load(yaml, { LEVEL: 'error', LEASH_LOG_LEVEL: 'trace' }).config.settings.log.level).toBe('trace');
    expect(load(yaml, { LEASH_LOG_LEVEL: '' }).config.settings.log.level).toBe('warn');
  });

  it('without a settings section in the file, an override creates it; relative paths resolve next to the config file', () => {
    const loaded = load(ISSUER, { LEASH_STORE_PATH: 'state/leash.db', LEASH_KEYS_DIR: '/var/lib/leash/keys' });
    expect(loaded.config.settings.store.path).toBe('/etc/leash/state/leash.db');
    expect(loaded.config.settings.keys.dir).toBe('/var/lib/leash/keys');
  });

  it('a bad override is a problem at the setting, naming the variable, never its value', () => {
    expect(loadProblems(FILE, { LEASH_LISTEN_PORT: '80a', LEASH_LOG_LEVEL: 'loud', LEASH_STORE_URL: 'http://user:s3cret-pass@redis' })).toEqual([
      { path: '/settings/listen/port', message: 'must be an integer (from LEASH_LISTEN_PORT)' },
      { path: '/settings/store/url', message: 'must be a `redis://` or `rediss://` URL (from LEASH_STORE_URL)' },
      { path: '/settings/log/level', message: 'must be one of "fatal", "error", "warn", "info", "debug", "trace", "silent" (from LEASH_LOG_LEVEL)' },
    ]);
  });

  it('policy is never taken from the environment', () => {
    const loaded = load(FILE, { LEASH_TRUSTED_ISSUERS: '[]', LEASH_PLUGINS: 'x', LEASH_SETTINGS_TOKENS_MAX_TTL: '1' });
    expect(loaded.envOverrides).toEqual([]);
    expect(loaded.config.trusted_issuers).toHaveLength(1);
  });

  describe('loadConfigFile reads process.env', () => {
    let dir: string;
    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), 'leash-env-'));
    });
    afterAll(async () => {
      await rm(dir, { recursive: true, force: true });
    });

    it('with ${VAR} and LEASH_* from the process environment', async () => {
      const path = join(dir, 'leash.yaml');
      await writeFile(path, `version: 1\nsettings:\n  issuer: \${LEASH_TEST_PUBLIC_URL}\n${ISSUER}`);
      process.env.LEASH_TEST_PUBLIC_URL = 'https://from-env.example.com';
      process.env.LEASH_LISTEN_PORT = '18080';
      try {
        const loaded = await loadConfigFile(path);
        expect(loaded.config.settings.issuer).toBe('https://from-env.example.com');
        expect(loaded.config.settings.listen.port).toBe(18080);
        expect(loaded.envOverrides).toEqual([{ env: 'LEASH_LISTEN_PORT', path: '/settings/listen/port' }]);
      } finally {
        // Other test files in this worker load configs too: leave no override behind.
        delete process.env.LEASH_LISTEN_PORT;
        delete process.env.LEASH_TEST_PUBLIC_URL;
      }
    });
  });
});
