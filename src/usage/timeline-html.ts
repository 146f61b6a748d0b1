import type { Timeline, TimelineEntry, TimelineKind } from './timeline.js';

/**
 * The HTML form of a task timeline: one self-contained page (no script, no external
 * resource; served with a CSP that allows neither) with a swim-lane picture, one lane per
 * plugin, that an incident responder reads at a glance, and the full list below it.
 * Every value from events is escaped: plugin ids, routes and justifications are input.
 */

export const TIMELINE_STYLE: Readonly<Record<TimelineKind, { color: string; shape: 'circle' | 'cross' | 'diamond' | 'bar' | 'triangle' | 'square' | 'alert'; label: string }>> = {
  task: { color: '#444', shape: 'square', label: 'task opened / ended' },
  exchange: { color: '#1a7f37', shape: 'circle', label: 'credential issued' },
  delegation: { color: '#0969da', shape: 'circle', label: 'issued through a delegation hop' },
  denied: { color: '#cf222e', shape: 'cross', label: 'exchange denied' },
  approval: { color: '#8250df', shape: 'diamond', label: 'approval' },
  use: { color: '#6e7781', shape: 'bar', label: 'use (per jti/route/minute; height = calls)' },
  refusal: { color: '#bc4c00', shape: 'bar', label: 'use refused by the resource server' },
  downstream: { color: '#1b7c83', shape: 'triangle', label: 'downstream event (AWS, Vault)' },
  revocation: { color: '#000', shape: 'square', label: 'revocation' },
  anomaly: { color: '#d4a72c', shape: 'alert', label: 'anomaly' },
  budget: { color: '#d4a72c', shape: 'alert', label: 'budget used up' },
};

export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] as string);
}

const iso = (ms: number) => new Date(ms).toISOString();
const LANE_H = 46;
const LEFT = 170;
const WIDTH = 1100;
const TOP = 28;

function marker(e: TimelineEntry, x: number, y: number): string {
  const s = TIMELINE_STYLE[e.kind];
  const title = `<title>${escapeHtml(`${iso(e.at)} ${e.kind}: ${e.what} [${e.who}]`)}</title>`;
  switch (s.shape) {
    case 'circle':
      return `<circle cx="${x}" cy="${y}" r="6" fill="${s.color}">${title}</circle>`;
    case 'cross':
      return `<path d="M${x - 6} ${y - 6}L${x + 6} ${y + 6}M${x + 6} ${y - 6}L${x - 6} ${y + 6}" stroke="${s.color}" stroke-width="3">${title}</path>`;
    case 'diamond':
      return `<path d="M${x} ${y - 8}L${x + 8} ${y}L${x} ${y + 8}L${x - 8} ${y}Z" fill="${s.color}">${title}</path>`;
    case 'bar': {
      const calls = typeof e.detail.calls === 'number' ? e.detail.calls : 1;
      const h = Math.min(LANE_H - 10, 4 + 5 * Math.log2(1 + calls));
      return `<rect x="${x - 3}" y="${y + LANE_H / 2 - 6 - h}" width="6" height="${h}" fill="${s.color}" opacity="0.8">${title}</rect>`;
    }
    case 'triangle':
      return `<path d="M${x} ${y - 7}L${x + 7} ${y + 6}L${x - 7} ${y + 6}Z" fill="${s.color}">${title}</path>`;
    case 'square':
      return `<rect x="${x - 6}" y="${y - 6}" width="12" height="12" fill="${s.color}">${title}</rect>`;
    case 'alert':
      return `<g>${title}<path d="M${x} ${y - 9}L${x + 9} ${y + 7}L${x - 9} ${y + 7}Z" fill="${s.color}" stroke="#000" stroke-width="1"/><text x="${x}" y="${y + 5}" font-size="10" text-anchor="middle" font-weight="bold">!</text></g>`;
  }
}

/**
 * The swim-lane picture alone (an `<svg>` element): colours are SVG attributes, not inline
 * styles, so the console can show it under a CSP without 'unsafe-inline'.
 */
