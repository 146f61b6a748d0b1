import type { WorkloadIdentity } from '../attestation/attestor.js';
import type { AuditSink } from '../audit/recorder.js';
import type { Settings } from '../config/schema.js';
import { LeashError } from '../errors/leash-error.js';
import type { CredentialIssuer, TokenResponseBody } from '../issuance/credential-issuer.js';
import type { KeyManager } from '../keys/key-manager.js';
import { NO_PLUGIN, type Metrics } from '../metrics/metrics.js';
import { notePlugin } from '../log/request-context.js';
import type { CompiledGrant, CompiledPlugin, CompiledPolicy, Decision } from '../policy/types.js';
import type { IssuedToken, Task } from '../store/records.js';
import type { ReplayCache, TokenIndex } from '../store/store.js';
import type { TaskService } from '../tasks/task-service.js';
import type { RevocationService } from '../revocation/revocation-service.js';
import { enforceQuotas, type QuotaDeps } from '../quotas/quotas.js';
import type { Clock } from '../time/clock.js';
import { parseExchangeRequest, type ExchangeRequest, type RawParams } from './request.js';
import { bindSender, type DpopInput } from './sender-binding.js';
import { REQUESTABLE_TYPES } from '../formats/token-types.js';
import { checkDelegationTarget, narrowForChain, verifyUpstream, type DelegationDeps, type DelegationOutcome, type Upstream } from '../delegation/delegation.js';
import { checkStepUp, type ApprovalGate, type ApprovalReceipt } from '../approvals/gate.js';
import { checkTaskToxicCombinations, type TaskToxicOutcome } from '../tasks/toxic-combinations.js';
import { attestPresentedCertificate, type X509SvidAttestation } from '../attestation/x509-svid/x509-svid-attestation.js';
import type { PresentedCertificate } from '../mtls/client-certificate.js';
import { TOKEN_TYPE_CLIENT, TOKEN_TYPE_TLS_CLIENT_CERTIFICATE } from '../formats/token-types.js';
import { clientIdentity, CLIENT_IDENTITY_ISSUERS, isCertificateAuthMethod, type AuthenticatedClient, type ClientCredentials, type PluginAuthenticator } from './client-authentication.js';
import { toolCallClaim } from './authorization-details.js';
import type { HumanSubject, UserTokens } from '../users/user-tokens.js';

/** What the exchange needs from the running broker; the policy half is swapped on reload. */
export interface ExchangeDeps {
  readonly clock: Clock;
  readonly tasks: TaskService;
  readonly tokens: TokenIndex;
  readonly replay: ReplayCache;
  readonly keys: KeyManager;
  readonly issuers: ReadonlyMap<string, CredentialIssuer>;
  readonly audit: AuditSink;
  readonly metrics: Metrics;
  readonly revocation: RevocationService;
  readonly quotas: QuotaDeps;
  readonly delegation: DelegationDeps;
  readonly approvals: ApprovalGate;
  /** Per-task budgets (usage): a task whose budget is spent gets no more credentials. */
  readonly budgets?: { assertOpen(task: Task, audience: string): Promise<void> };
  /** A consistent snapshot of policy, attestation and settings for one request. */
  runtime(): ExchangeRuntime;
  /** `serve --candidate`: a second policy decided next to the live one, never enforced (candidate.ts). */
  readonly candidate?: CandidateObserver | undefined;
}

/** Sees every exchange once its answer is settled; must not throw or hold the answer up. */
export interface CandidateObserver {
  observe(seen: { readonly rt: ExchangeRuntime; readonly input: ExchangeInput; readonly trace: Trace; readonly result: ExchangeResult; readonly now: number }): void;
}

export interface ExchangeRuntime {
  readonly settings: Settings;
  readonly policy: CompiledPolicy;
  readonly attestation: { verify(subjectToken: string, tokenType?: string): Promise<WorkloadIdentity> };
  /** X.509-SVIDs presented as the TLS client certificate (`x509-svid` trusted issuers). */
  readonly x509: X509SvidAttestation;
  /** Plugins' client authentication (private_key_jwt). */
  readonly clientAuth: PluginAuthenticator;
  /** Trusted user identity providers: a person's token as subject_token. */
  readonly users: UserTokens;
  readonly tokenDigest: (token: string) => string;
}

