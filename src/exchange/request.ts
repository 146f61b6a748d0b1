import { LeashError } from '../errors/leash-error.js';
import { MAX_TOKEN_LENGTH } from '../client/token-limits.js';
import { parseAuthorizationDetails, type ToolCallRequest } from './authorization-details.js';
import {
  ACCEPTED_SUBJECT_TOKEN_TYPES,
  ANY_REQUESTABLE_TYPE,
  TOKEN_TYPE_AWS_SIGV4,
  TOKEN_TYPE_CLIENT,
  TOKEN_TYPE_ID_TOKEN,
  TOKEN_TYPE_TLS_CLIENT_CERTIFICATE,
  UPSTREAM_SUBJECT_TOKEN_TYPES,
} from '../formats/token-types.js';

/** Raw parameters as the OAuth layer hands them over (repeatable ones may be arrays). */
export type RawParams = Readonly<Record<string, string | readonly string[] | undefined>>;

/** A token-exchange request after syntax checks: everything later steps need, nothing else. */
export interface ExchangeRequest {
  /** As named in the request; undefined when none was sent. */
  readonly clientId: string | undefined;
  /** The attestation, or (in a delegation) the upstream plugin's Leash token. */
  readonly subjectToken: string;
  /** Delegation (RFC 8693 §1.1): the requesting plugin's own attestation. */
  readonly actorToken: string | undefined;
  /** The token type of the attestation (`actor_token_type` in a delegation, else `subject_token_type`). */
  readonly attestationTokenType: string;
  /** Step-up: why the plugin asks (shown to approvers, recorded in the audit event). */
  readonly justification: string | undefined;
  /** A pending approval this request polls or redeems. */
  readonly approvalId: string | undefined;
  readonly audience: string;
  readonly scopes: readonly string[] | undefined;
  readonly ttl: number | undefined;
  readonly taskId: string | undefined;
  readonly requestedTokenType: string | undefined;
  /** RFC 9396: the one MCP tool call the credential is for (`leash_mcp_tool_call`). */
  readonly toolCall: ToolCallRequest | undefined;
  /** RFC 9396 entries the request carried, as accepted (empty without the parameter). */
  readonly authorizationDetails: readonly Readonly<Record<string, unknown>>[];
  /** Plain parameters for `request.*` conditions: never the tokens. */
  readonly conditionParams: Readonly<Record<string, string>>;
}

const ATTESTATION_TYPES_TEXT = `urn:ietf:params:oauth:token-type:jwt (or :id_token), ${TOKEN_TYPE_AWS_SIGV4}, ${TOKEN_TYPE_TLS_CLIENT_CERTIFICATE} or ${TOKEN_TYPE_CLIENT}`;

const MAX_TTL_PARAM = 86400;
const TASK_ID = /^[A-Za-z0-9_-]{1,128}$/;
const APPROVAL_ID = /^[A-Za-z0-9_-]{16,64}$/;
const MAX_JUSTIFICATION = 500;
/** Printable text only: a justification is shown to people and must not smuggle control characters. */
const JUSTIFICATION = /^[^\p{Cc}\p{Cf}]+$/u;

function single(params: RawParams, name: string): string | undefined {
  const v = params[name];
  if (v === undefined) return undefined;
  if (typeof v !== 'string') {
    throw new LeashError('ERR_REQUEST_MALFORMED', `parameter '${name}' must appear once`);
  }
  return v;
}

function many(params: RawParams, name: string): string[] {
  const v = params[name];
  if (v === undefined) return [];
  return typeof v === 'string' ? [v] : [...v];
}

function isAbsoluteUri(value: string): boolean {
  try {
    const u = new URL(value);
    return u.protocol.length > 1 && !value.includes('#');
  } catch {
    return false;
  }
}

/**
 * Step 1, parse: RFC 8693 §2.1 parameters into an ExchangeRequest. `resource` (RFC 8707)
 * and `audience` together must name exactly one target: a token is bound to one API.
 */
