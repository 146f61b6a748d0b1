import type { parse } from '@bufbuild/cel';
import { RE2JS } from '@bufbuild/re2';

/**
 * Leash's static check of a CEL expression over its fixed set of variables, done once at
 * load: every name must be a declared variable, a comprehension variable or a map key;
 * every function must be one Leash offers, with operands of types it accepts where those
 * are known; `matches` takes a literal pattern that RE2 compiles. It also computes an
 * upper bound of the evaluation cost from the size bounds of the inputs, so an expression
 * that could loop or grow too much is refused before it runs.
 *
 * Why our own: @bufbuild/cel (the evaluator, see docs/decisions/0002-cel-evaluator.md)
 * exports no type checker. Types are gradual: where a type is `dyn` the check lets it
 * pass, and a wrong value at run time is an evaluation error, which denies.
 */

export type Expr = NonNullable<ReturnType<typeof parse>['expr']>;

/**
 * A static type with a size bound: `max` is the most characters (string, bytes) or
 * entries (list, map) a value can have; for `dyn` it bounds every string or collection
 * inside it.
 */
export type CheckType =
  | { readonly kind: 'bool' | 'int' | 'uint' | 'double' | 'null' | 'timestamp' | 'duration' | 'type'; readonly max: 0 }
  | { readonly kind: 'string' | 'bytes' | 'dyn'; readonly max: number }
  | { readonly kind: 'list'; readonly elem: CheckType; readonly max: number }
  | { readonly kind: 'map'; readonly key: CheckType; readonly value: CheckType; readonly max: number };

type ScalarKind = 'bool' | 'int' | 'uint' | 'double' | 'null' | 'timestamp' | 'duration' | 'type';
const scalar = (kind: ScalarKind): CheckType => ({ kind, max: 0 });
export const T = {
  bool: scalar('bool'),
  int: scalar('int'),
  uint: scalar('uint'),
  double: scalar('double'),
  null: scalar('null'),
  timestamp: scalar('timestamp'),
  duration: scalar('duration'),
  type: scalar('type'),
  string: (max: number): CheckType => ({ kind: 'string', max }),
  bytes: (max: number): CheckType => ({ kind: 'bytes', max }),
  dyn: (max: number): CheckType => ({ kind: 'dyn', max }),
  list: (elem: CheckType, max: number): CheckType => ({ kind: 'list', elem, max }),
  map: (key: CheckType, value: CheckType, max: number): CheckType => ({ kind: 'map', key, value, max }),
} as const;

/** A size nothing an input holds can exceed (an attestation is at most 16 KiB). */
export const UNBOUNDED = 16384;

/** The type with its article, for messages ("a string", "an int"). */
export function aType(t: CheckType): string {
  const name = describeType(t);
  return /^[aeiou]/.test(name) ? `an ${name}` : `a ${name}`;
}

export function describeType(t: CheckType): string {
  switch (t.kind) {
    case 'list':
      return `list(${describeType(t.elem)})`;
    case 'map':
      return `map(${describeType(t.key)}, ${describeType(t.value)})`;
    case 'null':
      return 'null_type';
    default:
      return t.kind;
  }
}

export class CheckError extends Error {}

export interface CheckResult {
  readonly type: CheckType;
  /** Upper bound of the evaluation cost, in Leash cost units (about one node visited each). */
  readonly cost: number;
  /** Whether the value can depend on any variable (false: the expression is a constant). */
  readonly usesInput: boolean;
}

/** Per node: its type, the worst-case cost of evaluating it, and whether it reads a variable. */
interface Info {
  readonly t: CheckType;
  readonly cost: number;
  readonly input: boolean;
  /** A string literal's value (`matches` wants its pattern as one). */
  readonly literal?: string;
}

const NUMERIC: ReadonlySet<string> = new Set(['int', 'uint', 'double']);
const ORDERED: ReadonlySet<string> = new Set(['int', 'uint', 'double', 'string', 'bytes', 'bool', 'timestamp', 'duration']);
const TIMESTAMP_GETTERS = new Set(['getFullYear', 'getMonth', 'getDate', 'getDayOfMonth', 'getDayOfWeek', 'getDayOfYear', 'getHours', 'getMinutes', 'getSeconds', 'getMilliseconds']);
const DURATION_GETTERS = new Set(['getHours', 'getMinutes', 'getSeconds', 'getMilliseconds']);
const OPERATOR_NAMES: Readonly<Record<string, string>> = {
  '_+_': "'+'",
  '_-_': "'-'",
  '_*_': "'*'",
  '_/_': "'/'",
  '_%_': "'%'",
  '_<_': "'<'",
  '_<=_': "'<='",
  '_>_': "'>'",
  '_>=_': "'>='",
  '_==_': "'=='",
  '_!=_': "'!='",
  '_[_]': 'indexing',
  '@in': "'in'",
};