export interface ExchangeInput {
  /** The client_id the request named; undefined when it named none (the attestation decides). */
  readonly clientId: string | undefined;
  readonly params: RawParams;
  readonly dpop: DpopInput;
  /** Client credentials the form carried (client_assertion), read by the OAuth layer, verified here. */
  readonly clientCredentials?: ClientCredentials | undefined;
  /** The request's client certificate (TLS, or a trusted proxy's header); throws LeashError for an untrusted or unreadable header. */
  readonly clientCertificate?: (() => PresentedCertificate | undefined) | undefined;
  /** True once the caller has closed its connection: no answer can reach it, so nothing is signed or recorded for it. */
  readonly clientGone?: (() => boolean) | undefined;
}

export type ExchangeResult = { readonly ok: true; readonly body: TokenResponseBody } | { readonly ok: false; readonly error: unknown };

/**
 * The named steps of the exchange, in order. A denial happened at exactly one of them (the
 * trace marks where the run is); explain reports each. The last two run only live.
 */
export const EXCHANGE_STEPS = [
  'parse',
  'client_auth',
  'person',
  'upstream',
  'attest',
  'resolve_plugin',
  'client_auth_rule',
  'suspension',
  'delegation_target',
  'task',
  'quotas',
  'budget',
  'policy',
  'chain',
  'task_toxic',
  'token_type',
  'step_up',
  'sender_binding',
  'approval',
  'ttl',
  'issuer',
  'issue',
  'record',
] as const;
export type ExchangeStep = (typeof EXCHANGE_STEPS)[number];

/** Steps before the policy is consulted: what the request and its proofs are, whatever the policy says. */
export const ESTABLISH_STEPS: ReadonlySet<ExchangeStep> = new Set(['parse', 'client_auth', 'person', 'upstream', 'attest']);

/** What the audit event of this exchange says, filled in as the steps go. */
export interface Trace {
  /** The step the run is in (the one that refused, when it throws). */
  at?: ExchangeStep;
  /** Only when asked for (explain): every step passed, in order. */
  passed?: ExchangeStep[];
  request?: ExchangeRequest;
  client?: AuthenticatedClient;
  certificate?: PresentedCertificate;
  /** RFC 8705 `x5t#S256` of the certificate the token is bound to (the X.509-SVID it was exchanged for). */
  x5t?: string;
  identity?: WorkloadIdentity;
  subjectDigest?: string;
  plugin?: CompiledPlugin;
  task?: Task;
  decision?: Decision;
  /** The per-minute quota window counted this plugin's request (a dry run after it must not count it again). */
  quotaCounted?: string;
  /** The sender binding's outcome (a spent DPoP proof cannot be checked again). */
  sender?: { readonly jkt: string | undefined } | { readonly error: unknown };
  /** Why a human must decide, when one must. */
  approvalNeeded?: ApprovalCause;
  issued?: IssuedToken;
  ttl?: number;
  upstream?: Upstream;
  user?: HumanSubject;
  chain?: DelegationOutcome;
  approval?: ApprovalReceipt;
  toxic?: TaskToxicOutcome;
  /** Undo for an issued credential that ends up withheld (a Vault lease). */
  discard?: () => Promise<void>;
}

type ApprovalCause = 'grant' | 'tool-call' | 'toxic-combination' | 'task-toxic-combination';

function enter(trace: Trace, step: ExchangeStep): void {
  if (trace.passed && trace.at) trace.passed.push(trace.at);
  trace.at = step;
}

/**
 * How one run treats what it would change. The live exchange consumes one-time values,
 * counts quotas, opens or redeems approvals and issues; a dry run (explain, the candidate
 * policy) goes through the same steps reading only, and stops before issuing.
 */
