import type { WorkloadIdentity } from '../attestation/attestor.js';
import type { ApprovalRule, CredentialKind, GrantConfig, PluginConfig, RiskTier } from '../config/schema.js';
import type { ErrorCode } from '../errors/codes.js';
import type { Task } from '../store/records.js';
import type { CoveringException } from '../config/guardrails.js';
import type { ToolCallRequest } from '../formats/authorization-details.js';
import type { CompiledTool } from './tools.js';
import type { ConditionResult } from './conditions.js';
import type { HumanSubject } from '../users/user-tokens.js';

/** A grant compiled once at load: sets for scopes, predicates for conditions. */
export interface CompiledGrant {
  readonly index: number;
  readonly audience: string;
  readonly scopes: ReadonlySet<string>;
  readonly defaultScopes: readonly string[];
  readonly kind: CredentialKind;
  readonly effect: GrantConfig['effect'];
  readonly maxTtl: number;
  readonly taskRequired: boolean;
  /** The grant's own `dpop: required` or the plugin's risk tier requiring it. */
  readonly dpopRequired: boolean;
  /** The grant's rule, or the default its effect implies (`human` for write, exfiltrate, admin). */
  readonly approval: ApprovalRule;
  /**
   * The grant's `conditions` and `time` window, compiled: the ones that do not hold for
   * this input, as human strings naming config values only (empty: all hold).
   */
  readonly failedConditions: (input: PolicyInput, scopes?: readonly string[]) => readonly string[];
  /** The same conditions, each with whether it holds (explain); absent on hand-built grants. */
  readonly conditionResults?: ((input: PolicyInput, scopes?: readonly string[]) => readonly ConditionResult[]) | undefined;
  /**
   * Exceptions that let this grant (or its plugin) break a guardrail. From its `expiresAt`
   * on, an exception no longer applies and the grant is refused (ERR_EXCEPTION_EXPIRED).
   */
  readonly exceptions: readonly CoveringException[];
  /** The audience is an MCP server: its tools, in order (undefined: not an MCP grant). */
  readonly tools?: readonly CompiledTool[] | undefined;
  readonly config: GrantConfig;
}

export interface CompiledPlugin {
  readonly id: string;
  readonly owner: string;
  readonly risk: RiskTier;
  readonly disabled: boolean;
  readonly grants: readonly CompiledGrant[];
  readonly config: PluginConfig;
}

/** The request as policy sees it (already parsed, nothing secret). */
export interface PolicyRequest {
  readonly audience: string;
  /** undefined: the request named no scope. */
  readonly scopes: readonly string[] | undefined;
  /** Requested lifetime in seconds, if any. */
  readonly ttl: number | undefined;
  /** Plain request parameters for `request.<name>` conditions (never the tokens). */
  readonly params: Readonly<Record<string, string>>;
  /** RFC 9396: the one MCP tool call asked for. */
  readonly toolCall?: ToolCallRequest | undefined;
  /** RFC 9396 entries as accepted (CEL `request.authorization_details`). */
  readonly authorizationDetails?: readonly Readonly<Record<string, unknown>>[] | undefined;
}

export interface PolicyInput {
  readonly plugin: CompiledPlugin;
  readonly identity: WorkloadIdentity;
  readonly task: Task | undefined;
  readonly request: PolicyRequest;
  /** The person the plugin acts for, when the subject_token was theirs. */
  readonly user?: HumanSubject | undefined;
  /** ms since epoch */
  readonly now: number;
  /** In a delegation: the upstream plugins, root first (from the verified upstream token). */
  readonly chain?: readonly string[] | undefined;
}

export type Decision =
  | {
      readonly allow: true;
      readonly grant: CompiledGrant;
      readonly scopes: readonly string[];
      /** Upper bound from policy alone (grant max, request); the pipeline adds task and key limits. */
      readonly ttl: number;
      readonly dpopRequired: boolean;
      /** A per-call credential: the tool entry that allowed it. */
      readonly tool?: CompiledTool | undefined;
      readonly reasons: readonly string[];
    }
  | {
      readonly allow: false;
      readonly code: ErrorCode;
      /** Safe for the caller: says what to fix. */
      readonly description: string;
      readonly reasons: readonly string[];
    };

/** Policy compiled once; evaluation is pure. */
export interface CompiledPolicy {
  readonly plugins: ReadonlyMap<string, CompiledPlugin>;
  /** The one plugin bound to this workload (bindings never overlap), or undefined. */
  resolvePlugin(identity: WorkloadIdentity): CompiledPlugin | undefined;
  evaluate(input: PolicyInput): Decision;
}
