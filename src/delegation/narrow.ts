import type { Settings } from '../config/schema.js';
import { LeashError } from '../errors/leash-error.js';
import type { CompiledGrant, CompiledPlugin, CompiledPolicy, Decision } from '../policy/types.js';
import { targetReasons } from './chain-rules.js';
import type { DelegationOutcome, Upstream } from './delegation.js';

const grantFor = (plugin: CompiledPlugin | undefined, audience: string): CompiledGrant | undefined => plugin?.grants.find((g) => g.audience === audience);

/**
 * Step "narrow for chain", after B's own policy allowed the request:
 * - scopes: B's grant ∩ the root's grant for the same audience (none → escalation: a chain
 *   never reaches an API its root could not: ERR_DELEGATION_AUDIENCE_ESCALATION) ∩ every intermediate hop that holds a grant
 *   for it (hops without one only relay) ∩ the upstream token's scopes when it is for the
 *   same audience. Requested scopes outside that set are an escalation; with none
 *   requested, B's default scopes within it.
 * - ttlCap: the upstream token's remaining life.
 * - effects: every hop's, and the toxic-combination rules on them.
 */
export function narrowForChain(
  upstream: Upstream,
  plugin: CompiledPlugin,
  decision: Extract<Decision, { allow: true }>,
  requestedScopes: readonly string[] | undefined,
  policy: CompiledPolicy,
  settings: Settings,
  now: number,
): DelegationOutcome {
  const audience = decision.grant.audience;
  const chain = upstream.chain;
  const root = chain[0]!;
  const detail = { chain: [...chain, plugin.id], audience, upstream_jti: upstream.claims.jti };
  const reasons = targetReasons(upstream, plugin, settings.delegation.max_depth);

  // ---- scopes: monotonic narrowing along the chain
  const rootGrant = grantFor(policy.plugins.get(root), audience);
  if (!rootGrant) {
    throw new LeashError('ERR_DELEGATION_AUDIENCE_ESCALATION', `the chain's root '${root}' holds no grant for this audience; a chain cannot reach an API its root could not`, detail);
  }
  let allowed = new Set([...decision.grant.scopes].filter((s) => rootGrant.scopes.has(s)));
  const narrowedBy = [root];
  for (const hop of chain.slice(1)) {
    const g = grantFor(policy.plugins.get(hop), audience);
    if (!g) continue;
    allowed = new Set([...allowed].filter((s) => g.scopes.has(s)));
    narrowedBy.push(hop);
  }
  if (upstream.claims.aud === audience) {
    const held = new Set(upstream.claims.scope.split(' ').filter((s) => s.length > 0));
    allowed = new Set([...allowed].filter((s) => held.has(s)));
    narrowedBy.push(`upstream token scope`);
  }
  const reachable = [...allowed].sort();
  let scopes: string[];
  if (requestedScopes !== undefined) {
    const outside = decision.scopes.filter((s) => !allowed.has(s));
    if (outside.length > 0) {
      throw new LeashError('ERR_DELEGATION_SCOPE_ESCALATION', `scope ${outside.join(' ')} is not reachable through this chain (reachable: ${reachable.join(' ') || 'none'})`, {
        ...detail,
        outside,
        reachable,
      });
    }
    scopes = [...decision.scopes];
  } else {
    scopes = decision.scopes.filter((s) => allowed.has(s));
    if (scopes.length === 0) {
      throw new LeashError('ERR_DELEGATION_SCOPE_ESCALATION', `none of '${plugin.id}''s default scopes are reachable through this chain; request scope within: ${reachable.join(' ') || 'none'}`, {
        ...detail,
        reachable,
      });
    }
  }
  reasons.push(`scopes narrowed by ${narrowedBy.join(', ')} and '${plugin.id}': reachable ${reachable.join(' ')}; issued ${scopes.join(' ')}`);

  // ---- lifetime: never outlive the upstream token
  const ttlCap = Math.floor(upstream.claims.exp - now / 1000);
  if (ttlCap < 1) throw new LeashError('ERR_UPSTREAM_TOKEN_INVALID', 'subject_token expires now; obtain a fresh one', { ...detail, reason: 'upstream_expiring' });
  reasons.push(`lifetime capped at the upstream token's remaining ${ttlCap}s`);

  // ---- effects and toxic combinations
  const effects = [...new Set([...upstream.effects, decision.grant.effect])];
  const capable = new Set(plugin.grants.map((g) => g.effect));
  let needsApproval = false;
  for (const rule of settings.delegation.toxic_combinations) {
    if (!upstream.effects.includes(rule.upstream) || !capable.has(rule.downstream)) continue;
    const line = `toxic combination: '${rule.upstream}' upstream, '${plugin.id}' can '${rule.downstream}' → ${rule.action}`;
    reasons.push(line);
    if (rule.action === 'deny') {
      throw new LeashError('ERR_DELEGATION_TOXIC', `a chain that read '${rule.upstream}' data may not drive '${plugin.id}', which can '${rule.downstream}'`, {
        ...detail,
        rule: { upstream: rule.upstream, downstream: rule.downstream, action: rule.action },
        effects,
      });
    }
    needsApproval = true;
  }
  reasons.push(`chain effects: ${effects.join(', ')}`);

  const act = upstream.act ? { sub: plugin.id, act: upstream.act } : { sub: plugin.id };
  const upstreamJtis = [...(upstream.claims.chain_jti ?? []), upstream.claims.jti];
  return { scopes, ttlCap, subject: upstream.person ?? root, personRooted: upstream.person !== undefined, act, chain: [...chain, plugin.id], effects, upstreamJtis, needsApproval, reasons };
}