export interface RunMode {
  /** Read only: quotas are read, not counted, and nobody is suspended (the other differences are the fields below). */
  readonly dryRun: boolean;
  /** The policy to decide with (a dry run may be given another: a candidate, a file). */
  readonly policy: CompiledPolicy;
  /** Live: the store's replay cache. Dry: a view that answers as it would and writes nothing. */
  readonly replay: ReplayCache;
  /** explain given claims: this identity stands for the attestation (it is not verified). */
  readonly identity?: WorkloadIdentity | undefined;
  /** `gate`: the live approval step; `preview`: its answer, read only (explain); `note`: only that one is needed (candidate). */
  readonly approval: 'gate' | 'preview' | 'note';
  /** A dry run reads quotas without counting; `countedFor`: the plugin the live run already counted this request for. */
  readonly quotas?: { readonly countedFor: string | undefined } | undefined;
  /** The live run's sender binding, reused (its DPoP proof is spent). */
  readonly sender?: Trace['sender'] | undefined;
  /** explain given task attributes: this task stands for one of the store (it must still admit the plugin). */
  readonly task?: Task | undefined;
}

/** What the steps before the policy established: reused as they are by a candidate policy's run. */
export interface Established {
  readonly request: ExchangeRequest;
  readonly client: AuthenticatedClient | undefined;
  readonly certificate: PresentedCertificate | undefined;
  readonly user: HumanSubject | undefined;
  readonly upstream: Upstream | undefined;
  readonly identity: WorkloadIdentity;
}

/** What the policy steps decided: everything issuing needs. */
export interface Decided {
  readonly plugin: CompiledPlugin;
  readonly task: Task | undefined;
  readonly decision: Extract<Decision, { allow: true }>;
  readonly chain: DelegationOutcome | undefined;
  readonly scopes: readonly string[];
  readonly jkt: string | undefined;
  readonly ttl: number;
  readonly issuer: CredentialIssuer;
}

/**
 * The token exchange as one straight line of named steps:
 * parse → attest → resolve plugin (+ suspension) → check task → quotas → evaluate policy
 * (grant, scopes, TTL, conditions, approval rule) → bind sender (DPoP) → issue → record →
 * audit → respond. Exactly one audit event per call, on every path; if that write fails
 * the credential is withheld (fail closed). The steps up to issuing are `establish` and
 * `decide`, which explain and the candidate policy run too, as a dry run.
 */
export async function runExchange(deps: ExchangeDeps, input: ExchangeInput): Promise<ExchangeResult> {
  const started = process.hrtime.bigint();
  const rt = deps.runtime();
  const now = deps.clock.now();
  const trace: Trace = {};
  const mode: RunMode = { dryRun: false, policy: rt.policy, replay: deps.replay, approval: 'gate' };
  let result: ExchangeResult;
  try {
    const established = await establish(deps, rt, input, trace, mode);
    // Parsing and verification may have run without one wait on I/O (SQLite and signature
    // checks are synchronous): let the loop poll the socket once (a FIN behind the body, from
    // a client that gave up, is read there), so the check before signing can see it. Here,
    // not between the quota check and the record: those stay one uninterrupted run.
    if (input.clientGone && !mode.dryRun) await afterNextPoll();
    const decided = await decide(deps, rt, input, trace, mode, established, now);
    result = { ok: true, body: await issue(deps, input, trace, established, decided, now) };
  } catch (error) {
    result = { ok: false, error };
  }
  // Every path, issued or denied, passes here exactly once; the audit write decides
  // whether a token leaves.
  const final = await audit(deps, trace, result, started);
  // The candidate policy looks at the same request after the answer is settled; nothing it does reaches the caller.
  if (deps.candidate) {
    try {
      deps.candidate.observe({ rt, input, trace, result: final, now });
    } catch {
      // observe schedules and never throws; a bug there must still not touch the live answer.
    }
  }
  return final;
}

