import type { WorkloadIdentity } from '../attestation/attestor.js';
import type { CompiledGrant, CompiledPlugin } from '../policy/types.js';
import type { Task } from '../store/records.js';
import type { ToolCallRequest } from '../formats/authorization-details.js';

/** The `approval` claim of a token issued after a human approved its exact request. */
export interface ApprovalReceipt {
  readonly id: string;
  readonly approver: string;
  /** Seconds since epoch (decision time). */
  readonly at: number;
}

/** Everything the approval is bound to and shown with. */
export interface ApprovalRequestInput {
  readonly plugin: CompiledPlugin;
  readonly grant: CompiledGrant;
  readonly identity: WorkloadIdentity;
  readonly task: Task | undefined;
  readonly audience: string;
  readonly scopes: readonly string[];
  /** Policy TTL (grant/request), stable across polls. */
  readonly ttl: number;
  readonly justification: string | undefined;
  readonly approvalId: string | undefined;
  /** Root first, this plugin last, when the request comes through a delegation chain. */
  readonly chain: readonly string[] | undefined;
  /** DPoP key thumbprint when the request is sender-constrained: the approval is bound to it. */
  readonly jkt?: string | undefined;
  /** One MCP tool call (RFC 9396): the approval binds to its tool and argument hash, and shows the exposed values. */
  readonly toolCall?: ToolCallRequest | undefined;
  /** The person the plugin acts for (`<issuer>#<sub>`): the approval is bound to them. */
  readonly onBehalfOf?: string | undefined;
  /** That person may decide it (the grant's `users.approver: person`). */
  readonly personMayDecide?: boolean | undefined;
  /** Why a human must decide. */
  readonly cause: 'grant' | 'tool-call' | 'toxic-combination' | 'task-toxic-combination';
  readonly now: number;
}

/**
 * The approval step of the exchange. Without an `approval_id` it creates a pending
 * approval, notifies approvers and throws ERR_APPROVAL_PENDING (with `approval_id`,
 * `interval`, `expires_in`); with one it answers slow_down / pending / denied / expired /
 * mismatch / used, or consumes the approval (single use) and returns the receipt.
 */
export interface ApprovalGate {
  check(input: ApprovalRequestInput): Promise<ApprovalReceipt>;
  /**
   * What `check` would answer, changing nothing (explain): without an `approval_id`
   * ERR_APPROVAL_PENDING (no approval is opened); with one its state, read only (no poll
   * pacing, no redemption: an approved request returns the receipt it would redeem).
   */
  preview(input: ApprovalRequestInput): Promise<ApprovalReceipt>;
}

/** Step-up proof (per grant): fresh attestation, DPoP, a justification. Throws what is missing. */
export { checkStepUp } from './step-up.js';
