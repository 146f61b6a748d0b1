import type { ErrorCode } from '../errors/codes.js';
import type { CompiledGrant, Decision, PolicyInput } from './types.js';
import { findTool, TOOL_SCOPE_PREFIX, type CompiledTool } from './tools.js';

const MAX_ECHOED = 5;
const MAX_ECHO_LENGTH = 64;

/** Caller-supplied strings echoed in a description are quoted and cut short. */
function echo(values: readonly string[]): string {
  const shown = values.slice(0, MAX_ECHOED).map((v) => `'${v.length > MAX_ECHO_LENGTH ? `${v.slice(0, MAX_ECHO_LENGTH)}...` : v}'`);
  return values.length > MAX_ECHOED ? `${shown.join(', ')} and ${values.length - MAX_ECHOED} more` : shown.join(', ');
}

function deny(code: ErrorCode, description: string, reasons: string[], reason: string): Decision {
  reasons.push(reason);
  return Object.freeze({ allow: false, code, description, reasons: Object.freeze(reasons) });
}

/**
 * Decide one request against one plugin's policy. Pure: the same input gives the same
 * decision; the pipeline has already checked the task is live and admits this plugin.
 * Steps, in order: plugin enabled → grant for the exact audience → task → scopes → TTL
 * → conditions (the approval rule is reported, and enforced by the pipeline).
 */
