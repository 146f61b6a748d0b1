import type { WorkloadIdentity } from '../attestation/attestor.js';
import type { ConfigProblem } from '../config/config-error.js';
import type { BindingConfig, IssuerKind } from '../config/schema.js';
import { compileMatch, describeMatch, matchesIntersect, matchValue, pointerToken, type ValueMatch } from './match.js';

/** One binding, compiled: which attested workload may act as `plugin`. */
export interface CompiledBinding {
  readonly plugin: string;
  readonly issuer: string;
  readonly subject: ValueMatch;
  readonly claims: readonly (readonly [string, ValueMatch])[];
  /** JSON pointer of the binding in the config, for error messages. */
  readonly path: string;
}

const GITHUB_REPO_SUBJECT_PREFIX = /^repo:[^*/:]+\/[^*/:]+:/;

/**
 * Compile one binding; problems go to `problems` with their paths. `issuers` maps trusted
 * issuer names to their kind (an unknown name is a problem: the binding could never match,
 * which is always a typo).
 */
export function compileBinding(plugin: string, spec: BindingConfig, path: string, issuers: ReadonlyMap<string, IssuerKind>, problems: ConfigProblem[]): CompiledBinding | undefined {
  const before = problems.length;
  const kind = issuers.get(spec.issuer);
  if (kind === undefined) {
    const known = [...issuers.keys()].map((n) => `'${n}'`).join(', ');
    problems.push({ path: `${path}/issuer`, message: `unknown trusted issuer '${spec.issuer}'; known: ${known || '(none)'}` });
  }
  const subject = compileMatch(spec.subject, `${path}/subject`, problems);
  const claims: (readonly [string, ValueMatch])[] = [];
  for (const [key, value] of Object.entries(spec.claims ?? {})) {
    const m = compileMatch(value, `${path}/claims/${pointerToken(key)}`, problems);
    if (m) claims.push(Object.freeze([key, m] as const));
  }
  if (problems.length > before || subject === undefined) return undefined;
  const binding: CompiledBinding = Object.freeze({ plugin, issuer: spec.issuer, subject, claims: Object.freeze(claims), path });
  if (kind === 'github-actions' && !constrainsRepository(binding)) {
    problems.push({
      path,
      message:
        'github-actions binding must constrain the repository; an unconstrained binding lets every repository on GitHub act as this plugin ' +
        "(use an exact subject, a subject glob starting with 'repo:<owner>/<name>:', or an exact `claims.repository`)",
    });
    return undefined;
  }
  return binding;
}

/**
 * GitHub's OIDC issuer is shared by every repository on GitHub, so a binding that does not
 * pin one repository would hand the plugin to strangers.
 */
function constrainsRepository(b: CompiledBinding): boolean {
  const repo = b.claims.find(([key]) => key === 'repository');
  if (repo && repo[1].kind === 'exact') return true;
  if (b.subject.kind === 'exact') return true;
  return GITHUB_REPO_SUBJECT_PREFIX.test(b.subject.glob);
}

function attribute(identity: WorkloadIdentity, key: string): string | undefined {
  // Own properties only: a claim named `constructor` must not find Object.prototype's.
  const attrs = identity.attributes;
  if (!Object.hasOwn(attrs, key)) return undefined;
  const v = attrs[key];
  return typeof v === 'string' ? v : undefined;
}

export function bindingMatches(b: CompiledBinding, identity: WorkloadIdentity): boolean {
  if (b.issuer !== identity.issuer) return false;
  if (!matchValue(b.subject, identity.subject)) return false;
  for (const [key, m] of b.claims) {
    if (!matchValue(m, attribute(identity, key))) return false;
  }
  return true;
}

/**
 * Whether some workload identity matches both: same issuer, intersecting subjects, and
 * for every claim both constrain, intersecting constraints (a claim constrained by one
 * side only does not separate them: the workload can simply carry that value).
 */
export function bindingsOverlap(a: CompiledBinding, b: CompiledBinding): boolean {
  if (a.issuer !== b.issuer) return false;
  if (!matchesIntersect(a.subject, b.subject)) return false;
  for (const [key, ma] of a.claims) {
    const other = b.claims.find(([k]) => k === key);
    if (other && !matchesIntersect(ma, other[1])) return false;
  }
  return true;
}

/**
 * The literal text every value matching `m` starts with: an exact value itself, a glob's
 * text before its first `*`. Two matches can share a value only if one's literal prefix is
 * a prefix of the other's, which is what both the overlap check and the index lean on.
 */
export function literalPrefix(m: ValueMatch): string {
  if (m.kind === 'exact') return m.value;
  const star = m.glob.indexOf('*');
  return star < 0 ? m.glob : m.glob.slice(0, star);
}

/** One issuer's bindings: exact subjects by value, glob subjects by literal prefix. */
class IssuerBindings {
  readonly exact = new Map<string, CompiledBinding[]>();
  readonly globsByPrefix = new Map<string, CompiledBinding[]>();
  /** Distinct lengths of the glob prefixes, ascending: a subject is looked up once per length. */
  prefixLengths: number[] = [];

  add(b: CompiledBinding): void {
    const [map, key] = b.subject.kind === 'glob' ? [this.globsByPrefix, literalPrefix(b.subject)] : [this.exact, b.subject.value];
    const list = map.get(key);
    if (list) list.push(b);
    else map.set(key, [b]);
  }

