import type { ApprovalRecord, ApprovalState, AuditRecord, DecisionRollupRow, IssuedToken, LeaseRecord, Revocation, StateChange, Suspension, Task } from '../records.js';
import type { AcceptedReset, IdentityChange, IdentityState, ResetMarker, StoreIdentity } from '../store-identity.js';
import type {
  ApprovalStore,
  AuditLog,
  AwsDenyStore,
  ChangeFeed,
  CounterStore,
  DecisionHistory,
  LeaseStore,
  OpenApprovalOptions,
  OpenApprovalOutcome,
  ReplayCache,
  ReplayView,
  RevocationStore,
  Store,
  SuspensionStore,
  TaskStore,
  TokenIndex,
  IssueLimit,
} from '../store.js';
import type {
  ChargeLimits,
  CredentialLink,
  CredentialLinkKind,
  DownstreamEvent,
  EvidenceRow,
  TaskEventRef,
  TaskUsageTotals,
  UsageAggregate,
  UsageBatch,
  UsageBatchResult,
  UsageStore,
} from '../usage-store.js';
import {
  checkAcceptReset,
  checkAppend,
  checkApproval,
  checkApprovalFilter,
  checkAt,
  checkAwsDeny,
  checkDecision,
  checkEndTask,
  checkId,
  checkIssued,
  checkJtis,
  checkLease,
  checkLimit,
  checkListener,
  checkLookup,
  checkNow,
  checkOpenApproval,
  checkPlugin,
  checkPoll,
  checkRead,
  checkRemember,
  checkRevocation,
  checkRollup,
  checkSeen,
  checkSince,
  checkSuspension,
  checkTask,
  checkWindow,
} from './record-checks.js';
import { checkCharge, checkCount, checkDownstream, checkEvidenceFilter, checkKey, checkLinkQuery, checkLinks, checkMs, checkTaskEvents, checkUsageBatch } from './usage-checks.js';

/**
 * What a backend provides: one object per Store role (a file per role in the backend's
 * folder), none of which checks its arguments. One object may serve several roles.
 */
export interface StoreRoles {
  readonly tasks: TaskStore;
  readonly tokens: TokenIndex;
  readonly audit: AuditLog;
  readonly replay: ReplayCache & ReplayView;
  readonly revocations: RevocationStore;
  readonly suspensions: SuspensionStore;
  readonly counters: CounterStore;
  readonly feed: ChangeFeed;
  readonly approvals: ApprovalStore;
  readonly leases: LeaseStore;
  readonly awsDenies: AwsDenyStore;
  readonly decisions: DecisionHistory;
  readonly identity: StoreIdentity;
  readonly usage: UsageStore;
}

/**
 * The Store every backend is: checks each call's arguments (record-checks.ts,
 * usage-checks.ts), then hands it to the backend's role. The checks live here once, so
 * the backends cannot disagree on what they refuse and a new backend cannot skip them;
 * a backend extends this class and supplies its roles, its kind, `ping` and `close`.
 * A refused call rejects with a TypeError before the backend is reached.
 */
export abstract class CheckedStore implements Store {
  abstract readonly kind: string;
  readonly #r: StoreRoles;

  protected constructor(roles: StoreRoles) {
    this.#r = roles;
  }

  abstract ping(): Promise<void>;
  abstract close(): Promise<void>;

  // ---- TaskStore -------------------------------------------------------------------

  async createTask(task: Task): Promise<void> {
    checkTask(task);
    return this.#r.tasks.createTask(task);
  }

  async getTask(id: string): Promise<Task | undefined> {
    checkLookup('getTask', 'id', id);
    return this.#r.tasks.getTask(id);
  }

  async endTask(id: string, at: number, by: string): Promise<Task | undefined> {
    checkEndTask(id, at, by);
    return this.#r.tasks.endTask(id, at, by);
  }

  async countActiveTasks(now: number): Promise<number> {
    checkNow('countActiveTasks', now);
    return this.#r.tasks.countActiveTasks(now);
  }

  async listExpiredActiveTasks(now: number, limit: number): Promise<Task[]> {
    checkNow('listExpiredActiveTasks', now);
    checkLimit('listExpiredActiveTasks', limit);
    return this.#r.tasks.listExpiredActiveTasks(now, limit);
  }

  async listActiveTasks(now: number, limit: number): Promise<Task[]> {
    checkNow('listActiveTasks', now);
    checkLimit('listActiveTasks', limit);
    return this.#r.tasks.listActiveTasks(now, limit);
  }

