import type { ConfigProblem } from '../config/config-error.js';
import { effectiveApproval, effectiveDpop } from '../config/effective.js';
import type { GrantConfig, PluginConfig, Settings } from '../config/schema.js';
import type { CoveringException } from '../config/guardrails.js';
import { compileConditions } from './conditions.js';
import { compileTools } from './tools.js';
import type { CompiledGrant } from './types.js';

const DEFAULT_MAX_TTL = 300;
const HIGH_RISK_EFFECTS: ReadonlySet<string> = new Set(['exfiltrate', 'admin']);

/** Compile one grant; problems go to `problems` with their paths under `path`. */
export function compileGrant(
  spec: GrantConfig,
  index: number,
  plugin: PluginConfig,
  settings: Settings,
  path: string,
  problems: ConfigProblem[],
  exceptions: readonly CoveringException[] = [],
): CompiledGrant | undefined {
  const before = problems.length;
  const scopeList = spec.scopes ?? [];
  if (scopeList.length === 0) problems.push({ path: `${path}/scopes`, message: 'must list at least one scope' });
  const scopes = new Set(scopeList);
  const defaults = spec.default_scopes ?? scopeList.slice(0, 1);
  spec.default_scopes?.forEach((s, i) => {
    if (!scopes.has(s)) problems.push({ path: `${path}/default_scopes/${i}`, message: `'${s}' is not one of the grant's scopes` });
  });
  const approval = effectiveApproval(spec, plugin, settings);
  const failedConditions = compileConditions(spec.conditions, spec.time, path, problems, { audience: spec.audience, scopes: scopeList, approval });
  const maxTtl = spec.max_ttl ?? DEFAULT_MAX_TTL;
  if (spec.tools !== undefined && (spec.kind ?? 'jwt') !== 'jwt') problems.push({ path: `${path}/tools`, message: 'MCP tools are reached with Leash tokens: `jwt` grants only' });
  for (const [i, s] of scopeList.entries()) {
    // `tool:` scopes are the tools' own; a grant listing one would bypass its tool rules.
    if (spec.tools !== undefined && s.startsWith('tool:')) problems.push({ path: `${path}/scopes/${i}`, message: '`tool:` scopes come from `tools`; list the tool there' });
  }
  const tools = spec.tools === undefined ? undefined : compileTools(spec.tools, maxTtl, `${path}/tools`, problems);
  if (spec.users?.approver === 'person') {
    // Separation of duties: on a high-risk grant the person an agent acts for is not its only check.
    const risky = plugin.risk === 'high' || plugin.risk === 'critical' || HIGH_RISK_EFFECTS.has(spec.effect) || (spec.tools ?? []).some((t) => HIGH_RISK_EFFECTS.has(t.effect));
    if (risky)
      problems.push({ path: `${path}/users/approver`, message: "a person may not decide approvals of a high-risk grant (high or critical plugin, exfiltrate or admin effect): keep 'security'" });
  }
  if (problems.length > before) return undefined;
  return Object.freeze({
    index,
    audience: spec.audience,
    scopes: scopes as ReadonlySet<string>,
    defaultScopes: Object.freeze([...defaults]),
    kind: spec.kind ?? 'jwt',
    effect: spec.effect,
    maxTtl,
    taskRequired: spec.task_required ?? true,
    dpopRequired: effectiveDpop(spec, plugin, settings),
    approval,
    exceptions,
    failedConditions,
    conditionResults: failedConditions.results,
    tools,
    config: spec,
  });
}
