import { CelScalar, celList, celMap, listType, mapType, objectType, type CelInput, type CelType } from '@bufbuild/cel';
import { timestampFromMs } from '@bufbuild/protobuf/wkt';
import { T, UNBOUNDED, type CheckType } from './check.js';

/**
 * The variables a CEL condition can read, with their CEL type (for the evaluator), their
 * static type and size bound (for the load-time check and cost bound), and what they
 * mean (docs/conditions.md is checked against this list). Nothing secret is ever bound:
 * no token, only what the attestation and the request say.
 */

/** Bounds that depend on the grant the condition belongs to. */
export interface GrantBounds {
  readonly audience: string;
  readonly scopes: readonly string[];
}

export interface CelVariable {
  readonly name: string;
  readonly type: CelType;
  readonly check: (grant: GrantBounds) => CheckType;
  readonly description: string;
}

/** Most attributes one attestation yields (the oidc kind's `claims` list is capped at this). */
export const MAX_CLAIMS = 64;
const MAX_CLAIM_NAME = 128;
/** Root plus settings.delegation.max_depth (at most 10) hops. */
const MAX_CHAIN = 11;
const IDENT = 63;

const S = CelScalar;
const TIMESTAMP = objectType('google.protobuf.Timestamp');
const stringMap = mapType(S.STRING, S.STRING);
const stringList = listType(S.STRING);
/** RFC 9396 entries: maps of their members, values as JSON gives them (numbers are doubles). */
const detailsList = listType(mapType(S.STRING, S.DYN));
/** The whole authorization_details parameter is at most this long (exchange/authorization-details.ts), so nothing in it is longer. */
const MAX_DETAILS_LENGTH = 4096;
const MAX_DETAILS_ENTRIES = 4;

export const CEL_VARIABLES: readonly CelVariable[] = [
  { name: 'workload.issuer', type: S.STRING, check: () => T.string(IDENT), description: 'Name of the trusted issuer that vouched for the workload (config name, not its URL).' },
  { name: 'workload.kind', type: S.STRING, check: () => T.string(32), description: 'Kind of that issuer (`kubernetes`, `spiffe`, `github-actions`, `gitlab`, `gcp`, `azure`, `aws`, `oidc`).' },
  { name: 'workload.subject', type: S.STRING, check: () => T.string(UNBOUNDED), description: 'The workload identity string bindings match (service account, SPIFFE ID, `sub`, ARN...).' },
  {
    name: 'workload.claims',
    type: stringMap,
    check: () => T.map(T.string(MAX_CLAIM_NAME), T.string(UNBOUNDED), MAX_CLAIMS),
    description: 'The attested attributes of the workload, as strings (per kind: docs/attestation.md). Test presence with `has(workload.claims.name)`.',
  },
  { name: 'request.audience', type: S.STRING, check: (g) => T.string(g.audience.length), description: "The audience (`resource` / `audience`) asked for: the grant's own." },
  {
    name: 'request.scopes',
    type: stringList,
    check: (g) => T.list(T.string(Math.max(0, ...g.scopes.map((s) => s.length))), g.scopes.length),
    description: "The scopes that would be issued: those asked for, or the grant's default scopes when the request names none.",
  },
  { name: 'request.ttl', type: S.INT, check: () => T.int, description: 'The lifetime asked for (`expires_in`), in seconds; 0 when the request names none.' },
  {
    name: 'request.params',
    type: stringMap,
    check: () => T.map(T.string(16), T.string(UNBOUNDED), 8),
    description: 'Plain request parameters: `audience`, `scope`, `task`, `expires_in` (never a token).',
  },
  {
    name: 'request.authorization_details',
    type: detailsList,
    check: () => T.list(T.map(T.string(32), T.dyn(MAX_DETAILS_LENGTH), 8), MAX_DETAILS_ENTRIES),
    description:
      'The RFC 9396 `authorization_details` entries the request carried, as accepted: `{type: "leash_task", task}` and `{type: "leash_mcp_tool_call", locations, tool, arguments_sha256, arguments?}` (`arguments`: only the exposed values; JSON numbers are doubles). Empty without the parameter.',
  },
  { name: 'task.id', type: S.STRING, check: () => T.string(128), description: "The task's id; empty when the request names no task." },
  { name: 'task.attributes', type: stringMap, check: () => T.map(T.string(64), T.string(256), 32), description: 'The attributes the orchestrator gave the task; empty without a task.' },
  { name: 'task.plugins', type: stringList, check: () => T.list(T.string(IDENT), 64), description: 'The plugins allowed in the task; empty without a task.' },
  { name: 'plugin.id', type: S.STRING, check: () => T.string(IDENT), description: 'The plugin asking.' },
  { name: 'plugin.owner', type: S.STRING, check: () => T.string(UNBOUNDED), description: 'Its owner.' },
  { name: 'plugin.risk', type: S.STRING, check: () => T.string(16), description: 'Its risk tier (`low`, `medium`, `high`, `critical`).' },
  {
    name: 'now',
    type: TIMESTAMP,
    check: () => T.timestamp,
    description: 'The time of the request (UTC; `now.getHours()`, `now.getDayOfWeek()`, or with a time zone: `now.getHours("Europe/Paris")`).',
  },
  {
    name: 'approval.rule',
    type: S.STRING,
    check: () => T.string(16),
    description: "The grant's approval rule (`none`, `human`, `step-up`). Conditions run before the approval step: its outcome is not an input.",
  },
  {
    name: 'delegation.chain',
    type: stringList,
    check: () => T.list(T.string(IDENT), MAX_CHAIN),
    description: 'In a delegation: the upstream plugins, root first (verified from the upstream token); empty otherwise.',
  },
  { name: 'delegation.depth', type: S.INT, check: () => T.int, description: 'How many plugins are upstream (0 without delegation).' },
];

