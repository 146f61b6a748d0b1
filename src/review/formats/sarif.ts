import { relative, sep } from 'node:path';
import type { Log, ReportingDescriptor, Result } from 'sarif';
import { mappingLabels } from '../frameworks.js';
import type { ReviewReport } from '../review.js';
import { RULES, type Severity } from '../rules.js';

/** SARIF levels: code scanning shows `error`, `warning`, `note`. */
const LEVEL: Readonly<Record<Severity, 'error' | 'warning' | 'note'>> = { critical: 'error', high: 'error', medium: 'warning', low: 'note' };
/** GitHub code scanning's `security-severity` (CVSS-like 0-10) per severity. */
const SECURITY_SEVERITY: Readonly<Record<Severity, string>> = { critical: '9.5', high: '8.0', medium: '5.5', low: '3.0' };

const uriOf = (file: string, base: string): string => relative(base, file).split(sep).join('/');

/**
 * SARIF 2.1.0 for code scanning: one run, the rule catalogue as `tool.driver.rules`, one
 * result per finding located at the policy file's line, with a stable partial fingerprint.
 * Paths are relative to `base` (the repository root, default the working directory).
 */
export function renderSarif(report: ReviewReport, opts: { base?: string } = {}): Log {
  const base = opts.base ?? process.cwd();
  const index = new Map(RULES.map((r, i) => [r.id, i]));
  const rules: ReportingDescriptor[] = RULES.map((r) => ({
    id: r.id,
    name: r.id
      .split('-')
      .map((w) => w[0]!.toUpperCase() + w.slice(1))
      .join(''),
    shortDescription: { text: r.title },
    fullDescription: { text: r.rationale },
    help: { text: r.fix, markdown: `${r.fix}\n\nMaps to: ${mappingLabels(r.mappings).join('; ')}` },
    defaultConfiguration: { level: LEVEL[r.severity] },
    properties: { tags: ['security', `leash/${r.category}`, ...mappingLabels(r.mappings)], 'security-severity': SECURITY_SEVERITY[r.severity], category: r.category },
  }));
  const results: Result[] = report.findings.map((f) => ({
    ruleId: f.rule,
    ruleIndex: index.get(f.rule)!,
    level: LEVEL[f.severity],
    message: { text: `${f.message}. Fix: ${f.fix}` },
    ...(f.file !== undefined && f.line !== undefined
      ? {
          locations: [
            {
              physicalLocation: { artifactLocation: { uri: uriOf(f.file, base), uriBaseId: '%SRCROOT%' }, region: { startLine: f.line } },
              logicalLocations: [{ fullyQualifiedName: f.pointer || '/', kind: 'member' }],
            },
          ],
        }
      : { locations: [{ logicalLocations: [{ fullyQualifiedName: f.pointer || '/', kind: 'member' }] }] }),
    partialFingerprints: { 'leashFinding/v1': f.fingerprint },
    properties: {
      severity: f.severity,
      'security-severity': SECURITY_SEVERITY[f.severity],
      pointer: f.pointer,
      ...(f.plugin !== undefined ? { plugin: f.plugin } : {}),
      ...(f.grant !== undefined ? { grant: f.grant } : {}),
      ...(f.exception !== undefined ? { exception: f.exception } : {}),
      tags: mappingLabels(f.mappings),
    },
  }));
  return {
    $schema: 'https://json.schemastore.org/sarif-2.1.0.json',
    version: '2.1.0',
    runs: [
      {
        tool: { driver: { name: 'leash review', informationUri: 'https://owasp.org/www-project-non-human-identities-top-10/', rules } },
        originalUriBaseIds: { '%SRCROOT%': { uri: `file://${base.split(sep).join('/').replace(/\/?$/, '/')}` } },
        invocations: [{ executionSuccessful: true, endTimeUtc: report.generated_at }],
        results,
      },
    ],
  };
}
