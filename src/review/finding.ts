import { createHash } from 'node:crypto';
import { ruleById, severityRank, type Severity } from './rules.js';
import type { Mappings } from './frameworks.js';

/** What the review reports: one rule firing on one thing, with where and how to fix it. */
export interface Finding {
  readonly rule: string;
  readonly severity: Severity;
  readonly title: string;
  /** This finding in one sentence: names the plugin, grant, values. */
  readonly message: string;
  readonly plugin: string | undefined;
  /** The grant's audience. */
  readonly grant: string | undefined;
  readonly binding: number | undefined;
  readonly exception: string | undefined;
  /** JSON pointer into the policy; file and line are filled in from it. */
  readonly pointer: string;
  readonly file: string | undefined;
  readonly line: number | undefined;
  /** The concrete fix for this finding. */
  readonly fix: string;
  readonly mappings: Mappings;
  /** Rule-specific facts (counts, hops, whether the exchange rules block a path). */
  readonly evidence: Readonly<Record<string, unknown>>;
  /**
   * Stable across edits that do not change what the finding is about (rule + plugin, grant,
   * scope, path...), not its line: diff mode and the scheduled review compare by it.
   */
  readonly fingerprint: string;
}

export interface FindingInput {
  readonly rule: string;
  readonly message: string;
  readonly pointer: string;
  readonly fix: string;
  /** The identity of the thing the finding is about, for the fingerprint. */
  readonly key: string;
  readonly severity?: Severity;
  readonly plugin?: string;
  readonly grant?: string;
  readonly binding?: number;
  readonly exception?: string;
  readonly evidence?: Record<string, unknown>;
}

export function makeFinding(input: FindingInput): Finding {
  const rule = ruleById(input.rule);
  return {
    rule: rule.id,
    severity: input.severity ?? rule.severity,
    title: rule.title,
    message: input.message,
    plugin: input.plugin,
    grant: input.grant,
    binding: input.binding,
    exception: input.exception,
    pointer: input.pointer,
    file: undefined,
    line: undefined,
    fix: input.fix,
    mappings: rule.mappings,
    evidence: input.evidence ?? {},
    fingerprint: createHash('sha256').update(`${rule.id}\u0000${input.key}`).digest('hex').slice(0, 16),
  };
}

/** Worst first, then by plugin, rule and pointer: a stable order for every format. */
export function compareFindings(a: Finding, b: Finding): number {
  return (
    severityRank(b.severity) - severityRank(a.severity) ||
    (a.plugin ?? '\uffff').localeCompare(b.plugin ?? '\uffff') ||
    a.rule.localeCompare(b.rule) ||
    a.pointer.localeCompare(b.pointer) ||
    a.fingerprint.localeCompare(b.fingerprint)
  );
}

export const escapePointer = (s: string) => s.replace(/~/g, '~0').replace(/\//g, '~1');
