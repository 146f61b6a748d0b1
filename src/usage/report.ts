import { USAGE_OUTCOMES, type UsageOutcome } from '../store/usage-store.js';

/**
 * One call as a resource server reports it (`POST /usage`, a JSON array under `records`).
 * The schema is the same for an HTTP API and an MCP server or gateway: `method` is the
 * protocol's verb (`GET`, `TOOL`) and `route` the route template or the tool name.
 *
 * ```json
 * { "at": 1764072000000, "jti": "…", "plugin": "github-reader", "task": "tsk_…",
 *   "audience": "https://api.github.com", "method": "GET", "route": "/repos/:owner/:repo",
 *   "status": 200, "duration_ms": 12, "bytes": 3456, "outcome": "ok",
 *   "jkt": "…", "source": "203.0.113.7", "scopes": ["repo:read"], "charged": false }
 * ```
 */
export interface UsageCall {
  /** ms since the epoch, when the call was answered. */
  readonly at: number;
  readonly jti: string | undefined;
  readonly plugin: string | undefined;
  readonly task: string | undefined;
  readonly audience: string;
  readonly method: string;
  readonly route: string;
  readonly status: number;
  readonly durationMs: number;
  readonly bytes: number;
  readonly outcome: UsageOutcome;
  /** DPoP key thumbprint the call was made with (the proof's, also on a `bad_dpop` refusal). */
  readonly jkt: string | undefined;
  /** The caller's address (or workload) as the server saw it. */
  readonly source: string | undefined;
  /** Scopes the route checked. */
  readonly scopes: readonly string[];
  /** Already counted against the task's budget by a synchronous check (`POST /usage/budget`). */
  readonly charged: boolean;
}

const OUTCOMES: ReadonlySet<string> = new Set(USAGE_OUTCOMES);
const KNOWN = new Set(['at', 'jti', 'plugin', 'task', 'audience', 'method', 'route', 'status', 'duration_ms', 'bytes', 'outcome', 'jkt', 'source', 'scopes', 'charged']);
const METHOD = /^[A-Za-z][A-Za-z0-9_/-]{0,31}$/;
const TOKEN_ID = /^[A-Za-z0-9._:~+/=-]{1,160}$/;
const PRINTABLE = /^[\x21-\x7E][\x20-\x7E]*$/;
const MAX_TEXT = 256;
const MAX_SCOPES = 32;
const MAX_DURATION_MS = 3_600_000;
const MAX_BYTES = 2 ** 45;

/** Why a record was refused; `field` names what to fix. */
export interface RecordProblem {
  readonly index: number;
  readonly field: string;
  readonly message: string;
}

function text(v: unknown, max = MAX_TEXT, pattern = PRINTABLE): string | undefined {
  return typeof v === 'string' && v.length > 0 && v.length <= max && pattern.test(v) ? v : undefined;
}

function int(v: unknown, min: number, max: number): number | undefined {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= min && v <= max ? v : undefined;
}

function bad(index: number, field: string, message: string): RecordProblem {
  return { index, field, message };
}

const TEXT_PROBLEM: Record<string, string> = {};
for (const [name, max] of [
  ['jti', 160],
  ['plugin', 64],
  ['task', 128],
  ['jkt', 128],
  ['source', 128],
] as const)
  TEXT_PROBLEM[name] = `a printable string of at most ${max} characters`;

/**
 * Checks one untrusted record. `window` bounds `at`: older than retention or further ahead
 * than the allowed skew is refused (a report is about the recent past). Runs once per
 * reported call, so it allocates nothing but its answer (no closures, no key arrays).
 */
export function parseUsageRecord(raw: unknown, index: number, window: { readonly from: number; readonly to: number }): UsageCall | RecordProblem {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) return bad(index, '', 'a record must be a JSON object');
  const r = raw as Record<string, unknown>;
  for (const k in r) if (!KNOWN.has(k)) return bad(index, k.slice(0, 64), 'unknown member');
  const at = int(r.at, window.from, window.to);
  if (at === undefined) return bad(index, 'at', 'must be milliseconds since the epoch, within retention and not in the future');
  const audience = text(r.audience);
  if (audience === undefined) return bad(index, 'audience', 'required: the audience this server answers for');
  const method = text(r.method, 32, METHOD);
  if (method === undefined) return bad(index, 'method', 'required: the HTTP method or protocol verb (letters, digits, _ / -)');
  const route = text(r.route);
  if (route === undefined) return bad(index, 'route', 'required: the route template or tool name, printable, at most 256 characters');
  const status = int(r.status, 100, 599);
  if (status === undefined) return bad(index, 'status', 'required: the HTTP status answered (100-599)');
  const durationMs = r.duration_ms === undefined ? 0 : int(r.duration_ms, 0, MAX_DURATION_MS);
  if (durationMs === undefined) return bad(index, 'duration_ms', `an integer from 0 to ${MAX_DURATION_MS}`);
  const bytes = r.bytes === undefined ? 0 : int(r.bytes, 0, MAX_BYTES);
  if (bytes === undefined) return bad(index, 'bytes', 'a non-negative integer');
  const outcome = r.outcome === undefined ? 'ok' : r.outcome;
  if (typeof outcome !== 'string' || !OUTCOMES.has(outcome)) return bad(index, 'outcome', `one of ${USAGE_OUTCOMES.join(', ')}`);
  const jti = r.jti === undefined ? undefined : text(r.jti, 160, TOKEN_ID);
  if (jti === undefined && r.jti !== undefined) return bad(index, 'jti', TEXT_PROBLEM.jti!);
  const plugin = r.plugin === undefined ? undefined : text(r.plugin, 64);
  if (plugin === undefined && r.plugin !== undefined) return bad(index, 'plugin', TEXT_PROBLEM.plugin!);
  const task = r.task === undefined ? undefined : text(r.task, 128);
  if (task === undefined && r.task !== undefined) return bad(index, 'task', TEXT_PROBLEM.task!);
  const jkt = r.jkt === undefined ? undefined : text(r.jkt, 128, TOKEN_ID);
  if (jkt === undefined && r.jkt !== undefined) return bad(index, 'jkt', TEXT_PROBLEM.jkt!);
  const source = r.source === undefined ? undefined : text(r.source, 128);
  if (source === undefined && r.source !== undefined) return bad(index, 'source', TEXT_PROBLEM.source!);
  let scopes: string[] = NO_SCOPES;
  if (r.scopes !== undefined) {
    const given = r.scopes;
    if (!Array.isArray(given) || given.length > MAX_SCOPES || !allScopes(given)) return bad(index, 'scopes', `an array of at most ${MAX_SCOPES} scope strings`);
    scopes = [...new Set(given as string[])];
  }
  if (r.charged !== undefined && typeof r.charged !== 'boolean') return bad(index, 'charged', 'a boolean');
  return {
    at,
    jti,
    plugin,
    task,
    audience,
    method: METHOD_UPPER.test(method) ? method : method.toUpperCase(),
    route,
    status,
    durationMs,
    bytes,
    outcome: outcome as UsageOutcome,
    jkt,
    source,
    scopes,
    charged: r.charged === true,
  };
}

/** Shared by every record without scopes: never mutated. */
const NO_SCOPES: string[] = [];
const METHOD_UPPER = /^[A-Z0-9_/-]+$/;
const WHITESPACE = /\s/;

function allScopes(given: readonly unknown[]): boolean {
  for (const s of given) if (text(s, 128) === undefined || WHITESPACE.test(s as string)) return false;
  return true;
}

export function isProblem(v: UsageCall | RecordProblem): v is RecordProblem {
  return 'field' in v;
}
