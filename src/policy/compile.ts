import { ConfigError, type ConfigProblem } from '../config/config-error.js';
import type { IssuerKind, LeashConfig } from '../config/schema.js';
import { BindingIndex, compileBinding, findOverlaps, type CompiledBinding } from './bindings.js';
import { evaluate } from './evaluate.js';
import { compileGrant } from './grants.js';
import type { CompiledGrant, CompiledPlugin, CompiledPolicy } from './types.js';
import { checkGuardrails, defaultGuardrails, type CoveringException } from '../config/guardrails.js';

/**
 * Which exceptions each grant leans on, keyed `plugin\0audience`: only exceptions that
 * cover a real violation (an exception for a guardrail the grant meets changes nothing).
 */
function exceptionsByGrant(config: LeashConfig): Map<string, CoveringException[]> {
  const out = new Map<string, CoveringException[]>();
  if ((config.exceptions ?? []).length === 0) return out;
  const { covered } = checkGuardrails(config, config.guardrails ?? defaultGuardrails());
  for (const c of covered) {
    const plugin = (config.plugins ?? []).find((p) => p.id === c.plugin);
    // A plugin-level violation (a binding, the risk tier) leans on the exception for every grant.
    const audiences = c.grant !== undefined ? [c.grant] : (plugin?.grants ?? []).map((g) => g.audience);
    for (const aud of audiences) {
      const key = `${c.plugin}\u0000${aud}`;
      const list = out.get(key) ?? [];
      if (!list.some((e) => e.id === c.exception.id)) list.push(c.exception);
      out.set(key, list);
    }
  }
  return out;
}

/**
 * Compile the policy half of a config once: bindings indexed for resolution, grants with
 * sets and predicates, every cross-reference checked. Throws ConfigError listing every
 * problem found (with JSON-pointer paths). Pure: no network, no filesystem.
 */
export function compilePolicy(config: LeashConfig): CompiledPolicy {
  if (config === null || typeof config !== 'object') throw new TypeError('compilePolicy: config must be a LeashConfig object');
  const problems: ConfigProblem[] = [];

  const issuers = new Map<string, IssuerKind>();
  for (const ti of config.trusted_issuers ?? []) issuers.set(ti.name, ti.kind);

  const plugins = new Map<string, CompiledPlugin>();
  const bindings: CompiledBinding[] = [];
  const exceptions = exceptionsByGrant(config);
  const firstById = new Map<string, number>();
  (config.plugins ?? []).forEach((spec, p) => {
    const path = `/plugins/${p}`;
    const before = problems.length;
    const duplicateOf = firstById.get(spec.id);
    if (duplicateOf === undefined) {
      firstById.set(spec.id, p);
    } else {
      problems.push({ path: `${path}/id`, message: `plugin id '${spec.id}' is already used at /plugins/${duplicateOf}; one plugin = one identity` });
    }
    (spec.bindings ?? []).forEach((b, i) => {
      const compiled = compileBinding(spec.id, b, `${path}/bindings/${i}`, issuers, problems);
      if (compiled) bindings.push(compiled);
    });
    // Without a binding only its key can name the plugin (client_auth.attestation: optional).
    if ((spec.bindings ?? []).length === 0 && spec.client_auth?.attestation !== 'optional')
      problems.push({ path: `${path}/bindings`, message: 'must list at least one binding (or let the plugin exchange with its key alone: client_auth.attestation optional)' });

    const grants: CompiledGrant[] = [];
    const audiences = new Map<string, number>();
    (spec.grants ?? []).forEach((g, i) => {
      const gpath = `${path}/grants/${i}`;
      const first = audiences.get(g.audience);
      if (first !== undefined) {
        // One grant per audience keeps the decision unambiguous: merge them instead.
        problems.push({ path: `${gpath}/audience`, message: `audience '${g.audience}' already has a grant at ${path}/grants/${first}; a plugin has one grant per audience` });
      } else {
        audiences.set(g.audience, i);
      }
      const compiled = compileGrant(g, i, spec, config.settings, gpath, problems, Object.freeze(exceptions.get(`${spec.id}\u0000${g.audience}`) ?? []));
      if (compiled) grants.push(compiled);
    });
    if ((spec.grants ?? []).length === 0) problems.push({ path: `${path}/grants`, message: 'must list at least one grant' });

    if (problems.length === before && !plugins.has(spec.id)) {
      plugins.set(
        spec.id,
        Object.freeze({
          id: spec.id,
          owner: spec.owner,
          risk: spec.risk,
          disabled: spec.disabled ?? false,
          grants: Object.freeze(grants),
          config: spec,
        }),
      );
    }
  });
  findOverlaps(bindings, problems);
  if (problems.length > 0) throw new ConfigError(problems);

  const index = new BindingIndex(bindings);
  return Object.freeze({
    plugins: plugins as ReadonlyMap<string, CompiledPlugin>,
    resolvePlugin(identity) {
      const id = index.resolve(identity);
      return id === undefined ? undefined : plugins.get(id);
    },
    evaluate,
  } satisfies CompiledPolicy);
}
