import { createHash } from 'node:crypto';
import type { AuditSink } from '../audit/recorder.js';
import type { ApprovalSettingsConfig } from '../config/schema.js';
import { LeashError } from '../errors/leash-error.js';
import type { ApprovalRecord } from '../store/records.js';
import type { ApprovalStore } from '../store/store.js';
import type { ApprovalGate, ApprovalReceipt, ApprovalRequestInput } from './gate.js';
import type { ApprovalNotifier } from './notifier.js';
import { randomId } from '../formats/random-id.js';

/** CIBA §11: a client told to slow down adds 5 seconds to its interval. */
const SLOW_DOWN_EXTRA_S = 5;

export interface ApprovalServiceDeps {
  readonly store: ApprovalStore;
  /** Read per request, so a reload applies to the next approval. */
  readonly settings: () => ApprovalSettingsConfig;
  readonly audit: AuditSink;
  readonly metrics: { readonly approvals: { inc(labels: { outcome: 'requested' | 'expired' | 'redeemed' | 'limited' }): void } };
  readonly notifier: ApprovalNotifier;
}

/** The fields an approval is bound to: everything that changes what a credential can do. */
export function requestBinding(input: Pick<ApprovalRequestInput, 'plugin' | 'task' | 'audience' | 'scopes' | 'ttl' | 'grant' | 'chain' | 'jkt' | 'toolCall' | 'onBehalfOf'>): Record<string, unknown> {
  const binding: Record<string, unknown> = {
    plugin: input.plugin.id,
    task: input.task?.id ?? null,
    audience: input.audience,
    scopes: [...input.scopes].sort(),
    ttl: input.ttl,
    kind: input.grant.kind,
    chain: input.chain ?? null,
    // A DPoP-bound request binds its approval to that key: only its holder can redeem it.
    jkt: input.jkt ?? null,
  };
  // One tool call: the approval is for this tool with exactly these arguments (their hash
  // covers all of them, exposed or not); another argument set is another request. Only
  // present for tool calls, so the hash of every other approval is what it always was.
  // Approved for one person, it does not redeem for another.
  if (input.onBehalfOf !== undefined) binding.on_behalf_of = input.onBehalfOf;
  if (input.toolCall) binding.tool_call = { tool: input.toolCall.tool, arguments_sha256: input.toolCall.argumentsSha256 };
  return binding;
}

/** SHA-256 (base64url) over the canonical JSON of the binding: fixed key order, sorted scopes. */
export function requestHash(input: Parameters<typeof requestBinding>[0]): string {
  return createHash('sha256')
    .update(JSON.stringify(requestBinding(input)), 'utf8')
    .digest('base64url');
}

/**
 * The request without what a caller can vary for free (its TTL, its DPoP key): asking again
 * with another `expires_in` or a fresh key is the same request to an approver, so it gets
 * the approval already pending instead of a new one.
 */
export function dedupeKey(input: Parameters<typeof requestBinding>[0]): string {
  const { ttl: _ttl, jkt: _jkt, ...rest } = requestBinding(input);
  return createHash('sha256').update(JSON.stringify(rest), 'utf8').digest('base64url');
}

export function newApprovalId(): string {
  return randomId();
}

const secondsUntil = (ms: number, now: number) => Math.max(1, Math.ceil((ms - now) / 1000));

/**
 * The approval step of the exchange (see ApprovalGate). State lives in the Store, so a
 * pending approval survives a restart and any replica can answer a poll or redeem it;
 * every transition (decide, consume, poll pacing) is atomic there.
 */
