import { createHash } from 'node:crypto';

/**
 * The RFC 9396 `authorization_details` type Leash defines for one MCP tool call. An entry:
 * `{ type, locations: [<MCP server resource>], tool, arguments_sha256, arguments? }`, where
 * `arguments_sha256` is the base64url SHA-256 of the canonical JSON (RFC 8785) of the
 * call's whole `arguments` object and `arguments` carries the values the policy asks to
 * see (the recipient of an email, the amount of a payment), copied verbatim from the call.
 */
export const MCP_TOOL_CALL_TYPE = 'leash_mcp_tool_call';

export interface ToolCallDetail {
  readonly type: typeof MCP_TOOL_CALL_TYPE;
  /** The MCP server's resource identifier (RFC 9396 §2.2 common field). */
  readonly locations: readonly [string];
  readonly tool: string;
  readonly arguments_sha256: string;
  /** The argument values shown to the policy and the approver; each equals the call's own. */
  readonly arguments?: Readonly<Record<string, unknown>>;
}

/**
 * RFC 8785 (JSON Canonicalization Scheme) for the JSON values a tool call carries: object
 * members sorted by UTF-16 code units, no whitespace, numbers and strings as ECMAScript
 * serialises them (which is what JCS specifies). Non-JSON values are a TypeError.
 */
export function canonicalJson(value: unknown): string {
  if (value === null) return 'null';
  switch (typeof value) {
    case 'boolean':
      return value ? 'true' : 'false';
    case 'number':
      if (!Number.isFinite(value)) throw new TypeError('canonicalJson: numbers must be finite');
      return JSON.stringify(value);
    case 'string':
      return JSON.stringify(value);
    case 'object': {
      if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
      const proto = Object.getPrototypeOf(value) as unknown;
      if (proto !== Object.prototype && proto !== null) throw new TypeError('canonicalJson: only plain objects');
      const keys = Object.keys(value).sort();
      const members: string[] = [];
      for (const k of keys) {
        const v = (value as Record<string, unknown>)[k];
        if (v === undefined) continue;
        members.push(`${JSON.stringify(k)}:${canonicalJson(v)}`);
      }
      return `{${members.join(',')}}`;
    }
    default:
      throw new TypeError(`canonicalJson: a ${typeof value} is not JSON`);
  }
}

/** base64url SHA-256 of the canonical JSON of a call's arguments (`{}` when it has none). */
export function argumentsHash(args: unknown): string {
  return createHash('sha256')
    .update(canonicalJson(args ?? {}), 'utf8')
    .digest('base64url');
}

/** The detail asking for a credential for exactly this call. */
export function toolCallDetail(opts: { resource: string; tool: string; arguments?: Readonly<Record<string, unknown>> | undefined; expose?: readonly string[] }): ToolCallDetail {
  const args = opts.arguments ?? {};
  const shown: Record<string, unknown> = {};
  for (const name of opts.expose ?? []) if (Object.hasOwn(args, name)) shown[name] = args[name];
  return {
    type: MCP_TOOL_CALL_TYPE,
    locations: [opts.resource],
    tool: opts.tool,
    arguments_sha256: argumentsHash(args),
    ...(Object.keys(shown).length > 0 ? { arguments: shown } : {}),
  };
}

/** The tool-call entries of a token's `authorization_details` claim (others are ignored). */
export function toolCallDetailsOf(claim: unknown): ToolCallDetail[] {
  if (!Array.isArray(claim)) return [];
  const out: ToolCallDetail[] = [];
  for (const d of claim) {
    if (typeof d !== 'object' || d === null) continue;
    const e = d as Record<string, unknown>;
    if (e.type !== MCP_TOOL_CALL_TYPE || typeof e.tool !== 'string' || typeof e.arguments_sha256 !== 'string') continue;
    const locations = Array.isArray(e.locations) && e.locations.length === 1 && typeof e.locations[0] === 'string' ? ([e.locations[0]] as [string]) : undefined;
    if (!locations) continue;
    const args = typeof e.arguments === 'object' && e.arguments !== null && !Array.isArray(e.arguments) ? (e.arguments as Record<string, unknown>) : undefined;
    out.push({ type: MCP_TOOL_CALL_TYPE, locations, tool: e.tool, arguments_sha256: e.arguments_sha256, ...(args ? { arguments: args } : {}) });
  }
  return out;
}