/** Steps parse → attest: the request, its client, person, upstream and workload identity. */
export async function establish(deps: ExchangeDeps, rt: ExchangeRuntime, input: ExchangeInput, trace: Trace, mode: RunMode): Promise<Established> {
  enter(trace, 'parse');
  const request = (trace.request = parseExchangeRequest(input.clientId, input.params));
  // In a delegation the subject_token is the upstream Leash token and the attestation is the actor_token.
  const attestationToken = request.actorToken ?? request.subjectToken;
  trace.subjectDigest = rt.tokenDigest(attestationToken);
  enter(trace, 'client_auth');
  const certificate = (trace.certificate = input.clientCertificate?.());
  let client = (trace.client = await rt.clientAuth.authenticate(input.clientCredentials, request.clientId, mode.replay));
  // RFC 8705 §2: a client that registered a certificate method authenticates with the
  // connection's certificate; it is named by client_id, or by subject_token when that is "the client".
  const certificateClient = client ? undefined : (request.clientId ?? (request.attestationTokenType === TOKEN_TYPE_CLIENT ? request.subjectToken : undefined));
  if (certificateClient !== undefined && rt.clientAuth.usesCertificate(certificateClient)) client = trace.client = rt.clientAuth.authenticateCertificate(certificateClient, certificate);
  // With an actor_token the subject is a Leash token (delegation) or a person's token (acting for them).
  enter(trace, 'person');
  const person = request.actorToken !== undefined && rt.users.isPersonToken(request.subjectToken) ? await rt.users.verify(request.subjectToken) : undefined;
  enter(trace, 'upstream');
  const upstream = (trace.upstream = request.actorToken === undefined || person ? undefined : await verifyUpstream(request.subjectToken, deps.delegation, mode.policy));
  // A further hop of a chain rooted at a person still acts for that person.
  const user = (trace.user = person ?? (upstream?.person !== undefined ? rt.users.fromChain(upstream.person, upstream.claims.exp) : undefined));
  enter(trace, 'attest');
  const identity = (trace.identity = mode.identity ?? (await attest(rt, request.attestationTokenType, attestationToken, client, certificate)));
  if (CLIENT_IDENTITY_ISSUERS.has(identity.kind)) trace.subjectDigest = identity.tokenDigest;
  return { request, client, certificate, user, upstream, identity };
}

/**
 * Steps resolve plugin → issuer: everything the policy decides, up to the credential it
 * would issue. Throws the LeashError of the step that refuses.
 */
