import type { BindingConfig, GrantConfig, LeashConfig, MatchConfig, PluginConfig } from '../../config/schema.js';
import { effectiveApproval, effectiveDpop } from '../../config/effective.js';
import { bindingBreadth, issuerKindOf, compileScopePatterns, defaultGuardrails, parseDate } from '../../config/guardrails.js';
import { isAlwaysTrue } from '../../policy/cel/expression.js';
import { grantsOf, STATE_CHANGING, type Check } from './context.js';

/** What each effect needs at most, in seconds (the `long-ttl` rule); guardrails set the hard limit. */
export const RECOMMENDED_TTL: Readonly<Record<GrantConfig['effect'], number>> = { read: 900, 'read-sensitive': 300, write: 300, exfiltrate: 120, admin: 120 };

const subjectText = (s: string | MatchConfig): string => (typeof s === 'string' ? s : (s.equals ?? s.glob ?? ''));
const bindingKey = (b: BindingConfig) => `${b.issuer}|${JSON.stringify(b.subject)}|${JSON.stringify(b.claims ?? {})}`;

// ---------------------------------------------------------------- identity

export const broadBinding: Check = (ctx, emit) => {
  (ctx.config.plugins ?? []).forEach((plugin, p) => {
    (plugin.bindings ?? []).forEach((b, i) => {
      const why = bindingBreadth(b, issuerKindOf(ctx.config, b));
      if (!why) return;
      emit({
        rule: 'broad-binding',
        plugin: plugin.id,
        binding: i,
        pointer: `/plugins/${p}/bindings/${i}`,
        key: `${plugin.id}|${bindingKey(b)}`,
        message: `plugin '${plugin.id}' binding ${i} (issuer '${b.issuer}') is broad: ${why}`,
        fix: `replace '${subjectText(b.subject)}' with the one workload's subject (e.g. the exact service account), or a glob that pins every segment`,
        evidence: { issuer: b.issuer, subject: b.subject },
      });
    });
  });
};

export const pluginStandingKeys: Check = (ctx, emit) => {
  (ctx.config.plugins ?? []).forEach((plugin, p) => {
    const auth = plugin.client_auth;
    // A CA-issued certificate (tls_client_auth) is rotated by its PKI; a registered key or self-signed certificate stands until someone replaces it.
    if (!auth?.jwks || auth.method === 'tls_client_auth') return;
    const alone = auth.attestation === 'optional';
    const source = auth.jwks.uri !== undefined ? `fetched from ${auth.jwks.uri}` : auth.jwks.file !== undefined ? `in ${auth.jwks.file}` : 'given inline';
    emit({
      rule: 'plugin-standing-key',
      plugin: plugin.id,
      pointer: `/plugins/${p}/client_auth`,
      key: plugin.id,
      // A second factor beside an attestation is worth less attention than a key that is the whole identity.
      severity: alone ? 'medium' : 'low',
      message: alone
        ? `plugin '${plugin.id}' may exchange with its key alone (${auth.method}, public keys ${source}): a long-lived secret is its whole identity`
        : `plugin '${plugin.id}' holds a standing key (${auth.method}, public keys ${source}) beside its attestation`,
      fix: alone
        ? `bind '${plugin.id}' to a platform identity and set client_auth.attestation: required, or keep its key in a secret store with an owner and a rotation date`
        : `keep the key of '${plugin.id}' in a secret store or hardware and rotate it; drop client_auth if the attestation suffices`,
      evidence: { method: auth.method, attestation: auth.attestation, keys: source },
    });
  });
};

/** GitHub Actions, or an OIDC issuer that is a GitLab instance. */
function ciIssuers(config: LeashConfig): Map<string, 'github' | 'gitlab'> {
  const out = new Map<string, 'github' | 'gitlab'>();
  for (const t of config.trusted_issuers ?? []) {
    if (t.kind === 'github-actions') out.set(t.name, 'github');
    else if (t.kind === 'oidc' && /gitlab/i.test(t.issuer)) out.set(t.name, 'gitlab');
  }
  return out;
}

const PIN_CLAIMS = ['ref', 'environment', 'ref_protected', 'job_workflow_ref'];

