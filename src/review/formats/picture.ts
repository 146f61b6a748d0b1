import type { PluginGraph } from '../graph.js';

/**
 * The plugin graph as an inline SVG laid out here (no external assets): plugins on the
 * left, audiences on the right, one edge per grant coloured by its effect, delegation
 * edges as arcs on the left, toxic paths in red (solid when nothing blocks them at
 * exchange time, dashed when a rule does). Elements carry `data-*` attributes so tests and
 * readers can find a plugin, an audience or a toxic edge.
 */

export const EFFECT_COLOURS: Readonly<Record<string, string>> = {
  read: '#4b7bd1',
  'read-sensitive': '#d18b1f',
  write: '#8a4fd1',
  exfiltrate: '#d1321f',
  admin: '#222222',
};
const RISK_COLOURS: Readonly<Record<string, string>> = { low: '#6aa84f', medium: '#f1c232', high: '#e69138', critical: '#cc0000' };
const TOXIC = '#e00000';

export const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
const clip = (s: string, n: number) => (s.length > n ? `${s.slice(0, n - 1)}…` : s);

const ROW = 30;
const TOP = 60;
const PLUGIN_X = 170;
const NODE_W = 190;
const AUD_X = 640;
const AUD_W = 260;

export function renderPicture(graph: PluginGraph): string {
  const rows = Math.max(graph.plugins.length, graph.audiences.length, 1);
  const height = TOP + rows * ROW + 40;
  const width = AUD_X + AUD_W + 30;
  const py = new Map(graph.plugins.map((p, i) => [p.id, TOP + i * ROW + ROW / 2]));
  const ay = new Map(graph.audiences.map((a, i) => [a, TOP + i * ROW + ROW / 2]));

  // Which edges lie on a toxic path, and whether any such path is open (unblocked).
  const toxicDelegation = new Map<string, boolean>();
  const toxicGrant = new Map<string, boolean>();
  for (const path of graph.paths.filter((p) => p.kind === 'toxic')) {
    const open = path.blocking === 'open' || path.blocking === 'approval';
    for (let i = 0; i + 1 < path.hops.length; i++) {
      const k = `${path.hops[i]}>${path.hops[i + 1]}`;
      toxicDelegation.set(k, (toxicDelegation.get(k) ?? false) || open);
    }
    for (const end of [path.from, path.to]) {
      const k = `${end.plugin}>${end.audience}`;
      toxicGrant.set(k, (toxicGrant.get(k) ?? false) || open);
    }
  }

  const parts: string[] = [];
  parts.push(
    `<svg xmlns="http://www.w3.org/2000/svg" class="leash-graph" role="img" aria-label="Plugin graph" viewBox="0 0 ${width} ${height}" width="${width}" height="${height}" font-family="system-ui, sans-serif" font-size="12">`,
  );
  parts.push(
    '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerUnits="userSpaceOnUse" markerWidth="9" markerHeight="9" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker>',
  );
  parts.push(
    `<marker id="arrow-toxic" viewBox="0 0 10 10" refX="9" refY="5" markerUnits="userSpaceOnUse" markerWidth="9" markerHeight="9" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="${TOXIC}"/></marker></defs>`,
  );
  parts.push(`<text x="${PLUGIN_X}" y="24" font-weight="bold">plugins (border: risk tier)</text><text x="${AUD_X}" y="24" font-weight="bold">audiences (APIs)</text>`);
  let lx = PLUGIN_X;
  for (const [effect, colour] of Object.entries(EFFECT_COLOURS)) {
    parts.push(`<line x1="${lx}" y1="42" x2="${lx + 18}" y2="42" stroke="${colour}" stroke-width="3"/><text x="${lx + 22}" y="46">${effect}</text>`);
    lx += 40 + effect.length * 6.5;
  }
  parts.push(`<line x1="${lx}" y1="42" x2="${lx + 18}" y2="42" stroke="${TOXIC}" stroke-width="4"/><text x="${lx + 22}" y="46">toxic path</text>`);

  // Grant edges under the nodes.
  for (const p of graph.plugins) {
    for (const g of p.grants) {
      const y1 = py.get(p.id)!;
      const y2 = ay.get(g.audience)!;
      const toxic = toxicGrant.get(`${p.id}>${g.audience}`);
      const colour = toxic !== undefined ? TOXIC : (EFFECT_COLOURS[g.effect] ?? '#999');
      const x1 = PLUGIN_X + NODE_W;
      const mid = (x1 + AUD_X) / 2;
      parts.push(
        `<path class="grant-edge effect-${g.effect}${toxic !== undefined ? ' toxic' : ''}" data-plugin="${esc(p.id)}" data-audience="${esc(g.audience)}" data-effect="${g.effect}" d="M${x1},${y1} C${mid},${y1} ${mid},${y2} ${AUD_X},${y2}" fill="none" stroke="${colour}" stroke-width="${toxic !== undefined ? 3 : 1.6}"${toxic === false ? ' stroke-dasharray="6 4"' : ''} opacity="0.85"><title>${esc(`${p.id} → ${g.audience}: ${g.effect}`)}</title></path>`,
      );
    }
  }
  // Delegation arcs on the left of the plugin column.
  for (const d of graph.delegation) {
    const y1 = py.get(d.from)!;
    const y2 = py.get(d.to)!;
    const bulge = Math.min(150, 30 + Math.abs(y2 - y1) / 3);
    const key = `${d.from}>${d.to}`;
    const toxic = toxicDelegation.get(key);
    const colour = toxic !== undefined ? TOXIC : '#555';
    parts.push(
      `<path class="delegation${toxic !== undefined ? ' toxic' : ''}" data-from="${esc(d.from)}" data-to="${esc(d.to)}" d="M${PLUGIN_X},${y1} C${PLUGIN_X - bulge},${y1} ${PLUGIN_X - bulge},${y2} ${PLUGIN_X},${y2}" fill="none" stroke="${colour}" stroke-width="${toxic !== undefined ? 3 : 1.5}"${toxic === false ? ' stroke-dasharray="6 4"' : ''} marker-end="url(#${toxic !== undefined ? 'arrow-toxic' : 'arrow'})"><title>${esc(`${d.from} delegates to ${d.to}`)}</title></path>`,
    );
  }
  // Nodes on top.
  for (const p of graph.plugins) {
    const y = py.get(p.id)! - 11;
    const effects = [...p.effects].join(', ');
    parts.push(
      `<g class="plugin" data-plugin="${esc(p.id)}" data-risk="${p.risk}"><rect x="${PLUGIN_X}" y="${y}" width="${NODE_W}" height="22" rx="6" fill="#fff" stroke="${RISK_COLOURS[p.risk] ?? '#999'}" stroke-width="2.5"/><text x="${PLUGIN_X + 8}" y="${y + 15}">${esc(clip(p.id, 26))}</text><title>${esc(`${p.id} (${p.risk}, owner ${p.owner}): ${effects}`)}</title></g>`,
    );
  }
  for (const a of graph.audiences) {
    const y = ay.get(a)! - 11;
    parts.push(
      `<g class="audience" data-audience="${esc(a)}"><rect x="${AUD_X}" y="${y}" width="${AUD_W}" height="22" rx="3" fill="#f4f4f4" stroke="#888"/><text x="${AUD_X + 8}" y="${y + 15}">${esc(clip(a.replace(/^https?:\/\//, ''), 38))}</text><title>${esc(a)}</title></g>`,
    );
  }
  parts.push('</svg>');
  return parts.join('\n');
}

