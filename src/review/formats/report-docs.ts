import { ASI, ASI_SOURCE, MAESTRO, MAESTRO_SOURCE, NHI, NHI_SOURCE, mappingLabels } from '../frameworks.js';
import type { Finding } from '../finding.js';
import type { PluginGraph } from '../graph.js';
import type { ReviewReport } from '../review.js';
import { SEVERITIES, type Severity } from '../rules.js';
import { esc, renderMermaid, renderPicture } from './picture.js';

/**
 * The reports a security lead reads: Markdown (for a pull request or a wiki; the picture as
 * a Mermaid flowchart) and a self-contained HTML page (the picture as inline SVG).
 */

const md = (s: string) => s.replace(/\|/g, '\\|').replace(/\r?\n/g, ' ');
const where = (f: Finding) => (f.file !== undefined && f.line !== undefined ? `${f.file.replace(`${process.cwd()}/`, '')}:${f.line}` : f.pointer || '/');
const SEV_COLOUR: Readonly<Record<Severity, string>> = { critical: '#a50000', high: '#d1321f', medium: '#d18b1f', low: '#4b7bd1' };

function frameworkCounts(findings: readonly Finding[]): { label: string; count: number }[] {
  const counts = new Map<string, number>();
  for (const f of findings) for (const l of mappingLabels(f.mappings)) counts.set(l, (counts.get(l) ?? 0) + 1);
  const order = [...Object.keys(NHI), ...Object.keys(ASI), ...Object.keys(MAESTRO).map((k) => `MAESTRO ${k}`)];
  const pos = (label: string) => order.findIndex((o) => label.startsWith(`${o}:`) || label.startsWith(`${o} `));
  return [...counts.entries()].map(([label, count]) => ({ label, count })).sort((a, b) => pos(a.label) - pos(b.label));
}

export function renderMarkdown(report: ReviewReport, graph: PluginGraph): string {
  const out: string[] = [];
  const p = report.policy;
  out.push(`# Leash governance review`, '');
  out.push(
    `Policy: \`${p.path ? p.path.replace(`${process.cwd()}/`, '') : 'policy'}\`${p.digest ? ` (sha256 \`${p.digest.slice(0, 12)}\`)` : ''}, ${p.plugins} plugins, ${p.grants} grants, ${p.exceptions} exceptions. Generated ${report.generated_at}.`,
    '',
  );
  out.push(
    report.evidence
      ? `Evidence: ${report.evidence.sources.join(', ')} from ${report.evidence.since.slice(0, 10)} to ${report.evidence.until.slice(0, 10)}${report.evidence.covers_window ? '.' : ` (history reaches back only to ${report.evidence.oldest?.slice(0, 10) ?? 'nothing'}: rules about unused access were skipped).`}`
      : 'Evidence: the policy only (no store was read: the rules about use did not run).',
    '',
  );
  out.push('| severity | findings |', '|---|---|', ...SEVERITIES.map((s) => `| ${s} | ${report.summary[s]} |`), `| **total** | **${report.summary.total}** |`, '');
  out.push('## Plugin graph', '', 'Plugins, the APIs they reach (edges labelled by effect), delegation edges; toxic paths in red.', '', '```mermaid', renderMermaid(graph), '```', '');
  out.push('## Findings', '');
  if (report.findings.length === 0) out.push('No findings.', '');
  for (const sev of SEVERITIES) {
    const list = report.findings.filter((f) => f.severity === sev);
    if (list.length === 0) continue;
    out.push(`### ${sev} (${list.length})`, '', '| rule | plugin | where | finding | fix | maps to |', '|---|---|---|---|---|---|');
    for (const f of list) out.push(`| \`${f.rule}\` | ${md(f.plugin ?? '')} | \`${md(where(f))}\` | ${md(f.message)} | ${md(f.fix)} | ${md(mappingLabels(f.mappings).join('; '))} |`);
    out.push('');
  }
  const counts = frameworkCounts(report.findings);
  if (counts.length > 0) {
    out.push('## By framework', '', '| category | findings |', '|---|---|', ...counts.map((c) => `| ${md(c.label)} | ${c.count} |`), '');
  }
  out.push(`Sources: [OWASP Top 10 Non-Human Identities 2025](${NHI_SOURCE}), [OWASP Top 10 for Agentic Applications 2026](${ASI_SOURCE}), [CSA MAESTRO](${MAESTRO_SOURCE}).`, '');
  return out.join('\n');
}