  // ---- TokenIndex ------------------------------------------------------------------

  async recordIssued(token: IssuedToken, limit?: IssueLimit): Promise<void> {
    checkIssued(token);
    if (limit?.tokensPerTask !== undefined && (!Number.isInteger(limit.tokensPerTask) || limit.tokensPerTask < 0)) throw new TypeError('recordIssued: tokensPerTask must be an integer >= 0');
    return this.#r.tokens.recordIssued(token, limit);
  }

  async getIssued(jti: string): Promise<IssuedToken | undefined> {
    checkLookup('getIssued', 'jti', jti);
    return this.#r.tokens.getIssued(jti);
  }

  async listIssuedForTask(taskId: string): Promise<IssuedToken[]> {
    checkLookup('listIssuedForTask', 'taskId', taskId);
    return this.#r.tokens.listIssuedForTask(taskId);
  }

  async listLiveIssuedForPlugin(plugin: string, now: number): Promise<IssuedToken[]> {
    checkPlugin('listLiveIssuedForPlugin', plugin);
    checkNow('listLiveIssuedForPlugin', now);
    return this.#r.tokens.listLiveIssuedForPlugin(plugin, now);
  }

  async countIssuedForTask(taskId: string): Promise<number> {
    checkLookup('countIssuedForTask', 'taskId', taskId);
    return this.#r.tokens.countIssuedForTask(taskId);
  }

  async purgeIssued(before: number, limit: number): Promise<number> {
    checkNow('purgeIssued', before);
    if (!Number.isSafeInteger(limit) || limit < 1) throw new TypeError('purgeIssued: limit must be a positive integer');
    return this.#r.tokens.purgeIssued(before, limit);
  }

  async countIssuedForTaskPlugin(taskId: string, plugin: string): Promise<number> {
    checkLookup('countIssuedForTaskPlugin', 'taskId', taskId);
    checkPlugin('countIssuedForTaskPlugin', plugin);
    return this.#r.tokens.countIssuedForTaskPlugin(taskId, plugin);
  }

  // ---- AuditLog --------------------------------------------------------------------

  async append(type: string, event: Record<string, unknown>, ts: number): Promise<AuditRecord> {
    checkAppend(type, event, ts);
    return this.#r.audit.append(type, event, ts);
  }

  async read(fromSeq: number, limit: number): Promise<AuditRecord[]> {
    checkRead(fromSeq, limit);
    return this.#r.audit.read(fromSeq, limit);
  }

  // ---- ReplayCache -----------------------------------------------------------------

  async remember(key: string, expiresAt: number): Promise<boolean> {
    checkRemember(key, expiresAt);
    return this.#r.replay.remember(key, expiresAt);
  }

  // ---- ReplayView ------------------------------------------------------------------

  async seen(key: string): Promise<boolean> {
    checkSeen(key);
    return this.#r.replay.seen(key);
  }

  // ---- RevocationStore -------------------------------------------------------------

  async addRevocation(revocation: Omit<Revocation, 'seq'>): Promise<Revocation> {
    checkRevocation(revocation);
    return this.#r.revocations.addRevocation(revocation);
  }

  async revocationsSince(cursor: number, limit: number, now: number): Promise<Revocation[]> {
    checkSince(cursor, limit, now);
    return this.#r.revocations.revocationsSince(cursor, limit, now);
  }

  async purgeRevocations(now: number): Promise<number> {
    checkNow('purgeRevocations', now);
    return this.#r.revocations.purgeRevocations(now);
  }

  // ---- SuspensionStore -------------------------------------------------------------

  async suspendPlugin(suspension: Suspension): Promise<boolean> {
    checkSuspension(suspension);
    return this.#r.suspensions.suspendPlugin(suspension);
  }

  async resumePlugin(plugin: string): Promise<boolean> {
    checkPlugin('resumePlugin', plugin);
    return this.#r.suspensions.resumePlugin(plugin);
  }

  async listSuspensions(): Promise<Suspension[]> {
    return this.#r.suspensions.listSuspensions();
  }

  // ---- CounterStore ----------------------------------------------------------------

  async incrementWindow(key: string, windowMs: number, now: number, by = 1): Promise<number> {
    checkWindow(key, windowMs, now, by);
    return this.#r.counters.incrementWindow(key, windowMs, now, by);
  }

