import type { ConfigProblem } from '../config/config-error.js';
import type { ApprovalRule, ConditionConfig, GrantConfig } from '../config/schema.js';
import { compileCelCondition, type CelExpression } from './cel/expression.js';
import { BindingBoundError, celBindings } from './cel/variables.js';
import { compileGlob } from './glob.js';
import type { PolicyInput } from './types.js';

/**
 * Returns the conditions that do not hold, as human strings (config values only, never
 * request values). `scopes` are the scopes the decision would issue (CEL's `request.scopes`).
 */
export type ConditionCheck = ((input: PolicyInput, scopes?: readonly string[]) => readonly string[]) & {
  /** Every condition with whether it holds, in order (explain shows them all; the check above is its failures). */
  readonly results: (input: PolicyInput, scopes?: readonly string[]) => readonly ConditionResult[];
};

/** One condition of a grant for one request: what it asks (config values only), and the failure when it does not hold. */
export interface ConditionResult {
  readonly condition: string;
  readonly holds: boolean;
  readonly failure?: string | undefined;
}

/** What CEL conditions know of their grant: its audience and scopes bound their inputs. */
export interface ConditionGrant {
  readonly audience: string;
  readonly scopes: readonly string[];
  readonly approval: ApprovalRule;
}

type TimeWindowConfig = NonNullable<GrantConfig['time']>;
type Source = 'workload' | 'task' | 'request';

const ATTR = /^(workload|task|request)\.([A-Za-z0-9_./:-]+)$/;
const WEEKDAYS = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'] as const;
const NONE: readonly string[] = Object.freeze([]);

/** A missing value is `undefined`; the task being absent is its own failure. */
type Lookup = (input: PolicyInput) => string | undefined | typeof NO_TASK;
const NO_TASK = Symbol('no task');

function own(record: Readonly<Record<string, string>> | undefined, key: string): string | undefined {
  if (!record || !Object.hasOwn(record, key)) return undefined;
  const v = record[key];
  return typeof v === 'string' ? v : undefined;
}

function lookup(source: Source, name: string): Lookup {
  switch (source) {
    case 'workload':
      return (input) => {
        const v = own(input.identity.attributes, name);
        if (v !== undefined) return v;
        // The identity's own fields, when no attribute of that name was attested.
        if (name === 'subject') return input.identity.subject;
        if (name === 'issuer') return input.identity.issuer;
        return undefined;
      };
    case 'task':
      return (input) => (input.task ? own(input.task.attributes, name) : NO_TASK);
    case 'request':
      return (input) => own(input.request.params, name);
  }
}

const quote = (s: string) => `'${s}'`;

interface Check {
  /** What the condition asks, for explain. */
  readonly label: string;
  readonly test: (input: PolicyInput, cel: () => CelBindings) => string | undefined;
}
type CelBindings = ReturnType<typeof celBindings> | BindingBoundError;

const MAX_SHOWN_EXPRESSION = 160;

/** A CEL condition: fails when the expression is false, and (fail closed) when it cannot be evaluated. */
function compileExpression(c: ConditionConfig, path: string, problems: ConfigProblem[], grant: ConditionGrant): Check | undefined {
  const others = (['attr', 'equals', 'in', 'glob', 'present'] as const).filter((k) => c[k] !== undefined);
  if (others.length > 0) {
    problems.push({ path, message: `an \`expr\` condition stands alone (found ${others.join(', ')} beside it)` });
    return undefined;
  }
  const outcome = compileCelCondition(c.expr as string, grant);
  if (!outcome.ok) {
    problems.push({ path: `${path}/expr`, message: outcome.message });
    return undefined;
  }
  const expression: CelExpression = outcome.expression;
  const oneLine = expression.text.replace(/\s+/g, ' ').trim();
  const shown = quote(oneLine.length > MAX_SHOWN_EXPRESSION ? `${oneLine.slice(0, MAX_SHOWN_EXPRESSION)}...` : oneLine);
  const isFalse = `expression ${shown} is false`;
  const test: Check['test'] = (_input, cel) => {
    const bindings = cel();
    if (bindings instanceof BindingBoundError) return `expression ${shown} could not be evaluated (${bindings.message}); denied`;
    const value = expression.evaluate(bindings);
    if (value === true) return undefined;
    if (value === false) return isFalse;
    // The evaluator's message names the expression's own parts (a missing key, a bad conversion).
    return `expression ${shown} could not be evaluated (${value.error.slice(0, 200)}); denied`;
  };
  return { label: `expression ${shown}`, test };
}

