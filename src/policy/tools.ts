import type { ConfigProblem } from '../config/config-error.js';
import { APPROVAL_BY_DEFAULT_EFFECTS, type Effect, type McpToolConfig, type ToolArgumentTestConfig } from '../config/schema.js';
import { compileGlob } from './glob.js';

/** One MCP tool entry of a grant, compiled at load. */
export interface CompiledTool {
  readonly index: number;
  /** The configured name or glob. */
  readonly pattern: string;
  readonly matches: (name: string) => boolean;
  readonly effect: Effect;
  readonly approval: 'none' | 'human';
  /** Each call needs its own credential (authorization_details); no `tool:` scope reaches it. */
  readonly perCall: boolean;
  /** Arguments a per-call request must carry in clear (exposed and tested ones). */
  readonly mustExpose: readonly string[];
  /** The tests that fail for these exposed values, as human strings naming config values only. */
  readonly failedArguments: (exposed: Readonly<Record<string, unknown>>) => readonly string[];
  readonly maxTtl: number;
  readonly config: McpToolConfig;
}

/** The scope that lets a session token call one tool. */
export const TOOL_SCOPE_PREFIX = 'tool:';

const READ_EFFECTS: ReadonlySet<string> = new Set(['read', 'read-sensitive']);

function describeTest(name: string, t: ToolArgumentTestConfig): string {
  const parts: string[] = [];
  if (t.equals !== undefined) parts.push(`equal ${JSON.stringify(t.equals)}`);
  if (t.in !== undefined) parts.push(`be one of ${t.in.map((v) => JSON.stringify(v)).join(', ')}`);
  if (t.glob !== undefined) parts.push(`match '${t.glob}'`);
  if (t.min !== undefined) parts.push(`be at least ${t.min}`);
  if (t.max !== undefined) parts.push(`be at most ${t.max}`);
  return `argument '${name}' must ${parts.join(' and ')}`;
}

function compileTest(t: ToolArgumentTestConfig): (v: unknown) => boolean {
  const glob = t.glob !== undefined ? compileGlob(t.glob) : undefined;
  const allowed = t.in !== undefined ? new Set<unknown>(t.in) : undefined;
  return (v) => {
    if (t.equals !== undefined && v !== t.equals) return false;
    if (allowed !== undefined && !allowed.has(v)) return false;
    if (glob !== undefined && (typeof v !== 'string' || !glob(v))) return false;
    if (t.min !== undefined && (typeof v !== 'number' || !(v >= t.min))) return false;
    if (t.max !== undefined && (typeof v !== 'number' || !(v <= t.max))) return false;
    return true;
  };
}

/** Compile a grant's `tools`; problems go to `problems` with their paths. */
export function compileTools(tools: readonly McpToolConfig[], grantMaxTtl: number, path: string, problems: ConfigProblem[]): readonly CompiledTool[] {
  const out: CompiledTool[] = [];
  tools.forEach((spec, index) => {
    const at = `${path}/${index}`;
    const approval = spec.approval ?? (APPROVAL_BY_DEFAULT_EFFECTS.has(spec.effect) ? 'human' : 'none');
    if (approval === 'human' && spec.per_call === false) {
      problems.push({ path: `${at}/per_call`, message: 'a tool a person approves needs a per-call credential: the approval binds to the exact arguments' });
      return;
    }
    const perCall = approval === 'human' || (spec.per_call ?? !READ_EFFECTS.has(spec.effect));
    const maxTtl = spec.max_ttl ?? 60;
    if (maxTtl > grantMaxTtl) problems.push({ path: `${at}/max_ttl`, message: `must be at most the grant's max_ttl (${grantMaxTtl})` });
    const tests: Array<[string, (v: unknown) => boolean, string]> = [];
    for (const [name, t] of Object.entries(spec.arguments ?? {})) {
      if (Object.keys(t).length === 0) {
        problems.push({ path: `${at}/arguments/${name}`, message: 'needs at least one of equals, in, glob, min, max' });
        continue;
      }
      tests.push([name, compileTest(t), describeTest(name, t)]);
    }
    const mustExpose = [...new Set([...(spec.expose ?? []), ...Object.keys(spec.arguments ?? {})])];
    const matches = compileGlob(spec.name);
    out.push(
      Object.freeze({
        index,
        pattern: spec.name,
        matches: (name: string) => matches(name),
        effect: spec.effect,
        approval,
        perCall,
        mustExpose: Object.freeze(mustExpose),
        failedArguments: (exposed: Readonly<Record<string, unknown>>) => tests.filter(([name, test]) => !(Object.hasOwn(exposed, name) && test(exposed[name]))).map(([, , text]) => text),
        maxTtl: Math.min(maxTtl, grantMaxTtl),
        config: spec,
      }),
    );
  });
  return Object.freeze(out);
}

/** The first tool entry that matches this name. */
export function findTool(tools: readonly CompiledTool[], name: string): CompiledTool | undefined {
  return tools.find((t) => t.matches(name));
}