export const CEL_VARIABLE_NAMES: ReadonlySet<string> = new Set(CEL_VARIABLES.map((v) => v.name));

/** What a condition's bindings are built from (the policy input, flattened). */
export interface CelInputs {
  readonly issuer: string;
  readonly kind: string;
  readonly subject: string;
  readonly claims: Readonly<Record<string, string>>;
  readonly audience: string;
  readonly scopes: readonly string[];
  readonly ttl: number | undefined;
  readonly params: Readonly<Record<string, string>>;
  readonly authorizationDetails: readonly Readonly<Record<string, unknown>>[];
  readonly task: { readonly id: string; readonly attributes: Readonly<Record<string, string>>; readonly plugins: readonly string[] } | undefined;
  readonly plugin: { readonly id: string; readonly owner: string; readonly risk: string };
  readonly now: number;
  readonly approvalRule: string;
  readonly chain: readonly string[];
}

export class BindingBoundError extends Error {}

// Converted once per decision: the evaluator would otherwise convert a plain array or Map at each access.
const entries = (record: Readonly<Record<string, string>>) => celMap(new Map(Object.entries(record)));
const list = (items: readonly string[]) => celList([...items]);

/**
 * The evaluator's bindings. The static cost bound assumed these sizes; an input past them
 * is an error (and so a denial), never a longer evaluation.
 */
export function celBindings(i: CelInputs): Record<string, CelInput> {
  const claimNames = Object.keys(i.claims);
  if (claimNames.length > MAX_CLAIMS) throw new BindingBoundError(`the workload has ${claimNames.length} attributes, more than the ${MAX_CLAIMS} conditions accept`);
  if (claimNames.some((n) => n.length > MAX_CLAIM_NAME)) throw new BindingBoundError(`a workload attribute name is longer than ${MAX_CLAIM_NAME} characters`);
  if (i.authorizationDetails.length > MAX_DETAILS_ENTRIES) throw new BindingBoundError(`more than ${MAX_DETAILS_ENTRIES} authorization_details entries`);
  if (i.chain.length > MAX_CHAIN) throw new BindingBoundError(`the delegation chain is longer than ${MAX_CHAIN}`);
  return {
    'workload.issuer': i.issuer,
    'workload.kind': i.kind,
    'workload.subject': i.subject,
    'workload.claims': entries(i.claims),
    'request.audience': i.audience,
    'request.scopes': list(i.scopes),
    'request.ttl': BigInt(i.ttl ?? 0),
    'request.params': entries(i.params),
    'request.authorization_details': celList(i.authorizationDetails.map((d) => d as CelInput)),
    'task.id': i.task?.id ?? '',
    'task.attributes': entries(i.task?.attributes ?? {}),
    'task.plugins': list(i.task?.plugins ?? []),
    'plugin.id': i.plugin.id,
    'plugin.owner': i.plugin.owner,
    'plugin.risk': i.plugin.risk,
    now: timestampFromMs(i.now),
    'approval.rule': i.approvalRule,
    'delegation.chain': list(i.chain),
    'delegation.depth': BigInt(i.chain.length),
  };
}
