import type { Finding } from './finding.js';
import type { ReviewReport } from './review.js';
import { SEVERITIES, type Severity } from './rules.js';

/** What a policy change does to the findings: the ones it introduces and the ones it removes. */
export interface ReviewDiff {
  readonly tool: 'leash review --base';
  readonly base: ReviewReport['policy'];
  readonly head: ReviewReport['policy'];
  readonly introduced: readonly Finding[];
  readonly resolved: readonly Finding[];
  readonly summary: { readonly introduced: Readonly<Record<Severity, number>>; readonly resolved: Readonly<Record<Severity, number>> };
}

const count = (list: readonly Finding[]) => Object.fromEntries(SEVERITIES.map((s) => [s, list.filter((f) => f.severity === s).length])) as Record<Severity, number>;

/**
 * Compare by fingerprint (rule + what the finding is about, not its line), so moving a
 * plugin in the file or adding lines above it changes nothing. A finding whose severity
 * changed (a toxic path that a new rule now blocks) counts as resolved and introduced.
 */
export function diffReports(base: ReviewReport, head: ReviewReport): ReviewDiff {
  const key = (f: Finding) => `${f.fingerprint}:${f.severity}`;
  const before = new Set(base.findings.map(key));
  const after = new Set(head.findings.map(key));
  const introduced = head.findings.filter((f) => !before.has(key(f)));
  const resolved = base.findings.filter((f) => !after.has(key(f)));
  return { tool: 'leash review --base', base: base.policy, head: head.policy, introduced, resolved, summary: { introduced: count(introduced), resolved: count(resolved) } };
}