const isDyn = (t: CheckType) => t.kind === 'dyn';
const TIME_ZONE_COST = 500;
/** Type denotations usable as values (`type(x) == string`). */
const TYPE_NAMES: ReadonlySet<string> = new Set(['bool', 'int', 'uint', 'double', 'string', 'bytes', 'list', 'map', 'null_type', 'type']);

function isTimeZone(zone: string): boolean {
  if (/^[+-]?\d\d:\d\d$/.test(zone)) return true;
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: zone });
    return true;
  } catch {
    return false;
  }
}
/** Work proportional to a string's length: one unit per 1,000 characters (a call costs about as much). */
const scan = (chars: number) => Math.ceil(chars / 1000);

function unify(a: CheckType, b: CheckType): CheckType {
  if (a.kind === 'list' && b.kind === 'list') return T.list(unify(a.elem, b.elem), Math.max(a.max, b.max));
  if (a.kind === 'map' && b.kind === 'map') return T.map(unify(a.key, b.key), unify(a.value, b.value), Math.max(a.max, b.max));
  if (a.kind === b.kind) return a.max >= b.max ? a : b;
  return T.dyn(Math.max(deepMax(a), deepMax(b)));
}

/** The largest size anywhere inside a value of this type. */
function deepMax(t: CheckType): number {
  if (t.kind === 'list') return Math.max(t.max, deepMax(t.elem));
  if (t.kind === 'map') return Math.max(t.max, deepMax(t.key), deepMax(t.value));
  return t.max;
}

/** What one iteration over a value of this type binds, and how many iterations there can be. */
function iteration(t: CheckType): { elem: CheckType; count: number } | undefined {
  if (t.kind === 'list') return { elem: t.elem, count: t.max };
  if (t.kind === 'map') return { elem: t.key, count: t.max };
  if (t.kind === 'dyn') return { elem: T.dyn(t.max), count: t.max };
  return undefined;
}

/**
 * Check one parsed expression against the declared variables (name → type; names may be
 * dotted, e.g. `workload.claims`). Throws CheckError with a message a person can act on.
 */