function pinsRef(b: BindingConfig): boolean {
  const subject = subjectText(b.subject);
  // `...:ref:refs/heads/main`, `...:environment:production`, GitLab's `...:ref_type:branch:ref:main`.
  if (/:(ref|environment):[^*]+$/.test(subject)) return true;
  return Object.entries(b.claims ?? {}).some(([k, m]) => PIN_CLAIMS.includes(k) && (typeof m === 'string' || m.equals !== undefined || !(m.glob ?? '*').split(/[/:]/).includes('*')));
}

export const ciBindingUnpinned: Check = (ctx, emit) => {
  const ci = ciIssuers(ctx.config);
  if (ci.size === 0) return;
  (ctx.config.plugins ?? []).forEach((plugin, p) => {
    const changing = (plugin.grants ?? []).filter((g) => STATE_CHANGING.has(g.effect));
    if (changing.length === 0) return;
    (plugin.bindings ?? []).forEach((b, i) => {
      const platform = ci.get(b.issuer);
      if (!platform || pinsRef(b)) return;
      emit({
        rule: 'ci-binding-unpinned',
        plugin: plugin.id,
        binding: i,
        pointer: `/plugins/${p}/bindings/${i}`,
        key: `${plugin.id}|${bindingKey(b)}`,
        message: `plugin '${plugin.id}' can ${[...new Set(changing.map((g) => g.effect))].join('/')} and its ${platform === 'github' ? 'GitHub Actions' : 'GitLab CI'} binding ${i} ('${subjectText(b.subject)}') does not pin a ref or environment: any branch or pull-request workflow can act as it`,
        fix:
          platform === 'github'
            ? "pin the subject to 'repo:<owner>/<repo>:ref:refs/heads/main' or 'repo:<owner>/<repo>:environment:<env>'"
            : "pin the subject to 'project_path:<group>/<project>:ref_type:branch:ref:main' or add a `ref` / `environment` claim",
        evidence: { issuer: b.issuer, platform },
      });
    });
  });
};

/** Where a binding's workload comes from: issuer + subject without its last segment (namespace, repository). */
function workloadSource(b: BindingConfig): string {
  const s = subjectText(b.subject);
  const cut = Math.max(s.lastIndexOf(':'), s.lastIndexOf('/'));
  return `${b.issuer}|${cut > 0 ? s.slice(0, cut) : s}`;
}

/**
 * The pairs of plugins (config indexes, each pair once, in config order) with the same owner
 * and a workload source in common: plugins are bucketed by owner and source, so a team that
 * owns thousands of plugins is not compared pair by pair (issue 18).
 */
function sameOwnerAndSource(plugins: readonly PluginConfig[]): [number, number][] {
  const buckets = new Map<string, number[]>();
  plugins.forEach((plugin, p) => {
    for (const source of new Set(plugin.bindings.map(workloadSource))) {
      const key = `${plugin.owner}\u0000${source}`;
      const list = buckets.get(key);
      if (list) list.push(p);
      else buckets.set(key, [p]);
    }
  });
  const seen = new Set<number>();
  const pairs: [number, number][] = [];
  for (const members of buckets.values()) {
    for (let i = 0; i < members.length; i++) {
      for (let j = i + 1; j < members.length; j++) {
        const key = members[i]! * plugins.length + members[j]!;
        if (seen.has(key)) continue;
        seen.add(key);
        pairs.push([members[i]!, members[j]!]);
      }
    }
  }
  return pairs.sort((x, y) => x[0] - y[0] || x[1] - y[1]);
}

export const splitWorkload: Check = (ctx, emit) => {
  const plugins = ctx.config.plugins ?? [];
  for (const [ia, ib] of sameOwnerAndSource(plugins)) {
    const a = plugins[ia]!;
    const b = plugins[ib]!;
    const sources = new Set(a.bindings.map(workloadSource));
    const shared = b.bindings.map(workloadSource).find((s) => sources.has(s));
    if (!shared) continue;
    const overlap = a.grants.flatMap((ga) => {
      const gb = b.grants.find((g) => g.audience === ga.audience);
      const scopes = gb ? ga.scopes.filter((s) => gb.scopes.includes(s)) : [];
      return scopes.length > 0 ? [{ audience: ga.audience, scopes }] : [];
    });
    if (overlap.length === 0) continue;
    emit({
      rule: 'split-workload',
      plugin: b.id,
      pointer: `/plugins/${ib}`,
      key: [a.id, b.id].sort().join('|'),
      message: `plugins '${a.id}' and '${b.id}' have the same owner (${a.owner}), the same workload source (${shared.replace('|', ' ')}) and overlapping grants (${overlap.map((o) => `${o.audience}: ${o.scopes.join(' ')}`).join('; ')})`,
      fix: `merge '${b.id}' into '${a.id}' (one plugin, the union of what it needs), or give them disjoint grants`,
      evidence: { plugins: [a.id, b.id], owner: a.owner, source: shared, overlap },
    });
  }
};