export function evaluate(input: PolicyInput): Decision {
  const { plugin, request, task } = input;
  const reasons: string[] = [];

  if (plugin.disabled) {
    return deny('ERR_PLUGIN_DISABLED', `plugin '${plugin.id}' is disabled and gets no credentials`, reasons, 'plugin disabled');
  }

  // Exact string equality: no prefix, case or trailing-slash fuzz, so a grant for
  // https://api.example.com never reaches https://api.example.com.evil.test.
  const grant: CompiledGrant | undefined = plugin.grants.find((g) => g.audience === request.audience);
  if (!grant) {
    // Name only the audience asked for: listing the plugin's other audiences would map its reach for a prober.
    return deny('ERR_AUDIENCE_NOT_GRANTED', `plugin '${plugin.id}' has no grant for audience ${echo([request.audience])}`, reasons, 'no grant matched the audience');
  }
  reasons.push(`grant ${grant.index} matched audience`);

  // An exception stops applying at its expiry, this second, not at the next reload.
  const expired = grant.exceptions.find((e) => input.now >= e.expiresAt);
  if (expired) {
    return deny(
      'ERR_EXCEPTION_EXPIRED',
      `this grant broke guardrail '${expired.guardrail}' under exception '${expired.id}', which expired at ${new Date(expired.expiresAt).toISOString()}; it is refused until the exception is renewed`,
      reasons,
      `exception ${expired.id} expired`,
    );
  }
  if (grant.exceptions.length > 0) reasons.push(`allowed under exception ${grant.exceptions.map((e) => e.id).join(', ')}`);

  // On behalf of a person: only grants that say so, and only for the people they name.
  const users = grant.config.users;
  if (input.user && !users) {
    return deny('ERR_USER_NOT_ALLOWED', 'this grant is not used on behalf of a person: send the attestation as subject_token', reasons, 'person given, grant has no users');
  }
  if (users) {
    if (!input.user)
      return deny(
        'ERR_USER_REQUIRED',
        'this grant is used on behalf of a person only: send their token as subject_token and the attestation as actor_token',
        reasons,
        'grant needs a person, none given',
      );
    const u = input.user;
    if (users.providers && !users.providers.includes(u.provider))
      return deny('ERR_USER_NOT_ALLOWED', `the person must come from ${users.providers.map((p) => `'${p}'`).join(', ')}`, reasons, `person from provider ${u.provider}`);
    if (users.groups && !users.groups.some((g) => u.groups.includes(g)))
      return deny('ERR_USER_NOT_ALLOWED', `the person must be in one of the groups ${users.groups.map((g) => `'${g}'`).join(', ')}`, reasons, 'person not in a required group');
    if (users.roles && !users.roles.some((r) => u.roles.includes(r)))
      return deny('ERR_USER_NOT_ALLOWED', `the person must hold one of the roles ${users.roles.map((r) => `'${r}'`).join(', ')}`, reasons, 'person lacks a required role');
    reasons.push(`on behalf of ${u.qualified}`);
  }

  if (grant.taskRequired && !task) {
    return deny('ERR_TASK_REQUIRED', `the grant for this audience requires a task: open one and send its id as 'task'`, reasons, 'task required, none given');
  }

  let scopes: readonly string[];
  const requested = request.scopes === undefined ? [] : [...new Set(request.scopes)];
  if (requested.length === 0) {
    // Never all: a request that names nothing gets the narrowest configured set.
    scopes = grant.defaultScopes;
    reasons.push(`scopes defaulted to ${grant.defaultScopes.join(' ')}`);
  } else {
    // An MCP grant's `tool:<name>` scopes come from its tools (the grant's `scopes` list none).
    const toolScopes = grant.tools ? requested.filter((s) => s.startsWith(TOOL_SCOPE_PREFIX)) : [];
    for (const s of toolScopes) {
      const name = s.slice(TOOL_SCOPE_PREFIX.length);
      const tool = findTool(grant.tools ?? [], name);
      if (!tool) return deny('ERR_TOOL_NOT_GRANTED', `no tool of the grant for ${echo([grant.audience])} matches ${echo([name])}`, reasons, 'tool scope: no tool matched');
      if (tool.perCall || request.toolCall) {
        return deny(
          'ERR_TOOL_PER_CALL_REQUIRED',
          `tool ${echo([name])} is called with a per-call credential only: send a leash_mcp_tool_call authorization_details entry instead of the scope`,
          reasons,
          `tool scope refused: tool ${tool.index} needs a per-call credential`,
        );
      }
    }
    const refused = requested.filter((s) => !grant.scopes.has(s) && !toolScopes.includes(s));
    if (refused.length > 0) {
      return deny(
        'ERR_SCOPE_NOT_GRANTED',
        `scope${refused.length === 1 ? '' : 's'} ${echo(refused)} not granted for audience ${echo([grant.audience])}; ask only for granted scopes`,
        reasons,
        `scopes not granted: ${refused.length}`,
      );
    }
    scopes = Object.freeze(requested);
    reasons.push('requested scopes within grant');
  }

  if (request.ttl !== undefined && (!Number.isInteger(request.ttl) || request.ttl < 1)) {
    return deny('ERR_TTL_INVALID', 'the requested lifetime must be a positive whole number of seconds', reasons, 'ttl invalid');
  }
  if (request.ttl !== undefined && request.ttl > grant.maxTtl) {
    return deny('ERR_TTL_EXCEEDS_MAX', `the requested lifetime ${request.ttl}s exceeds this grant's maximum of ${grant.maxTtl}s`, reasons, 'ttl above grant max');
  }
  let ttl = Math.min(request.ttl ?? grant.maxTtl, grant.maxTtl);
  reasons.push(request.ttl === undefined ? `ttl defaulted to grant max ${grant.maxTtl}s` : `ttl ${ttl}s within grant max`);

  let tool: CompiledTool | undefined;
  if (request.toolCall) {
    const call = request.toolCall;
    if (!grant.tools) return deny('ERR_TOOL_NOT_GRANTED', `the grant for ${echo([grant.audience])} lists no MCP tools`, reasons, 'tool call on a grant without tools');
    tool = findTool(grant.tools, call.tool);
    if (!tool) return deny('ERR_TOOL_NOT_GRANTED', `no tool of the grant for ${echo([grant.audience])} matches ${echo([call.tool])}`, reasons, 'tool call: no tool matched');
    reasons.push(`tool ${tool.index} '${tool.pattern}' matched the call`);
    const hidden = tool.mustExpose.filter((n) => !Object.hasOwn(call.arguments, n));
    if (hidden.length > 0) {
      return deny(
        'ERR_TOOL_ARGUMENTS_REFUSED',
        `this tool's policy must see argument${hidden.length === 1 ? '' : 's'} ${hidden.map((n) => `'${n}'`).join(', ')}: carry ${hidden.length === 1 ? 'it' : 'them'} in 'arguments' of the leash_mcp_tool_call entry`,
        reasons,
        `tool call: arguments not exposed: ${hidden.join(', ')}`,
      );
    }
    const failedArgs = tool.failedArguments(call.arguments);
    if (failedArgs.length > 0) {
      return deny('ERR_TOOL_ARGUMENTS_REFUSED', `the tool call's arguments are not allowed: ${failedArgs.join('; ')}`, reasons, `tool call: ${failedArgs.join('; ')}`);
    }
    // A per-call credential lives seconds: the tool's own limit.
    ttl = Math.min(ttl, tool.maxTtl);
    reasons.push(`per-call ttl ${ttl}s`);
    if (tool.approval === 'human') reasons.push('tool call needs a human approval');
  }

  const failed = grant.failedConditions(input, scopes);
  if (failed.length > 0) {
    return deny('ERR_CONDITION_FAILED', `the grant's conditions do not hold: ${failed.join('; ')}`, reasons, `conditions failed: ${failed.join('; ')}`);
  }
  if (grant.config.conditions?.length || grant.config.time) reasons.push('conditions hold');

  // The approval rule is the pipeline's step (it needs the store and a person), not a policy denial.
  // A tool call follows its tool's rule; the grant's rule is for session tokens.
  if (!tool && grant.approval !== 'none') reasons.push(`approval '${grant.approval}' required`);

  if (grant.dpopRequired) reasons.push('dpop required');
  return Object.freeze({ allow: true, grant, scopes, ttl, dpopRequired: grant.dpopRequired, ...(tool ? { tool } : {}), reasons: Object.freeze(reasons) });
}
