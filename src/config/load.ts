import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, extname, isAbsolute, resolve } from 'node:path';
import { parseDocument } from 'yaml';
import { ConfigError, type ConfigProblem } from './config-error.js';
import { normalizeValues } from './conventions.js';
import { applyEnvOverrides, type EnvOverride } from './env-overrides.js';
import { interpolateEnv, redactValues, type Env } from './interpolate.js';
import { LeashConfig as LeashConfigSchema, type GuardrailsConfig, type LeashConfig } from './schema.js';
import type { SchemaNode } from './schema-text.js';
import { checkGuardrails, defaultGuardrails, effectiveGuardrails, parseGuardrailsFile, violationProblems } from './guardrails.js';
import { semanticProblems } from './semantic.js';
import { schemaProblems } from './validate.js';

/** A config as read from disk: what the broker runs, where it came from, and its identity. */
export interface LoadedConfig {
  readonly config: LeashConfig;
  /** Absolute path of the file. */
  readonly path: string;
  /** Folder relative paths in the file were resolved against (the file's folder). */
  readonly baseDir: string;
  /** Hex SHA-256 of the file bytes: audit events name the policy by it. */
  readonly digest: string;
  /**
   * Hex SHA-256 over the files the config names and the broker reads when it compiles it
   * (`referencedFiles`), as they were when the config was loaded. A reload is due when this
   * or `digest` changed. Absent when the config did not come from a file (tests, embedding).
   */
  readonly filesDigest?: string;
  /** The guardrails file the baseline came from, if any (`--guardrails`); it counts as a referenced file (`filesDigest`). */
  readonly guardrailsPath?: string;
  /** The file's text, when it came from a file: the review points findings at its lines. */
  readonly text?: string;
  /** The LEASH_* variables that set a setting over the file's value (`leash validate` lists them). */
  readonly envOverrides?: readonly EnvOverride[];
}

export interface ParseConfigOptions {
  /** Resolve relative `jwks.file`, `settings.store.path` and `settings.keys.dir` against this folder. */
  readonly baseDir?: string;
  /** The guardrails baseline (a guardrails file); default: the shipped defaults. */
  readonly guardrails?: GuardrailsConfig;
  /**
   * `enforce` (default): a guardrail violation no exception covers is a problem. `report`:
   * violations are left to the caller (the review reports them as findings).
   */
  readonly guardrailMode?: 'enforce' | 'report';
  /**
   * When given, an exception that expired at or before `now` covers nothing (`leash validate`).
   * Without it an expired exception still compiles and its grant is refused at request time,
   * so a restart never turns an expiry into a failed start.
   */
  readonly now?: number;
  /**
   * JSON pointers of strings that came from the environment (`${VAR}`, LEASH_* overrides):
   * where the schema wants an integer or a boolean, such a string is read as one.
   */
  readonly fromEnv?: ReadonlySet<string>;
}

/** Copy plain objects and arrays so ajv can fill defaults without touching the caller's value. */
function copy(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(copy);
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = copy(v);
    return out;
  }
  return value;
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}

/** Relative paths in a config mean "next to the config file", not "wherever the process started". */
function resolvePaths(config: LeashConfig, baseDir: string): void {
  const abs = (p: string) => (isAbsolute(p) ? p : resolve(baseDir, p));
  const { settings } = config;
  settings.keys.dir = abs(settings.keys.dir);
  if (settings.store.path !== ':memory:') settings.store.path = abs(settings.store.path);
  for (const issuer of [...config.trusted_issuers, ...config.admin.issuers]) {
    if (issuer.jwks?.file !== undefined) issuer.jwks.file = abs(issuer.jwks.file);
  }
  for (const { token_review: review } of config.trusted_issuers) {
    if (review === undefined) continue;
    review.token_file = abs(review.token_file);
    if (review.ca_file !== undefined) review.ca_file = abs(review.ca_file);
  }
  for (const server of config.resource_servers) {
    if (server.jwks?.file !== undefined) server.jwks.file = abs(server.jwks.file);
  }
  for (const issuer of config.trusted_issuers) {
    if (issuer.bundle_file !== undefined) issuer.bundle_file = abs(issuer.bundle_file);
  }
  const tls = settings.tls;
  if (tls) {
    tls.cert_file = abs(tls.cert_file);
    tls.key_file = abs(tls.key_file);
    if (tls.client_ca_file !== undefined) tls.client_ca_file = abs(tls.client_ca_file);
  }
  for (const plugin of config.plugins) {
    const jwks = plugin.client_auth?.jwks;
    if (jwks?.file !== undefined) jwks.file = abs(jwks.file);
    if (plugin.client_auth?.ca_file !== undefined) plugin.client_auth.ca_file = abs(plugin.client_auth.ca_file);
  }
}

/**
 * The files a config names that are read each time it is compiled, as absolute paths: the
 * `jwks.file` of trusted issuers, admin issuers and resource servers, and the
 * `token_review.ca_file` and `bundle_file` of trusted issuers, the listener's TLS files
 * (`settings.tls`) and plugins' `client_auth.jwks.file` and `client_auth.ca_file`. A reload (SIGHUP or a file event) re-reads
 * them, so a rotated JWKS or CA takes effect under an unchanged policy. Other paths are not
 * here: `token_review.token_file` and `settings.vault.auth.jwt_file` (re-read at every
 * call or login), `settings.keys.dir` (the keyring is re-read every
 * `keys.refresh_interval_ms`), `settings.store.path` (restart only).
 */