export const sharedAudienceScope: Check = (ctx, emit) => {
  const limit = ctx.config.settings.review.max_plugins_per_scope;
  const holders = new Map<string, { audience: string; scope: string; plugins: string[]; at: string }>();
  for (const { plugin, grant, at } of grantsOf(ctx.config)) {
    grant.scopes.forEach((scope, s) => {
      const key = `${grant.audience}\u0000${scope}`;
      const h = holders.get(key) ?? { audience: grant.audience, scope, plugins: [], at: `${at}/scopes/${s}` };
      h.plugins.push(plugin.id);
      holders.set(key, h);
    });
  }
  for (const h of holders.values()) {
    if (h.plugins.length <= limit) continue;
    emit({
      rule: 'shared-audience-scope',
      pointer: h.at,
      key: `${h.audience}|${h.scope}`,
      message: `scope '${h.scope}' at ${h.audience} is granted to ${h.plugins.length} plugins (more than ${limit}): ${h.plugins.slice(0, 10).join(', ')}${h.plugins.length > 10 ? ', ...' : ''}`,
      fix: `keep '${h.scope}' on the plugins that use it (see unused-scope with --store), or split the API's scope`,
      evidence: { audience: h.audience, scope: h.scope, plugins: h.plugins },
    });
  }
};

// ---------------------------------------------------------------- privilege

export const guardrailViolations: Check = (ctx, emit) => {
  for (const v of ctx.guardrails.uncovered) {
    emit({
      rule: 'guardrail-violation',
      plugin: v.plugin,
      grant: v.grant,
      pointer: v.path,
      key: `${v.plugin}|${v.grant ?? ''}|${v.guardrail}|${v.path.replace(/^\/plugins\/\d+/, '')}`,
      message: `[guardrail ${v.guardrail}] ${v.message} (this policy does not load until it is fixed or covered)`,
      fix: `meet guardrail '${v.guardrail}', or add an exception { plugin: ${v.plugin}${v.grant ? `, grant: ${v.grant}` : ''}, guardrail: ${v.guardrail}, ticket, owner, expires_at }`,
      evidence: { guardrail: v.guardrail },
    });
  }
};

export const broadScope: Check = (ctx, emit) => {
  const patterns = [...compileScopePatterns(defaultGuardrails()), ...(ctx.config.guardrails ? compileScopePatterns(ctx.config.guardrails) : [])];
  for (const { plugin, grant, at } of grantsOf(ctx.config)) {
    grant.scopes.forEach((scope, s) => {
      if (!patterns.some((re) => re.test(scope))) return;
      emit({
        rule: 'broad-scope',
        plugin: plugin.id,
        grant: grant.audience,
        pointer: `${at}/scopes/${s}`,
        key: `${plugin.id}|${grant.audience}|${scope}`,
        message: `plugin '${plugin.id}' is granted the wildcard or admin-like scope '${scope}' at ${grant.audience}`,
        fix: `replace '${scope}' with the narrow scopes the plugin uses`,
        evidence: { scope },
      });
    });
  }
};

export const adminEffect: Check = (ctx, emit) => {
  for (const { plugin, grant, at } of grantsOf(ctx.config)) {
    if (grant.effect !== 'admin') continue;
    emit({
      rule: 'admin-effect',
      plugin: plugin.id,
      grant: grant.audience,
      pointer: `${at}/effect`,
      key: `${plugin.id}|${grant.audience}`,
      message: `plugin '${plugin.id}' can administer ${grant.audience} (effect: admin)`,
      fix: 'move the administrative actions out of the plugin, or keep approval: human, dpop: required and the shortest max_ttl',
      evidence: { approval: effectiveApproval(grant, plugin, ctx.config.settings), dpop: effectiveDpop(grant, plugin, ctx.config.settings) },
    });
  }
};

