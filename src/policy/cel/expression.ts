import { celEnv, celFunc, CelScalar, isCelError, parse, plan, type CelEnv, type CelInput } from '@bufbuild/cel';
import { RE2JS } from '@bufbuild/re2';
import { CheckError, aType, checkExpr, type CheckType, type Expr } from './check.js';
import { CEL_VARIABLES, type GrantBounds } from './variables.js';

/**
 * CEL conditions: compiled once at load (parse, Leash's static check, cost bound), then
 * evaluated per request by @bufbuild/cel. An evaluation that errs is a failed condition
 * (fail closed); the caller names the expression in the denial.
 */

/**
 * Most cost units one expression may need in the worst case (about one unit per node
 * visited, per 100 characters scanned, per list element copied). Measured at ~40 ns per
 * unit here, so the worst case stays well under 1 ms; typical conditions cost 10 to 100.
 */
export const CEL_COST_LIMIT = 5_000;
/** Longest expression text (the schema says the same). */
export const MAX_EXPRESSION_LENGTH = 4096;

export interface CelExpression {
  readonly text: string;
  /** Worst-case cost in units (at most CEL_COST_LIMIT). */
  readonly cost: number;
  /** The value whatever the request, if the expression does not depend on it (`true`: always holds). */
  readonly constant: boolean | undefined;
  /** `true`/`false`, or why it could not be evaluated (which denies). */
  evaluate(bindings: Readonly<Record<string, CelInput>>): boolean | { readonly error: string };
}

export type CompileOutcome = { readonly ok: true; readonly expression: CelExpression } | { readonly ok: false; readonly message: string };

/** Compiled RE2 programs by pattern: patterns are literals from the policy, so the set is small. */
const regexCache = new Map<string, ReturnType<typeof RE2JS.compile>>();
const MAX_CACHED_PATTERNS = 1000;
function regex(pattern: string): { test(s: string): boolean } {
  let re = regexCache.get(pattern);
  if (!re) {
    if (regexCache.size >= MAX_CACHED_PATTERNS) regexCache.clear();
    re = RE2JS.compile(pattern);
    regexCache.set(pattern, re);
  }
  return re;
}

let environment: CelEnv | undefined;
function env(): CelEnv {
  environment ??= celEnv({
    variables: Object.fromEntries(CEL_VARIABLES.map((v) => [v.name, v.type])),
    re2: { compile: regex },
    // The global form too, so both forms share the compiled-pattern cache.
    funcs: [celFunc('matches', [CelScalar.STRING, CelScalar.STRING], CelScalar.BOOL, (s, p) => regex(p).test(s))],
  });
  return environment;
}

function declarations(bounds: GrantBounds): Map<string, CheckType> {
  return new Map(CEL_VARIABLES.map((v) => [v.name, v.check(bounds)]));
}

/** Compile one condition expression for a grant with these bounds. */
export function compileCelCondition(text: string, bounds: GrantBounds): CompileOutcome {
  if (typeof text !== 'string' || text.trim().length === 0) return { ok: false, message: 'must not be empty' };
  if (text.length > MAX_EXPRESSION_LENGTH) return { ok: false, message: `must be at most ${MAX_EXPRESSION_LENGTH} characters` };
  let root: Expr;
  try {
    const parsed = parse(text);
    if (!parsed.expr) return { ok: false, message: 'does not parse' };
    root = parsed.expr;
  } catch (err) {
    return { ok: false, message: `does not parse: ${(err as Error).message.replace(/^<input>:/, 'at ')}` };
  }
  let checked;
  try {
    checked = checkExpr(root, declarations(bounds));
  } catch (err) {
    if (err instanceof CheckError) return { ok: false, message: err.message };
    throw err;
  }
  if (checked.type.kind !== 'bool' && checked.type.kind !== 'dyn') {
    return { ok: false, message: `is ${aType(checked.type)}; a condition must be a bool` };
  }
  if (checked.cost > CEL_COST_LIMIT) {
    return {
      ok: false,
      message: `may cost up to ${checked.cost.toLocaleString('en')} units, above the limit of ${CEL_COST_LIMIT.toLocaleString('en')} (nested loops over lists multiply; see docs/conditions.md)`,
    };
  }
  const run = plan(env(), root);
  const expression: CelExpression = Object.freeze({
    text,
    cost: checked.cost,
    constant: fold(root),
    evaluate(bindings: Readonly<Record<string, CelInput>>) {
      const value = run(bindings as Record<string, CelInput>);
      if (isCelError(value)) return { error: value.message };
      if (typeof value !== 'boolean') return { error: 'the expression did not give a bool' };
      return value;
    },
  });
  return { ok: true, expression };
}

/**
 * Whether a condition expression holds whatever the request (for the governance review:
 * such a condition narrows nothing). Expressions that do not compile are not "always true".
 */
export function isAlwaysTrue(text: string, bounds: GrantBounds = { audience: '', scopes: [] }): boolean {
  const outcome = compileCelCondition(text, bounds);
  return outcome.ok && outcome.expression.constant === true;
}

/** A variable-free subexpression's value (evaluated once, here), when it is a bool. */
function constantOf(e: Expr): boolean | undefined {
  const value = plan(env(), e)({});
  return typeof value === 'boolean' ? value : undefined;
}

/** Names a subexpression reads that are not bound inside it (its comprehension variables are). */
function readsInput(e: Expr, bound: ReadonlySet<string> = new Set()): boolean {
  const k = e.exprKind;
  switch (k.case) {
    case 'identExpr':
      return !bound.has(k.value.name);
    case 'selectExpr':
      return k.value.operand ? readsInput(k.value.operand, bound) : false;
    case 'callExpr':
      return (k.value.target ? readsInput(k.value.target, bound) : false) || k.value.args.some((a) => readsInput(a, bound));
    case 'listExpr':
      return k.value.elements.some((a) => readsInput(a, bound));
    case 'structExpr':
      return k.value.entries.some((en) => (en.keyKind.case === 'mapKey' && readsInput(en.keyKind.value, bound)) || (en.value ? readsInput(en.value, bound) : false));
    case 'comprehensionExpr': {
      const c = k.value;
      const inner = new Set([...bound, c.iterVar, c.accuVar]);
      return [c.iterRange, c.accuInit].some((x) => x && readsInput(x, bound)) || [c.loopCondition, c.loopStep, c.result].some((x) => x && readsInput(x, inner));
    }
    default:
      return false;
  }
}

/**
 * Fold what does not depend on the input through `||`, `&&`, `!` and `?:`: `x || true` is
 * always true, `x && false` never. Anything else is left unknown (undefined).
 */
function fold(e: Expr): boolean | undefined {
  if (!readsInput(e)) return constantOf(e);
  const k = e.exprKind;
  if (k.case !== 'callExpr' || k.value.target) return undefined;
  const args = k.value.args;
  switch (k.value.function) {
    case '_||_': {
      const values = args.map(fold);
      if (values.includes(true)) return true;
      return values.every((v) => v === false) ? false : undefined;
    }
    case '_&&_': {
      const values = args.map(fold);
      if (values.includes(false)) return false;
      return values.every((v) => v === true) ? true : undefined;
    }
    case '!_': {
      const v = fold(args[0]!);
      return v === undefined ? undefined : !v;
    }
    case '_?_:_': {
      const cond = fold(args[0]!);
      if (cond !== undefined) return fold(args[cond ? 1 : 2]!);
      const [a, b] = [fold(args[1]!), fold(args[2]!)];
      return a !== undefined && a === b ? a : undefined;
    }
    default:
      return undefined;
  }
}