/** One condition, or undefined after recording why it is invalid. */
function compileCondition(c: ConditionConfig, path: string, problems: ConfigProblem[], grant: ConditionGrant): Check | undefined {
  if (c.expr !== undefined) return compileExpression(c, path, problems, grant);
  const m = ATTR.exec(c.attr ?? '');
  if (!m) {
    problems.push({
      path: `${path}/attr`,
      message: c.attr === undefined ? 'is required (or write the condition as an `expr`)' : 'must be `workload.<claim>`, `task.<attribute>` or `request.<parameter>`',
    });
    return undefined;
  }
  const ops = (['equals', 'in', 'glob', 'present'] as const).filter((k) => c[k] !== undefined);
  if (ops.length !== 1) {
    problems.push({ path, message: `must have exactly one of \`equals\`, \`in\`, \`glob\`, \`present\` (found ${ops.length ? ops.join(', ') : 'none'})` });
    return undefined;
  }
  const attr = c.attr as string;
  const get = lookup(m[1] as Source, m[2] as string);
  let test: (v: string | undefined) => boolean;
  let wants: string;
  switch (ops[0]) {
    case 'equals': {
      const expected = c.equals as string;
      test = (v) => v === expected;
      wants = `must equal ${quote(expected)}`;
      break;
    }
    case 'in': {
      const allowed = c.in as string[];
      if (allowed.length === 0) {
        problems.push({ path: `${path}/in`, message: 'must list at least one value' });
        return undefined;
      }
      const set = new Set(allowed);
      test = (v) => v !== undefined && set.has(v);
      wants = `must be one of ${allowed.map(quote).join(', ')}`;
      break;
    }
    case 'glob': {
      const glob = c.glob as string;
      if (glob.length === 0) {
        problems.push({ path: `${path}/glob`, message: 'must not be empty' });
        return undefined;
      }
      const matcher = compileGlob(glob);
      test = (v) => v !== undefined && matcher(v);
      wants = `must match ${quote(glob)}`;
      break;
    }
    default: {
      const present = c.present as boolean;
      test = (v) => (v !== undefined) === present;
      wants = present ? 'must be present' : 'must be absent';
    }
  }
  const failure = `${attr} ${wants}`;
  const noTask = `${attr} needs a task, and the request names none`;
  return {
    label: failure,
    test: (input) => {
      const v = get(input);
      if (v === NO_TASK) return noTask;
      return test(v) ? undefined : failure;
    },
  };
}

function parseClock(hhmm: string | undefined, fallback: number, allow24: boolean): number | undefined {
  if (hhmm === undefined) return fallback;
  const m = /^(\d\d):(\d\d)$/.exec(hhmm);
  if (!m) return undefined;
  const h = Number(m[1]);
  const min = Number(m[2]);
  if (min > 59) return undefined;
  const total = h * 60 + min;
  return total < 24 * 60 || (allow24 && total === 24 * 60) ? total : undefined;
}

