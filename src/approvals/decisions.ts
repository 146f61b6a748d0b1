import type { AuditSink } from '../audit/recorder.js';
import type { ApprovalSettingsConfig } from '../config/schema.js';
import { LeashError } from '../errors/leash-error.js';
import type { CompiledPolicy } from '../policy/types.js';
import type { ApprovalRecord, ApprovalState } from '../store/records.js';
import type { ApprovalStore } from '../store/store.js';
import type { Clock } from '../time/clock.js';

/** The admin caller as decisions see it (a subset of AdminPrincipal). */
export interface Approver {
  /** `apikey:<id>` or `jwt:<iss>#<sub>`. */
  readonly id: string;
  readonly roles: ReadonlySet<string>;
  readonly groups: ReadonlySet<string>;
  /** A person (`<issuer>#<sub>`) deciding what was asked on their behalf. */
  readonly person?: string | undefined;
}

export interface ApprovalDecisionDeps {
  readonly store: ApprovalStore;
  readonly clock: Clock;
  readonly settings: () => ApprovalSettingsConfig;
  readonly policy: () => CompiledPolicy;
  readonly audit: AuditSink;
  readonly metrics: { readonly approvals: { inc(labels: { outcome: 'approved' | 'denied' }): void } };
}

/** Who may look at and decide approvals: the `security` role or a configured approver group. */
export function mayDecide(approver: Approver, settings: ApprovalSettingsConfig): boolean {
  return approver.roles.has('security') || settings.approver_groups.some((g) => approver.groups.has(g));
}

/** The names a caller goes by: its principal id, the bare key id or token subject, its groups. */
export function approverNames(approver: Approver): Set<string> {
  const names = new Set<string>([approver.id, ...approver.groups]);
  if (approver.id.startsWith('apikey:')) names.add(approver.id.slice('apikey:'.length));
  const hash = approver.id.indexOf('#');
  if (approver.id.startsWith('jwt:') && hash >= 0) names.add(approver.id.slice(hash + 1));
  return names;
}

/**
 * Separation of duties: the plugin's owner (by principal, subject or group) does not
 * approve its own plugin's request, unless the plugin's policy says
 * `allow_owner_approval` (read from the current policy, so a reload can revoke it).
 */
export function ownsPlugin(approver: Approver, approval: Pick<ApprovalRecord, 'plugin' | 'owner'>, policy: CompiledPolicy): boolean {
  if (policy.plugins.get(approval.plugin)?.config.allow_owner_approval === true) return false;
  return approverNames(approver).has(approval.owner);
}

export type ApprovalView = Record<string, unknown>;

/** The admin API's view of an approval: no request hash, times as ISO strings. */
export function approvalView(a: ApprovalRecord, now: number): ApprovalView {
  const iso = (ms: number | undefined) => (ms === undefined ? undefined : new Date(ms).toISOString());
  const expired = (a.state === 'pending' && a.expiresAt <= now) || (a.state === 'approved' && a.redeemBy !== undefined && a.redeemBy < now);
  return {
    id: a.id,
    state: a.state,
    expired,
    plugin: a.plugin,
    owner: a.owner,
    risk: a.risk,
    task: a.task,
    audience: a.audience,
    scopes: a.scopes,
    ttl: a.ttl,
    kind: a.kind,
    effect: a.effect,
    justification: a.justification,
    chain: a.chain,
    cause: a.cause,
    on_behalf_of: a.onBehalfOf,
    person_may_decide: a.personMayDecide,
    tool_call: a.toolCall ? { tool: a.toolCall.tool, arguments: a.toolCall.arguments, arguments_sha256: a.toolCall.argumentsSha256 } : undefined,
    requested_at: iso(a.requestedAt),
    expires_at: iso(a.expiresAt),
    decided_at: iso(a.decidedAt),
    decided_by: a.decidedBy,
    decision_reason: a.decisionReason,
    redeem_by: iso(a.redeemBy),
    used_at: iso(a.usedAt),
  };
}

