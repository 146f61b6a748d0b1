import { describe, expect, it, beforeAll, afterAll } from '@jest/globals';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError } from '../../src/config/config-error.js';
import { loadConfigFile, parseConfig, parseConfigText } from '../../src/config/load.js';
import { minimalConfig, patched, problemsOf } from './fixtures.js';
import { settings } from '../policy/fixtures.js';

describe('parseConfig: defaults, paths, freezing', () => {
  it('fills every default of a minimal config from the schema', () => {
    const config = parseConfig(minimalConfig());
    // The policy fixtures' settings are the schema defaults, except an in-memory store and
    // audit lines kept off stdout: this pins both to the schema.
    expect(config.settings).toEqual(
      settings({
        store: { kind: 'sqlite', path: './data/leash.db', url: 'redis://127.0.0.1:6379', key_prefix: 'leash:', allow_volatile: false },
        audit: { stdout: true, checkpoint_every_events: 256, checkpoint_interval_ms: 10000, sinks: [] },
      }),
    );
    expect(config.admin).toEqual({ api_keys: [], issuers: [] });
    const issuer = config.trusted_issuers[0]!;
    expect(issuer).toMatchObject({ algorithms: ['RS256', 'ES256'], max_token_age: 3600, clock_skew: 30 });
    // Defaults are per kind: a kubernetes issuer gets none of the oidc kind's.
    expect(Object.keys(issuer)).not.toContain('subject_claim');
    expect(issuer.jwks).toEqual({ file: 'cluster.jwks.json', timeout_ms: 2000, cooldown_ms: 30000, cache_max_age_ms: 600000 });
    const plugin = config.plugins[0]!;
    expect(plugin.disabled).toBe(false);
    expect(plugin.bindings[0]!.claims).toEqual({});
    expect(plugin.grants[0]).toEqual({
      audience: 'https://crm.example.com/api',
      scopes: ['contacts:read', 'contacts:search'],
      effect: 'read',
      kind: 'jwt',
      max_ttl: 300,
      task_required: true,
      outlive_attestation: false,
      dpop: 'optional',
      conditions: [],
    });
    // No `approval` default in the file: the policy compiler derives it from the effect.
    expect(plugin.grants[0]).not.toHaveProperty('approval');
  });

  it('keeps values that are given instead of the defaults', () => {
    const config = parseConfig(patched((c) => (c.settings = { tokens: { max_ttl: 600 }, listen: { port: 9000 } })));
    expect(config.settings.tokens).toEqual({ default_ttl: 300, max_ttl: 600, clock_skew: 30 });
    expect(config.settings.listen).toEqual({ host: '127.0.0.1', port: 9000, accept_sockets: 8 });
  });

  it('does not modify its input', () => {
    const input = minimalConfig();
    const before = JSON.stringify(input);
    parseConfig(input, { baseDir: '/etc/leash' });
    expect(JSON.stringify(input)).toBe(before);
  });

  it('returns a deeply frozen config', () => {
    const config = parseConfig(minimalConfig());
    expect(Object.isFrozen(config)).toBe(true);
    expect(Object.isFrozen(config.settings.tokens)).toBe(true);
    expect(Object.isFrozen(config.plugins[0]!.grants[0]!.scopes)).toBe(true);
    expect(() => {
      (config.settings.tokens as { max_ttl: number }).max_ttl = 99999;
    }).toThrow(TypeError);
    expect(() => (config.plugins as unknown[]).push({})).toThrow(TypeError);
  });

  it('resolves relative store, keys and jwks file paths against baseDir, and leaves absolute ones and :memory: alone', () => {
    const config = parseConfig(
      patched((c) => {
        c.settings = { store: { path: ':memory:' }, keys: { dir: '/var/lib/leash/keys' } };
        c.admin = { issuers: [{ issuer: 'https://idp.example.com', audience: 'leash-admin', jwks: { file: 'idp/jwks.json' } }] };
      }),
      { baseDir: '/etc/leash' },
    );
    expect(config.settings.store.path).toBe(':memory:');
    expect(config.settings.keys.dir).toBe('/var/lib/leash/keys');
    expect(config.trusted_issuers[0]!.jwks!.file).toBe('/etc/leash/cluster.jwks.json');
    expect(config.admin.issuers[0]!.jwks.file).toBe('/etc/leash/idp/jwks.json');

    const defaults = parseConfig(minimalConfig(), { baseDir: '/etc/leash' });
    expect(defaults.settings.store.path).toBe('/etc/leash/data/leash.db');
    expect(defaults.settings.keys.dir).toBe('/etc/leash/keys');
  });

  it('does not check that files named in the config exist', () => {
    expect(() =>
      parseConfig(
        patched((c) => (c.trusted_issuers[0].jwks = { file: '/nonexistent/nowhere.json' })),
        { baseDir: '/nonexistent' },
      ),
    ).not.toThrow();
  });
});