export function parseExchangeRequest(clientId: string | undefined, params: RawParams): ExchangeRequest {
  const subjectToken = single(params, 'subject_token');
  if (!subjectToken) throw new LeashError('ERR_REQUEST_MALFORMED', "missing 'subject_token': send the workload attestation (a JWT)");
  if (subjectToken.length > MAX_TOKEN_LENGTH) throw new LeashError('ERR_ATTESTATION_MALFORMED', 'subject_token is too long to be an attestation');
  const subjectTokenType = single(params, 'subject_token_type');
  if (!subjectTokenType) throw new LeashError('ERR_REQUEST_MALFORMED', "missing 'subject_token_type': use urn:ietf:params:oauth:token-type:jwt");
  const actorToken = single(params, 'actor_token');
  const actorTokenType = single(params, 'actor_token_type');
  if (actorToken === undefined && actorTokenType !== undefined) {
    throw new LeashError('ERR_REQUEST_MALFORMED', "'actor_token_type' without 'actor_token' (RFC 8693 §2.1)");
  }
  if (actorToken !== undefined) {
    // Delegation: subject_token is the upstream plugin's Leash token, actor_token this plugin's attestation.
    if (actorToken.length === 0) throw new LeashError('ERR_REQUEST_MALFORMED', "'actor_token' is empty");
    if (actorToken.length > MAX_TOKEN_LENGTH) throw new LeashError('ERR_ATTESTATION_MALFORMED', 'actor_token is too long to be an attestation');
    if (!actorTokenType) throw new LeashError('ERR_REQUEST_MALFORMED', "missing 'actor_token_type': use urn:ietf:params:oauth:token-type:jwt (RFC 8693 §2.1)");
    if (!ACCEPTED_SUBJECT_TOKEN_TYPES.has(actorTokenType)) {
      throw new LeashError('ERR_ACTOR_TOKEN_TYPE_UNSUPPORTED', `actor_token_type must be the plugin's attestation: ${ATTESTATION_TYPES_TEXT}`);
    }
    // An ID token can only be a person's (a Leash token is an access token).
    if (!UPSTREAM_SUBJECT_TOKEN_TYPES.has(subjectTokenType) && subjectTokenType !== TOKEN_TYPE_ID_TOKEN) {
      throw new LeashError(
        'ERR_SUBJECT_TOKEN_TYPE_UNSUPPORTED',
        'with an actor_token, subject_token is the upstream Leash token: subject_token_type must be urn:ietf:params:oauth:token-type:access_token (or :jwt)',
      );
    }
  } else if (!ACCEPTED_SUBJECT_TOKEN_TYPES.has(subjectTokenType)) {
    throw new LeashError('ERR_SUBJECT_TOKEN_TYPE_UNSUPPORTED', `subject_token_type must be ${ATTESTATION_TYPES_TEXT}`);
  }

  const justification = single(params, 'justification');
  if (justification !== undefined && (justification.length > MAX_JUSTIFICATION || !JUSTIFICATION.test(justification) || justification.trim().length === 0)) {
    throw new LeashError('ERR_REQUEST_MALFORMED', `justification must be 1 to ${MAX_JUSTIFICATION} printable characters`);
  }
  const approvalId = single(params, 'approval_id');
  if (approvalId !== undefined && !APPROVAL_ID.test(approvalId)) throw new LeashError('ERR_APPROVAL_UNKNOWN', 'approval_id is not a valid approval id');

  const requestedTokenType = single(params, 'requested_token_type');
  if (requestedTokenType !== undefined && !ANY_REQUESTABLE_TYPE.has(requestedTokenType)) {
    throw new LeashError('ERR_REQUESTED_TOKEN_TYPE_UNSUPPORTED', `requested_token_type must be one of ${[...ANY_REQUESTABLE_TYPE].join(', ')}`);
  }

  const resources = many(params, 'resource');
  for (const r of resources) {
    if (!isAbsoluteUri(r)) throw new LeashError('ERR_RESOURCE_INVALID', 'resource must be an absolute URI without a fragment (RFC 8707)');
  }
  const targets = new Set([...resources, ...many(params, 'audience')]);
  if (targets.size === 0) throw new LeashError('ERR_AUDIENCE_MISSING', "name the API with 'resource' or 'audience'");
  if (targets.size > 1) throw new LeashError('ERR_AUDIENCE_MULTIPLE', 'a token is bound to exactly one audience: request one at a time');
  const audience = [...targets][0] as string;
  if (audience.length === 0) throw new LeashError('ERR_AUDIENCE_MISSING', "'audience' is empty");

  const scope = single(params, 'scope');
  const scopes = scope === undefined ? undefined : [...new Set(scope.split(' ').filter((s) => s.length > 0))];

  const ttlParam = single(params, 'expires_in');
  let ttl: number | undefined;
  if (ttlParam !== undefined) {
    if (!/^[1-9][0-9]{0,5}$/.test(ttlParam) || Number(ttlParam) > MAX_TTL_PARAM) {
      throw new LeashError('ERR_TTL_INVALID', `expires_in must be a whole number of seconds between 1 and ${MAX_TTL_PARAM}`);
    }
    ttl = Number(ttlParam);
  }

  const taskParam = single(params, 'task');
  if (taskParam !== undefined && !TASK_ID.test(taskParam)) throw new LeashError('ERR_TASK_UNKNOWN', 'task is not a valid task id');
  const detailsParam = single(params, 'authorization_details');
  const details = detailsParam === undefined ? undefined : parseAuthorizationDetails(detailsParam, audience);
  if (taskParam !== undefined && details?.taskId !== undefined && details.taskId !== taskParam) {
    throw new LeashError('ERR_AUTHORIZATION_DETAILS_INVALID', "authorization_details: the leash_task entry names another task than 'task'");
  }
  const taskId = taskParam ?? details?.taskId;

  const conditionParams: Record<string, string> = { audience };
  if (scope !== undefined) conditionParams.scope = scope;
  if (taskId !== undefined) conditionParams.task = taskId;
  if (ttlParam !== undefined) conditionParams.expires_in = ttlParam;

  return {
    clientId,
    subjectToken,
    actorToken,
    attestationTokenType: (actorToken !== undefined ? actorTokenType : subjectTokenType) as string,
    justification,
    approvalId,
    audience,
    scopes: scopes && scopes.length > 0 ? scopes : undefined,
    ttl,
    taskId,
    requestedTokenType,
    toolCall: details?.toolCall,
    authorizationDetails: details?.entries ?? [],
    conditionParams,
  };
}