/** Approve / deny / list, as the admin API calls them. Every refusal is a LeashError. */
export class ApprovalDecisions {
  constructor(private readonly deps: ApprovalDecisionDeps) {}

  #requireApprover(approver: Approver): void {
    if (approver.person !== undefined) throw new LeashError('ERR_ADMIN_FORBIDDEN', 'a person sees and decides the approvals made on their behalf, one by one');
    if (!mayDecide(approver, this.deps.settings())) {
      throw new LeashError('ERR_ADMIN_FORBIDDEN', "approvals need the 'security' role or membership of an approver group");
    }
  }

  async list(approver: Approver, state: ApprovalState | undefined, limit: number): Promise<ApprovalView[]> {
    this.#requireApprover(approver);
    const now = this.deps.clock.now();
    return (await this.deps.store.listApprovals({ state, now, limit })).map((a) => approvalView(a, now));
  }

  async get(approver: Approver, id: string): Promise<ApprovalView> {
    if (approver.person !== undefined) return approvalView(await this.#findForPerson(approver.person, id), this.deps.clock.now());
    this.#requireApprover(approver);
    return approvalView(await this.#find(id), this.deps.clock.now());
  }

  /** The person's own approval, and only where the grant lets them decide: anything else reads as unknown. */
  async #findForPerson(person: string, id: string): Promise<ApprovalRecord> {
    const found = await this.#find(id);
    if (found.onBehalfOf !== person || found.personMayDecide !== true) throw new LeashError('ERR_ADMIN_NOT_FOUND', 'no such approval');
    return found;
  }

  async decide(approver: Approver, id: string, state: 'approved' | 'denied', reason: string | undefined): Promise<ApprovalView> {
    let found: ApprovalRecord;
    if (approver.person !== undefined) {
      found = await this.#findForPerson(approver.person, id);
    } else {
      this.#requireApprover(approver);
      found = await this.#find(id);
    }
    const now = this.deps.clock.now();
    // Denying one's own plugin's request only narrows access; approving it needs someone else.
    if (state === 'approved' && ownsPlugin(approver, found, this.deps.policy())) {
      throw new LeashError('ERR_ADMIN_FORBIDDEN', `separation of duties: you own plugin '${found.plugin}' (${found.owner}); another approver must decide`, {
        approval: id,
        owner: found.owner,
      });
    }
    if (found.state !== 'pending' || found.expiresAt <= now) throw notPending(found, now);
    const redeemBy = state === 'approved' ? now + this.deps.settings().redeem_ttl * 1000 : undefined;
    const decided = await this.deps.store.decideApproval(id, { state, by: approver.id, reason, at: now, redeemBy });
    // Another approver (or the clock) got there between the read and the write.
    if (!decided) throw notPending((await this.deps.store.getApproval(id)) ?? found, now);
    this.deps.metrics.approvals.inc({ outcome: state });
    await this.deps.audit.record(state === 'approved' ? 'approval.approved' : 'approval.denied', {
      approval: id,
      plugin: decided.plugin,
      task: decided.task,
      audience: decided.audience,
      scopes: decided.scopes,
      tool_call: decided.toolCall ? { tool: decided.toolCall.tool, arguments_sha256: decided.toolCall.argumentsSha256 } : undefined,
      approver: approver.id,
      reason,
      redeem_by: redeemBy,
    });
    return approvalView(decided, now);
  }

  async #find(id: string): Promise<ApprovalRecord> {
    const found = APPROVAL_ID.test(id) ? await this.deps.store.getApproval(id) : undefined;
    if (!found) throw new LeashError('ERR_ADMIN_NOT_FOUND', 'no such approval');
    return found;
  }
}

const APPROVAL_ID = /^[A-Za-z0-9_-]{16,64}$/;

function notPending(a: ApprovalRecord, now: number): LeashError {
  const state = a.state === 'pending' && a.expiresAt <= now ? 'expired' : a.state;
  return new LeashError('ERR_ADMIN_CONFLICT', `the approval is no longer pending (it is ${state})`, { approval: a.id, state });
}