function compileTime(t: TimeWindowConfig, path: string, problems: ConfigProblem[]): Check | undefined {
  const before = problems.length;
  const from = parseClock(t.from, 0, false);
  const to = parseClock(t.to, 24 * 60, true);
  if (from === undefined) problems.push({ path: `${path}/from`, message: 'must be a UTC time "HH:MM" between 00:00 and 23:59' });
  if (to === undefined) problems.push({ path: `${path}/to`, message: 'must be a UTC time "HH:MM" between 00:01 and 24:00' });
  if (from !== undefined && to !== undefined && from >= to) {
    problems.push({ path, message: '`from` must be earlier than `to` (a window does not cross midnight; `to` is exclusive and may be 24:00)' });
  }
  const days = t.days ?? [...WEEKDAYS];
  if (days.length === 0) problems.push({ path: `${path}/days`, message: 'must list at least one day' });
  days.forEach((d, i) => {
    if (!(WEEKDAYS as readonly string[]).includes(d)) problems.push({ path: `${path}/days/${i}`, message: `must be one of ${WEEKDAYS.join(', ')}` });
  });
  if (problems.length > before || from === undefined || to === undefined) return undefined;
  const allowed = new Set<number>(days.map((d) => (WEEKDAYS as readonly string[]).indexOf(d)));
  const fmt = (minutes: number) => `${String(Math.floor(minutes / 60)).padStart(2, '0')}:${String(minutes % 60).padStart(2, '0')}`;
  const failure = `the grant may only be used on ${WEEKDAYS.filter((_, i) => allowed.has(i)).join(', ')} from ${fmt(from)} to ${fmt(to)} UTC`;
  return {
    label: failure,
    test: (input) => {
      const at = new Date(input.now);
      const minutes = at.getUTCHours() * 60 + at.getUTCMinutes();
      return allowed.has(at.getUTCDay()) && minutes >= from && minutes < to ? undefined : failure;
    },
  };
}

/**
 * Compile a grant's `conditions` and `time` window once into one check that lists every
 * condition failing for a request (all are evaluated, so the caller learns everything to fix).
 */
export function compileConditions(
  conditions: readonly ConditionConfig[] | undefined,
  time: TimeWindowConfig | undefined,
  path: string,
  problems: ConfigProblem[],
  grant: ConditionGrant = { audience: '', scopes: [], approval: 'none' },
): ConditionCheck {
  const checks: Check[] = [];
  (conditions ?? []).forEach((c, i) => {
    const check = compileCondition(c, `${path}/conditions/${i}`, problems, grant);
    if (check) checks.push(check);
  });
  if (time !== undefined) {
    const check = compileTime(time, `${path}/time`, problems);
    if (check) checks.push(check);
  }
  if (checks.length === 0) return Object.assign(() => NONE, { results: () => [] });
  const run = (input: PolicyInput, scopes: readonly string[] | undefined, each: (check: Check, failure: string | undefined) => void): void => {
    // CEL bindings are built once per decision, and only if a CEL condition asks.
    let bindings: CelBindings | undefined;
    const cel = () => (bindings ??= bindingsFor(input, scopes ?? input.request.scopes ?? [], grant.approval));
    for (const check of checks) each(check, check.test(input, cel));
  };
  // One evaluation, two views: the failures (the decision) and every condition (explain).
  const failed = (input: PolicyInput, scopes?: readonly string[]): readonly string[] => {
    const out: string[] = [];
    run(input, scopes, (_c, f) => {
      if (f !== undefined) out.push(f);
    });
    return out;
  };
  const results = (input: PolicyInput, scopes?: readonly string[]): readonly ConditionResult[] => {
    const out: ConditionResult[] = [];
    run(input, scopes, (c, f) => out.push(f === undefined ? { condition: c.label, holds: true } : { condition: c.label, holds: false, failure: f }));
    return out;
  };
  return Object.assign(failed, { results });
}

function bindingsFor(input: PolicyInput, scopes: readonly string[], approvalRule: ApprovalRule): CelBindings {
  const { identity, request, task, plugin } = input;
  try {
    return celBindings({
      issuer: identity.issuer,
      kind: identity.kind,
      subject: identity.subject,
      claims: identity.attributes,
      audience: request.audience,
      scopes,
      ttl: request.ttl,
      params: request.params,
      authorizationDetails: request.authorizationDetails ?? [],
      task: task ? { id: task.id, attributes: task.attributes, plugins: task.plugins } : undefined,
      plugin: { id: plugin.id, owner: plugin.owner, risk: plugin.risk },
      now: input.now,
      approvalRule,
      chain: input.chain ?? [],
    });
  } catch (err) {
    if (err instanceof BindingBoundError) return err;
    throw err;
  }
}
