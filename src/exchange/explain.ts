import type { WorkloadIdentity } from '../attestation/attestor.js';
import type { IssuerKind } from '../config/schema.js';
import { LeashError } from '../errors/leash-error.js';
import { toOAuthError } from '../errors/oauth-error.js';
import { TOKEN_TYPE_JWT } from '../formats/token-types.js';
import type { PresentedCertificate } from '../mtls/client-certificate.js';
import type { ConditionResult } from '../policy/conditions.js';
import type { CompiledPolicy } from '../policy/types.js';
import type { AuditLog, ReplayCache, ReplayView } from '../store/store.js';
import { CLIENT_IDENTITY_ISSUERS, splitClientCredentials } from './client-authentication.js';
import { decide, establish, EXCHANGE_STEPS, type ExchangeDeps, type ExchangeInput, type ExchangeStep, type RunMode, type Trace } from './exchange.js';
import { policyOutcome, type DecisionClass } from './outcome.js';
import type { RawParams } from './request.js';

/**
 * Explain: what the exchange would decide for a request, step by step, and what would make
 * it pass. It is the exchange pipeline itself (`establish` then `decide`) run dry: one-time
 * values are checked and not consumed, quotas read and not counted, an approval's state
 * read and not opened or redeemed, nothing issued. The one thing it stores is its own
 * audit event, `policy.explained`.
 */

export interface ExplainDeps extends ExchangeDeps {
  /** The replay cache, read only. */
  readonly replayView: ReplayView;
  readonly auditLog: Pick<AuditLog, 'read'>;
  /** The token endpoint a DPoP proof names (`htu`). */
  readonly tokenEndpoint: () => string;
  /** The kind of a trusted issuer of the running config (claims name one by its config name). */
  readonly issuerKind: (name: string) => IssuerKind | undefined;
  /** A client-certificate header value as the trusted proxy would send it (the running settings' format). */
  readonly certificateHeader: (value: string) => PresentedCertificate | undefined;
}

/** The workload identity an attestation would give, stated instead of presented (explain trusts it: it is not verified). */
export interface ExplainClaims {
  /** A trusted issuer's config name. */
  readonly issuer: string;
  readonly subject: string;
  readonly attributes?: Readonly<Record<string, string>> | undefined;
  /** Seconds since epoch; default: far enough ahead not to limit the lifetime. */
  readonly expires_at?: number | undefined;
  readonly issued_at?: number | undefined;
}

export interface ExplainRequest {
  /** The token request's form parameters as the plugin sends them (a repeated one as a list). */
  readonly params: RawParams;
  /** Instead of a real attestation token. */
  readonly claims?: ExplainClaims | undefined;
  /** A task stated instead of one in the store (its attributes for `task.*` conditions; its plugins, default any). */
  readonly task?: { readonly attributes?: Readonly<Record<string, string>> | undefined; readonly plugins?: readonly string[] | undefined } | undefined;
  /** The `DPoP` header(s) the request would carry. */
  readonly dpop?: string | readonly string[] | undefined;
  /** The client-certificate header the trusted proxy would add. */
  readonly clientCertificateHeader?: string | undefined;
  /** Another policy than the running one (a file or inline text, compiled by the caller). */
  readonly policy?: { readonly compiled: CompiledPolicy; readonly digest: string } | undefined;
  /** Who asked (the admin principal). */
  readonly actor: string;
  /** Set by explainEvent: the audit event replayed. */
  readonly eventSeq?: number | undefined;
}

export type StepOutcome = 'passed' | 'failed' | 'not_reached' | 'not_run';

export interface ExplainedStep {
  readonly step: ExchangeStep;
  readonly outcome: StepOutcome;
  readonly detail?: string | undefined;
  readonly code?: string | undefined;
}