export async function decide(deps: ExchangeDeps, rt: ExchangeRuntime, input: ExchangeInput, trace: Trace, mode: RunMode, est: Established, now: number): Promise<Decided> {
  const { request, certificate, user, upstream, identity } = est;
  let client = est.client;
  const policy = mode.policy;
  enter(trace, 'resolve_plugin');
  const plugin = (trace.plugin = resolvePlugin(policy, identity, request.clientId ?? client?.clientId));
  enter(trace, 'client_auth_rule');
  // Named by its attestation alone: a plugin that registered a certificate method authenticates with it now.
  // (A candidate's run is given the client the live run authenticated here, and does not authenticate again.)
  if (!client && rt.clientAuth.usesCertificate(plugin.id)) client = trace.client = rt.clientAuth.authenticateCertificate(plugin.id, certificate);
  checkClientAuthentication(plugin, client, identity);
  // RFC 8705 §3: bound to the certificate the exchange was decided on (the X.509-SVID, or the one the client authenticated with).
  if (identity.kind === 'x509-svid' || isCertificateAuthMethod(client?.method)) trace.x5t = certificate?.thumbprint;
  enter(trace, 'suspension');
  if (deps.revocation.isSuspended(plugin.id)) throw new LeashError('ERR_PLUGIN_SUSPENDED', 'this plugin is suspended; a security admin must resume it');
  enter(trace, 'delegation_target');
  const taskId = upstream ? checkDelegationTarget(upstream, plugin, request.taskId, policy, rt.settings).taskId : request.taskId;
  enter(trace, 'task');
  const task = (trace.task = mode.task ? statedTask(mode.task, plugin.id) : taskId === undefined ? undefined : await deps.tasks.requireLive(taskId, plugin.id, now));
  enter(trace, 'quotas');
  if (mode.dryRun) await enforceQuotas(deps.quotas, plugin, task, now, { counted: mode.quotas?.countedFor === plugin.id });
  else {
    // Counted before it may refuse: a breach still counts the request.
    if (plugin.config.quotas?.exchanges_per_minute !== undefined) trace.quotaCounted = plugin.id;
    await enforceQuotas(deps.quotas, plugin, task, now);
  }
  enter(trace, 'budget');
  if (task && deps.budgets) await deps.budgets.assertOpen(task, request.audience);
  enter(trace, 'policy');
  const decision = (trace.decision = policy.evaluate({
    plugin,
    identity,
    task,
    now,
    request: {
      audience: request.audience,
      scopes: request.scopes,
      ttl: request.ttl,
      params: request.conditionParams,
      toolCall: request.toolCall,
      authorizationDetails: request.authorizationDetails,
    },
    chain: upstream?.chain,
    user,
  }));
  if (!decision.allow) throw new LeashError(decision.code, decision.description, { reasons: decision.reasons });
  enter(trace, 'chain');
  const chain = (trace.chain = upstream ? narrowForChain(upstream, plugin, decision, request.scopes, policy, rt.settings, now) : undefined);
  const scopes = chain?.scopes ?? decision.scopes;
  // A tool call has its tool's effect (a `read` MCP grant may reach an `exfiltrate` tool per call).
  const effectiveGrant = decision.tool ? { ...decision.grant, effect: decision.tool.effect } : decision.grant;
  enter(trace, 'task_toxic');
  const toxic = (trace.toxic = await checkTaskToxicCombinations(deps.tokens, { task, plugin, grant: effectiveGrant, policy, settings: rt.settings, now, chainJtis: chain?.upstreamJtis }));
  enter(trace, 'token_type');
  if (request.requestedTokenType !== undefined && !REQUESTABLE_TYPES[decision.grant.kind]?.has(request.requestedTokenType)) {
    throw new LeashError('ERR_REQUESTED_TOKEN_TYPE_UNSUPPORTED', `this audience issues ${decision.grant.kind} credentials; requested_token_type does not match`);
  }
  enter(trace, 'step_up');
  checkStepUp(decision.grant, { identity, dpopPresent: input.dpop.header !== undefined, justification: request.justification, now });
  enter(trace, 'sender_binding');
  const jkt = await bindSenderOnce(input, decision.dpopRequired || decision.grant.config.step_up?.dpop === true, rt, trace, mode, now);
  enter(trace, 'approval');
  // A tool call follows its tool's rule (bound to its arguments); anything else the grant's.
  const humanRule = decision.tool ? decision.tool.approval === 'human' : decision.grant.approval === 'human';
  if (humanRule || chain?.needsApproval || toxic.needsApproval) {
    const cause: ApprovalCause = humanRule ? (decision.tool ? 'tool-call' : 'grant') : chain?.needsApproval ? 'toxic-combination' : 'task-toxic-combination';
    trace.approvalNeeded = cause;
    const approvalInput = {
      plugin,
      // A tool call is shown (and bound) with its tool's effect.
      grant: effectiveGrant,
      identity,
      task,
      audience: request.audience,
      scopes,
      ttl: decision.ttl,
      justification: request.justification,
      approvalId: request.approvalId,
      chain: chain?.chain,
      jkt,
      toolCall: request.toolCall,
      onBehalfOf: user?.qualified,
      personMayDecide: user !== undefined && decision.grant.config.users?.approver === 'person',
      cause,
      now,
    };
    if (mode.approval === 'gate') trace.approval = await deps.approvals.check(approvalInput);
    else if (mode.approval === 'preview') trace.approval = await deps.approvals.preview(approvalInput);
  }
  enter(trace, 'ttl');
  // Acting for a person: never longer than the person's own token.
  const policyTtl = Math.min(chain ? Math.min(decision.ttl, chain.ttlCap) : decision.ttl, user ? user.expiresAt - Math.floor(now / 1000) : Number.POSITIVE_INFINITY);
  const ttl = (trace.ttl = effectiveTtl(policyTtl, task, identity, decision.grant, deps.keys, rt.settings, now));
  enter(trace, 'issuer');
  const issuer = deps.issuers.get(decision.grant.kind);
  if (!issuer) throw new LeashError('ERR_KIND_UNAVAILABLE', `credential kind '${decision.grant.kind}' is not available on this broker`);
  return { plugin, task, decision, chain, scopes, jkt, ttl, issuer };
}

