import type { ConfigProblem } from '../config/config-error.js';
import { SENDER_CONSTRAINABLE_KINDS } from '../issuance/token-types.js';
import { APPROVAL_BY_DEFAULT_EFFECTS, type GrantConfig, type PluginConfig, type Settings } from '../config/schema.js';
import { compileConditions } from './conditions.js';
import type { CompiledGrant } from './types.js';

const DEFAULT_MAX_TTL = 300;

/** Compile one grant; problems go to `problems` with their paths under `path`. */
export function compileGrant(
  spec: GrantConfig,
  index: number,
  plugin: PluginConfig,
  settings: Settings,
  path: string,
  problems: ConfigProblem[],
): CompiledGrant | undefined {
  const before = problems.length;
  const scopeList = spec.scopes ?? [];
  if (scopeList.length === 0) problems.push({ path: `${path}/scopes`, message: 'must list at least one scope' });
  const scopes = new Set(scopeList);
  const defaults = spec.default_scopes ?? scopeList.slice(0, 1);
  spec.default_scopes?.forEach((s, i) => {
    if (!scopes.has(s)) problems.push({ path: `${path}/default_scopes/${i}`, message: `'${s}' is not one of the grant's scopes` });
  });
  const failedConditions = compileConditions(spec.conditions, spec.time, path, problems);
  if (problems.length > before) return undefined;
  const risksRequiringDpop: readonly string[] = settings.dpop.required_for_risk;
  return Object.freeze({
    index,
    audience: spec.audience,
    scopes: scopes as ReadonlySet<string>,
    defaultScopes: Object.freeze([...defaults]),
    kind: spec.kind ?? 'jwt',
    effect: spec.effect,
    maxTtl: spec.max_ttl ?? DEFAULT_MAX_TTL,
    taskRequired: spec.task_required ?? true,
    // A risk tier's DPoP rule applies only where a proof binds something (`dpop: required` on
    // other kinds is refused at load).
    dpopRequired: SENDER_CONSTRAINABLE_KINDS.has(spec.kind ?? 'jwt') && (spec.dpop === 'required' || risksRequiringDpop.includes(plugin.risk)),
    // Unless the grant says otherwise, effects that change or send out data, and plugins of
    // the risk tiers the settings name, wait for a person.
    approval:
      spec.approval ??
      (APPROVAL_BY_DEFAULT_EFFECTS.has(spec.effect) || (settings.approvals.required_for_risk as readonly string[]).includes(plugin.risk) ? 'human' : 'none'),
    failedConditions,
    config: spec,
  });
}
