import { Type } from '@sinclair/typebox';
import type { ValidateFunction } from 'ajv';
import type { ConfigProblem } from './config-error.js';
import { ConfigError } from './config-error.js';
import { Guardrails, GuardrailsFile, RISK_TIERS, type BindingConfig, type GuardrailId, type GuardrailsConfig, type LeashConfig, type MatchConfig, type PluginConfig } from './schema.js';
import { claimsPinWorkload } from './kind-rules.js';
import { configAjv, translateErrors } from './validate.js';
import { normalizeValues } from './conventions.js';
import type { SchemaNode } from './schema-text.js';
import { effectiveApproval, effectiveDpop } from './effective.js';

/**
 * Guardrails: organisation-level limits every grant must meet. The defaults ship on; a
 * guardrails file (owned by platform security) sets the baseline; the policy file's own
 * `guardrails` section may only tighten it. Pure functions over a parsed config.
 */

let compiled: { file: ValidateFunction; section: ValidateFunction } | undefined;
function validators() {
  if (!compiled) {
    const ajv = configAjv();
    // Wrapped: ajv fills a default only below the root.
    compiled = { file: ajv.compile(GuardrailsFile), section: ajv.compile(Type.Object({ g: Guardrails })) };
  }
  return compiled;
}

/** The shipped defaults: every guardrail on. */
export function defaultGuardrails(): GuardrailsConfig {
  const value: { g?: GuardrailsConfig } = {};
  validators().section(value);
  return value.g!;
}

/** Validate a guardrails file's parsed content (`{version: 1, guardrails: {...}}`), defaults filled. */
export function parseGuardrailsFile(input: unknown): GuardrailsConfig {
  const data = structuredClone(input) as Record<string, unknown>;
  // Durations such as `max_ttl: {read: 1h}` become seconds, as in the config file.
  const written = normalizeValues(data, GuardrailsFile as unknown as SchemaNode).problems;
  const converted = new Set(written.map((p) => p.path));
  const validate = validators().file;
  if (!validate(data) || written.length > 0) throw new ConfigError([...written, ...translateErrors(validate.errors ?? []).filter((p) => !converted.has(p.path))]);
  const problems = patternProblems(data.guardrails as GuardrailsConfig, '/guardrails');
  if (problems.length > 0) throw new ConfigError(problems);
  return data.guardrails as GuardrailsConfig;
}

function patternProblems(g: GuardrailsConfig, at: string): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  (g.forbidden_scopes ?? []).forEach((p, i) => {
    try {
      new RegExp(`^(?:${p})$`, 'i');
    } catch (e) {
      problems.push({ path: `${at}/forbidden_scopes/${i}`, message: `is not a valid regular expression: ${(e as Error).message}` });
    }
  });
  return problems;
}

const rank = (tier: string) => (RISK_TIERS as readonly string[]).indexOf(tier);
const RELAX = 'relaxes the guardrails baseline; guardrails are relaxed only in the guardrails file (leash serve --guardrails FILE)';

/**
 * The guardrails in force: the baseline (the guardrails file, or the defaults) tightened by
 * the policy file's section. Any field of that section looser than the baseline is a problem.
 */
export function effectiveGuardrails(base: GuardrailsConfig, filled: GuardrailsConfig | undefined, written?: unknown): { guardrails: GuardrailsConfig; problems: ConfigProblem[] } {
  const problems: ConfigProblem[] = [];
  if (filled === undefined || written === undefined || written === null || typeof written !== 'object') return { guardrails: base, problems };
  // Only what the policy wrote has an opinion: a field left out keeps the baseline, not the
  // schema default (which could quietly re-tighten what the guardrails file relaxed).
  const w = written as Record<string, unknown>;
  const section = structuredClone(base) as Record<string, unknown>;
  for (const [key, value] of Object.entries(filled)) {
    if (w[key] === undefined) continue;
    if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
      const inner = w[key] as Record<string, unknown>;
      section[key] = { ...(section[key] as object), ...Object.fromEntries(Object.entries(value).filter(([k]) => inner[k] !== undefined)) };
    } else {
      section[key] = value;
    }
  }
  return tighten(base, section as GuardrailsConfig, problems);
}

