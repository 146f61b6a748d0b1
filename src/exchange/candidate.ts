import type { AuditSink } from '../audit/recorder.js';
import type { Metrics } from '../metrics/metrics.js';
import type { CompiledPolicy } from '../policy/types.js';
import type { IssuedToken } from '../store/records.js';
import type { ReplayView, TokenIndex } from '../store/store.js';
import { readOnlyReplay } from './explain.js';
import { decide, type CandidateObserver, type Established, type ExchangeDeps, type RunMode, type Trace } from './exchange.js';
import { decidesDifferently, policyOutcome, type PolicyOutcome } from './outcome.js';

/**
 * `serve --candidate FILE`: a second policy decides every exchange next to the live one,
 * which alone is enforced. It runs the pipeline's policy steps (`decide`) dry, after the
 * live answer is settled and off its path, on what the live run established (the request,
 * the verified attestation, the client, the DPoP binding), as the store stood before the
 * live request (its counted quota window and issued token are left out). A different
 * decision is a `policy.candidate_diff` event and a count; a failure is counted and logged,
 * never seen by the caller.
 */

export interface CandidateDeps {
  readonly policy: CompiledPolicy;
  /** The candidate file's digest (what the diff events name). */
  readonly digest: string;
  /** The live exchange's dependencies (without a candidate of its own). */
  readonly exchange: () => ExchangeDeps;
  readonly replayView: ReplayView;
  readonly audit: AuditSink;
  readonly metrics: Metrics;
  readonly log: (message: string, fields?: Record<string, unknown>) => void;
}

export interface CandidateRunner extends CandidateObserver {
  /** Resolves once every evaluation started so far has finished (tests, shutdown). */
  idle(): Promise<void>;
}

export function createCandidateRunner(deps: CandidateDeps): CandidateRunner {
  const pending = new Set<Promise<void>>();
  return {
    observe({ rt, input, trace, result, now }) {
      const live = policyOutcome(trace, result.ok ? undefined : result.error);
      // Refused before any policy was consulted (the request or its proofs), or an outage: nothing to compare.
      if (live.beforePolicy || live.decision === 'error' || !trace.request || !trace.identity) {
        deps.metrics.policyCandidateEvaluations.inc({ result: 'skipped' });
        return;
      }
      const established: Established = { request: trace.request, client: trace.client, certificate: trace.certificate, user: trace.user, upstream: trace.upstream, identity: trace.identity };
      // After the answer has left: setImmediate puts the whole evaluation behind this request's I/O.
      const run = new Promise<void>((resolve) => setImmediate(resolve))
        .then(() => evaluate(deps, rt, input, trace, established, live, now))
        .catch((err: unknown) => {
          deps.metrics.policyCandidateEvaluations.inc({ result: 'error' });
          deps.log('candidate policy evaluation failed; the live decision stands', { error: err instanceof Error ? err.message.slice(0, 200) : String(err).slice(0, 200) });
        })
        .finally(() => pending.delete(run));
      pending.add(run);
    },
    async idle() {
      while (pending.size > 0) await Promise.all([...pending]);
    },
  };
}

async function evaluate(
  deps: CandidateDeps,
  rt: Parameters<CandidateObserver['observe']>[0]['rt'],
  input: Parameters<CandidateObserver['observe']>[0]['input'],
  liveTrace: Trace,
  established: Established,
  live: PolicyOutcome,
  now: number,
): Promise<void> {
  const exchange = deps.exchange();
  const issued = liveTrace.issued;
  const before = issued ? beforeIssued(exchange, issued) : exchange;
  const trace: Trace = {};
  const mode: RunMode = {
    dryRun: true,
    policy: deps.policy,
    replay: readOnlyReplay(deps.replayView),
    approval: 'note',
    quotas: { countedFor: liveTrace.quotaCounted },
    sender: liveTrace.sender,
  };
  let error: unknown;
  try {
    await decide(before, rt, input, trace, mode, established, now);
  } catch (e) {
    error = e;
  }
  const candidate = policyOutcome(trace, error);
  if (candidate.decision === 'error') {
    deps.metrics.policyCandidateEvaluations.inc({ result: 'error' });
    deps.log('candidate policy evaluation hit a backend failure; the live decision stands', { reason: candidate.code });
    return;
  }
  if (!decidesDifferently(live, candidate)) {
    deps.metrics.policyCandidateEvaluations.inc({ result: 'same' });
    return;
  }
  deps.metrics.policyCandidateEvaluations.inc({ result: 'different' });
  deps.metrics.policyCandidateDiffs.inc({ live: live.decision, candidate: candidate.decision });
  const r = established.request;
  await deps.audit.record('policy.candidate_diff', {
    candidate_digest: deps.digest,
    live: { decision: live.decision, reason: live.code, step: live.step, plugin: liveTrace.plugin?.id },
    candidate: { decision: candidate.decision, reason: candidate.code, step: candidate.step, plugin: trace.plugin?.id },
    client_id: r.clientId,
    task: r.taskId,
    audience: r.audience,
    scopes: r.scopes,
    workload: { issuer: established.identity.issuer, subject: established.identity.subject },
  });
}

/**
 * The token index as it stood before the live request issued: the candidate decides the
 * same request, so the credential the live policy just issued is not yet there (it would
 * count against `tokens_per_task` and `live_tokens`, and in a task's toxic combinations).
 */
function beforeIssued(deps: ExchangeDeps, issued: IssuedToken): ExchangeDeps {
  const without = <S extends Pick<TokenIndex, 'listIssuedForTask' | 'listLiveIssuedForPlugin' | 'countIssuedForTaskPlugin'>>(store: S): S =>
    new Proxy(store, {
      get(target, prop) {
        if (prop === 'listIssuedForTask') return async (task: string) => (await target.listIssuedForTask(task)).filter((t) => t.jti !== issued.jti);
        if (prop === 'countIssuedForTaskPlugin') {
          // The live credential is recorded (it was issued): one fewer for its own task and plugin.
          return async (task: string, plugin: string) => (await target.countIssuedForTaskPlugin(task, plugin)) - (issued.task === task && issued.plugin === plugin ? 1 : 0);
        }
        if (prop === 'listLiveIssuedForPlugin') return async (plugin: string, at: number) => (await target.listLiveIssuedForPlugin(plugin, at)).filter((t) => t.jti !== issued.jti);
        const value: unknown = Reflect.get(target, prop);
        return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
      },
    });
  return { ...deps, tokens: without(deps.tokens), quotas: { ...deps.quotas, store: without(deps.quotas.store) } };
}
