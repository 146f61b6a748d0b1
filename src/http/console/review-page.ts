import type { Finding } from '../../review/finding.js';
import { mappingLabels, type Mappings } from '../../review/frameworks.js';
import type { ReviewReport } from '../../review/review.js';
import { SEVERITIES, type Severity } from '../../review/rules.js';
import { atOrAbove } from '../../review/review.js';
import { h, idOf, type Viewer } from './html.js';

export interface ReviewFilter {
  /** Findings at or above this severity. */
  readonly severity: Severity | undefined;
  /** A framework id (`NHI5`, `ASI03`, `L3`) the finding maps to. */
  readonly framework: string | undefined;
  readonly plugin: string | undefined;
}

const ids = (m: Mappings): string[] => [...m.nhi, ...m.asi, ...m.maestro];

/** The filter from a query string: anything not offered is ignored (the page shows every finding). */
export function reviewFilter(query: Record<string, unknown>): ReviewFilter {
  const severity = SEVERITIES.find((s) => s === query.severity);
  const framework = typeof query.framework === 'string' && /^[A-Za-z0-9]{1,16}$/.test(query.framework) ? query.framework : undefined;
  const plugin = typeof query.plugin === 'string' && /^[a-z0-9][a-z0-9._-]{0,62}$/.test(query.plugin) ? query.plugin : undefined;
  return { severity, framework, plugin };
}

export function matches(f: Finding, filter: ReviewFilter): boolean {
  return (
    (filter.severity === undefined || atOrAbove(f.severity, filter.severity)) &&
    (filter.framework === undefined || ids(f.mappings).includes(filter.framework)) &&
    (filter.plugin === undefined || f.plugin === filter.plugin)
  );
}

export function reviewPage(_viewer: Viewer, input: { report: ReviewReport; filter: ReviewFilter }): string {
  const { report, filter } = input;
  const frameworks = [...new Set(report.findings.flatMap((f) => ids(f.mappings)))].sort();
  const labels = new Map(report.findings.flatMap((f) => ids(f.mappings).map((id, i) => [id, mappingLabels(f.mappings)[i] ?? id] as const)));
  const shown = report.findings.filter((f) => matches(f, filter));
  const option = (value: string, label: string, selected: boolean) => `<option value="${h(value)}"${selected ? ' selected' : ''}>${h(label)}</option>`;
  const rows = shown
    .map((f) => {
      const where = f.file ? `${f.file}${f.line !== undefined ? `:${f.line}` : ''}` : '';
      return `<tr><td><span class="badge sev-${h(f.severity)}">${h(f.severity)}</span></td><td><strong>${h(f.title)}</strong><br>${h(f.message)}<br><span class="muted">Fix: ${h(f.fix)}</span></td>
<td>${f.plugin ? `<a href="/console/plugins#plugin-${h(idOf(f.plugin))}">${h(f.plugin)}</a>` : '<span class="muted">policy</span>'}</td>
<td>${where ? `<code>${h(where)}</code><br>` : ''}<code class="muted">${h(f.pointer)}</code></td>
<td>${mappingLabels(f.mappings)
        .map((l) => h(l))
        .join('<br>')}</td></tr>`;
    })
    .join('');
  return `<p class="muted">The governance review of the policy in force, with evidence of use (generated ${h(report.generated_at)}): ${report.summary.total} findings, ${SEVERITIES.map((s) => `${report.summary[s]} ${s}`).join(', ')}.</p>
<form method="get" action="/console/review" class="filters">
<div><label for="severity">Severity at least</label><select id="severity" name="severity">${option('', 'any', filter.severity === undefined)}${SEVERITIES.map((s) => option(s, s, filter.severity === s)).join('')}</select></div>
<div><label for="framework">Framework mapping</label><select id="framework" name="framework">${option('', 'any', filter.framework === undefined)}${frameworks.map((id) => option(id, labels.get(id) ?? id, filter.framework === id)).join('')}</select></div>
${filter.plugin ? `<input type="hidden" name="plugin" value="${h(filter.plugin)}">` : ''}
<button type="submit">Filter</button>${filter.severity || filter.framework || filter.plugin ? ' <a href="/console/review">Clear</a>' : ''}</form>
<p role="status">${shown.length} of ${report.findings.length} findings shown${filter.plugin ? ` for plugin ${h(filter.plugin)}` : ''}.</p>
${
  shown.length === 0
    ? ''
    : `<table><thead><tr><th scope="col">Severity</th><th scope="col">Finding</th><th scope="col">Plugin</th><th scope="col">Policy line</th><th scope="col">Frameworks</th></tr></thead><tbody>${rows}</tbody></table>`
}`;
}
