import { EFFECTS } from '../../config/schema.js';

/** RFC 8693 §4.1 `act`: the current actor, with prior actors nested inside (newest outermost). */
export interface ActClaim {
  readonly sub: string;
  readonly act?: ActClaim;
}

/**
 * Deepest `act` nesting Leash accepts on a token it verifies: the schema caps
 * `settings.delegation.max_depth` at 10, so anything deeper was never issued by Leash.
 */
export const MAX_ACT_DEPTH = 10;

const isText = (v: unknown): v is string => typeof v === 'string' && v.length > 0;

/**
 * Shape-checks an `act` claim: nested objects, each with a non-empty string `sub` and
 * nothing but `sub` and `act` (Leash writes no other member), at most MAX_ACT_DEPTH deep.
 * Undefined when malformed. Iterative, so a hostile nesting cannot exhaust the stack.
 */
export function parseActClaim(value: unknown): ActClaim | undefined {
  const subs: string[] = [];
  let node: unknown = value;
  while (node !== undefined) {
    if (typeof node !== 'object' || node === null || Array.isArray(node)) return undefined;
    const rec = node as Record<string, unknown>;
    if (!isText(rec.sub) || Object.keys(rec).some((k) => k !== 'sub' && k !== 'act')) return undefined;
    subs.push(rec.sub);
    if (subs.length > MAX_ACT_DEPTH) return undefined;
    node = rec.act;
  }
  if (subs.length === 0) return undefined;
  return actOf(subs);
}

/** Actors newest first → nested claim (newest outermost). */
export function actOf(newestFirst: readonly string[]): ActClaim {
  let act: ActClaim | undefined;
  for (let i = newestFirst.length - 1; i >= 0; i--) act = act ? { sub: newestFirst[i]!, act } : { sub: newestFirst[i]! };
  if (!act) throw new TypeError('actOf needs at least one actor');
  return act;
}

/** The actors of an `act` claim, oldest first (the order they acted in). */
export function actorsOf(act: ActClaim | undefined): string[] {
  const newestFirst: string[] = [];
  for (let node = act; node; node = node.act) newestFirst.push(node.sub);
  return newestFirst.reverse();
}

const KNOWN_EFFECTS: ReadonlySet<string> = new Set(EFFECTS);

/** `chain_effects`: a duplicate-free array of known effects; undefined when malformed. */
export function parseChainEffects(value: unknown): string[] | undefined {
  if (!Array.isArray(value) || value.length > KNOWN_EFFECTS.size) return undefined;
  if (!value.every((e): e is string => typeof e === 'string' && KNOWN_EFFECTS.has(e))) return undefined;
  if (new Set(value).size !== value.length) return undefined;
  return [...value];
}
