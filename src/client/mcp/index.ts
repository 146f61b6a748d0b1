/**
 * `leash-client/mcp`: Leash in front of MCP servers built on `@modelcontextprotocol/sdk`
 * (an optional peer dependency; the core client never imports it).
 */
export { createLeashMcpAuth, memorySingleUse, toolCallUsage, toolScope, TOOL_SCOPE_PREFIX, type LeashMcpAuth, type LeashMcpAuthOptions, type ToolCallRecord } from './server.js';
export { leashSingleUse, type LeashSingleUseOptions, type SingleUseGuard, type SpentCredential } from './single-use.js';
export { createLeashMcpAgent, LeashToolCallRefused, type LeashMcpAgent, type LeashMcpAgentOptions, type PendingToolCall } from './agent.js';
export { argumentsHash, canonicalJson, MCP_TOOL_CALL_TYPE, toolCallDetail, toolCallDetailsOf, type ToolCallDetail } from './tool-call.js';