function tighten(base: GuardrailsConfig, section: GuardrailsConfig, problems: ConfigProblem[]): { guardrails: GuardrailsConfig; problems: ConfigProblem[] } {
  const at = '/guardrails';
  problems.push(...patternProblems(section, at));
  const maxTtl = { ...base.max_ttl };
  for (const [effect, limit] of Object.entries(section.max_ttl) as [keyof typeof maxTtl, number][]) {
    if (limit > base.max_ttl[effect]) problems.push({ path: `${at}/max_ttl/${effect}`, message: `${RELAX} (${base.max_ttl[effect]} → ${limit})` });
    maxTtl[effect] = Math.min(limit, base.max_ttl[effect]);
  }
  const superset = <T extends string>(key: 'approval_for_effects' | 'approval_for_risk' | 'dpop_for_risk' | 'task_required_for_effects' | 'forbidden_scopes'): T[] => {
    const have = section[key] as readonly string[];
    const missing = (base[key] as readonly string[]).filter((v) => !have.includes(v));
    if (missing.length > 0) problems.push({ path: `${at}/${key}`, message: `${RELAX} (drops ${missing.map((m) => `'${m}'`).join(', ')})` });
    return [...new Set([...(base[key] as readonly string[]), ...have])] as T[];
  };
  if (section.allow_broad_bindings && !base.allow_broad_bindings) problems.push({ path: `${at}/allow_broad_bindings`, message: RELAX });
  if (rank(section.vendor.min_risk) < rank(base.vendor.min_risk)) problems.push({ path: `${at}/vendor/min_risk`, message: `${RELAX} (${base.vendor.min_risk} → ${section.vendor.min_risk})` });
  if (!section.vendor.dpop && base.vendor.dpop) problems.push({ path: `${at}/vendor/dpop`, message: RELAX });
  if (!section.vendor.approval_unless_read && base.vendor.approval_unless_read) problems.push({ path: `${at}/vendor/approval_unless_read`, message: RELAX });
  if (section.exceptions.max_days > base.exceptions.max_days) problems.push({ path: `${at}/exceptions/max_days`, message: `${RELAX} (${base.exceptions.max_days} → ${section.exceptions.max_days})` });
  const guardrails: GuardrailsConfig = {
    max_ttl: maxTtl,
    approval_for_effects: superset('approval_for_effects'),
    approval_for_risk: superset('approval_for_risk'),
    dpop_for_risk: superset('dpop_for_risk'),
    allow_broad_bindings: section.allow_broad_bindings && base.allow_broad_bindings,
    task_required_for_effects: superset('task_required_for_effects'),
    forbidden_scopes: superset('forbidden_scopes'),
    vendor: {
      min_risk: rank(section.vendor.min_risk) > rank(base.vendor.min_risk) ? section.vendor.min_risk : base.vendor.min_risk,
      dpop: section.vendor.dpop || base.vendor.dpop,
      approval_unless_read: section.vendor.approval_unless_read || base.vendor.approval_unless_read,
    },
    exceptions: { max_days: Math.min(section.exceptions.max_days, base.exceptions.max_days) },
  };
  return { guardrails, problems };
}

/** One place where a plugin or grant breaks a guardrail. */
export interface Violation {
  readonly guardrail: GuardrailId;
  readonly plugin: string;
  /** The grant's audience; undefined for plugin-level guardrails (bindings, risk tier). */
  readonly grant: string | undefined;
  /** JSON pointer of the offending value. */
  readonly path: string;
  readonly message: string;
}