  // ---- ChangeFeed (synchronous: a misuse throws at once) ----------------------------

  subscribe(listener: (change: StateChange) => void): () => void {
    checkListener(listener);
    return this.#r.feed.subscribe(listener);
  }

  subscribed(): boolean {
    return this.#r.feed.subscribed();
  }

  // ---- ApprovalStore ---------------------------------------------------------------

  async createApproval(approval: ApprovalRecord): Promise<void> {
    checkApproval(approval);
    return this.#r.approvals.createApproval(approval);
  }

  async openApproval(approval: ApprovalRecord, opts: OpenApprovalOptions): Promise<OpenApprovalOutcome> {
    checkOpenApproval(approval, opts);
    return this.#r.approvals.openApproval(approval, opts);
  }

  async getApproval(id: string): Promise<ApprovalRecord | undefined> {
    checkLookup('getApproval', 'id', id);
    return this.#r.approvals.getApproval(id);
  }

  async decideApproval(
    id: string,
    decision: { readonly state: 'approved' | 'denied'; readonly by: string; readonly reason: string | undefined; readonly at: number; readonly redeemBy: number | undefined },
  ): Promise<ApprovalRecord | undefined> {
    checkId('decideApproval', 'id', id);
    checkDecision(decision);
    return this.#r.approvals.decideApproval(id, decision);
  }

  async consumeApproval(id: string, at: number): Promise<boolean> {
    checkId('consumeApproval', 'id', id);
    checkAt('consumeApproval', at);
    return this.#r.approvals.consumeApproval(id, at);
  }

  async recordApprovalPoll(id: string, at: number, minIntervalMs: number): Promise<'ok' | 'slow_down'> {
    checkPoll(id, at, minIntervalMs);
    return this.#r.approvals.recordApprovalPoll(id, at, minIntervalMs);
  }

  async listApprovals(filter: { readonly state?: ApprovalState; readonly now: number; readonly limit: number }): Promise<ApprovalRecord[]> {
    checkApprovalFilter(filter);
    return this.#r.approvals.listApprovals(filter);
  }

  // ---- LeaseStore ------------------------------------------------------------------

  async recordLease(lease: LeaseRecord): Promise<void> {
    checkLease(lease);
    return this.#r.leases.recordLease(lease);
  }

  async leasesForTokens(jtis: readonly string[]): Promise<LeaseRecord[]> {
    checkJtis('leasesForTokens', jtis);
    if (jtis.length === 0) return [];
    return this.#r.leases.leasesForTokens(jtis);
  }

  async dueLeases(now: number, limit: number): Promise<LeaseRecord[]> {
    checkNow('dueLeases', now);
    checkLimit('dueLeases', limit);
    return this.#r.leases.dueLeases(now, limit);
  }

  async markLeaseRevoked(jti: string, at: number): Promise<boolean> {
    checkId('markLeaseRevoked', 'jti', jti);
    checkAt('markLeaseRevoked', at);
    return this.#r.leases.markLeaseRevoked(jti, at);
  }

  // ---- AwsDenyStore ----------------------------------------------------------------

  async getAwsDeny(roleArn: string): Promise<string | undefined> {
    checkId('getAwsDeny', 'roleArn', roleArn);
    return this.#r.awsDenies.getAwsDeny(roleArn);
  }

  async casAwsDeny(roleArn: string, expected: string | undefined, next: string | undefined): Promise<boolean> {
    checkAwsDeny(roleArn, expected, next);
    return this.#r.awsDenies.casAwsDeny(roleArn, expected, next);
  }

  async listAwsDenyRoles(): Promise<string[]> {
    return this.#r.awsDenies.listAwsDenyRoles();
  }

  // ---- DecisionHistory -------------------------------------------------------------

  async decisionRollup(since: number, until: number): Promise<{ readonly rows: DecisionRollupRow[]; readonly oldestAt: number | undefined }> {
    checkRollup(since, until);
    return this.#r.decisions.decisionRollup(since, until);
  }

  // ---- StoreIdentity ---------------------------------------------------------------

  epoch(): string | undefined {
    return this.#r.identity.epoch();
  }

  resetPending(): ResetMarker | undefined {
    return this.#r.identity.resetPending();
  }

  onIdentityChange(listener: (change: IdentityChange) => void): () => void {
    if (typeof listener !== 'function') throw new TypeError('onIdentityChange: listener must be a function');
    return this.#r.identity.onIdentityChange(listener);
  }