describe('parseConfig: schema problems', () => {
  it('names an unknown key at a nested path and lists the allowed keys', () => {
    const problems = problemsOf(patched((c) => (c.plugins[0].grants[0].scope = ['x'])));
    expect(problems).toEqual([{ path: '/plugins/0/grants/0/scope', message: expect.stringContaining("unknown key 'scope'") }]);
    expect(problems[0]!.message).toContain('allowed: audience, scopes, default_scopes');
  });

  it('names an unknown key in settings', () => {
    expect(problemsOf(patched((c) => (c.settings = { listen: { hots: 'x' } })))).toEqual([{ path: '/settings/listen/hots', message: "unknown key 'hots' (allowed: host, port, accept_sockets)" }]);
  });

  it('escapes a key with "/" or "~" in the JSON pointer', () => {
    expect(problemsOf(patched((c) => (c.settings = { 'a/b~c': 1 })))[0]!.path).toBe('/settings/a~1b~0c');
  });

  it('reports a missing required key at its own path', () => {
    expect(problemsOf(patched((c) => delete c.plugins[0].grants[0].effect))).toEqual([{ path: '/plugins/0/grants/0/effect', message: 'is required' }]);
  });

  it('collapses a union into one message when no alternative fits the value', () => {
    expect(problemsOf(patched((c) => (c.plugins[0].bindings[0].subject = 42)))).toEqual([{ path: '/plugins/0/bindings/0/subject', message: 'must be a string or {equals|glob}' }]);
    expect(problemsOf(patched((c) => (c.trusted_issuers[0].audience = { a: 1 })))).toEqual([{ path: '/trusted_issuers/0/audience', message: 'must be a string or a list of strings' }]);
  });

  it('blames the one alternative whose type fits the value', () => {
    expect(problemsOf(patched((c) => (c.plugins[0].bindings[0].subject = { glob: 7 })))).toEqual([{ path: '/plugins/0/bindings/0/subject/glob', message: 'must be a string' }]);
    expect(problemsOf(patched((c) => (c.plugins[0].bindings[0].subject = { regex: '.*' })))).toEqual([
      { path: '/plugins/0/bindings/0/subject/regex', message: "unknown key 'regex' (allowed: equals, glob)" },
      // {regex} also has neither equals nor glob: the semantic rule says so too.
      { path: '/plugins/0/bindings/0/subject', message: "needs exactly one of 'equals', 'glob' (found none)" },
    ]);
  });

  it('says which literals are allowed, once', () => {
    expect(problemsOf(patched((c) => (c.plugins[0].grants[0].kind = 'oauth')))).toEqual([{ path: '/plugins/0/grants/0/kind', message: 'must be one of "jwt", "aws-sts", "vault"' }]);
    expect(problemsOf(patched((c) => (c.version = 2)))).toEqual([{ path: '/version', message: 'must be 1' }]);
  });

  it('explains patterns in words', () => {
    expect(problemsOf(patched((c) => (c.plugins[0].id = 'CRM Reader')))).toEqual([{ path: '/plugins/0/id', message: expect.stringContaining('must be an identifier') }]);
    expect(problemsOf(patched((c) => (c.settings = { issuer: 'https://leash.example.com/' })))).toEqual([
      { path: '/settings/issuer', message: 'must be an http(s) URL without query, fragment or trailing slash' },
    ]);
  });

  it('checks format uri without ajv-formats', () => {
    expect(problemsOf(patched((c) => (c.trusted_issuers[0].jwks = { uri: 'not a url' })))).toEqual([{ path: '/trusted_issuers/0/jwks/uri', message: 'must be an absolute URI (scheme:...)' }]);
    expect(() => parseConfig(patched((c) => (c.trusted_issuers[0].jwks = { uri: 'https://k8s.example.com/openid/v1/jwks' })))).not.toThrow();
  });

  it('reports a non-object config at the root', () => {
    expect(problemsOf(null)).toEqual([{ path: '', message: 'must be an object' }]);
    expect(problemsOf(['x'])).toEqual([{ path: '', message: 'must be an object' }]);
  });

  it('reports many problems, schema and semantic, together in one error', () => {
    const input = patched((c) => {
      c.settings = { listen: { port: 70000 }, tasks: { default_ttl: 10, max_ttl: 5 } };
      c.extra = true;
      c.trusted_issuers.push({ ...c.trusted_issuers[0] });
      c.plugins[0].risk = 'extreme';
      c.plugins[0].bindings[0].issuer = 'nope';
    });
    let error: unknown;
    try {
      parseConfig(input);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const problems = (error as ConfigError).problems;
    expect(problems.map((p) => p.path).sort()).toEqual(
      ['/extra', '/settings/listen/port', '/settings/tasks/default_ttl', '/trusted_issuers/1/name', '/plugins/0/risk', '/plugins/0/bindings/0/issuer'].sort(),
    );
    expect((error as ConfigError).message).toMatch(/^invalid configuration \(6 problems\)/);
  });

  it('throws TypeError for a non-string baseDir (programmer error, not config)', () => {
    expect(() => parseConfig(minimalConfig(), { baseDir: 42 as unknown as string })).toThrow(TypeError);
  });
});

describe('loadConfigFile: YAML and JSON files', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'leash-config-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const yamlText = [
    'version: 1',
    'trusted_issuers:',
    '  - name: cluster',
    '    kind: kubernetes',
    '    issuer: https://k8s.example.com',
    '    audience: leash',
    '    jwks: { file: ./cluster.jwks.json }',
    'plugins:',
    '  - id: crm-reader',
    '    owner: team-crm@example.com',
    '    risk: low',
    '    bindings: [{ issuer: cluster, subject: "system:serviceaccount:plugins:crm-reader" }]',
    '    grants: [{ audience: "https://crm.example.com/api", scopes: [contacts:read], effect: read }]',
    '',
  ].join('\n');

  it('loads YAML with digest, absolute path and baseDir, resolving relative paths next to the file', async () => {
    const file = join(dir, 'leash.yaml');
    await writeFile(file, yamlText);
    const loaded = await loadConfigFile(file);
    expect(loaded.path).toBe(file);
    expect(loaded.baseDir).toBe(dir);
    expect(loaded.digest).toBe(
      createHash('sha256')
        .update(await readFile(file))
        .digest('hex'),
    );
    expect(loaded.config.trusted_issuers[0]!.jwks!.file).toBe(join(dir, 'cluster.jwks.json'));
    expect(loaded.config.settings.store.path).toBe(join(dir, 'data', 'leash.db'));
    expect(Object.isFrozen(loaded.config.plugins[0])).toBe(true);
  });

  it('loads the same config from JSON to the same result', async () => {
    const file = join(dir, 'leash.json');
    await writeFile(file, JSON.stringify(minimalConfig(), null, 2));
    const fromJson = await loadConfigFile(file);
    const yamlFile = join(dir, 'same.yml');
    await writeFile(yamlFile, yamlText.replace('./cluster.jwks.json', 'cluster.jwks.json').replace('scopes: [contacts:read]', 'scopes: [contacts:read, contacts:search]'));
    const fromYaml = await loadConfigFile(yamlFile);
    expect(fromJson.config).toEqual(fromYaml.config);
    expect(fromJson.digest).not.toBe(fromYaml.digest);
  });

  it('sniffs JSON by content when the extension says nothing', () => {
    expect(parseConfigText('{"version": 1}', '/x/leash.conf')).toEqual({ version: 1 });
    expect(parseConfigText('version: 1\n', '/x/leash.conf')).toEqual({ version: 1 });
  });

  it('reports a JSON syntax error as a ConfigError', async () => {
    const file = join(dir, 'broken.json');
    await writeFile(file, '{"version": 1,');
    await expect(loadConfigFile(file)).rejects.toThrow(ConfigError);
    await expect(loadConfigFile(file)).rejects.toThrow(/not valid JSON/);
  });

  it('reports a YAML syntax error with line and column', async () => {
    const file = join(dir, 'broken.yaml');
    await writeFile(file, 'version: 1\nplugins: [a, b\n');
    const error = await loadConfigFile(file).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).problems[0]!.message).toMatch(/^not valid YAML \(line \d+, column \d+\)/);
  });

  it('rejects a duplicated YAML key instead of silently keeping the last one', async () => {
    const file = join(dir, 'dup.yaml');
    await writeFile(file, `${yamlText}version: 1\n`);
    const error = await loadConfigFile(file).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).problems[0]!.message).toMatch(/not valid YAML.*[Mm]ap keys must be unique/);
  });

  it('reports an empty file as a config that is not an object', async () => {
    const file = join(dir, 'empty.yaml');
    await writeFile(file, '');
    const error = await loadConfigFile(file).catch((e: unknown) => e);
    expect((error as ConfigError).problems).toEqual([{ path: '', message: 'must be an object' }]);
  });

  it('reports a missing file as a ConfigError naming the file', async () => {
    const error = await loadConfigFile(join(dir, 'missing.yaml')).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).message).toContain('missing.yaml');
    expect((error as ConfigError).message).toContain('ENOENT');
  });

  it('reports schema problems of a file with their paths', async () => {
    const file = join(dir, 'bad.yaml');
    await writeFile(file, yamlText.replace('risk: low', 'risk: low\n    color: blue'));
    const error = await loadConfigFile(file).catch((e: unknown) => e);
    expect((error as ConfigError).problems).toEqual([{ path: '/plugins/0/color', message: expect.stringContaining("unknown key 'color'") }]);
  });
});