/** A task stated to explain (not in the store): only its plugin list is checked, as requireLive checks it. */
function statedTask(task: Task, pluginId: string): Task {
  if (!task.plugins.includes(pluginId)) throw new LeashError('ERR_TASK_PLUGIN_NOT_ALLOWED', 'this plugin is not among the plugins allowed in the task');
  return task;
}

/** Step "bind sender", once per request: a run after the live one reuses its outcome (the proof's jti is spent). */
async function bindSenderOnce(input: ExchangeInput, required: boolean, rt: ExchangeRuntime, trace: Trace, mode: RunMode, now: number): Promise<string | undefined> {
  const earlier = mode.sender;
  if (earlier && input.dpop.header !== undefined) {
    if ('error' in earlier) throw earlier.error;
    return earlier.jkt;
  }
  try {
    const jkt = await bindSender(input.dpop, required, rt.settings, mode.replay, now);
    trace.sender = { jkt };
    return jkt;
  } catch (error) {
    trace.sender = { error };
    throw error;
  }
}

/** Steps issue → record: live only. */
async function issue(deps: ExchangeDeps, input: ExchangeInput, trace: Trace, est: Established, d: Decided, now: number): Promise<TokenResponseBody> {
  const { request, user, identity } = est;
  const { plugin, task, decision, chain } = d;
  enter(trace, 'issue');
  checkClientPresent(input);
  const credential = await d.issuer.issue({
    plugin,
    grant: decision.grant,
    identity,
    task,
    audience: request.audience,
    scopes: d.scopes,
    ttl: d.ttl,
    jkt: d.jkt,
    x5t: trace.x5t,
    now,
    delegation: chain ? { subject: chain.subject, act: chain.act, effects: chain.effects, upstreamJtis: chain.upstreamJtis, personRooted: chain.personRooted } : undefined,
    approval: trace.approval,
    authorizationDetails: request.toolCall ? [toolCallClaim(request.toolCall)] : undefined,
    // Directly for a person; down a person-rooted chain the delegation above carries sub and act.
    onBehalfOf: user && !chain ? { subject: user.qualified, act: { sub: plugin.id } } : undefined,
  });
  trace.discard = credential.discard;
  enter(trace, 'record');
  // Signing (or an upstream call) may have taken a while: still nobody to answer means no record, and the credential is discarded.
  checkClientPresent(input);
  // The tokens-per-task quota again, in the record's own write: the check at the quotas step
  // cannot see exchanges of the same task in flight on other workers or replicas.
  const perTask = task ? plugin.config.quotas?.tokens_per_task : undefined;
  await deps.tokens.recordIssued(credential.record, perTask === undefined ? undefined : { tokensPerTask: perTask });
  trace.issued = credential.record;
  return credential.body;
}

/** Resolves after the event loop's next poll phase: the check phase of this turn, then the next. */
function afterNextPoll(): Promise<void> {
  return new Promise<void>((resolve) => setImmediate(() => setImmediate(resolve)));
}

/**
 * Before signing and before the durable write: a caller that has hung up (a client that
 * timed out under load) would never receive the token, so none is made for it. Audited as
 * `exchange.abandoned`.
 */
function checkClientPresent(input: ExchangeInput): void {
  if (input.clientGone?.()) throw new LeashError('ERR_CLIENT_GONE', 'the client closed the connection before the credential was issued');
}

/**
 * Step "attest": the attestation by its token type: a JWT (the trusted issuers), the TLS
 * client certificate (an X.509-SVID), or the client this request authenticated
 * (private_key_jwt, for plugins that exchange with their key alone).
 */
async function attest(rt: ExchangeRuntime, tokenType: string, token: string, client: AuthenticatedClient | undefined, certificate: PresentedCertificate | undefined): Promise<WorkloadIdentity> {
  if (tokenType === TOKEN_TYPE_TLS_CLIENT_CERTIFICATE) return attestPresentedCertificate(rt.x509, certificate, token);
  if (tokenType === TOKEN_TYPE_CLIENT) return clientIdentity(client, token);
  return rt.attestation.verify(token, tokenType);
}