  async identity(): Promise<IdentityState> {
    return this.#r.identity.identity();
  }

  async checkEpoch(): Promise<void> {
    return this.#r.identity.checkEpoch();
  }

  async acceptReset(by: string, at: number): Promise<AcceptedReset | undefined> {
    checkAcceptReset(by, at);
    return this.#r.identity.acceptReset(by, at);
  }

  // ---- UsageStore ------------------------------------------------------------------

  async ingestUsage(batch: UsageBatch): Promise<UsageBatchResult> {
    checkUsageBatch(batch);
    return this.#r.usage.ingestUsage(batch);
  }

  async chargeTaskUsage(task: string, audience: string, calls: number, limits: ChargeLimits, keepUntil: number): Promise<{ charged: boolean; totals: readonly TaskUsageTotals[] }> {
    checkCharge(task, audience, calls, limits, keepUntil);
    return this.#r.usage.chargeTaskUsage(task, audience, calls, limits, keepUntil);
  }

  async taskUsageTotals(task: string): Promise<TaskUsageTotals[]> {
    checkKey('taskUsageTotals', 'task', task);
    return this.#r.usage.taskUsageTotals(task);
  }

  async markBudgetExhausted(task: string, audience: string, at: number, keepUntil: number): Promise<boolean> {
    checkKey('markBudgetExhausted', 'task', task);
    checkKey('markBudgetExhausted', 'audience', audience);
    checkMs('markBudgetExhausted', 'at', at);
    checkMs('markBudgetExhausted', 'keepUntil', keepUntil);
    return this.#r.usage.markBudgetExhausted(task, audience, at, keepUntil);
  }

  async budgetExhaustions(task: string): Promise<Record<string, number>> {
    checkKey('budgetExhaustions', 'task', task);
    return this.#r.usage.budgetExhaustions(task);
  }

  async listTaskUsage(task: string, limit: number): Promise<UsageAggregate[]> {
    checkKey('listTaskUsage', 'task', task);
    checkCount('listTaskUsage', 'limit', limit);
    return this.#r.usage.listTaskUsage(task, limit);
  }

  async usageEvidence(filter: { readonly plugin?: string; readonly now: number; readonly retentionMs: number }): Promise<EvidenceRow[]> {
    checkEvidenceFilter(filter);
    return this.#r.usage.usageEvidence(filter);
  }

  async indexTaskEvents(refs: readonly TaskEventRef[], keepUntil: number): Promise<void> {
    checkTaskEvents(refs, keepUntil);
    return this.#r.usage.indexTaskEvents(refs, keepUntil);
  }

  async listTaskEvents(task: string, limit: number): Promise<TaskEventRef[]> {
    checkKey('listTaskEvents', 'task', task);
    checkCount('listTaskEvents', 'limit', limit);
    return this.#r.usage.listTaskEvents(task, limit);
  }

  async recordDownstream(events: readonly DownstreamEvent[], keepUntil: number): Promise<number> {
    checkDownstream(events, keepUntil);
    return this.#r.usage.recordDownstream(events, keepUntil);
  }

  async listTaskDownstream(task: string, limit: number): Promise<DownstreamEvent[]> {
    checkKey('listTaskDownstream', 'task', task);
    checkCount('listTaskDownstream', 'limit', limit);
    return this.#r.usage.listTaskDownstream(task, limit);
  }

  async listPluginDownstream(plugin: string, since: number, limit: number): Promise<DownstreamEvent[]> {
    checkKey('listPluginDownstream', 'plugin', plugin);
    checkMs('listPluginDownstream', 'since', since);
    checkCount('listPluginDownstream', 'limit', limit);
    return this.#r.usage.listPluginDownstream(plugin, since, limit);
  }

  async linkCredentials(links: readonly CredentialLink[], keepUntil: number): Promise<void> {
    checkLinks(links, keepUntil);
    return this.#r.usage.linkCredentials(links, keepUntil);
  }

  async resolveCredentialLinks(kind: CredentialLinkKind, ids: readonly string[]): Promise<CredentialLink[]> {
    checkLinkQuery(kind, ids);
    return this.#r.usage.resolveCredentialLinks(kind, ids);
  }

  async purgeUsage(now: number, retentionMs: number): Promise<number> {
    checkMs('purgeUsage', 'now', now);
    checkMs('purgeUsage', 'retentionMs', retentionMs);
    return this.#r.usage.purgeUsage(now, retentionMs);
  }
}
