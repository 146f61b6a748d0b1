import { LeashError } from '../errors/leash-error.js';
import type { CompiledPolicy } from '../policy/types.js';
import { actorsOf } from './act-claim.js';
import type { DelegationDeps, Upstream } from './delegation.js';

/**
 * Step "verify upstream": the subject_token must be a live token this broker signed
 * (published key, `iss`, `at+jwt`, unexpired: verifyLeashToken), not revoked, and
 * internally consistent (its `plugin` is the newest actor, or the subject of a root token).
 * A DPoP-bound upstream token is accepted: it is presented to Leash, not to a resource
 * server, and the presenter proves its own identity with the actor_token.
 */
export async function verifyUpstream(token: string, deps: DelegationDeps, policy: CompiledPolicy): Promise<Upstream> {
  const claims = await deps.verifyToken(token);
  if (!claims) throw new LeashError('ERR_UPSTREAM_TOKEN_INVALID', 'subject_token is not a live access token issued by this broker');
  const actors = actorsOf(claims.act);
  // A delegated token signed before `chain_jti` existed cannot pass its ancestry on: the
  // next hop's token would carry an incomplete cascade. Such tokens only age out.
  if (actors.length > 0 && claims.chain_jti === undefined) {
    throw new LeashError('ERR_UPSTREAM_TOKEN_INVALID', 'subject_token is not a live access token issued by this broker', { upstream_jti: claims.jti, reason: 'no_chain_jti' });
  }
  // A chain is only as live as its weakest link: revoking or suspending ANY plugin of the
  // chain (root included) stops the chain from growing from tokens issued before that;
  // revoking any token it derives from (chain_jti) does too.
  for (const plugin of new Set([claims.plugin, claims.sub, ...actors])) {
    if (deps.revocation.isRevoked({ jti: claims.jti, plugin, task: claims.task, kid: claims.kid, iat: claims.iat, upstream: claims.chain_jti }) || deps.revocation.isSuspended(plugin)) {
      throw new LeashError('ERR_UPSTREAM_TOKEN_REVOKED', 'subject_token has been revoked', { upstream_jti: claims.jti, ...(plugin !== claims.plugin ? { revoked_plugin: plugin } : {}) });
    }
  }
  const holder = actors.length > 0 ? actors[actors.length - 1] : claims.sub;
  // Leash writes plugin = client_id = newest actor (or sub of a root token); anything else was not minted by this code.
  if (holder !== claims.plugin || claims.client_id !== claims.plugin) {
    throw new LeashError('ERR_UPSTREAM_TOKEN_INVALID', 'subject_token is not a live access token issued by this broker', { upstream_jti: claims.jti, reason: 'inconsistent_chain' });
  }
  const chain = [claims.sub, ...actors];
  return { claims, chain, act: claims.act, effects: claims.chain_effects ?? rootEffects(claims.plugin, claims.aud, claims.jti, policy) };
}

/** A root token carries no `chain_effects`: its effect is its grant's, in the current policy. */
function rootEffects(plugin: string, audience: string, jti: string, policy: CompiledPolicy): string[] {
  const grant = policy.plugins.get(plugin)?.grants.find((g) => g.audience === audience);
  // Fail closed: without the grant the upstream's effect is unknown, so no toxic rule could be checked.
  if (!grant) throw new LeashError('ERR_DELEGATION_NOT_ALLOWED', `the upstream plugin '${plugin}' no longer holds a grant for the upstream token's audience`, { upstream_jti: jti });
  return [grant.effect];
}
