import { LeashError } from '../errors/leash-error.js';
import { ESTABLISH_STEPS, type ExchangeStep, type Trace } from './exchange.js';

/**
 * What a policy made of one request, in four words: `issue`, `approval` (it goes through
 * once a human approves), `deny`, or `error` (a backend failed: no policy decision). The
 * live exchange, explain and the candidate policy are compared on this.
 */
export type DecisionClass = 'issue' | 'approval' | 'deny' | 'error';

export interface PolicyOutcome {
  readonly decision: DecisionClass;
  /** `OK`, or the ERR_* code of the step that refused. */
  readonly code: string;
  /** The step that refused (undefined when nothing did). */
  readonly step: ExchangeStep | undefined;
  /** The refusal happened before any policy was consulted (parse → attest): any policy refuses the same. */
  readonly beforePolicy: boolean;
}

/** The same rule as the exchange's outcome label: an outage is not a decision. */
const isError = (code: string) => code === 'ERR_INTERNAL' || code.endsWith('_UNAVAILABLE');

/** The decision a run reached, from its trace and the error it ended with (undefined: it got through every step it ran). */
export function policyOutcome(trace: Trace, error: unknown): PolicyOutcome {
  if (error === undefined || trace.at === 'issue' || trace.at === 'record') {
    // Past the decision (issuing failed, or nothing failed): the policy let it through.
    return { decision: trace.approvalNeeded ? 'approval' : 'issue', code: 'OK', step: undefined, beforePolicy: false };
  }
  const code = error instanceof LeashError ? error.code : 'ERR_INTERNAL';
  const step = trace.at;
  const beforePolicy = step === undefined || ESTABLISH_STEPS.has(step);
  if (isError(code)) return { decision: 'error', code, step, beforePolicy };
  // A request that needs a human reached the approval step: pending, denied or expired, the policy's answer is "a human decides".
  if (step === 'approval') return { decision: 'approval', code, step, beforePolicy };
  return { decision: 'deny', code, step, beforePolicy };
}

/** Two outcomes decide differently: another class, or another refusal. */
export function decidesDifferently(a: PolicyOutcome, b: PolicyOutcome): boolean {
  if (a.decision !== b.decision) return true;
  return a.decision === 'deny' && a.code !== b.code;
}
