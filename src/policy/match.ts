import type { ConfigProblem } from '../config/config-error.js';
import type { MatchConfig } from '../config/schema.js';
import { compileGlob, globsIntersect, hasWildcard, type GlobMatcher } from './glob.js';

/**
 * A compiled value test of a binding (subject or claim). A glob without `*` is normalised
 * to `exact`, so the index and the GitHub repository rule see one notion of "exact".
 */
export type ValueMatch = { readonly kind: 'exact'; readonly value: string } | { readonly kind: 'glob'; readonly glob: string; readonly test: GlobMatcher };

/** `a string` or `{equals}` or `{glob}`; anything else is a problem at `path`. */
export function compileMatch(spec: string | MatchConfig, path: string, problems: ConfigProblem[]): ValueMatch | undefined {
  if (typeof spec === 'string') return Object.freeze({ kind: 'exact', value: spec });
  if (spec === null || typeof spec !== 'object') {
    problems.push({ path, message: 'must be a string (exact) or an object with exactly one of `equals` or `glob`' });
    return undefined;
  }
  const hasEquals = spec.equals !== undefined;
  const hasGlob = spec.glob !== undefined;
  if (hasEquals === hasGlob) {
    problems.push({ path, message: 'must have exactly one of `equals` or `glob`' });
    return undefined;
  }
  if (hasEquals) return Object.freeze({ kind: 'exact', value: spec.equals as string });
  const glob = spec.glob as string;
  if (glob.length === 0) {
    problems.push({ path: `${path}/glob`, message: 'must not be empty' });
    return undefined;
  }
  if (!hasWildcard(glob)) return Object.freeze({ kind: 'exact', value: glob });
  return Object.freeze({ kind: 'glob', glob, test: compileGlob(glob) });
}

export function matchValue(m: ValueMatch, value: string | undefined): boolean {
  if (typeof value !== 'string') return false;
  return m.kind === 'exact' ? m.value === value : m.test(value);
}

/**
 * Whether some value satisfies both tests. An exact value may itself contain `*` (it is
 * literal there), so exact sides are tested as values and only glob-vs-glob goes to the
 * intersection search.
 */
export function matchesIntersect(a: ValueMatch, b: ValueMatch): boolean {
  if (a.kind === 'exact') return matchValue(b, a.value);
  if (b.kind === 'exact') return a.test(b.value);
  return globsIntersect(a.glob, b.glob);
}

/** Human form for error messages (config values only, never attested data). */
export function describeMatch(m: ValueMatch): string {
  return m.kind === 'exact' ? `'${m.value}'` : `glob '${m.glob}'`;
}

/** A JSON-pointer reference token (RFC 6901): `~` → `~0`, `/` → `~1`. */
export function pointerToken(key: string | number): string {
  return String(key).replace(/~/g, '~0').replace(/\//g, '~1');
}