export function renderHtml(report: ReviewReport, graph: PluginGraph): string {
  const p = report.policy;
  const rows = report.findings
    .map(
      (f) =>
        `<tr class="finding sev-${f.severity}" data-rule="${esc(f.rule)}" data-fingerprint="${f.fingerprint}"><td><span class="sev" style="background:${SEV_COLOUR[f.severity]}">${f.severity}</span></td><td><code>${esc(f.rule)}</code><div class="title">${esc(f.title)}</div></td><td>${esc(f.plugin ?? '')}</td><td><code>${esc(where(f))}</code></td><td>${esc(f.message)}<div class="fix"><b>Fix:</b> ${esc(f.fix)}</div></td><td class="maps">${mappingLabels(
          f.mappings,
        )
          .map((l) => `<span>${esc(l)}</span>`)
          .join('')}</td></tr>`,
    )
    .join('\n');
  const counts = frameworkCounts(report.findings);
  const evidence = report.evidence
    ? `Evidence: ${esc(report.evidence.sources.join(', '))} from ${report.evidence.since.slice(0, 10)} to ${report.evidence.until.slice(0, 10)}${report.evidence.covers_window ? '' : ` (history reaches back only to ${esc(report.evidence.oldest?.slice(0, 10) ?? 'nothing')}: rules about unused access were skipped)`}.`
    : 'Evidence: the policy only (no store was read: the rules about use did not run).';
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Leash governance review</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:14px/1.45 system-ui,sans-serif;margin:24px;color:#222;max-width:1400px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin-top:28px}
.summary span{display:inline-block;margin-right:10px;padding:3px 10px;border-radius:12px;color:#fff}
table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #ddd;padding:6px 8px;vertical-align:top;text-align:left}
.sev{color:#fff;border-radius:4px;padding:1px 6px;font-size:12px}.title{color:#555;font-size:12px}
.fix{margin-top:4px;color:#333}.maps span{display:block;font-size:11px;color:#555;white-space:nowrap}
.graph{overflow:auto;border:1px solid #ddd;padding:8px;background:#fcfcfc}
footer{margin-top:30px;font-size:12px;color:#555}
</style></head><body>
<h1>Leash governance review</h1>
<p>Policy <code>${esc(p.path ? p.path.replace(`${process.cwd()}/`, '') : 'policy')}</code>${p.digest ? ` (sha256 <code>${p.digest.slice(0, 12)}</code>)` : ''}: ${p.plugins} plugins, ${p.grants} grants, ${p.exceptions} exceptions. Generated ${esc(report.generated_at)}.</p>
<p>${evidence}</p>
<p class="summary">${SEVERITIES.map((s) => `<span style="background:${SEV_COLOUR[s]}">${report.summary[s]} ${s}</span>`).join('')}<b>${report.summary.total} findings</b></p>
<h2>Plugin graph</h2>
<p>Plugins (border: risk tier) and the APIs they reach, one edge per grant coloured by effect; delegation edges on the left; toxic paths in red (dashed: blocked at exchange time).</p>
<div class="graph">
${renderPicture(graph)}
</div>
<h2>Findings</h2>
${
  report.findings.length === 0
    ? '<p>No findings.</p>'
    : `<table><thead><tr><th>severity</th><th>rule</th><th>plugin</th><th>where</th><th>finding</th><th>maps to</th></tr></thead><tbody>
${rows}
</tbody></table>`
}
${counts.length > 0 ? `<h2>By framework</h2><table><thead><tr><th>category</th><th>findings</th></tr></thead><tbody>${counts.map((c) => `<tr><td>${esc(c.label)}</td><td>${c.count}</td></tr>`).join('')}</tbody></table>` : ''}
<footer>Mappings: <a href="${NHI_SOURCE}">OWASP Top 10 Non-Human Identities 2025</a>, <a href="${ASI_SOURCE}">OWASP Top 10 for Agentic Applications 2026</a>, <a href="${MAESTRO_SOURCE}">CSA MAESTRO</a>. Rules: docs/review.md.</footer>
</body></html>
`;
}