export function createApprovalService(deps: ApprovalServiceDeps): ApprovalGate {
  async function create(input: ApprovalRequestInput, hash: string): Promise<never> {
    const s = deps.settings();
    const now = input.now;
    const record: ApprovalRecord = {
      id: newApprovalId(),
      requestHash: hash,
      plugin: input.plugin.id,
      owner: input.plugin.owner,
      task: input.task?.id,
      audience: input.audience,
      scopes: [...input.scopes],
      ttl: input.ttl,
      kind: input.grant.kind,
      effect: input.grant.effect,
      risk: input.plugin.risk,
      justification: input.justification,
      chain: input.chain,
      cause: input.cause,
      requestedAt: now,
      expiresAt: now + s.pending_ttl * 1000,
      state: 'pending',
      decidedAt: undefined,
      decidedBy: undefined,
      decisionReason: undefined,
      redeemBy: undefined,
      usedAt: undefined,
      // The request itself counts as the first poll (CIBA: wait `interval` before polling).
      lastPollAt: now,
      ...(input.onBehalfOf !== undefined ? { onBehalfOf: input.onBehalfOf, personMayDecide: input.personMayDecide === true } : {}),
      ...(input.toolCall ? { toolCall: { tool: input.toolCall.tool, argumentsSha256: input.toolCall.argumentsSha256, arguments: input.toolCall.arguments } } : {}),
    };
    // One atomic store step (any replica): the same request (or the same but for TTL and
    // DPoP key) already pending gets that approval back; past the plugin's or the task's
    // limit of pending approvals the caller is told to slow down; otherwise it is created.
    const opened = await deps.store.openApproval(record, { dedupeKey: dedupeKey(input), maxPerPlugin: s.max_pending_per_plugin, maxPerTask: s.max_pending_per_task });
    if (opened.outcome === 'existing') {
      const same = opened.approval;
      throw pending(
        same,
        now,
        s.poll_interval,
        same.requestHash === hash
          ? 'this request already waits for a human; poll with approval_id'
          : 'the same request with another lifetime or DPoP key already waits for a human; poll that one with approval_id, repeating the request it was made for',
      );
    }
    if (opened.outcome === 'limited') {
      deps.metrics.approvals.inc({ outcome: 'limited' });
      const limit = opened.scope === 'plugin' ? s.max_pending_per_plugin : s.max_pending_per_task;
      // The exchange's audit event (exchange.denied, ERR_APPROVAL_LIMIT) carries this detail.
      throw new LeashError(
        'ERR_APPROVAL_LIMIT',
        `${opened.pending} approvals of this ${opened.scope} already wait for a human (at most ${limit}); wait for decisions before asking for more`,
        { limit_scope: opened.scope, pending: opened.pending, limit },
        { fields: { interval: s.poll_interval + SLOW_DOWN_EXTRA_S } },
      );
    }
    deps.metrics.approvals.inc({ outcome: 'requested' });
    await deps.audit.record('approval.requested', {
      approval: record.id,
      plugin: record.plugin,
      owner: record.owner,
      task: record.task,
      audience: record.audience,
      scopes: record.scopes,
      ttl: record.ttl,
      kind: record.kind,
      effect: record.effect,
      risk: record.risk,
      justification: record.justification,
      chain: record.chain,
      cause: record.cause,
      on_behalf_of: record.onBehalfOf,
      person_may_decide: record.personMayDecide,
      // What the approver is shown of a tool call: the tool, the values the policy exposes, the hash of all.
      tool_call: record.toolCall ? { tool: record.toolCall.tool, arguments_sha256: record.toolCall.argumentsSha256, arguments: record.toolCall.arguments } : undefined,
      expires_at: record.expiresAt,
    });
    deps.notifier.notify(record);
    throw pending(record, now, s.poll_interval, 'a human must approve this request; poll again with approval_id');
  }

  /** `dry`: explain's preview: the same answers, but no poll is recorded, nothing consumed or counted. */
  async function poll(input: ApprovalRequestInput, id: string, hash: string, dry = false): Promise<ApprovalReceipt> {
    const s = deps.settings();
    const now = input.now;
    const found = await deps.store.getApproval(id);
    // Another plugin's approval id reads exactly like an unknown one.
    if (!found || found.plugin !== input.plugin.id) throw new LeashError('ERR_APPROVAL_UNKNOWN', 'no such approval for this plugin', { approval: id });
    // Never say what the approved request was: only that this one is not it.
    if (found.requestHash !== hash) {
      throw new LeashError('ERR_APPROVAL_MISMATCH', 'this approval was given for a different request; repeat the exact request it was created for, or ask for a new approval', { approval: id });
    }
    const detail = { approval: id };
    switch (found.state) {
      case 'pending': {
        if (now >= found.expiresAt) return expired(found, 'the approval expired before anyone decided; ask again', dry);
        if (!dry && (await deps.store.recordApprovalPoll(id, now, s.poll_interval * 1000)) === 'slow_down') {
          const interval = s.poll_interval + SLOW_DOWN_EXTRA_S;
          throw new LeashError('ERR_APPROVAL_SLOW_DOWN', `polling too fast; wait ${interval} seconds between polls`, detail, {
            fields: { approval_id: id, interval, expires_in: secondsUntil(found.expiresAt, now) },
          });
        }
        throw pending(found, now, s.poll_interval, 'the approval is still pending; poll again later');
      }
      case 'denied':
        throw new LeashError('ERR_APPROVAL_DENIED', 'an approver denied this request', { ...detail, by: found.decidedBy });
      case 'used':
        throw new LeashError('ERR_APPROVAL_USED', 'this approval was already redeemed; an approval is good for one credential', detail);
      case 'approved': {
        if (found.redeemBy === undefined || found.decidedAt === undefined || found.decidedBy === undefined || now > found.redeemBy) {
          return expired(found, 'the approval was not redeemed in time; ask again', dry);
        }
        // A preview stops here: the exchange would redeem it now.
        if (dry) return { id, approver: found.decidedBy, at: Math.floor(found.decidedAt / 1000) };
        if (!(await deps.store.consumeApproval(id, now))) {
          // Lost the race to another redemption (or the redeem window closed in between).
          const again = await deps.store.getApproval(id);
          if (again?.state === 'used') throw new LeashError('ERR_APPROVAL_USED', 'this approval was already redeemed; an approval is good for one credential', detail);
          return expired(found, 'the approval was not redeemed in time; ask again');
        }
        deps.metrics.approvals.inc({ outcome: 'redeemed' });
        return { id, approver: found.decidedBy, at: Math.floor(found.decidedAt / 1000) };
      }
    }
  }

  function expired(found: ApprovalRecord, description: string, dry = false): never {
    if (!dry) deps.metrics.approvals.inc({ outcome: 'expired' });
    throw new LeashError('ERR_APPROVAL_EXPIRED', description, { approval: found.id, state: found.state });
  }

  return {
    async check(input) {
      const hash = requestHash(input);
      return input.approvalId === undefined ? create(input, hash) : poll(input, input.approvalId, hash);
    },
    async preview(input) {
      const hash = requestHash(input);
      if (input.approvalId === undefined) {
        // The exchange would open a pending approval (or find the same request's) here; a preview opens none.
        throw new LeashError('ERR_APPROVAL_PENDING', 'a human must approve this request: the exchange would open a pending approval and answer authorization_pending with its approval_id');
      }
      return poll(input, input.approvalId, hash, true);
    },
  };
}

function pending(a: ApprovalRecord, now: number, interval: number, description: string): LeashError {
  return new LeashError(
    'ERR_APPROVAL_PENDING',
    description,
    { approval: a.id },
    {
      fields: { approval_id: a.id, interval, expires_in: secondsUntil(a.expiresAt, now) },
    },
  );
}