/**
 * Segments whose `*` a kind's own binding rules make narrow (src/config/kind-rules.ts): an
 * AWS role's session name is chosen per AssumeRole call, so the role is the workload; a
 * GitLab ref left open is constrained by `claims.ref_protected: "true"`; a subject left as
 * `*` is narrow when exact claims satisfy the kind's binding rule.
 */
const AWS_ROLE_SESSION_GLOB = /^arn:aws[a-z-]*:sts::\d{12}:assumed-role\/[^*/:]+\/\*$/;
function kindNarrows(kind: string | undefined, glob: string, binding: BindingConfig): boolean {
  if (glob === '*' && binding.subject !== undefined && typeof binding.subject === 'object' && binding.subject.glob === '*') return claimsPinWorkload(kind, binding);
  if (kind === 'aws') return AWS_ROLE_SESSION_GLOB.test(glob);
  if (kind === 'gitlab') {
    const p = binding.claims?.ref_protected;
    const pinned = p === 'true' || (typeof p === 'object' && p.equals === 'true');
    return pinned && /^project_path:[^*:]+:ref_type:(branch|tag):ref:\*$/.test(glob);
  }
  return false;
}

/**
 * Why a binding is broad, or undefined: a glob (subject or claim) one of whose `/`- or
 * `:`-separated segments is a bare `*` matches every namespace, service account, repository
 * of an owner, or path of a trust domain in that position. `kind` is the binding's issuer's.
 */
export function bindingBreadth(binding: BindingConfig, kind?: string): string | undefined {
  const broad = (m: string | MatchConfig): string | undefined => {
    if (typeof m === 'string' || m.glob === undefined) return undefined;
    const segments = m.glob.split(/[/:]/);
    return segments.some((s) => s === '*') && !kindNarrows(kind, m.glob, binding) ? m.glob : undefined;
  };
  const subject = broad(binding.subject);
  if (subject) return `subject glob '${subject}' has a whole segment '*'`;
  for (const [claim, m] of Object.entries(binding.claims ?? {})) {
    const c = broad(m);
    if (c) return `claim '${claim}' glob '${c}' has a whole segment '*'`;
  }
  return undefined;
}

/** The kind of the trusted issuer a binding names (undefined when it names none). */
export const issuerKindOf = (config: LeashConfig, binding: BindingConfig): string | undefined => config.trusted_issuers?.find((t) => t.name === binding.issuer)?.kind;

export function compileScopePatterns(g: GuardrailsConfig): readonly RegExp[] {
  return g.forbidden_scopes.map((p) => new RegExp(`^(?:${p})$`, 'i'));
}