export const manyScopes: Check = (ctx, emit) => {
  const limit = ctx.config.settings.review.max_scopes_per_grant;
  for (const { plugin, grant, at } of grantsOf(ctx.config)) {
    if (grant.scopes.length <= limit) continue;
    emit({
      rule: 'many-scopes',
      plugin: plugin.id,
      grant: grant.audience,
      pointer: `${at}/scopes`,
      key: `${plugin.id}|${grant.audience}`,
      message: `plugin '${plugin.id}' has ${grant.scopes.length} scopes at ${grant.audience} (more than ${limit})`,
      fix: 'keep the scopes the plugin uses; move rarely used ones to an approval-gated grant',
      evidence: { scopes: grant.scopes.length, limit },
    });
  }
};

export const longTtl: Check = (ctx, emit) => {
  for (const { plugin, grant, at } of grantsOf(ctx.config)) {
    const ttl = grant.max_ttl ?? 300;
    const need = RECOMMENDED_TTL[grant.effect];
    if (ttl <= need) continue;
    emit({
      rule: 'long-ttl',
      plugin: plugin.id,
      grant: grant.audience,
      pointer: `${at}/max_ttl`,
      key: `${plugin.id}|${grant.audience}`,
      message: `plugin '${plugin.id}' gets ${ttl}s tokens for '${grant.effect}' at ${grant.audience}; ${need}s is enough for that effect`,
      fix: `set max_ttl: ${need} (or less)`,
      evidence: { max_ttl: ttl, recommended: need },
    });
  }
};

export const taskOptionalWrite: Check = (ctx, emit) => {
  for (const { plugin, grant, at } of grantsOf(ctx.config)) {
    if (grant.task_required !== false || !STATE_CHANGING.has(grant.effect)) continue;
    emit({
      rule: 'task-optional-write',
      plugin: plugin.id,
      grant: grant.audience,
      pointer: `${at}/task_required`,
      key: `${plugin.id}|${grant.audience}`,
      message: `plugin '${plugin.id}' can '${grant.effect}' at ${grant.audience} without a task (task_required: false)`,
      fix: 'remove task_required: false and open a task for the work',
    });
  }
};

export const noDpopHighTier: Check = (ctx, emit) => {
  for (const { plugin, grant, at } of grantsOf(ctx.config)) {
    if ((grant.kind ?? 'jwt') !== 'jwt' || (plugin.risk !== 'high' && plugin.risk !== 'critical')) continue;
    if (effectiveDpop(grant, plugin, ctx.config.settings)) continue;
    emit({
      rule: 'no-dpop-high-tier',
      plugin: plugin.id,
      grant: grant.audience,
      pointer: `${at}/dpop`,
      key: `${plugin.id}|${grant.audience}`,
      message: `'${plugin.risk}' plugin '${plugin.id}' gets bearer tokens for ${grant.audience} without DPoP`,
      fix: 'set dpop: required on the grant',
      evidence: { risk: plugin.risk },
    });
  }
};

export const approvalNoneRisky: Check = (ctx, emit) => {
  for (const { plugin, grant, at } of grantsOf(ctx.config)) {
    if (grant.approval !== 'none') continue;
    const risky = STATE_CHANGING.has(grant.effect);
    if (!risky && plugin.risk !== 'critical') continue;
    emit({
      rule: 'approval-none-risky',
      plugin: plugin.id,
      grant: grant.audience,
      pointer: `${at}/approval`,
      key: `${plugin.id}|${grant.audience}`,
      message: risky
        ? `plugin '${plugin.id}' can '${grant.effect}' at ${grant.audience} with nobody in the loop (approval: none overrides the default human approval)`
        : `critical plugin '${plugin.id}' says approval: none at ${grant.audience}, overriding its tier's human approval`,
      fix: 'remove approval: none (the default is a human here), or use approval: step-up with dpop and justification',
      evidence: { effect: grant.effect, risk: plugin.risk },
    });
  }
};

