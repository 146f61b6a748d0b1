import type { Finding } from '../finding.js';
import type { ReviewReport } from '../review.js';
import { SEVERITIES } from '../rules.js';

const where = (f: Finding): string => (f.file !== undefined && f.line !== undefined ? `${shortPath(f.file)}:${f.line}` : f.pointer || '/');

function shortPath(file: string): string {
  const cwd = process.cwd();
  return file.startsWith(`${cwd}/`) ? file.slice(cwd.length + 1) : file;
}

function wrap(text: string, width: number, indent: string): string {
  const words = text.split(/\s+/);
  const lines: string[] = [];
  let line = '';
  for (const w of words) {
    if (line.length > 0 && line.length + 1 + w.length > width) {
      lines.push(line);
      line = w;
    } else {
      line = line ? `${line} ${w}` : w;
    }
  }
  if (line) lines.push(line);
  return lines.map((l, i) => (i === 0 ? l : `${indent}${l}`)).join('\n');
}

export function summaryLine(report: ReviewReport): string {
  const s = report.summary;
  return `${s.total} finding${s.total === 1 ? '' : 's'}: ${SEVERITIES.map((sev) => `${s[sev]} ${sev}`).join(', ')}`;
}

function header(report: ReviewReport): string[] {
  const p = report.policy;
  const lines = [
    `leash review: ${p.path ? shortPath(p.path) : 'policy'} (${p.plugins} plugins, ${p.grants} grants, ${p.exceptions} exception${p.exceptions === 1 ? '' : 's'})`,
    report.evidence
      ? `evidence: ${report.evidence.sources.join(', ')} from ${report.evidence.since.slice(0, 10)} to ${report.evidence.until.slice(0, 10)}${report.evidence.covers_window ? '' : ` (history only reaches back to ${report.evidence.oldest?.slice(0, 10) ?? 'nothing'}: absence-of-use rules skipped)`}`
      : 'evidence: policy only (pass --store for the use rules)',
    summaryLine(report),
  ];
  return lines;
}

/** A readable table grouped by plugin (findings about no one plugin come last). */
export function renderText(report: ReviewReport): string {
  const out = [...header(report), ''];
  if (report.findings.length === 0) return `${out.join('\n')}no findings\n`;
  const groups = new Map<string, Finding[]>();
  for (const f of report.findings) {
    const key = f.plugin ?? '';
    groups.set(key, [...(groups.get(key) ?? []), f]);
  }
  const keys = [...groups.keys()].sort((a, b) => (a === '' ? 1 : b === '' ? -1 : a.localeCompare(b)));
  const ruleWidth = Math.max(4, ...report.findings.map((f) => f.rule.length));
  const whereWidth = Math.max(5, ...report.findings.map((f) => where(f).length));
  const indent = ' '.repeat(2 + 9 + 1 + ruleWidth + 1 + whereWidth + 1);
  for (const key of keys) {
    out.push(key === '' ? 'policy-wide' : `plugin ${key}`);
    out.push(`  ${'SEVERITY'.padEnd(9)} ${'RULE'.padEnd(ruleWidth)} ${'WHERE'.padEnd(whereWidth)} FINDING`);
    for (const f of groups.get(key)!) {
      out.push(`  ${f.severity.padEnd(9)} ${f.rule.padEnd(ruleWidth)} ${where(f).padEnd(whereWidth)} ${wrap(f.message, 100, indent)}`);
      out.push(`${indent}fix: ${wrap(f.fix, 95, `${indent}     `)}`);
    }
    out.push('');
  }
  return `${out.join('\n')}`;
}