export interface Explanation {
  /** What the exchange would do: issue, ask a human (approval), deny; `error`: a backend failed, no decision. */
  readonly decision: DecisionClass;
  /** `OK` or the ERR_* code the exchange would answer with (its audit event's `reason`). */
  readonly reason: string;
  /** The wire answer the plugin would get, when refused. */
  readonly error?: { readonly status: number; readonly error: string; readonly description: string } | undefined;
  /** `token`: a real attestation, verified as an exchange verifies it; `claims`: stated, not verified. */
  readonly attestation: 'token' | 'claims';
  /** `current`: the running policy; `given`: the policy the caller sent (its digest). */
  readonly policy: { readonly source: 'current' | 'given'; readonly digest?: string | undefined };
  readonly steps: readonly ExplainedStep[];
  readonly plugin?: string | undefined;
  readonly workload?: { readonly issuer: string; readonly subject: string } | undefined;
  /** The grant for the audience and its terms, when the policy found one. */
  readonly grant?:
    | { readonly index: number; readonly audience: string; readonly scopes: readonly string[]; readonly kind: string; readonly effect: string; readonly max_ttl: number; readonly approval: string }
    | undefined;
  /** Every condition of that grant, held or not (CEL expressions by their text). */
  readonly conditions?: readonly ConditionResult[] | undefined;
  /** The policy's own reasons, in order. */
  readonly reasons?: readonly string[] | undefined;
  /** What would be issued (scopes, lifetime, kind), when the decision is issue or approval. */
  readonly would_issue?:
    { readonly kind: string; readonly scopes: readonly string[]; readonly ttl: number | undefined; readonly dpop_bound: boolean; readonly approval?: string | undefined } | undefined;
  /** What would make it pass, most specific first. */
  readonly fix: readonly string[];
  /** Always false: explain issues nothing. */
  readonly issued: false;
}

/** A replay cache that answers as the store would and remembers nothing. */
export function readOnlyReplay(view: ReplayView): ReplayCache {
  return { remember: async (key) => !(await view.seen(key)) };
}

/** Run the exchange dry for one request and explain it; records `policy.explained`. */
export async function explainExchange(deps: ExplainDeps, req: ExplainRequest): Promise<Explanation> {
  const rt = deps.runtime();
  const now = deps.clock.now();
  const policy = req.policy?.compiled ?? rt.policy;
  const identity = req.claims ? claimsIdentity(deps, req.claims, now, rt.settings.tokens.max_ttl) : undefined;
  const trace: Trace = { passed: [] };
  let error: unknown;
  try {
    // The token endpoint's gate reads the client credentials off the form before the pipeline: its refusals are client_auth's.
    trace.at = 'client_auth';
    const { credentials, params } = splitClientCredentials(withClaimsToken(req.params, req.claims !== undefined));
    trace.at = undefined;
    const input: ExchangeInput = {
      clientId: namedClient(params.client_id),
      params,
      dpop: { header: req.dpop, method: 'POST', url: deps.tokenEndpoint() },
      clientCredentials: credentials,
      clientCertificate: req.clientCertificateHeader === undefined ? undefined : () => deps.certificateHeader(req.clientCertificateHeader as string),
    };
    const task = req.task
      ? Object.freeze({
          id: 'explain',
          plugins: req.task.plugins ?? [...policy.plugins.keys()],
          attributes: Object.freeze({ ...(req.task.attributes ?? {}) }),
          createdAt: now,
          expiresAt: now + rt.settings.tasks.max_ttl * 1000,
          createdBy: req.actor,
          state: 'active' as const,
          endedAt: undefined,
          endedBy: undefined,
        })
      : undefined;
    const mode: RunMode = { dryRun: true, policy, replay: readOnlyReplay(deps.replayView), identity, approval: 'preview', quotas: { countedFor: undefined }, task };
    const established = await establish(deps, rt, input, trace, mode);
    await decide(deps, rt, input, trace, mode, established, now);
  } catch (e) {
    error = e;
  }
  const explanation = explain(
    trace,
    error,
    { claims: req.claims !== undefined, statedTask: req.task !== undefined, policy: req.policy ? { source: 'given', digest: req.policy.digest } : { source: 'current' } },
    now,
  );
  await deps.audit.record('policy.explained', {
    actor: req.actor,
    input: req.eventSeq !== undefined ? 'event' : req.claims ? 'claims' : 'token',
    event_seq: req.eventSeq,
    policy: req.policy ? 'given' : 'current',
    policy_digest: req.policy?.digest,
    decision: explanation.decision,
    reason: explanation.reason,
    step: explanation.steps.find((s) => s.outcome === 'failed')?.step,
    client_id: trace.request?.clientId,
    plugin: explanation.plugin,
    task: req.task ? undefined : trace.request?.taskId,
    audience: trace.request?.audience,
    scopes: trace.request?.scopes,
    subject_token_sha256: req.claims ? undefined : trace.subjectDigest,
    workload: explanation.workload,
  });
  return explanation;
}