// ---------------------------------------------------------------- MCP tools

export const mcpToolUnapproved: Check = (ctx, emit) => {
  for (const { plugin, grant, at } of grantsOf(ctx.config)) {
    (grant.tools ?? []).forEach((tool, i) => {
      if (tool.approval !== 'none' || !STATE_CHANGING.has(tool.effect)) return;
      emit({
        rule: 'mcp-tool-unapproved',
        plugin: plugin.id,
        grant: grant.audience,
        pointer: `${at}/tools/${i}/approval`,
        key: `${plugin.id}|${grant.audience}|${tool.name}`,
        message: `plugin '${plugin.id}' can call '${tool.name}' (${tool.effect}) at ${grant.audience} with nobody approving the call${tool.per_call === false ? ', and a session token runs it any number of times (per_call: false)' : ''}`,
        fix: `remove approval: none from tool '${tool.name}' (a human then approves each call, bound to its arguments), or narrow it with arguments tests`,
        evidence: { tool: tool.name, effect: tool.effect, per_call: tool.per_call ?? true },
      });
    });
  }
};

export const mcpToolWildcard: Check = (ctx, emit) => {
  for (const { plugin, grant, at } of grantsOf(ctx.config)) {
    (grant.tools ?? []).forEach((tool, i) => {
      // A name with no literal character matches every tool name.
      if (tool.name.replace(/\*/g, '') !== '') return;
      emit({
        rule: 'mcp-tool-wildcard',
        plugin: plugin.id,
        grant: grant.audience,
        pointer: `${at}/tools/${i}/name`,
        key: `${plugin.id}|${grant.audience}|${i}`,
        message: `plugin '${plugin.id}' reaches every tool of ${grant.audience} (tool '${tool.name}', ${tool.effect}), including tools the server adds later`,
        fix: 'list the tools the plugin calls by name, each with its own effect',
        evidence: { tool: tool.name, effect: tool.effect, later_entries: (grant.tools ?? []).length - i - 1 },
      });
    });
  }
};

// ---------------------------------------------------------------- operations

export const adminKeys: Check = (ctx, emit) => {
  (ctx.config.admin?.api_keys ?? []).forEach((k, i) => {
    const at = `/admin/api_keys/${i}`;
    if (k.roles.length >= 3) {
      emit({
        rule: 'admin-key-broad',
        pointer: `${at}/roles`,
        key: k.id,
        message: `admin API key '${k.id}' holds ${k.roles.length} roles (${k.roles.join(', ')})`,
        fix: `split '${k.id}' into one key per caller and role`,
        evidence: { roles: k.roles },
      });
    }
    const due = k.rotate_by === undefined ? undefined : parseDate(k.rotate_by);
    if (due === undefined || Number.isNaN(due) || due <= ctx.now) {
      emit({
        rule: 'admin-key-no-rotation',
        pointer: due === undefined ? at : `${at}/rotate_by`,
        key: k.id,
        message: due === undefined ? `admin API key '${k.id}' has no rotation date (rotate_by)` : `admin API key '${k.id}' was due for rotation on ${k.rotate_by}`,
        fix: due === undefined ? `set rotate_by on '${k.id}' (90 days out at most) and rotate it by then` : `rotate '${k.id}' now: a new key, its hash here, the old one removed`,
        evidence: { rotate_by: k.rotate_by },
      });
    }
  });
};

export const sharedSecretClients: Check = (ctx, emit) => {
  (ctx.config.resource_servers ?? []).forEach((rs, i) => {
    if (rs.client_secret_sha256 === undefined) return;
    emit({
      rule: 'shared-secret-client',
      pointer: `/resource_servers/${i}/client_secret_sha256`,
      key: rs.id,
      message: `resource server '${rs.id}' authenticates with a shared client secret`,
      fix: `give '${rs.id}' a key pair and set jwks (private_key_jwt) instead of client_secret_sha256`,
    });
  });
};