describe('config/demo.yaml', () => {
  it('loads, with the demo plugins, hashed keys and paths resolved next to config/', async () => {
    const loaded = await loadConfigFile('config/demo.yaml');
    const { config } = loaded;
    const sha = (s: string) => createHash('sha256').update(s).digest('hex');
    expect(config.settings.issuer).toBe('http://127.0.0.1:8080');
    expect(config.trusted_issuers.map((t) => [t.name, t.kind, t.issuer, t.audience])).toEqual([['demo-cluster', 'kubernetes', 'https://kubernetes.default.svc.cluster.local', 'leash']]);
    expect(config.trusted_issuers[0]!.jwks!.file).toBe(join(loaded.baseDir, 'demo-cluster.jwks.json'));
    expect(config.plugins.map((p) => p.id)).toEqual(['crm-reader', 'ticket-writer']);
    expect(config.plugins[0]!.grants[0]).toMatchObject({
      audience: 'https://crm.example.com/api',
      scopes: ['contacts:read', 'contacts:search'],
      default_scopes: ['contacts:read'],
      effect: 'read',
      max_ttl: 300,
    });
    expect(config.plugins[1]!.grants[0]).toMatchObject({ audience: 'https://tickets.example.com', effect: 'write', approval: 'none', dpop: 'required', max_ttl: 120 });
    expect(config.admin.api_keys).toEqual([
      { id: 'demo-orchestrator', sha256: sha('demo-orchestrator-key'), roles: ['orchestrator'], groups: [] },
      { id: 'demo-ops', sha256: sha('demo-ops-key'), roles: ['ops', 'security'], groups: [] },
    ]);
  });
});