export function checkExpr(root: Expr, declared: ReadonlyMap<string, CheckType>): CheckResult {
  const locals: Array<Map<string, Info>> = [];

  const local = (name: string): Info | undefined => {
    for (let i = locals.length - 1; i >= 0; i--) {
      const hit = locals[i]!.get(name);
      if (hit) return hit;
    }
    return undefined;
  };

  /** `a.b.c` as parts, when it is a chain of plain field selections rooted at a non-local name. */
  function qualifiedParts(e: Expr): string[] | undefined {
    const k = e.exprKind;
    if (k.case === 'identExpr') return local(k.value.name) ? undefined : [k.value.name];
    if (k.case === 'selectExpr' && !k.value.testOnly && k.value.operand) {
      const inner = qualifiedParts(k.value.operand);
      return inner ? [...inner, k.value.field] : undefined;
    }
    return undefined;
  }

  function known(prefix: string): string {
    const names = [...declared.keys()].filter((n) => n === prefix || n.startsWith(`${prefix}.`));
    const list = names.length > 0 ? names : [...declared.keys()];
    return list.slice(0, 12).join(', ');
  }

  /** Resolve a qualified name to the longest declared variable, then select map keys for the rest. */
  function resolve(parts: string[]): Info {
    for (let i = parts.length; i >= 1; i--) {
      const name = parts.slice(0, i).join('.');
      const t = declared.get(name);
      if (t === undefined) continue;
      let info: Info = { t, cost: 1, input: true };
      let path = name;
      for (const field of parts.slice(i)) {
        info = selectField(info, field, path);
        path = `${path}.${field}`;
      }
      return info;
    }
    const full = parts.join('.');
    throw new CheckError(`unknown variable '${full}' (known: ${known(parts[0]!)})`);
  }

  function selectField(operand: Info, field: string, what: string): Info {
    const t = operand.t;
    if (t.kind === 'map') {
      if (!isDyn(t.key) && t.key.kind !== 'string') throw new CheckError(`'${what}' is ${aType(t)}: its keys are not strings, use ${what}[key]`);
      return { t: t.value, cost: operand.cost + 1, input: operand.input };
    }
    if (isDyn(t)) return { t: T.dyn(t.max), cost: operand.cost + 1, input: operand.input };
    throw new CheckError(`'${what}' is ${aType(t)} and has no field '${field}'`);
  }

  function walk(e: Expr): Info {
    const k = e.exprKind;
    switch (k.case) {
      case 'constExpr': {
        const c = k.value.constantKind;
        switch (c.case) {
          case 'boolValue':
            return { t: T.bool, cost: 0, input: false };
          case 'int64Value':
            return { t: T.int, cost: 0, input: false };
          case 'uint64Value':
            return { t: T.uint, cost: 0, input: false };
          case 'doubleValue':
            return { t: T.double, cost: 0, input: false };
          case 'stringValue':
            return { t: T.string(c.value.length), cost: 0, input: false, literal: c.value };
          case 'bytesValue':
            return { t: T.bytes(c.value.length), cost: 0, input: false };
          case 'nullValue':
            return { t: T.null, cost: 0, input: false };
          default:
            throw new CheckError(`unsupported constant (${String(c.case)})`);
        }
      }
      case 'identExpr': {
        const hit = local(k.value.name);
        if (hit) return { ...hit, cost: 1, literal: undefined };
        if (!declared.has(k.value.name) && TYPE_NAMES.has(k.value.name)) return { t: T.type, cost: 0, input: false };
        return resolve([k.value.name]);
      }
      case 'selectExpr': {
        const { operand, field, testOnly } = k.value;
        if (!operand) throw new CheckError('a field selection without an operand');
        if (testOnly) {
          const o = walk(operand);
          if (o.t.kind !== 'map' && !isDyn(o.t)) throw new CheckError(`has() needs a map field; '${field}' is selected from ${aType(o.t)}`);
          return { t: T.bool, cost: o.cost + 1, input: o.input };
        }
        const parts = qualifiedParts(e);
        if (parts) return resolve(parts);
        return selectField(walk(operand), field, `.${field}`);
      }
      case 'listExpr': {
        if (k.value.optionalIndices.length > 0) throw new CheckError('optional list elements are not supported');
        const items = k.value.elements.map(walk);
        const elem = items.length === 0 ? T.dyn(0) : items.map((i) => i.t).reduce(unify);
        return { t: T.list(elem, items.length), cost: 1 + items.length + sum(items), input: items.some((i) => i.input) };
      }
      case 'structExpr': {
        if (k.value.messageName !== '') throw new CheckError(`message types are not available (${k.value.messageName})`);
        const keys: Info[] = [];
        const values: Info[] = [];
        for (const entry of k.value.entries) {
          if (entry.optionalEntry) throw new CheckError('optional map entries are not supported');
          if (entry.keyKind.case !== 'mapKey' || !entry.value) throw new CheckError('a map literal entry needs a key and a value');
          keys.push(walk(entry.keyKind.value));
          values.push(walk(entry.value));
        }
        for (const key of keys) {
          if (!['string', 'int', 'uint', 'bool', 'dyn'].includes(key.t.kind)) throw new CheckError(`a map key cannot be ${aType(key.t)}`);
        }
        const n = keys.length;
        const t = T.map(n === 0 ? T.dyn(0) : keys.map((i) => i.t).reduce(unify), n === 0 ? T.dyn(0) : values.map((i) => i.t).reduce(unify), n);
        return { t, cost: 1 + 3 * n + sum(keys) + sum(values), input: [...keys, ...values].some((i) => i.input) };
      }
      case 'comprehensionExpr':
        return comprehension(k.value);
      case 'callExpr':
        return call(k.value.function, k.value.target, k.value.args);
      default:
        throw new CheckError('unsupported expression');
    }
  }

  function comprehension(c: Extract<Expr['exprKind'], { case: 'comprehensionExpr' }>['value']): Info {
    if (c.iterVar2 !== '') throw new CheckError('two-variable comprehensions are not supported');
    if (!c.iterRange || !c.accuInit || !c.loopCondition || !c.loopStep || !c.result) throw new CheckError('an incomplete comprehension');
    const range = walk(c.iterRange);
    const it = iteration(range.t);
    if (!it) throw new CheckError(`cannot iterate over ${aType(range.t)} (all, exists, exists_one, map and filter take a list or a map)`);
    const init = walk(c.accuInit);
    const scope = new Map<string, Info>();
    locals.push(scope);
    try {
      scope.set(c.iterVar, { t: it.elem, cost: 1, input: range.input });
      scope.set(c.accuVar, init);
      // First pass: how the accumulator grows in one step; then its bound after every step.
      const once = walk(c.loopStep);
      const accu = grow(init, once, it.count);
      scope.set(c.accuVar, accu);
      const step = walk(c.loopStep);
      const cond = walk(c.loopCondition);
      scope.delete(c.iterVar);
      const result = walk(c.result);
      const cost = 1 + range.cost + init.cost + it.count * (cond.cost + step.cost) + result.cost;
      return { t: result.t, cost, input: range.input || init.input || step.input || cond.input || result.input };
    } finally {
      locals.pop();
    }
  }

  function call(fn: string, targetExpr: Expr | undefined, argExprs: readonly Expr[]): Info {
    const target = targetExpr ? walk(targetExpr) : undefined;
    const args = argExprs.map(walk);
    const all = target ? [target, ...args] : args;
    const base = 1 + sum(all);
    const input = all.some((i) => i.input);
    const out = (t: CheckType, extra = 0): Info => ({ t, cost: base + extra, input });
    const arity = (n: number, method: boolean) => {
      if ((target !== undefined) !== method || args.length !== n) {
        throw new CheckError(method ? `${fn}() is called as x.${fn}(${n === 0 ? '' : '…'}) with ${n} argument${n === 1 ? '' : 's'}` : `${fn}() takes ${n} argument${n === 1 ? '' : 's'}`);
      }
    };
    const want = (i: Info, kinds: readonly string[], what: string) => {
      if (!isDyn(i.t) && !kinds.includes(i.t.kind)) throw new CheckError(`${what} must be ${kinds.join(' or ')}, not ${describeType(i.t)}`);
    };

    switch (fn) {
      case '_&&_':
      case '_||_':
        for (const a of args) want(a, ['bool'], `the operands of '${fn === '_&&_' ? '&&' : '||'}'`);
        return out(T.bool);
      case '!_':
        want(args[0]!, ['bool'], "the operand of '!'");
        return out(T.bool);
      case '@not_strictly_false':
        return out(T.bool);
      case '-_':
        want(args[0]!, ['int', 'double'], "the operand of unary '-'");
        return out(args[0]!.t);
      case '_?_:_':
        want(args[0]!, ['bool'], 'the condition of ?:');
        return out(unify(args[1]!.t, args[2]!.t));
      case '_==_':
      case '_!=_': {
        const [a, b] = [args[0]!.t, args[1]!.t];
        const comparable = isDyn(a) || isDyn(b) || a.kind === 'null' || b.kind === 'null' || a.kind === b.kind || (NUMERIC.has(a.kind) && NUMERIC.has(b.kind));
        if (!comparable) throw new CheckError(`${OPERATOR_NAMES[fn]} compares ${aType(a)} with ${aType(b)}, which are never equal`);
        return out(T.bool, scan(Math.min(deepMax(a), deepMax(b))) + (a.kind === 'list' || a.kind === 'map' ? Math.min(a.max, b.max) : 0));
      }
      case '_<_':
      case '_<=_':
      case '_>_':
      case '_>=_': {
        const [a, b] = [args[0]!.t, args[1]!.t];
        const ok =
          isDyn(a) || isDyn(b) ? ORDERED.has(isDyn(a) ? b.kind : a.kind) || (isDyn(a) && isDyn(b)) : (NUMERIC.has(a.kind) && NUMERIC.has(b.kind)) || (a.kind === b.kind && ORDERED.has(a.kind));
        if (!ok) throw new CheckError(`${OPERATOR_NAMES[fn]} cannot order ${aType(a)} and ${aType(b)}`);
        return out(T.bool, scan(Math.min(a.max, b.max)));
      }
      case '_+_':
      case '_-_':
      case '_*_':
      case '_/_':
      case '_%_':
        return arithmetic(fn, args[0]!, args[1]!, base, input);
      case '_[_]': {
        const [c, key] = [args[0]!.t, args[1]!.t];
        if (c.kind === 'list') {
          want(args[1]!, ['int', 'uint'], 'a list index');
          return out(c.elem);
        }
        if (c.kind === 'map') return out(c.value, scan(key.max));
        if (isDyn(c)) return out(T.dyn(c.max));
        throw new CheckError(`indexing needs a list or a map, not ${describeType(c)}`);
      }
      case '@in': {
        const [v, c] = [args[0]!.t, args[1]!.t];
        if (c.kind === 'list') return out(T.bool, c.max * (1 + scan(v.max)));
        if (c.kind === 'map') return out(T.bool, scan(v.max));
        if (isDyn(c)) return out(T.bool, c.max * (1 + scan(v.max)));
        throw new CheckError(`'in' needs a list or a map on its right, not ${describeType(c)}`);
      }
      case 'size': {
        if (target) arity(0, true);
        else arity(1, false);
        want(all[0]!, ['string', 'bytes', 'list', 'map'], 'the argument of size()');
        return out(T.int, all[0]!.t.kind === 'string' ? scan(all[0]!.t.max) : 0);
      }
      case 'contains':
      case 'startsWith':
      case 'endsWith':
        arity(1, true);
        want(target!, ['string'], `the receiver of ${fn}()`);
        want(args[0]!, ['string'], `the argument of ${fn}()`);
        return out(T.bool, scan(target!.t.max));
      case 'matches': {
        const [subject, pattern] = target ? [target, args[0]] : [args[0], args[1]];
        if (target) arity(1, true);
        else arity(2, false);
        want(subject!, ['string'], 'the string matches() tests');
        if (pattern?.literal === undefined) throw new CheckError('matches() takes a string literal as its pattern (a pattern from the request would let the caller choose it)');
        try {
          RE2JS.compile(pattern.literal);
        } catch (err) {
          throw new CheckError(`matches() pattern '${pattern.literal}' is not an RE2 regular expression: ${(err as Error).message}`);
        }
        // RE2 runs in time linear in the input, times the size of the compiled pattern.
        return out(T.bool, scan(subject!.t.max) * (1 + Math.ceil(pattern.literal.length / 10)));
      }
      case 'int':
      case 'uint':
      case 'double':
        arity(1, false);
        want(args[0]!, fn === 'int' ? ['int', 'uint', 'double', 'string', 'timestamp'] : ['int', 'uint', 'double', 'string'], `the argument of ${fn}()`);
        return out(T[fn], scan(args[0]!.t.max));
      case 'string':
        arity(1, false);
        want(args[0]!, ['int', 'uint', 'double', 'string', 'bytes', 'bool', 'timestamp', 'duration'], 'the argument of string()');
        return out(T.string(Math.max(args[0]!.t.max, 40)), scan(args[0]!.t.max));
      case 'bytes':
        arity(1, false);
        want(args[0]!, ['string', 'bytes'], 'the argument of bytes()');
        return out(T.bytes(args[0]!.t.max * 4), scan(args[0]!.t.max));
      case 'bool':
        arity(1, false);
        want(args[0]!, ['bool', 'string'], 'the argument of bool()');
        return out(T.bool);
      case 'dyn':
        arity(1, false);
        return out(T.dyn(deepMax(args[0]!.t)));
      case 'type':
        arity(1, false);
        return out(T.type);
      case 'timestamp':
        arity(1, false);
        want(args[0]!, ['string', 'int', 'timestamp'], 'the argument of timestamp()');
        return out(T.timestamp, scan(args[0]!.t.max));
      case 'duration':
        arity(1, false);
        want(args[0]!, ['string', 'duration'], 'the argument of duration()');
        return out(T.duration, scan(args[0]!.t.max));
      default:
        break;
    }
    if (target && (TIMESTAMP_GETTERS.has(fn) || DURATION_GETTERS.has(fn))) {
      const kind = target.t.kind;
      if (kind === 'timestamp' || (isDyn(target.t) && TIMESTAMP_GETTERS.has(fn))) {
        if (args.length > 1) throw new CheckError(`${fn}() takes at most one argument (a time zone)`);
        if (args.length === 0) return out(T.int);
        want(args[0]!, ['string'], `the time zone of ${fn}()`);
        const zone = args[0]!.literal;
        if (zone !== undefined && !isTimeZone(zone)) throw new CheckError(`'${zone}' is not a time zone (an IANA name such as 'Europe/Paris', or an offset such as '+02:00')`);
        // A named zone is converted through Intl at each call: tens of microseconds.
        return out(T.int, TIME_ZONE_COST);
      }
      if (kind === 'duration' && DURATION_GETTERS.has(fn)) {
        arity(0, true);
        return out(T.int);
      }
      throw new CheckError(`${fn}() is a method of timestamps${DURATION_GETTERS.has(fn) ? ' and durations' : ''}, not of ${describeType(target.t)}`);
    }
    throw new CheckError(
      `unknown function '${fn}' (Leash offers CEL's standard functions and macros: size, contains, startsWith, endsWith, matches, int, uint, double, string, bytes, bool, dyn, type, timestamp, duration, the timestamp getters, has, all, exists, exists_one, map, filter)`,
    );
  }

  function arithmetic(fn: string, a: Info, b: Info, base: number, input: boolean): Info {
    const [x, y] = [a.t, b.t];
    const op = OPERATOR_NAMES[fn]!;
    const out = (t: CheckType, extra = 0): Info => ({ t, cost: base + extra, input });
    if (isDyn(x) || isDyn(y)) {
      // Whatever the operands turn out to be, a sum is at most as large as both together.
      return out(T.dyn(deepMax(x) + deepMax(y)), fn === '_+_' ? scan(deepMax(x) + deepMax(y)) : 0);
    }
    if (NUMERIC.has(x.kind) && x.kind === y.kind) {
      if (fn === '_%_' && x.kind === 'double') throw new CheckError("'%' takes integers, not doubles");
      return out(x);
    }
    if (fn === '_+_') {
      if ((x.kind === 'string' || x.kind === 'bytes') && x.kind === y.kind) {
        const max = x.max + y.max;
        // It allocates what it produces: one unit per 100 characters, so doubling in a loop is bounded.
        return out(x.kind === 'string' ? T.string(max) : T.bytes(max), Math.ceil(max / 100));
      }
      if (x.kind === 'list' && y.kind === 'list') {
        const max = x.max + y.max;
        return out(T.list(x.max === 0 ? y.elem : y.max === 0 ? x.elem : unify(x.elem, y.elem), max), max);
      }
      if ((x.kind === 'timestamp' && y.kind === 'duration') || (x.kind === 'duration' && y.kind === 'timestamp')) return out(T.timestamp);
      if (x.kind === 'duration' && y.kind === 'duration') return out(T.duration);
    }
    if (fn === '_-_') {
      if (x.kind === 'timestamp' && y.kind === 'timestamp') return out(T.duration);
      if (x.kind === 'timestamp' && y.kind === 'duration') return out(T.timestamp);
      if (x.kind === 'duration' && y.kind === 'duration') return out(T.duration);
    }
    const hint = NUMERIC.has(x.kind) && NUMERIC.has(y.kind) ? ' (CEL does not mix int, uint and double: convert one with int(), uint() or double())' : '';
    throw new CheckError(`${op} cannot combine ${aType(x)} and ${aType(y)}${hint}`);
  }

  const result = walk(root);
  return { type: result.t, cost: result.cost, usesInput: result.input };
}

function sum(infos: readonly Info[]): number {
  let n = 0;
  for (const i of infos) n += i.cost;
  return n;
}

/**
 * The accumulator's bound after `count` steps: a list or string that grows by what one step
 * adds (map and filter append one element per item), anything else as the step leaves it.
 */
function grow(init: Info, once: Info, count: number): Info {
  const [a, b] = [init.t, once.t];
  if (a.kind === 'list' && b.kind === 'list') {
    const per = Math.max(0, b.max - a.max);
    return { t: T.list(a.max === 0 ? b.elem : unify(a.elem, b.elem), a.max + per * count), cost: 1, input: init.input || once.input };
  }
  if ((a.kind === 'string' || a.kind === 'dyn') && b.kind === a.kind) {
    const per = Math.max(0, b.max - a.max);
    return { t: a.kind === 'string' ? T.string(a.max + per * count) : T.dyn(a.max + per * count), cost: 1, input: init.input || once.input };
  }
  const t = a.kind === b.kind ? b : unify(a, b);
  return { t, cost: 1, input: init.input || once.input };
}