export const httpIssuers: Check = (ctx, emit) => {
  const { settings } = ctx.config;
  if (settings.issuer.startsWith('http://')) {
    emit({
      rule: 'http-issuer',
      pointer: '/settings/issuer',
      key: 'settings.issuer',
      message: `Leash's own issuer is plain http (${settings.issuer}): discovery, JWKS and tokens travel unprotected`,
      fix: 'serve Leash over https and set settings.issuer to its https:// URL; set settings.production: true',
    });
  }
  (ctx.config.trusted_issuers ?? []).forEach((t, i) => {
    if (t.issuer.startsWith('http://')) {
      emit({
        rule: 'http-issuer',
        pointer: `/trusted_issuers/${i}/issuer`,
        key: `trusted:${t.name}:issuer`,
        message: `trusted issuer '${t.name}' is plain http (${t.issuer})`,
        fix: `use the https:// issuer of '${t.name}'`,
      });
    }
    if (t.jwks?.uri?.startsWith('http://')) {
      emit({
        rule: 'http-issuer',
        pointer: `/trusted_issuers/${i}/jwks/uri`,
        key: `trusted:${t.name}:jwks`,
        message: `the keys of trusted issuer '${t.name}' are fetched over plain http (${t.jwks?.uri}): anyone on the path can substitute them`,
        fix: `fetch the JWKS of '${t.name}' over https`,
      });
    }
  });
};

export const volatileStore: Check = (ctx, emit) => {
  const store = ctx.config.settings.store;
  if (store.kind !== 'sqlite' || store.path !== ':memory:') return;
  emit({
    rule: 'volatile-store',
    pointer: '/settings/store/path',
    key: 'store',
    message: "the store is in memory (':memory:'): revocations, approvals and the audit trail vanish on restart",
    fix: 'set settings.store.path to a file on a persistent volume, or use redis',
  });
};

export const keyRotation: Check = (ctx, emit) => {
  if (!ctx.keys) return;
  const lifetimeMs = ctx.config.settings.keys.key_lifetime * 1000;
  for (const k of ctx.keys) {
    if (k.state !== 'current' || ctx.now - k.createdAt <= lifetimeMs) continue;
    const days = Math.floor((ctx.now - k.createdAt) / 86_400_000);
    emit({
      rule: 'key-rotation-overdue',
      pointer: '/settings/keys/key_lifetime',
      key: k.kid,
      message: `signing key '${k.kid}' has signed for ${days} days; its rotation period is ${Math.round(ctx.config.settings.keys.key_lifetime / 86400)} days`,
      fix: ctx.config.settings.keys.rotate_on_schedule
        ? 'rotate now (leash keys rotate) and find out why the scheduled rotation did not'
        : 'rotate now (leash keys rotate) and set settings.keys.rotate_on_schedule: true',
      evidence: { kid: k.kid, created_at: new Date(k.createdAt).toISOString() },
    });
  }
};

/** A CEL condition that is true for every request narrows nothing (checked with the grant's own audience and scopes). */
export const alwaysTrueConditions: Check = (ctx, emit) => {
  for (const { plugin, grant, at } of grantsOf(ctx.config)) {
    (grant.conditions ?? []).forEach((condition, c) => {
      if (condition.expr === undefined || !isAlwaysTrue(condition.expr, { audience: grant.audience, scopes: grant.scopes })) return;
      emit({
        rule: 'condition-always-true',
        plugin: plugin.id,
        grant: grant.audience,
        pointer: `${at}/conditions/${c}/expr`,
        key: `${plugin.id}|${grant.audience}|${condition.expr}`,
        message: `plugin '${plugin.id}' grant for ${grant.audience}: condition ${c} (${JSON.stringify(condition.expr.slice(0, 120))}) is true for every request and narrows nothing`,
        fix: `replace it with the limit it was meant to express (a claim, a task attribute, the scopes asked for), or remove it`,
        evidence: { expr: condition.expr },
      });
    });
  }
};

export const POLICY_CHECKS: readonly Check[] = [
  broadBinding,
  ciBindingUnpinned,
  pluginStandingKeys,
  splitWorkload,
  alwaysTrueConditions,
  sharedAudienceScope,
  guardrailViolations,
  broadScope,
  adminEffect,
  manyScopes,
  longTtl,
  taskOptionalWrite,
  noDpopHighTier,
  approvalNoneRisky,
  mcpToolUnapproved,
  mcpToolWildcard,
  adminKeys,
  sharedSecretClients,
  httpIssuers,
  volatileStore,
  keyRotation,
];