export function referencedFiles(config: LeashConfig, baseDir: string): string[] {
  const files = [
    ...[...config.trusted_issuers, ...config.admin.issuers, ...config.resource_servers].map((entry) => entry.jwks?.file),
    ...config.trusted_issuers.map((issuer) => issuer.token_review?.ca_file),
    // X.509-SVID bundles and the listener's TLS files: a rotated CA, certificate or key applies on reload.
    ...config.trusted_issuers.map((issuer) => issuer.bundle_file),
    config.settings.tls?.cert_file,
    config.settings.tls?.key_file,
    config.settings.tls?.client_ca_file,
    // Plugins' private_key_jwt keys, self-signed certificates and tls_client_auth CAs.
    ...config.plugins.map((plugin) => plugin.client_auth?.jwks?.file),
    ...config.plugins.map((plugin) => plugin.client_auth?.ca_file),
  ]
    .filter((f): f is string => f !== undefined)
    .map((f) => (isAbsolute(f) ? f : resolve(baseDir, f)));
  return [...new Set(files)].sort();
}

/** SHA-256 over each file's path and content; a file that cannot be read counts by its error code. */
export function referencedFilesDigest(paths: readonly string[]): string {
  const hash = createHash('sha256');
  for (const path of paths) {
    let content: string;
    try {
      content = configDigest(readFileSync(path));
    } catch (e) {
      content = `unreadable:${(e as NodeJS.ErrnoException).code ?? 'error'}`;
    }
    hash.update(`${path}\0${content}\n`);
  }
  return hash.digest('hex');
}

/**
 * Validate a parsed config (schema, then the rules the schema cannot express), fill in
 * defaults, resolve relative paths when `baseDir` is given, and return it deep-frozen.
 * Throws ConfigError listing every problem found, with JSON-pointer paths. The input is
 * not modified. Files named in the config are not opened here: their existence is the
 * concern of whoever reads them (attestors, key manager, store).
 */
export function parseConfig(input: unknown, opts: ParseConfigOptions = {}): LeashConfig {
  if (opts.baseDir !== undefined && typeof opts.baseDir !== 'string') throw new TypeError('parseConfig: baseDir must be a string');
  const data = copy(input);
  // Durations (`15m`) and strings from the environment become the integers the schema checks.
  const conventions = normalizeValues(data, LeashConfigSchema as unknown as SchemaNode, opts.fromEnv).problems;
  // As written, in the schema's units, before defaults: rules that tell written values from defaults read this.
  const asWritten = copy(data);
  const converted = new Set(conventions.map((p) => p.path));
  const shape = [...conventions, ...schemaProblems(data).filter((p) => !converted.has(p.path))];
  const problems = [...shape, ...semanticProblems(data, asWritten)];
  if (shape.length === 0) {
    // Guardrails need a well-formed config; with schema problems they wait for the next round.
    const config = data as LeashConfig;
    const written = (asWritten as { guardrails?: unknown } | null)?.guardrails;
    const { guardrails, problems: section } = effectiveGuardrails(opts.guardrails ?? defaultGuardrails(), config.guardrails, written);
    problems.push(...section);
    config.guardrails = guardrails;
    const report = checkGuardrails(config, guardrails, opts.now);
    problems.push(...report.exceptionProblems);
    // A value the rules above already refused is not reported twice.
    const reported = new Set(problems.map((p) => p.path));
    if ((opts.guardrailMode ?? 'enforce') === 'enforce') problems.push(...violationProblems(report.uncovered).filter((p) => !reported.has(p.path)));
  }
  if (problems.length > 0) throw new ConfigError(problems);
  const config = data as LeashConfig;
  if (opts.baseDir !== undefined) resolvePaths(config, resolve(opts.baseDir));
  return deepFreeze(config);
}

export const configDigest = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');

function isJson(path: string, text: string): boolean {
  const ext = extname(path).toLowerCase();
  if (ext === '.json') return true;
  if (ext === '.yaml' || ext === '.yml') return false;
  return text.trimStart().startsWith('{');
}

/** Parse YAML or JSON text into a plain value; syntax errors become ConfigError with line and column. */
export function parseConfigText(text: string, path: string): unknown {
  const body = text.replace(/^\uFEFF/, '');
  if (isJson(path, body)) {
    try {
      return JSON.parse(body) as unknown;
    } catch (e) {
      throw new ConfigError([{ path: '', message: `not valid JSON: ${(e as Error).message}` }]);
    }
  }
  // YAML 1.2 core schema: no implicit dates or octal surprises; duplicate keys are errors.
  const doc = parseDocument(body, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(
      doc.errors.map((e) => {
        const where = e.linePos?.[0];
        const firstLine = e.message.split('\n')[0] ?? e.message;
        return { path: '', message: `not valid YAML${where ? ` (line ${where.line}, column ${where.col})` : ''}: ${firstLine.replace(/ at line \d+, column \d+:?$/, '')}` };
      }),
    );
  }
  return doc.toJS({ maxAliasCount: 100 }) as unknown;
}