/** Claims stand in for the attestation: the request still needs a subject_token, which explain never reads. */
function withClaimsToken(params: RawParams, claims: boolean): RawParams {
  if (!claims) return params;
  const out: Record<string, string | readonly string[] | undefined> = { ...params };
  const slot = params.actor_token !== undefined ? 'actor_token' : 'subject_token';
  out[slot] ??= 'claims';
  out[`${slot}_type`] ??= TOKEN_TYPE_JWT;
  return out;
}

/** The reserved client id an RFC 8693 client sends without one (token-client.ts) reads as none. */
function namedClient(clientId: RawParams[string]): string | undefined {
  return typeof clientId === 'string' && clientId !== '' && clientId !== 'urn:leash:client:attested' ? clientId : undefined;
}

function claimsIdentity(deps: ExplainDeps, c: ExplainClaims, now: number, maxTtl: number): WorkloadIdentity {
  const kind = deps.issuerKind(c.issuer);
  if (!kind) throw new LeashError('ERR_ADMIN_INVALID', `claims.issuer '${c.issuer}' is not a trusted issuer of the running config (name it as the config does)`);
  const nowS = Math.floor(now / 1000);
  return Object.freeze({
    issuer: c.issuer,
    kind,
    subject: c.subject,
    attributes: Object.freeze({ ...(c.attributes ?? {}) }),
    issuedAt: c.issued_at ?? nowS,
    expiresAt: c.expires_at ?? nowS + maxTtl + 60,
    tokenDigest: 'claims',
  });
}

/** Build the answer from the run's trace: every step, the grant and its conditions, what would pass. */
function explain(trace: Trace, error: unknown, src: { claims: boolean; statedTask: boolean; policy: Explanation['policy'] }, now: number): Explanation {
  const outcome = policyOutcome(trace, error);
  const passed = new Set(trace.passed ?? []);
  const failedAt = error === undefined ? undefined : trace.at;
  const steps: ExplainedStep[] = EXCHANGE_STEPS.map((step) => {
    if (step === 'issue' || step === 'record') return { step, outcome: error === undefined ? 'not_run' : 'not_reached' };
    if (step === failedAt)
      return { step, outcome: 'failed', code: error instanceof LeashError ? error.code : 'ERR_INTERNAL', detail: error instanceof LeashError ? error.description : 'an internal error' };
    if (passed.has(step) || (error === undefined && step === trace.at)) return { step, outcome: 'passed', detail: stepDetail(step, trace, src) };
    return { step, outcome: 'not_reached' };
  });
  const wire = error === undefined ? undefined : toOAuthError(error);
  const decision = trace.decision;
  const grant = decision?.allow ? decision.grant : trace.plugin?.grants.find((g) => g.audience === trace.request?.audience);
  const conditionInput =
    grant && trace.plugin && trace.identity && trace.request
      ? {
          plugin: trace.plugin,
          identity: trace.identity,
          task: trace.task,
          now,
          request: { audience: trace.request.audience, scopes: trace.request.scopes, ttl: trace.request.ttl, params: trace.request.conditionParams, toolCall: trace.request.toolCall },
          chain: trace.upstream?.chain,
          user: trace.user,
        }
      : undefined;
  const conditions = grant && conditionInput && grant.conditionResults ? grant.conditionResults(conditionInput, decision?.allow ? decision.scopes : undefined) : undefined;
  return {
    decision: outcome.decision,
    reason: outcome.code,
    error: wire ? { status: wire.status, error: String(wire.body.error), description: String(wire.body.error_description ?? '') } : undefined,
    attestation: src.claims ? 'claims' : 'token',
    policy: src.policy,
    steps,
    plugin: trace.plugin?.id,
    workload: trace.identity ? { issuer: trace.identity.issuer, subject: trace.identity.subject } : undefined,
    grant: grant ? { index: grant.index, audience: grant.audience, scopes: [...grant.scopes], kind: grant.kind, effect: grant.effect, max_ttl: grant.maxTtl, approval: grant.approval } : undefined,
    conditions: conditions && conditions.length > 0 ? conditions : undefined,
    reasons: [...(decision?.reasons ?? []), ...(trace.chain?.reasons ?? []), ...(trace.toxic?.reasons ?? [])],
    would_issue:
      decision?.allow && (outcome.decision === 'issue' || outcome.decision === 'approval')
        ? {
            kind: decision.grant.kind,
            scopes: trace.chain?.scopes ?? decision.scopes,
            ttl: trace.ttl,
            dpop_bound: trace.sender !== undefined && 'jkt' in trace.sender && trace.sender.jkt !== undefined,
            approval: trace.approvalNeeded,
          }
        : undefined,
    fix: fixes(trace, error, conditions),
    issued: false,
  };
}