/**
 * A plugin with `client_auth` authenticates at every exchange (a stolen attestation alone
 * is not enough); one whose `client_auth.attestation` is `required` also presents its
 * attestation (its key alone is not enough). A client that authenticated must be the
 * plugin the attestation names (checked in resolvePlugin).
 */
function checkClientAuthentication(plugin: CompiledPlugin, client: AuthenticatedClient | undefined, identity: WorkloadIdentity): void {
  const auth = plugin.config.client_auth;
  if (!auth) {
    if (client) throw new LeashError('ERR_CLIENT_AUTH_FAILED', 'this plugin has no registered key: send no client_assertion', { method: 'private_key_jwt', reason: 'method_not_allowed' });
    return;
  }
  if (!client)
    throw new LeashError('ERR_CLIENT_AUTH_REQUIRED', 'this plugin authenticates with private_key_jwt at every exchange: send client_assertion and client_assertion_type', { method: auth.method });
  // Registered for one method, authenticated with another (a client assertion from a certificate client).
  if (client.method !== auth.method) throw new LeashError('ERR_CLIENT_AUTH_FAILED', `this plugin authenticates with ${auth.method}`, { method: client.method, reason: 'method_not_allowed' });
  if (CLIENT_IDENTITY_ISSUERS.has(identity.kind) && auth.attestation !== 'optional') {
    throw new LeashError('ERR_ATTESTATION_REQUIRED', 'this plugin must present its workload attestation as subject_token, besides its client authentication');
  }
}

/**
 * Step "resolve plugin": the attested workload names exactly one plugin; a client_id, when
 * sent (or authenticated), must be that plugin (without one, the attestation alone
 * identifies it). A plugin exchanging with its key alone is the client it authenticated as.
 */
function resolvePlugin(policy: CompiledPolicy, identity: WorkloadIdentity, clientId: string | undefined): CompiledPlugin {
  const plugin = CLIENT_IDENTITY_ISSUERS.has(identity.issuer) && identity.kind === identity.issuer ? policy.plugins.get(identity.subject) : policy.resolvePlugin(identity);
  if (!plugin) throw new LeashError('ERR_WORKLOAD_UNBOUND', 'the attested workload is not bound to any plugin');
  if (clientId !== undefined && plugin.id !== clientId) throw new LeashError('ERR_CLIENT_PLUGIN_MISMATCH', 'client_id does not match the plugin the attestation is bound to');
  // Before the task check, so a disabled plugin learns nothing about tasks.
  if (plugin.disabled) throw new LeashError('ERR_PLUGIN_DISABLED', 'this plugin is disabled');
  return plugin;
}

/**
 * The TTL is the minimum of every limit: grant/request, task life, the attestation's own
 * `exp` (a credential never outlives the proof it came from, unless the grant says
 * `outlive_attestation`), key visibility, global max.
 */
function effectiveTtl(policyTtl: number, task: Task | undefined, identity: WorkloadIdentity, grant: CompiledGrant, keys: KeyManager, settings: Settings, now: number): number {
  let ttl = Math.min(policyTtl, settings.tokens.max_ttl);
  if (task) ttl = Math.min(ttl, Math.floor((task.expiresAt - now) / 1000));
  // In whole seconds, as the token's own iat/exp are: its exp is at most the attestation's.
  const attestationLeft = identity.expiresAt - Math.floor(now / 1000);
  if (!grant.config.outlive_attestation) ttl = Math.min(ttl, attestationLeft);
  const visibleUntil = keys.current().visibleUntil;
  if (visibleUntil !== undefined) ttl = Math.min(ttl, Math.floor((visibleUntil - now) / 1000));
  if (ttl < 1) {
    if (task && task.expiresAt - now < 1000) throw new LeashError('ERR_TASK_EXPIRED', 'the task expires now; open a new one');
    // Accepted within the clock skew, but nothing can be issued under it.
    if (!grant.config.outlive_attestation && attestationLeft < 1) {
      throw new LeashError('ERR_ATTESTATION_EXPIRED', 'the attestation expires now; present a fresh one', { exp: identity.expiresAt });
    }
    throw new LeashError('ERR_SIGNING_UNAVAILABLE', 'no signing key can cover a token right now; retry shortly');
  }
  return ttl;
}

