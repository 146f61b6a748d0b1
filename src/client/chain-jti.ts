/**
 * `chain_jti` on a delegated token: the jtis of every upstream Leash token it derives
 * from, the root's token first, the immediate upstream's last. Revoking any of them by jti
 * revokes this token too (the cascade), without a revocation record per downstream token.
 * One jti per actor before this one, so its length equals the depth of `act`.
 *
 * Part of the SDK (its verifier checks it at resource servers); the broker imports it from here.
 */

/** At most one upstream token per actor, and the schema caps `settings.delegation.max_depth` at 10 (MAX_ACT_DEPTH). */
export const MAX_CHAIN_JTI = 10;

/** Longest jti Leash writes is 22 characters (16 random bytes, base64url); leave room, refuse junk. */
const MAX_JTI_LENGTH = 256;

/**
 * Shape-checks `chain_jti` against the token's `act` depth (actors newest-outermost):
 * an array of exactly `actDepth` distinct non-empty strings (`actDepth - 1` when the chain
 * is rooted at a person, `principal: "person"`). Undefined when malformed, including when
 * there is no `act` (a root token derives from nothing).
 */
export function parseChainJti(value: unknown, actDepth: number, personRooted = false): string[] | undefined {
  // A chain rooted at a person: its first actor's token derives from no Leash token (the person's came from their identity provider).
  const expected = personRooted ? actDepth - 1 : actDepth;
  if (!Array.isArray(value) || expected < 1 || actDepth > MAX_CHAIN_JTI || value.length !== expected) return undefined;
  if (!value.every((j): j is string => typeof j === 'string' && j.length > 0 && j.length <= MAX_JTI_LENGTH)) return undefined;
  if (new Set(value).size !== value.length) return undefined;
  return [...value];
}

/** Depth of an unverified `act` claim (0 when absent or not an object chain); bounded by `max`. */
export function actDepthOf(act: unknown, max: number): number {
  let depth = 0;
  for (let node = act; typeof node === 'object' && node !== null && !Array.isArray(node); node = (node as { act?: unknown }).act) {
    if (++depth > max) return depth;
  }
  return depth;
}

/**
 * The other plugins of a delegated token's chain: the root (`sub`) and every actor in
 * `act` except the token's own plugin. Revoking any of them (scope `plugin`, the kill
 * switch) revokes this token too: its authority came from theirs. Empty for a root token.
 */
export function chainPluginsOf(sub: unknown, act: unknown, plugin: string, personRooted = false): string[] {
  const out = new Set<string>();
  if (act === undefined) return [];
  // A person is the principal, not a plugin: only the actors are.
  if (!personRooted && typeof sub === 'string' && sub.length > 0) out.add(sub);
  let depth = 0;
  for (let node: unknown = act; typeof node === 'object' && node !== null && !Array.isArray(node) && depth <= MAX_CHAIN_JTI; node = (node as { act?: unknown }).act) {
    depth++;
    const actor = (node as { sub?: unknown }).sub;
    if (typeof actor === 'string' && actor.length > 0) out.add(actor);
  }
  out.delete(plugin);
  return [...out];
}

/** `principal` of a token issued on a person's behalf (directly or down a chain): `sub` is the person, every plugin is in `act`. */
export const PERSON_PRINCIPAL = 'person';