export interface LoadOptions extends Omit<ParseConfigOptions, 'baseDir' | 'guardrails' | 'fromEnv'> {
  /** A guardrails file, already read (see readGuardrailsFile). */
  readonly guardrails?: GuardrailsSource;
  /** The environment `${VAR}` references and LEASH_* overrides read (default: process.env). */
  readonly env?: Env;
}

/**
 * A parsed config file as the environment completes it: `${VAR}` references replaced, then
 * the LEASH_* overrides applied (they win over the file), then validated. Problems never
 * quote a value that came from the environment; one at an overridden setting names the
 * variable.
 */
export function parseWithEnv(raw: unknown, env: Env, opts: Omit<ParseConfigOptions, 'fromEnv'> = {}): { config: LeashConfig; envOverrides: readonly EnvOverride[] } {
  const interpolated = interpolateEnv(raw, env);
  const overrides = applyEnvOverrides(interpolated.value, env);
  const fromEnv = new Set([...interpolated.paths.keys(), ...overrides.applied.map((o) => o.path)]);
  const secrets = new Map([...interpolated.substituted, ...overrides.substituted]);
  const fail = (problems: readonly ConfigProblem[]) => {
    // A problem at a value the environment gave names where it came from (never the value).
    const named = problems.map((p) => {
      const override = overrides.applied.find((o) => o.path === p.path);
      if (override) return { ...p, message: `${p.message} (from ${override.env})` };
      const vars = interpolated.paths.get(p.path)?.map((n) => `\${${n}}`);
      return vars && !vars.some((v) => p.message.includes(v)) ? { ...p, message: `${p.message} (from ${vars.join(', ')})` } : p;
    });
    return new ConfigError(redactValues(named, secrets));
  };
  const unresolved = new Set(interpolated.problems.map((p) => p.path));
  let config: LeashConfig;
  try {
    config = parseConfig(overrides.value, { ...opts, fromEnv });
  } catch (e) {
    if (e instanceof ConfigError) throw fail([...interpolated.problems, ...e.problems.filter((p) => !unresolved.has(p.path))]);
    throw e;
  }
  if (interpolated.problems.length > 0) throw fail(interpolated.problems);
  return { config, envOverrides: overrides.applied };
}

/** A guardrails file as read: its content and where it came from. */
export interface GuardrailsSource {
  readonly path: string;
  readonly guardrails: GuardrailsConfig;
}

/** Read and validate a guardrails file (YAML or JSON); problems are ConfigErrors naming the file. */
export function readGuardrailsFile(path: string): GuardrailsSource {
  const absolute = resolve(path);
  let bytes: Buffer;
  try {
    bytes = readFileSync(absolute);
  } catch (e) {
    throw new ConfigError([{ path: '', message: `cannot read guardrails file '${path}': ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}` }]);
  }
  const text = new TextDecoder('utf-8', { fatal: false }).decode(bytes);
  try {
    return { path: absolute, guardrails: parseGuardrailsFile(parseConfigText(text, absolute)) };
  } catch (e) {
    if (e instanceof ConfigError) throw new ConfigError(e.problems.map((p) => ({ ...p, message: `${p.message} (in guardrails file ${path})` })));
    throw e;
  }
}

/**
 * The loader behind loadConfigFile, for callers that already hold the bytes (the watcher).
 * The files the config names are hashed (`filesDigest`), not parsed: reading them for use
 * is the concern of whoever compiles the config. A guardrails file is one of them: a change
 * to it alone is a reload.
 */
export function loadConfigBytes(bytes: Uint8Array, path: string, opts: LoadOptions = {}): LoadedConfig {
  const absolute = resolve(path);
  const baseDir = dirname(absolute);
  const text = new TextDecoder('utf-8', { fatal: false }).decode(bytes);
  const { guardrails: source, env = process.env, ...rest } = opts;
  const { config, envOverrides } = parseWithEnv(parseConfigText(text, absolute), env, { ...rest, baseDir, guardrails: source?.guardrails });
  const filesDigest = referencedFilesDigest([...referencedFiles(config, baseDir), ...(source ? [source.path] : [])]);
  return Object.freeze({
    config,
    path: absolute,
    baseDir,
    digest: configDigest(bytes),
    filesDigest,
    text,
    envOverrides: Object.freeze(envOverrides),
    ...(source ? { guardrailsPath: source.path } : {}),
  });
}

/** Read, parse and validate a YAML (`.yaml`/`.yml`) or JSON (`.json`) config file. */
export async function loadConfigFile(path: string, opts: LoadOptions = {}): Promise<LoadedConfig> {
  if (typeof path !== 'string' || path.length === 0) throw new TypeError('loadConfigFile: path must be a non-empty string');
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
    throw new ConfigError([{ path: '', message: `cannot read config file '${path}': ${code}` }]);
  }
  return loadConfigBytes(bytes, path, opts);
}