export function timelineSvg(t: Timeline): string {
  const entries = t.entries;
  const start = Math.min(t.task.createdAt, ...entries.map((e) => e.at));
  const end = Math.max(start + 1000, t.task.endedAt ?? 0, ...entries.map((e) => e.at));
  const span = end - start;
  const plotW = WIDTH - LEFT - 20;
  const xOf = (at: number) => Math.round(LEFT + ((at - start) / span) * plotW);
  const height = TOP + t.lanes.length * LANE_H + 30;
  const parts: string[] = [];
  t.lanes.forEach((lane, i) => {
    const y = TOP + i * LANE_H;
    parts.push(`<rect x="0" y="${y}" width="${WIDTH}" height="${LANE_H}" fill="${i % 2 ? '#f6f8fa' : '#fff'}"/>`);
    parts.push(`<text x="8" y="${y + LANE_H / 2 + 4}" font-size="13" font-family="monospace">${escapeHtml(lane.length > 22 ? `${lane.slice(0, 21)}…` : lane)}</text>`);
    parts.push(`<line x1="${LEFT}" y1="${y + LANE_H / 2}" x2="${WIDTH - 20}" y2="${y + LANE_H / 2}" stroke="#d0d7de"/>`);
  });
  // Time axis: five ticks.
  for (let k = 0; k <= 4; k++) {
    const at = start + (span * k) / 4;
    const x = xOf(at);
    parts.push(`<line x1="${x}" y1="${TOP - 4}" x2="${x}" y2="${height - 26}" stroke="#eaeef2"/>`);
    parts.push(`<text x="${x}" y="${height - 10}" font-size="11" text-anchor="${k === 0 ? 'start' : k === 4 ? 'end' : 'middle'}" font-family="monospace">${escapeHtml(iso(at).slice(11, 19))}</text>`);
  }
  if (t.task.endedAt !== undefined) {
    const x = xOf(t.task.endedAt);
    parts.push(`<line x1="${x}" y1="${TOP - 6}" x2="${x}" y2="${height - 26}" stroke="#000" stroke-dasharray="4 3"><title>task ended ${escapeHtml(iso(t.task.endedAt))}</title></line>`);
  }
  // Anomalies ride above the lane line and are drawn last, so a revocation at the same instant never hides one.
  const ordered = [...entries].sort((a, b) => Number(a.kind === 'anomaly' || a.kind === 'budget') - Number(b.kind === 'anomaly' || b.kind === 'budget'));
  for (const e of ordered) {
    const lane = t.lanes.indexOf(e.lane);
    const alert = e.kind === 'anomaly' || e.kind === 'budget';
    parts.push(marker(e, xOf(e.at), TOP + lane * LANE_H + LANE_H / 2 - (alert ? 11 : 0)));
  }
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" role="img" aria-label="swim lanes of task ${escapeHtml(t.task.id)}">
${parts.join('\n')}
</svg>`;
}

/** The kinds present in a timeline, in legend order. */
export const timelineKinds = (t: Timeline): TimelineKind[] => (Object.keys(TIMELINE_STYLE) as TimelineKind[]).filter((k) => t.entries.some((e) => e.kind === k));

export function timelineHtml(t: Timeline): string {
  const entries = t.entries;
  const legend = timelineKinds(t)
    .map((k) => `<li><span class="sw" style="background:${TIMELINE_STYLE[k].color}"></span>${escapeHtml(k)}: ${escapeHtml(TIMELINE_STYLE[k].label)}</li>`)
    .join('');
  const rows = entries
    .map(
      (e) =>
        `<tr class="k-${e.kind}"><td>${escapeHtml(iso(e.at))}</td><td>${escapeHtml(e.lane)}</td><td>${escapeHtml(e.kind)}</td><td>${escapeHtml(e.what)}</td><td>${escapeHtml(e.who)}</td><td>${e.seq ?? ''}</td></tr>`,
    )
    .join('\n');
  const task = t.task;
  const anomalies = entries.filter((e) => e.kind === 'anomaly' || e.kind === 'budget').length;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Leash task ${escapeHtml(task.id)}</title>
<style>
body{font-family:system-ui,sans-serif;margin:24px;color:#1f2328}
h1{font-size:20px;margin:0 0 4px}
.meta{color:#57606a;margin:0 0 12px;font-size:14px}
.alert{color:#9a6700;font-weight:bold}
ul.legend{list-style:none;padding:0;display:flex;flex-wrap:wrap;gap:14px;font-size:12px}
.sw{display:inline-block;width:10px;height:10px;margin-right:4px}
table{border-collapse:collapse;font-size:12px;width:100%}
td,th{border-bottom:1px solid #d0d7de;padding:3px 6px;text-align:left;vertical-align:top}
th{background:#f6f8fa}
tr.k-anomaly,tr.k-budget{background:#fff8c5}
tr.k-denied,tr.k-refusal{background:#ffebe9}
tr.k-revocation{background:#eaeef2}
td:first-child{font-family:monospace;white-space:nowrap}
</style></head><body>
<h1>Task ${escapeHtml(task.id)}</h1>
<p class="meta">${escapeHtml(task.state)} · opened ${escapeHtml(iso(task.createdAt))} by ${escapeHtml(task.createdBy)} · expires ${escapeHtml(iso(task.expiresAt))}${task.endedAt !== undefined ? ` · ended ${escapeHtml(iso(task.endedAt))} by ${escapeHtml(task.endedBy ?? '')}` : ''} · plugins ${escapeHtml(task.plugins.join(', '))} · ${entries.length} entries${anomalies > 0 ? ` · <span class="alert">${anomalies} anomal${anomalies === 1 ? 'y' : 'ies'}</span>` : ''}${t.truncated ? ' · truncated' : ''}</p>
${timelineSvg(t)}
<ul class="legend">${legend}</ul>
<table><thead><tr><th>time (UTC)</th><th>lane</th><th>kind</th><th>what</th><th>who</th><th>seq</th></tr></thead><tbody>
${rows}
</tbody></table>
</body></html>
`;
}