/** Every guardrail a plugin breaks, in config order. */
export function pluginViolations(plugin: PluginConfig, p: number, config: LeashConfig, g: GuardrailsConfig, scopePatterns: readonly RegExp[]): Violation[] {
  const out: Violation[] = [];
  const at = `/plugins/${p}`;
  const v = (guardrail: GuardrailId, grant: string | undefined, path: string, message: string) => out.push({ guardrail, plugin: plugin.id, grant, path, message });
  const settings = config.settings;
  if (plugin.vendor_managed && rank(plugin.risk) < rank(g.vendor.min_risk)) {
    v('vendor-risk-floor', undefined, `${at}/risk`, `vendor-managed plugin '${plugin.id}' declares risk '${plugin.risk}'; vendor plugins are at least '${g.vendor.min_risk}'`);
  }
  if (!g.allow_broad_bindings) {
    (plugin.bindings ?? []).forEach((b, i) => {
      const why = bindingBreadth(b, issuerKindOf(config, b));
      if (why) v('no-broad-binding', undefined, `${at}/bindings/${i}`, `binding is broad: ${why}; bind the one workload (exact subject or a narrow pattern)`);
    });
  }
  (plugin.grants ?? []).forEach((grant, i) => {
    const gat = `${at}/grants/${i}`;
    const aud = grant.audience;
    const limit = g.max_ttl[grant.effect];
    const ttl = grant.max_ttl ?? 300;
    if (ttl > limit) v('max-ttl', aud, `${gat}/max_ttl`, `max_ttl ${ttl}s exceeds the ${limit}s allowed for '${grant.effect}' grants`);
    const approval = effectiveApproval(grant, plugin, settings);
    if (approval !== 'human' && g.approval_for_effects.includes(grant.effect)) {
      v('approval-for-effect', aud, `${gat}/approval`, `'${grant.effect}' grants need approval: human (this one resolves to '${approval}')`);
    }
    if (approval !== 'human' && g.approval_for_risk.includes(plugin.risk)) {
      v('approval-for-risk', aud, `${gat}/approval`, `grants of '${plugin.risk}' plugins need approval: human (this one resolves to '${approval}')`);
    }
    if (plugin.vendor_managed && g.vendor.approval_unless_read && grant.effect !== 'read' && approval !== 'human') {
      v('vendor-approval', aud, `${gat}/approval`, `vendor-managed plugins need approval: human for anything but 'read' (this '${grant.effect}' grant resolves to '${approval}')`);
    }
    const kind = grant.kind ?? 'jwt';
    const dpop = effectiveDpop(grant, plugin, settings);
    if (kind === 'jwt' && !dpop && g.dpop_for_risk.includes(plugin.risk)) {
      v('dpop-for-risk', aud, `${gat}/dpop`, `jwt grants of '${plugin.risk}' plugins must be DPoP-bound: set dpop: required`);
    }
    if (kind === 'jwt' && !dpop && plugin.vendor_managed && g.vendor.dpop) {
      v('vendor-dpop', aud, `${gat}/dpop`, 'jwt grants of vendor-managed plugins must be DPoP-bound: set dpop: required');
    }
    if (grant.task_required === false && g.task_required_for_effects.includes(grant.effect)) {
      v('task-required', aud, `${gat}/task_required`, `'${grant.effect}' grants must be bound to a task (task_required: false is not allowed)`);
    }
    (grant.scopes ?? []).forEach((scope, s) => {
      if (scopePatterns.some((re) => re.test(scope))) v('no-broad-scope', aud, `${gat}/scopes/${s}`, `scope '${scope}' is a wildcard or admin-like scope; grant the narrow scopes the plugin needs`);
    });
  });
  return out;
}

/** Parse a config date (a UTC day or an RFC 3339 date-time) to ms, or NaN. */
export function parseDate(value: string): number {
  return Date.parse(/^\d{4}-\d{2}-\d{2}$/.test(value) ? `${value}T00:00:00Z` : value);
}

export interface CoveringException {
  readonly id: string;
  readonly guardrail: GuardrailId;
  readonly expiresAt: number;
}

export interface GuardrailReport {
  /** Violations no exception covers (or only an expired one, when `now` was given). */
  readonly uncovered: readonly Violation[];
  /** Violations an exception covers, with it. */
  readonly covered: readonly (Violation & { readonly exception: CoveringException })[];
  /** Problems of the exceptions themselves (unknown plugin or grant, duplicate id, too long, bad dates). */
  readonly exceptionProblems: readonly ConfigProblem[];
}

/**
 * Check every plugin against the guardrails and match violations with exceptions. With
 * `now`, an exception already expired covers nothing (what `leash validate` reports); the
 * broker passes no `now` so an expired exception still compiles, and its grant is refused
 * at request time instead (a restart never turns an expiry into an outage).
 */