function stepDetail(step: ExchangeStep, t: Trace, src: { claims: boolean; statedTask: boolean }): string | undefined {
  const r = t.request;
  switch (step) {
    case 'parse':
      return r ? `audience ${r.audience}; scopes ${r.scopes?.join(' ') ?? '(none named)'}; task ${r.taskId ?? '(none)'}` : undefined;
    case 'client_auth':
      return t.client ? `${t.client.method} as '${t.client.clientId}'` : 'no client authentication sent';
    case 'person':
      return t.user ? `on behalf of ${t.user.qualified}` : 'not acting for a person';
    case 'upstream':
      return t.upstream ? `delegation: upstream chain ${t.upstream.chain.join(' > ')}` : 'no delegation';
    case 'attest':
      return t.identity ? `${src.claims ? 'claims given (not verified)' : `verified ${t.identity.kind} attestation`}: issuer '${t.identity.issuer}', subject '${t.identity.subject}'` : undefined;
    case 'resolve_plugin':
      return t.plugin ? `the workload is bound to plugin '${t.plugin.id}'` : undefined;
    case 'client_auth_rule':
      return t.plugin?.config.client_auth
        ? `the plugin authenticates with ${t.plugin.config.client_auth.method} (attestation ${t.plugin.config.client_auth.attestation})`
        : 'the plugin has no registered key';
    case 'suspension':
      return 'not suspended';
    case 'delegation_target':
      return t.upstream ? 'this plugin may be delegated to' : 'no delegation';
    case 'task':
      if (t.task && src.statedTask) return `a task stated with attributes ${JSON.stringify(t.task.attributes)} (not in the store) admits the plugin`;
      return t.task ? `task ${t.task.id} is live and admits the plugin` : 'no task named';
    case 'quotas':
      return t.plugin?.config.quotas ? 'within the plugin quotas (read, not counted)' : 'no quotas';
    case 'budget':
      return t.task ? 'the task budget is not spent' : 'no task budget';
    case 'policy':
      return t.decision?.allow ? `grant ${t.decision.grant.index} allows it: ${t.decision.reasons.join('; ')}` : undefined;
    case 'chain':
      return t.chain ? `narrowed through the chain to ${t.chain.scopes.join(' ')}` : 'no delegation';
    case 'task_toxic':
      return t.toxic?.reasons.length ? t.toxic.reasons.join('; ') : 'no toxic combination in the task';
    case 'token_type':
      return r?.requestedTokenType ? `requested_token_type ${r.requestedTokenType} matches the grant` : 'no requested_token_type';
    case 'step_up':
      return t.decision?.allow && t.decision.grant.config.step_up ? 'the step-up proofs are present' : 'no step-up rule';
    case 'sender_binding':
      return t.sender && 'jkt' in t.sender && t.sender.jkt ? `DPoP proof valid (jkt ${t.sender.jkt}; checked, not spent)` : 'no DPoP proof, none required';
    case 'approval':
      if (!t.approvalNeeded) return 'no human approval needed';
      return t.approval ? `approved by ${t.approval.approver}: the exchange would redeem it` : `a human must approve (${t.approvalNeeded})`;
    case 'ttl':
      return t.ttl !== undefined ? `lifetime ${t.ttl}s` : undefined;
    case 'issuer':
      return t.decision?.allow ? `${t.decision.grant.kind} credentials are available` : undefined;
    default:
      return undefined;
  }
}

