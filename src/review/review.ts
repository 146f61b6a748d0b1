import type { LeashConfig } from '../config/schema.js';
import type { Suspension } from '../store/records.js';
import { chainingChecks } from './checks/chaining.js';
import type { FindingInput } from './finding.js';
import { exceptionChecks } from './checks/exception-checks.js';
import { POLICY_CHECKS } from './checks/policy-checks.js';
import { useChecks } from './checks/use-checks.js';
import type { KeyFact, ReviewContext } from './checks/context.js';
import type { UseSummary } from './evidence.js';
import { compareFindings, makeFinding, type Finding } from './finding.js';
import { buildGraph, type PluginGraph } from './graph.js';
import { checkGuardrails, defaultGuardrails } from '../config/guardrails.js';
import { SEVERITIES, type Severity } from './rules.js';
import type { SourceMap } from './source-map.js';

export interface ReviewInput {
  /** A parsed config (guardrail violations left in: `parseConfig(..., { guardrailMode: 'report' })`). */
  readonly config: LeashConfig;
  readonly now: number;
  /** Resolves findings' JSON pointers to lines of the policy file. */
  readonly source?: SourceMap;
  /** Policy identity for the report header. */
  readonly policy?: { readonly path?: string; readonly digest?: string };
  readonly use?: UseSummary;
  readonly suspensions?: readonly Suspension[];
  readonly keys?: readonly KeyFact[];
}

/** The review's result: what `--format json` prints and `GET /admin/review` returns. */
export interface ReviewReport {
  readonly tool: 'leash review';
  readonly generated_at: string;
  readonly policy: { readonly path: string | undefined; readonly digest: string | undefined; readonly plugins: number; readonly grants: number; readonly exceptions: number };
  /** What history the "use" rules saw; null for a policy-only review. */
  readonly evidence: { readonly sources: readonly string[]; readonly since: string; readonly until: string; readonly oldest: string | null; readonly covers_window: boolean } | null;
  readonly summary: Readonly<Record<Severity, number>> & { readonly total: number };
  readonly findings: readonly Finding[];
}

export interface ReviewResult {
  readonly report: ReviewReport;
  /** The plugin graph, for the picture (Markdown, HTML). */
  readonly graph: PluginGraph;
}

/** Run every rule over a config (and the evidence given); pure apart from the inputs. */
export function runReview(input: ReviewInput): ReviewResult {
  const { config } = input;
  const ctx: ReviewContext = {
    config,
    now: input.now,
    guardrails: checkGuardrails(config, config.guardrails ?? defaultGuardrails(), input.now),
    use: input.use,
    suspensions: input.suspensions,
    keys: input.keys,
  };
  const raw: FindingInput[] = [];
  const emit = (f: FindingInput) => raw.push(f);
  for (const check of POLICY_CHECKS) check(ctx, emit);
  exceptionChecks(ctx, emit);
  const graph = buildGraph(config);
  chainingChecks(ctx, graph, emit);
  useChecks(ctx, emit);

  const seen = new Set<string>();
  const findings: Finding[] = [];
  for (const f of raw.map(makeFinding)) {
    if (seen.has(f.fingerprint)) continue;
    seen.add(f.fingerprint);
    if (input.source) {
      const { line } = input.source.locate(f.pointer);
      findings.push({ ...f, file: input.source.path, line });
    } else {
      findings.push(f);
    }
  }
  findings.sort(compareFindings);
  const summary = Object.fromEntries(SEVERITIES.map((s) => [s, findings.filter((f) => f.severity === s).length])) as Record<Severity, number>;
  const use = input.use;
  return {
    graph,
    report: {
      tool: 'leash review',
      generated_at: new Date(input.now).toISOString(),
      policy: {
        path: input.policy?.path,
        digest: input.policy?.digest,
        plugins: config.plugins.length,
        grants: config.plugins.reduce((n, p) => n + p.grants.length, 0),
        exceptions: (config.exceptions ?? []).length,
      },
      evidence: use
        ? {
            sources: use.sources,
            since: new Date(use.since).toISOString(),
            until: new Date(use.until).toISOString(),
            oldest: use.oldestAt === undefined ? null : new Date(use.oldestAt).toISOString(),
            covers_window: use.oldestAt !== undefined && use.oldestAt <= use.since,
          }
        : null,
      summary: { ...summary, total: findings.length },
      findings,
    },
  };
}

/** Whether a finding is at or above `threshold` (`none`: never). */
export function atOrAbove(severity: Severity, threshold: Severity | 'none'): boolean {
  if (threshold === 'none') return false;
  return SEVERITIES.indexOf(severity) <= SEVERITIES.indexOf(threshold);
}
