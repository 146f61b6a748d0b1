/**
 * RFC 9396 `authorization_details` on a token exchange: a JSON array of objects, each with
 * a `type`. Leash knows two types (anything else is refused, §5):
 * - `leash_task`: `{ type, task }`, the task the request runs under (as the `task` parameter);
 * - `leash_mcp_tool_call`: one MCP tool call, `{ type, locations: [<server>], tool,
 *   arguments_sha256, arguments? }` (see docs/mcp.md); the issued token is good for that call.
 */
export const TASK_DETAIL_TYPE = 'leash_task';
export const TOOL_CALL_DETAIL_TYPE = 'leash_mcp_tool_call';
export const AUTHORIZATION_DETAILS_TYPES = [TASK_DETAIL_TYPE, TOOL_CALL_DETAIL_TYPE] as const;

/** A tool call as the policy and the approver see it. */
export interface ToolCallRequest {
  /** The MCP server (its resource identifier): the request's audience. */
  readonly server: string;
  readonly tool: string;
  /** base64url SHA-256 of the canonical JSON of the whole `arguments` object. */
  readonly argumentsSha256: string;
  /** The argument values the caller exposed (the policy decides which must be). */
  readonly arguments: Readonly<Record<string, unknown>>;
}