/** What would make the request pass: specific steps for the common refusals, and always the refusal's own description. */
function fixes(t: Trace, error: unknown, conditions: readonly ConditionResult[] | undefined): string[] {
  if (error === undefined) return t.approvalNeeded && !t.approval ? ['an approver approves the request; the plugin then repeats it with approval_id'] : [];
  if (!(error instanceof LeashError)) return ['a backend failed: retry; nothing about the request needs to change'];
  const out: string[] = [];
  const plugin = t.plugin;
  const r = t.request;
  switch (error.code) {
    case 'ERR_WORKLOAD_UNBOUND':
      if (t.identity) out.push(`bind the workload to a plugin: a binding for issuer '${t.identity.issuer}' matching subject '${t.identity.subject}'`);
      break;
    case 'ERR_CLIENT_PLUGIN_MISMATCH':
      if (plugin) out.push(`send client_id '${plugin.id}' (the plugin the attestation is bound to), or no client_id`);
      break;
    case 'ERR_PLUGIN_DISABLED':
      if (plugin) out.push(`enable plugin '${plugin.id}' in the policy (disabled: true)`);
      break;
    case 'ERR_PLUGIN_SUSPENDED':
      if (plugin) out.push(`a security admin resumes it: POST /admin/plugins/${plugin.id}/resume`);
      break;
    case 'ERR_TASK_REQUIRED':
    case 'ERR_TASK_UNKNOWN':
    case 'ERR_TASK_ENDED':
    case 'ERR_TASK_EXPIRED':
    case 'ERR_TASK_PLUGIN_NOT_ALLOWED':
      if (plugin) out.push(`open a task whose plugins include '${plugin.id}' (POST /tasks) and send its id as 'task'`);
      break;
    case 'ERR_AUDIENCE_NOT_GRANTED':
      if (plugin) out.push(`ask for an audience plugin '${plugin.id}' has a grant for (${plugin.grants.map((g) => g.audience).join(', ')}), or add a grant for ${r?.audience ?? 'it'}`);
      break;
    case 'ERR_SCOPE_NOT_GRANTED': {
      const g = plugin?.grants.find((x) => x.audience === r?.audience);
      if (g) out.push(`ask only for scopes of grant ${g.index}: ${[...g.scopes].join(' ')}`);
      break;
    }
    case 'ERR_TTL_EXCEEDS_MAX': {
      const g = plugin?.grants.find((x) => x.audience === r?.audience);
      if (g) out.push(`ask for at most ${g.maxTtl}s (the grant's max_ttl), or leave expires_in out`);
      break;
    }
    case 'ERR_CONDITION_FAILED':
      for (const c of conditions ?? []) if (!c.holds) out.push(`make this condition hold: ${c.condition}`);
      break;
    case 'ERR_APPROVAL_PENDING':
      out.push('an approver approves the request (POST /admin/approvals/{id}/approve); the plugin then repeats it with approval_id');
      break;
    case 'ERR_DPOP_REQUIRED':
      out.push('send a DPoP proof (RFC 9449) for POST on the token endpoint');
      break;
    case 'ERR_QUOTA_EXCEEDED':
      if (plugin) out.push(`wait for the quota window, or raise plugin '${plugin.id}' quotas`);
      break;
    default:
      break;
  }
  out.push(error.description);
  return out;
}