export function checkGuardrails(config: LeashConfig, g: GuardrailsConfig, now?: number): GuardrailReport {
  const patterns = compileScopePatterns(g);
  const exceptionProblems: ConfigProblem[] = [];
  const plugins = new Map<string, PluginConfig>();
  for (const p of config.plugins ?? []) if (!plugins.has(p.id)) plugins.set(p.id, p);
  const byTarget = new Map<string, CoveringException[]>();
  const seen = new Map<string, number>();
  (config.exceptions ?? []).forEach((e, i) => {
    const at = `/exceptions/${i}`;
    const earlier = seen.get(e.id);
    if (earlier !== undefined) exceptionProblems.push({ path: `${at}/id`, message: `duplicate exception id '${e.id}' (already used at /exceptions/${earlier})` });
    else seen.set(e.id, i);
    const plugin = plugins.get(e.plugin);
    if (!plugin) exceptionProblems.push({ path: `${at}/plugin`, message: `names no plugin: '${e.plugin}'` });
    else if (e.grant !== undefined && !plugin.grants.some((gr) => gr.audience === e.grant)) {
      exceptionProblems.push({ path: `${at}/grant`, message: `plugin '${e.plugin}' has no grant for audience '${e.grant}'` });
    }
    const created = parseDate(e.created_at);
    const expires = parseDate(e.expires_at);
    if (Number.isNaN(created)) exceptionProblems.push({ path: `${at}/created_at`, message: 'is not a valid date' });
    if (Number.isNaN(expires)) exceptionProblems.push({ path: `${at}/expires_at`, message: 'is not a valid date' });
    let from = created;
    (e.renewals ?? []).forEach((r, j) => {
      const d = parseDate(r.date);
      if (Number.isNaN(d)) exceptionProblems.push({ path: `${at}/renewals/${j}/date`, message: 'is not a valid date' });
      else if (d < from) exceptionProblems.push({ path: `${at}/renewals/${j}/date`, message: 'is earlier than created_at or the previous renewal' });
      else from = d;
    });
    if (!Number.isNaN(from) && !Number.isNaN(expires)) {
      const days = (expires - from) / 86_400_000;
      if (expires <= from) exceptionProblems.push({ path: `${at}/expires_at`, message: 'must be after created_at and every renewal' });
      else if (days > g.exceptions.max_days) {
        exceptionProblems.push({
          path: `${at}/expires_at`,
          message: `the exception runs ${Math.ceil(days)} days from ${(e.renewals ?? []).length ? 'its last renewal' : 'created_at'}; guardrails allow at most ${g.exceptions.max_days}`,
        });
      }
    }
    const key = `${e.plugin}\u0000${e.grant ?? ''}\u0000${e.guardrail}`;
    const list = byTarget.get(key) ?? [];
    list.push({ id: e.id, guardrail: e.guardrail, expiresAt: expires });
    byTarget.set(key, list);
  });

  const uncovered: Violation[] = [];
  const covered: (Violation & { exception: CoveringException })[] = [];
  (config.plugins ?? []).forEach((plugin, p) => {
    for (const v of pluginViolations(plugin, p, config, g, patterns)) {
      // A grant-level violation is covered by an exception for that grant or for the whole plugin.
      const candidates = [...(v.grant !== undefined ? (byTarget.get(`${v.plugin}\u0000${v.grant}\u0000${v.guardrail}`) ?? []) : []), ...(byTarget.get(`${v.plugin}\u0000\u0000${v.guardrail}`) ?? [])];
      const usable = candidates.filter((c) => !Number.isNaN(c.expiresAt)).sort((a, b) => b.expiresAt - a.expiresAt);
      const best = usable[0];
      if (best && (now === undefined || best.expiresAt > now)) covered.push({ ...v, exception: best });
      else if (best) uncovered.push({ ...v, message: `${v.message} (exception '${best.id}' expired at ${new Date(best.expiresAt).toISOString()})` });
      else uncovered.push(v);
    }
  });
  return { uncovered, covered, exceptionProblems };
}

/** Violations as config problems: path, message and the guardrail's id. */
export function violationProblems(violations: readonly Violation[]): ConfigProblem[] {
  return violations.map((v) => ({ path: v.path, guardrail: v.guardrail, message: `[guardrail ${v.guardrail}] ${v.message}; or cover it with an exception` }));
}
