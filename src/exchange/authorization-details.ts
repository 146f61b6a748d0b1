import { LeashError } from '../errors/leash-error.js';

import { AUTHORIZATION_DETAILS_TYPES, TASK_DETAIL_TYPE, TOOL_CALL_DETAIL_TYPE, type ToolCallRequest } from '../formats/authorization-details.js';

export { AUTHORIZATION_DETAILS_TYPES, TASK_DETAIL_TYPE, TOOL_CALL_DETAIL_TYPE, type ToolCallRequest } from '../formats/authorization-details.js';

export interface ParsedAuthorizationDetails {
  readonly taskId: string | undefined;
  readonly toolCall: ToolCallRequest | undefined;
  /** The accepted entries in their wire shape (what CEL conditions read as `request.authorization_details`). */
  readonly entries: readonly Readonly<Record<string, unknown>>[];
}

/** The whole parameter; a real tool call with a few exposed values is a few hundred bytes. */
const MAX_LENGTH = 4096;
const MAX_ENTRIES = 4;
const MAX_ARGUMENTS = 16;
const MAX_DEPTH = 4;
/** MCP tool names (SEP-986): letters, digits, `_`, `-`, `.`, `/`; 1 to 128. */
export const TOOL_NAME = /^[A-Za-z0-9_./-]{1,128}$/;
const SHA256_B64URL = /^[A-Za-z0-9_-]{43}$/;
const ARGUMENT_NAME = /^[A-Za-z0-9_.-]{1,64}$/;
const TASK_ID = /^[A-Za-z0-9_-]{1,128}$/;

const invalid = (why: string) => new LeashError('ERR_AUTHORIZATION_DETAILS_INVALID', `authorization_details: ${why}`);

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function onlyMembers(entry: Record<string, unknown>, allowed: readonly string[], type: string): void {
  const extra = Object.keys(entry).filter((k) => !allowed.includes(k));
  if (extra.length > 0) throw invalid(`a ${type} entry takes only ${allowed.join(', ')}`);
}

function depthOk(v: unknown, depth: number): boolean {
  if (depth > MAX_DEPTH) return false;
  if (Array.isArray(v)) return v.every((x) => depthOk(x, depth + 1));
  if (isObject(v)) return Object.values(v).every((x) => depthOk(x, depth + 1));
  return true;
}

function parseToolCall(entry: Record<string, unknown>, audience: string): ToolCallRequest {
  onlyMembers(entry, ['type', 'locations', 'tool', 'arguments_sha256', 'arguments'], TOOL_CALL_DETAIL_TYPE);
  if (entry.locations !== undefined) {
    // RFC 9396 §2.2: where the access is used. One call is made at one server: this request's resource.
    if (!Array.isArray(entry.locations) || entry.locations.length !== 1 || entry.locations[0] !== audience) {
      throw invalid("'locations' must be exactly [the requested resource]");
    }
  }
  if (typeof entry.tool !== 'string' || !TOOL_NAME.test(entry.tool)) throw invalid("'tool' must be an MCP tool name (1 to 128 of A-Z a-z 0-9 _ - . /)");
  if (typeof entry.arguments_sha256 !== 'string' || !SHA256_B64URL.test(entry.arguments_sha256)) {
    throw invalid("'arguments_sha256' must be the base64url SHA-256 of the canonical JSON arguments (43 characters)");
  }
  let args: Record<string, unknown> = {};
  if (entry.arguments !== undefined) {
    if (!isObject(entry.arguments)) throw invalid("'arguments' must be an object of exposed argument values");
    const names = Object.keys(entry.arguments);
    if (names.length > MAX_ARGUMENTS) throw invalid(`at most ${MAX_ARGUMENTS} exposed arguments`);
    for (const n of names) if (!ARGUMENT_NAME.test(n) || n === '__proto__') throw invalid('an exposed argument name is not a plain name');
    if (!depthOk(entry.arguments, 0)) throw invalid(`exposed argument values nest at most ${MAX_DEPTH} deep`);
    args = Object.fromEntries(Object.entries(entry.arguments));
  }
  return Object.freeze({ server: audience, tool: entry.tool, argumentsSha256: entry.arguments_sha256, arguments: Object.freeze(args) });
}

/** Parse and check the parameter (the pipeline's parse step). */
export function parseAuthorizationDetails(raw: string, audience: string): ParsedAuthorizationDetails {
  if (raw.length > MAX_LENGTH) throw invalid(`at most ${MAX_LENGTH} characters`);
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch {
    throw invalid('not JSON');
  }
  if (!Array.isArray(value) || value.length === 0 || value.length > MAX_ENTRIES) throw invalid(`must be a JSON array of 1 to ${MAX_ENTRIES} objects`);
  let taskId: string | undefined;
  let toolCall: ToolCallRequest | undefined;
  for (const entry of value) {
    if (!isObject(entry) || typeof entry.type !== 'string') throw invalid("every entry is an object with a 'type'");
    switch (entry.type) {
      case TASK_DETAIL_TYPE:
        onlyMembers(entry, ['type', 'task'], TASK_DETAIL_TYPE);
        if (taskId !== undefined) throw invalid('one task per request');
        if (typeof entry.task !== 'string' || !TASK_ID.test(entry.task)) throw invalid("'task' is not a valid task id");
        taskId = entry.task;
        break;
      case TOOL_CALL_DETAIL_TYPE:
        // One credential, one call: a token good for two calls would be good for either, twice.
        if (toolCall !== undefined) throw invalid('one tool call per request');
        toolCall = parseToolCall(entry, audience);
        break;
      default:
        throw invalid(`unknown type; Leash accepts ${AUTHORIZATION_DETAILS_TYPES.join(', ')}`);
    }
  }
  const entries: Readonly<Record<string, unknown>>[] = [];
  if (taskId !== undefined) entries.push(Object.freeze({ type: TASK_DETAIL_TYPE, task: taskId }));
  if (toolCall !== undefined) entries.push(Object.freeze(toolCallClaim(toolCall)));
  return { taskId, toolCall, entries: Object.freeze(entries) };
}

/** The token's `authorization_details` claim (and the response member, RFC 9396 §7) for a tool call. */
export function toolCallClaim(call: ToolCallRequest): Record<string, unknown> {
  return {
    type: TOOL_CALL_DETAIL_TYPE,
    locations: [call.server],
    tool: call.tool,
    arguments_sha256: call.argumentsSha256,
    ...(Object.keys(call.arguments).length > 0 ? { arguments: call.arguments } : {}),
  };
}