/** What an audit event records of an exchange, enough to replay it without its token. */
interface RecordedExchange {
  readonly decision?: unknown;
  readonly reason?: unknown;
  readonly client_id?: unknown;
  readonly task?: unknown;
  readonly audience?: unknown;
  readonly scopes?: unknown;
  readonly workload?: { readonly issuer?: unknown; readonly subject?: unknown } | undefined;
  readonly chain?: unknown;
  readonly upstream_jti?: unknown;
  readonly on_behalf_of?: unknown;
}

export interface EventExplanation {
  readonly event: { readonly seq: number; readonly type: string; readonly reason: string };
  /** False when the event cannot be re-run (the refusal came before the workload was known, or it went through a delegation or a person). */
  readonly replayed: boolean;
  /** The explanation of the replay (absent when not replayed). */
  readonly explanation?: Explanation | undefined;
  /** The replay names the recorded reason. */
  readonly same_reason: boolean;
  /** What the event does not record, so the replay stands without it. */
  readonly not_recorded: readonly string[];
}

/**
 * `leash explain --event SEQ`: replay an exchange of the audit log through explain. The
 * event records the workload by issuer and subject, the client, task, audience and scopes,
 * never the token; the replay states those as claims (not verified: they were when the event
 * was recorded). A refusal before the workload was known (parse → attest) cannot be re-run.
 */
export async function explainEvent(deps: ExplainDeps, seq: number, opts: { actor: string; policy?: ExplainRequest['policy'] }): Promise<EventExplanation> {
  const [record] = await deps.auditLog.read(seq, 1);
  if (!record || record.seq !== seq) throw new LeashError('ERR_ADMIN_NOT_FOUND', `no audit event ${seq}`);
  if (record.type !== 'exchange.denied' && record.type !== 'exchange.issued') throw new LeashError('ERR_ADMIN_INVALID', `audit event ${seq} is ${record.type}, not an exchange`);
  const e = record.event as RecordedExchange;
  const recorded = typeof e.reason === 'string' ? e.reason : 'unknown';
  const event = { seq, type: record.type, reason: recorded };
  const notRecorded = [
    'the attestation token (its claims other than issuer and subject)',
    'expires_in',
    'request parameters of request.* conditions',
    'the DPoP proof',
    'a tool call and its arguments',
  ];
  const issuer = typeof e.workload?.issuer === 'string' ? e.workload.issuer : undefined;
  const subject = typeof e.workload?.subject === 'string' ? e.workload.subject : undefined;
  if (
    issuer === undefined ||
    subject === undefined ||
    CLIENT_IDENTITY_ISSUERS.has(issuer) ||
    typeof e.audience !== 'string' ||
    e.chain !== undefined ||
    e.upstream_jti !== undefined ||
    e.on_behalf_of !== undefined
  ) {
    return { event, replayed: false, same_reason: false, not_recorded: notRecorded };
  }
  const params: Record<string, string> = { grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange', resource: e.audience };
  if (typeof e.client_id === 'string') params.client_id = e.client_id;
  if (typeof e.task === 'string') params.task = e.task;
  // A denial records the scopes asked for; an issue the scopes granted (the same request would get them again).
  if (Array.isArray(e.scopes) && e.scopes.length > 0) params.scope = e.scopes.filter((s): s is string => typeof s === 'string').join(' ');
  const explanation = await explainExchange(deps, { params, claims: { issuer, subject }, actor: opts.actor, policy: opts.policy, eventSeq: seq });
  return { event, replayed: true, explanation, same_reason: explanation.reason === recorded, not_recorded: notRecorded };
}