  seal(): void {
    this.prefixLengths = [...new Set([...this.globsByPrefix.keys()].map((k) => k.length))].sort((a, b) => a - b);
  }

  /** Glob bindings whose literal prefix is a prefix of `s` (shorter than `below` if given): the only globs that can match it. */
  globsPrefixing(s: string, below = Infinity, into: CompiledBinding[] = []): CompiledBinding[] {
    for (const len of this.prefixLengths) {
      if (len > s.length || len >= below) break;
      const list = this.globsByPrefix.get(len === s.length ? s : s.slice(0, len));
      if (list) for (const b of list) into.push(b);
    }
    return into;
  }
}

function byIssuer(bindings: readonly CompiledBinding[]): Map<string, IssuerBindings> {
  const out = new Map<string, IssuerBindings>();
  for (const b of bindings) {
    let idx = out.get(b.issuer);
    if (!idx) out.set(b.issuer, (idx = new IssuerBindings()));
    idx.add(b);
  }
  for (const idx of out.values()) idx.seal();
  return out;
}

/** First index in sorted `keys` whose value is >= `s`. */
function lowerBound(keys: readonly string[], s: string): number {
  let lo = 0;
  let hi = keys.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((keys[mid] as string) < s) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * Two plugins bound to the same workload is a configuration error, not a warning: one
 * identity must map to exactly one plugin. Only pairs that could collide are compared
 * (same issuer; same exact subject; a glob against the globs whose literal prefix is a
 * prefix of its own, and against the exact subjects that start with its prefix), each
 * with the exact intersection test, so a policy of thousands of plugins loads in linear-ish
 * time. Globs that share one long prefix (`system:serviceaccount:*:...`) are still compared
 * pairwise among themselves.
 */
export function findOverlaps(bindings: readonly CompiledBinding[], problems: ConfigProblem[]): void {
  const order = new Map<CompiledBinding, number>(bindings.map((b, i) => [b, i]));
  const found: { at: number; problem: ConfigProblem }[] = [];
  const check = (x: CompiledBinding, y: CompiledBinding) => {
    if (x.plugin === y.plugin || !bindingsOverlap(x, y)) return;
    const [first, second] = order.get(x)! < order.get(y)! ? [x, y] : [y, x];
    found.push({
      at: order.get(second)!,
      problem: {
        path: second.path,
        message:
          `binding of plugin '${second.plugin}' (subject ${describeMatch(second.subject)}) overlaps the binding of plugin '${first.plugin}' at ${first.path}: ` +
          'one workload would be able to act as both plugins; make the subjects or claims disjoint',
      },
    });
  };
  for (const idx of byIssuer(bindings).values()) {
    for (const list of idx.exact.values()) {
      for (let i = 0; i < list.length; i++) for (let j = i + 1; j < list.length; j++) check(list[i]!, list[j]!);
    }
    const exactKeys = [...idx.exact.keys()].sort();
    for (const [prefix, globs] of idx.globsByPrefix) {
      // Glob vs glob: the same prefix (each pair once), then every shorter prefix of it (each pair once, from the longer side).
      const shorter = idx.globsPrefixing(prefix, prefix.length);
      for (let i = 0; i < globs.length; i++) {
        const g = globs[i]!;
        for (let j = i + 1; j < globs.length; j++) check(g, globs[j]!);
        for (const h of shorter) check(g, h);
      }
      // Glob vs exact: the exact subjects that start with the prefix (a contiguous run of the sorted keys).
      for (let k = lowerBound(exactKeys, prefix); k < exactKeys.length && exactKeys[k]!.startsWith(prefix); k++) {
        for (const e of idx.exact.get(exactKeys[k]!)!) for (const g of globs) check(g, e);
      }
    }
  }
  // Report in config order, whatever order the buckets were walked in.
  found.sort((a, b) => a.at - b.at);
  for (const f of found) problems.push(f.problem);
}

/**
 * Resolution by issuer, then exact subject (a Map lookup) and the glob bindings whose
 * literal prefix the subject starts with (one Map lookup per distinct prefix length), so
 * resolving touches the bindings that could match, not every plugin.
 */
export class BindingIndex {
  readonly #issuers: Map<string, IssuerBindings>;

  constructor(bindings: readonly CompiledBinding[]) {
    this.#issuers = byIssuer(bindings);
  }

  /** The bindings resolution tests for this identity (exported for the test that keeps it bounded). */
  candidates(identity: WorkloadIdentity): CompiledBinding[] {
    const idx = this.#issuers.get(identity.issuer);
    if (!idx) return [];
    const out = [...(idx.exact.get(identity.subject) ?? [])];
    return idx.globsPrefixing(identity.subject, Infinity, out);
  }

  /**
   * The id of the one plugin bound to this identity, or undefined. Overlaps are rejected
   * at load; should two plugins still match, nobody gets the workload (fail closed).
   */
  resolve(identity: WorkloadIdentity): string | undefined {
    let found: string | undefined;
    for (const b of this.candidates(identity)) {
      if (!bindingMatches(b, identity)) continue;
      if (found !== undefined && found !== b.plugin) return undefined;
      found = b.plugin;
    }
    return found;
  }
}