async function audit(deps: ExchangeDeps, trace: Trace, result: ExchangeResult, started: bigint): Promise<ExchangeResult> {
  const err = result.ok ? undefined : result.error;
  const code = err instanceof LeashError ? err.code : err === undefined ? 'OK' : 'ERR_INTERNAL';
  const req = trace.request;
  const event = {
    reason: code,
    client_id: req?.clientId,
    plugin: trace.plugin?.id,
    task: trace.task?.id ?? req?.taskId,
    audience: req?.audience,
    scopes: trace.chain?.scopes ?? (trace.decision?.allow ? trace.decision.scopes : req?.scopes),
    subject_token_sha256: trace.subjectDigest,
    workload: trace.identity ? { issuer: trace.identity.issuer, subject: trace.identity.subject } : undefined,
    jti: trace.issued?.jti,
    kid: trace.issued?.kid,
    kind: trace.issued?.kind,
    ttl: trace.issued ? trace.ttl : undefined,
    jkt: trace.issued?.jkt,
    x5t_s256: trace.issued ? trace.x5t : undefined,
    client_auth: trace.client?.method,
    grant: trace.decision?.allow ? trace.decision.grant.index : undefined,
    reasons: trace.chain || trace.toxic?.reasons.length ? [...(trace.decision?.reasons ?? []), ...(trace.chain?.reasons ?? []), ...(trace.toxic?.reasons ?? [])] : trace.decision?.reasons,
    // Delegation: the full actor chain (root first) and the upstream token, by jti only.
    chain: trace.chain?.chain ?? trace.upstream?.chain,
    upstream_jti: trace.upstream?.claims.jti,
    // Acting for a person: who (issuer-qualified), never their token.
    on_behalf_of: trace.user?.qualified,
    approval: trace.approval,
    // The call by tool and argument hash; the exposed values are in the approval's events, not here.
    tool_call: req?.toolCall ? { tool: req.toolCall.tool, arguments_sha256: req.toolCall.argumentsSha256 } : undefined,
    justification: req?.justification,
    detail: err instanceof LeashError ? err.detail : err !== undefined ? { internal: String((err as Error)?.message ?? err).slice(0, 200) } : undefined,
  };
  let final = result;
  const abandoned = code === 'ERR_CLIENT_GONE';
  try {
    if (result.ok) await deps.audit.record('exchange.issued', { decision: 'issued', ...event });
    else if (abandoned) await deps.audit.record('exchange.abandoned', { decision: 'abandoned', ...event });
    else await deps.audit.record('exchange.denied', { decision: 'denied', ...event });
  } catch (auditError) {
    // A decision that cannot be recorded is not made: no token leaves unaudited.
    final = { ok: false, error: auditError instanceof LeashError ? auditError : new LeashError('ERR_BACKEND_UNAVAILABLE', 'the audit trail is unavailable; retry later') };
  }
  // Issued but withheld (index or audit write failed): undo what lives outside Leash.
  if (!final.ok && trace.discard) await trace.discard();
  const outcome = final.ok ? 'issued' : abandoned ? 'abandoned' : code === 'ERR_INTERNAL' || code.endsWith('_UNAVAILABLE') ? 'error' : 'denied';
  const finalCode = final.ok ? 'OK' : final.error instanceof LeashError ? final.error.code : 'ERR_INTERNAL';
  // The plugin label only ever holds an id of the policy (resolved from the attestation), so its values are bounded.
  const plugin = trace.plugin?.id ?? NO_PLUGIN;
  if (trace.plugin) notePlugin(trace.plugin.id);
  deps.metrics.exchanges.inc({ outcome, reason: finalCode, plugin });
  deps.metrics.exchangeDuration.observe({ outcome }, Number(process.hrtime.bigint() - started) / 1e9);
  if (final.ok && trace.issued) deps.metrics.tokensIssued.inc({ kind: trace.issued.kind, plugin });
  return final;
}
