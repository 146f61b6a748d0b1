import { LeashError } from '../errors/leash-error.js';
import type { CompiledPolicy } from '../policy/types.js';
import type { TokenFacts } from '../revocation/revocation-service.js';
import { actorsOf } from '../issuance/jwt/act-claim.js';
import { chainPluginsOf, PERSON_PRINCIPAL } from '../client/chain-jti.js';
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
  // Rooted at a person (issued on their behalf, `principal: person`): `sub` is the person and
  // every plugin is an actor; the first actor's token derives from no Leash token.
  const person = claims.principal === PERSON_PRINCIPAL ? claims.sub : undefined;
  // A delegated token signed before `chain_jti` existed cannot pass its ancestry on: the
  // next hop's token would carry an incomplete cascade. Such tokens only age out.
  if (actors.length > (person !== undefined ? 1 : 0) && claims.chain_jti === undefined) {
    throw new LeashError('ERR_UPSTREAM_TOKEN_INVALID', 'subject_token is not a live access token issued by this broker', { upstream_jti: claims.jti, reason: 'no_chain_jti' });
  }
  // A chain is only as live as its weakest link: revoking or suspending ANY plugin of the
  // chain (root included) or any token it derives from (chain_jti) revokes it. The revocation
  // view answers all of that from the token's facts, as it does at introspection.
  const chainPlugins = chainPluginsOf(claims.sub, claims.act, claims.plugin, person !== undefined);
  const facts: TokenFacts = { jti: claims.jti, plugin: claims.plugin, task: claims.task, kid: claims.kid, iat: claims.iat, upstream: claims.chain_jti, chainPlugins };
  const suspended = [claims.plugin, ...chainPlugins].find((p) => deps.revocation.isSuspended(p));
  if (suspended !== undefined || deps.revocation.isRevoked(facts)) {
    throw new LeashError('ERR_UPSTREAM_TOKEN_REVOKED', 'subject_token has been revoked', { upstream_jti: claims.jti, ...revokedVia(facts, suspended, deps) });
  }
  const holder = actors.length > 0 ? actors[actors.length - 1] : claims.sub;
  // Leash writes plugin = client_id = newest actor (or sub of a root token); anything else was not minted by this code.
  if (holder !== claims.plugin || claims.client_id !== claims.plugin) {
    throw new LeashError('ERR_UPSTREAM_TOKEN_INVALID', 'subject_token is not a live access token issued by this broker', { upstream_jti: claims.jti, reason: 'inconsistent_chain' });
  }
  // The plugins of the chain, root first: for a person-rooted chain its first actor is the plugin root.
  const chain = person !== undefined ? actors : [claims.sub, ...actors];
  return { claims, chain, act: claims.act, person, effects: claims.chain_effects ?? rootEffects(claims.plugin, claims.aud, claims.jti, policy) };
}

/**
 * For the audit trail only (the refusal path): which other plugin of the chain revoked it,
 * when it was not the token itself. Without the chain the facts are clean, so a chain
 * plugin that makes them revoked is the one.
 */
function revokedVia(facts: TokenFacts, suspended: string | undefined, deps: DelegationDeps): { revoked_plugin?: string } {
  const via =
    suspended ?? (deps.revocation.isRevoked({ ...facts, chainPlugins: [] }) ? undefined : facts.chainPlugins?.find((p) => deps.revocation.isRevoked({ ...facts, plugin: p, chainPlugins: [] })));
  return via !== undefined && via !== facts.plugin ? { revoked_plugin: via } : {};
}

/** A root token carries no `chain_effects`: its effect is its grant's, in the current policy. */
function rootEffects(plugin: string, audience: string, jti: string, policy: CompiledPolicy): string[] {
  const grant = policy.plugins.get(plugin)?.grants.find((g) => g.audience === audience);
  // Fail closed: without the grant the upstream's effect is unknown, so no toxic rule could be checked.
  if (!grant) throw new LeashError('ERR_DELEGATION_NOT_ALLOWED', `the upstream plugin '${plugin}' no longer holds a grant for the upstream token's audience`, { upstream_jti: jti });
  return [grant.effect];
}
