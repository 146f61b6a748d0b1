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
 * Two plugins bound to the same workload is a configuration error, not a warning: one
 * identity must map to exactly one plugin. Exact subjects are bucketed so a large config
 * only compares bindings that could collide.
 */
export function findOverlaps(bindings: readonly CompiledBinding[], problems: ConfigProblem[]): void {
  const order = new Map<CompiledBinding, number>(bindings.map((b, i) => [b, i]));
  const byIssuer = new Map<string, CompiledBinding[]>();
  for (const b of bindings) {
    const list = byIssuer.get(b.issuer);
    if (list) list.push(b);
    else byIssuer.set(b.issuer, [b]);
  }
  const found: { at: number; problem: ConfigProblem }[] = [];
  for (const group of byIssuer.values()) {
    const exact = new Map<string, CompiledBinding[]>();
    const globs: CompiledBinding[] = [];
    for (const b of group) {
      if (b.subject.kind === 'glob') {
        globs.push(b);
      } else {
        const list = exact.get(b.subject.value);
        if (list) list.push(b);
        else exact.set(b.subject.value, [b]);
      }
    }
    const pairs: [CompiledBinding, CompiledBinding][] = [];
    for (const list of exact.values()) {
      for (let i = 0; i < list.length; i++) for (let j = i + 1; j < list.length; j++) pairs.push([list[i]!, list[j]!]);
    }
    for (let i = 0; i < globs.length; i++) {
      for (let j = i + 1; j < globs.length; j++) pairs.push([globs[i]!, globs[j]!]);
      for (const list of exact.values()) for (const e of list) pairs.push([globs[i]!, e]);
    }
    for (const [x, y] of pairs) {
      if (x.plugin === y.plugin || !bindingsOverlap(x, y)) continue;
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
    }
  }
  // Report in config order, whatever order the buckets were walked in.
  found.sort((a, b) => a.at - b.at);
  for (const f of found) problems.push(f.problem);
}

interface IssuerIndex {
  readonly exact: Map<string, CompiledBinding[]>;
  readonly globs: CompiledBinding[];
}

/**
 * Resolution by issuer, then exact subject (a Map lookup) or the issuer's glob bindings,
 * so resolving is not a scan over every plugin.
 */
export class BindingIndex {
  readonly #issuers = new Map<string, IssuerIndex>();

  constructor(bindings: readonly CompiledBinding[]) {
    for (const b of bindings) {
      let idx = this.#issuers.get(b.issuer);
      if (!idx) {
        idx = { exact: new Map(), globs: [] };
        this.#issuers.set(b.issuer, idx);
      }
      if (b.subject.kind === 'glob') {
        idx.globs.push(b);
      } else {
        const list = idx.exact.get(b.subject.value);
        if (list) list.push(b);
        else idx.exact.set(b.subject.value, [b]);
      }
    }
  }

  /**
   * The id of the one plugin bound to this identity, or undefined. Overlaps are rejected
   * at load; should two plugins still match, nobody gets the workload (fail closed).
   */
  resolve(identity: WorkloadIdentity): string | undefined {
    const idx = this.#issuers.get(identity.issuer);
    if (!idx) return undefined;
    let found: string | undefined;
    const consider = (b: CompiledBinding): boolean => {
      if (!bindingMatches(b, identity)) return true;
      if (found !== undefined && found !== b.plugin) {
        found = undefined;
        return false;
      }
      found = b.plugin;
      return true;
    };
    for (const b of idx.exact.get(identity.subject) ?? []) if (!consider(b)) return undefined;
    for (const b of idx.globs) if (!consider(b)) return undefined;
    return found;
  }
}