/** The same graph as a Mermaid flowchart, for Markdown (GitHub renders it). */
export function renderMermaid(graph: PluginGraph): string {
  const id = (prefix: string, i: number) => `${prefix}${i}`;
  const pIndex = new Map(graph.plugins.map((p, i) => [p.id, i]));
  const aIndex = new Map(graph.audiences.map((a, i) => [a, i]));
  const label = (s: string) => s.replace(/"/g, "'");
  const lines = ['flowchart LR'];
  graph.plugins.forEach((p, i) => lines.push(`  ${id('p', i)}["${label(p.id)} (${p.risk})"]`));
  graph.audiences.forEach((a, i) => lines.push(`  ${id('a', i)}[/"${label(a)}"/]`));
  const linkStyles: string[] = [];
  let link = 0;
  const toxicPairs = new Set(
    graph.paths.filter((p) => p.kind === 'toxic').flatMap((p) => [...p.hops.slice(1).map((h, i) => `${p.hops[i]}>${h}`), `${p.to.plugin}>${p.to.audience}`, `${p.from.plugin}>${p.from.audience}`]),
  );
  for (const p of graph.plugins) {
    for (const g of p.grants) {
      lines.push(`  ${id('p', pIndex.get(p.id)!)} -- ${g.effect} --> ${id('a', aIndex.get(g.audience)!)}`);
      linkStyles.push(`  linkStyle ${link++} stroke:${toxicPairs.has(`${p.id}>${g.audience}`) ? TOXIC : (EFFECT_COLOURS[g.effect] ?? '#999')}`);
    }
  }
  for (const d of graph.delegation) {
    lines.push(`  ${id('p', pIndex.get(d.from)!)} -. delegates .-> ${id('p', pIndex.get(d.to)!)}`);
    linkStyles.push(`  linkStyle ${link++} stroke:${toxicPairs.has(`${d.from}>${d.to}`) ? TOXIC : '#555'}`);
  }
  return [...lines, ...linkStyles].join('\n');
}
