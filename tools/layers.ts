/**
 * The layers of src/ (tools/layers.json), checked: dependency-cruiser runs the rules
 * .dependency-cruiser.cjs generates from that file, and this adds what its rules cannot
 * say: no cycle between units, every unit in exactly one layer. It also draws the layer
 * picture docs/architecture.md carries.
 *
 *   tsx tools/layers.ts           check src/; every problem on stderr, exit 1 if any
 *   tsx tools/layers.ts --write   rewrite the picture in docs/architecture.md
 *   tsx tools/layers.ts --stats   unit cycles and the largest files, for a refactor note
 *
 * A unit is a folder directly under src/ (with everything below it) or a file directly in
 * src/ (broker.ts).
 */
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ICruiseResult } from 'dependency-cruiser';

export const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');

export interface Layer {
  readonly name: string;
  readonly summary: string;
  /** Unit name → what it holds (one line; the picture shows it). */
  readonly units: Readonly<Record<string, string>>;
}

export interface LayerProblem {
  /** The dependency-cruiser rule, or one of `no-unit-cycle`, `unit-unassigned`, `unit-twice`, `unit-missing`. */
  readonly rule: string;
  readonly from: string;
  readonly to?: string;
  readonly message: string;
}

export function readLayers(root = REPO_ROOT): readonly Layer[] {
  const data = JSON.parse(readFileSync(join(root, 'tools/layers.json'), 'utf8')) as { layers?: unknown };
  if (!Array.isArray(data.layers)) throw new TypeError('tools/layers.json: `layers` must be an array');
  for (const l of data.layers as Layer[]) {
    if (typeof l?.name !== 'string' || typeof l.summary !== 'string' || typeof l.units !== 'object' || l.units === null) {
      throw new TypeError('tools/layers.json: every layer has a name, a summary and units');
    }
  }
  return data.layers as Layer[];
}

/** `src/policy/grants.ts` → `policy`; `src/broker.ts` → `broker.ts`; outside src/ → undefined. */
export function unitOf(path: string): string | undefined {
  const m = /^src\/([^/]+)/.exec(path);
  return m?.[1];
}

/** Runs the dependency-cruiser CLI over `<root>/src` with the repository's rules; its JSON result. */
export function cruise(root = REPO_ROOT): Promise<ICruiseResult> {
  const bin = join(REPO_ROOT, 'node_modules/dependency-cruiser/bin/dependency-cruiser.mjs');
  const args = [bin, 'src', '--config', join(REPO_ROOT, '.dependency-cruiser.cjs'), '--output-type', 'json'];
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', reject);
    child.on('close', () => {
      // The exit code counts violations; the JSON has them all.
      try {
        resolve(JSON.parse(Buffer.concat(out).toString('utf8')) as ICruiseResult);
      } catch {
        reject(new Error(`dependency-cruiser gave no result: ${Buffer.concat(err).toString('utf8').slice(0, 2000)}`));
      }
    });
  });
}

/** Units of src/ on disk: its folders and its .ts files. */
function unitsOnDisk(root: string): string[] {
  const src = join(root, 'src');
  return readdirSync(src).filter((n) => statSync(join(src, n)).isDirectory() || n.endsWith('.ts'));
}

function unitProblems(layers: readonly Layer[], onDisk: readonly string[]): LayerProblem[] {
  const problems: LayerProblem[] = [];
  const seen = new Map<string, string>();
  for (const layer of layers) {
    for (const unit of Object.keys(layer.units)) {
      const first = seen.get(unit);
      if (first !== undefined) problems.push({ rule: 'unit-twice', from: `src/${unit}`, message: `${unit} is in two layers: ${first} and ${layer.name}` });
      seen.set(unit, layer.name);
      if (!onDisk.includes(unit))
        problems.push({ rule: 'unit-missing', from: `src/${unit}`, message: `layer ${layer.name} lists ${unit}, which src/ does not have: remove it from tools/layers.json` });
    }
  }
  for (const unit of onDisk) {
    if (!seen.has(unit)) problems.push({ rule: 'unit-unassigned', from: `src/${unit}`, message: `src/${unit} is in no layer: add it to tools/layers.json (and run npm run architecture)` });
  }
  return problems;
}

/** Cross-unit edges of the module graph: unit → unit → the module imports that make the edge. */
export function unitGraph(result: ICruiseResult): Map<string, Map<string, [string, string][]>> {
  const graph = new Map<string, Map<string, [string, string][]>>();
  for (const m of result.modules) {
    const from = unitOf(m.source);
    if (from === undefined) continue;
    for (const d of m.dependencies) {
      const to = unitOf(d.resolved);
      if (to === undefined || to === from) continue;
      let targets = graph.get(from);
      if (!targets) graph.set(from, (targets = new Map<string, [string, string][]>()));
      let edges = targets.get(to);
      if (!edges) targets.set(to, (edges = []));
      edges.push([m.source, d.resolved]);
    }
  }
  return graph;
}

/** Strongly connected components (Tarjan), largest first. */
export function stronglyConnected(graph: ReadonlyMap<string, ReadonlyMap<string, unknown>>): string[][] {
  const nodes = new Set<string>(graph.keys());
  for (const targets of graph.values()) for (const t of targets.keys()) nodes.add(t);
  let next = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const components: string[][] = [];
  const visit = (v: string): void => {
    index.set(v, next);
    low.set(v, next);
    next += 1;
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v)?.keys() ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) {
        low.set(v, Math.min(low.get(v)!, index.get(w)!));
      }
    }
    if (low.get(v) === index.get(v)) {
      const component: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        component.push(w);
      } while (w !== v);
      components.push(component.sort());
    }
  };
  for (const n of [...nodes].sort()) if (!index.has(n)) visit(n);
  return components.sort((a, b) => b.length - a.length);
}

/** A shortest unit path from `from` to `to` inside `within`. */
function pathBetween(graph: Map<string, Map<string, unknown>>, from: string, to: string, within: ReadonlySet<string>): string[] {
  const previous = new Map<string, string>([[from, from]]);
  const queue = [from];
  while (queue.length > 0) {
    const v = queue.shift()!;
    if (v === to) break;
    for (const w of graph.get(v)?.keys() ?? []) {
      if (within.has(w) && !previous.has(w)) {
        previous.set(w, v);
        queue.push(w);
      }
    }
  }
  const path = [to];
  while (path[0] !== from) path.unshift(previous.get(path[0]!)!);
  return path;
}

/** One problem per import that joins two units of a cycle, naming the way back. */
function cycleProblems(result: ICruiseResult): LayerProblem[] {
  const graph = unitGraph(result);
  const problems: LayerProblem[] = [];
  for (const component of stronglyConnected(graph)) {
    if (component.length < 2) continue;
    const members = new Set(component);
    for (const from of component) {
      for (const [to, edges] of graph.get(from) ?? []) {
        if (!members.has(to)) continue;
        const back = pathBetween(graph, to, from, members).join(' → ');
        for (const [a, b] of edges) {
          problems.push({ rule: 'no-unit-cycle', from: a, to: b, message: `${from} → ${to} closes a cycle (${back}): move the shared part down or turn the import around` });
        }
      }
    }
  }
  return problems;
}

/** Every problem of the src/ under `root`: dependency-cruiser's violations, unit cycles, units outside the layers. */
export async function checkLayering(root = REPO_ROOT, result?: ICruiseResult): Promise<LayerProblem[]> {
  const cruised = result ?? (await cruise(root));
  const comments = new Map((cruised.summary.ruleSetUsed?.forbidden ?? []).map((r) => [r.name, r.comment]));
  const fromRules: LayerProblem[] = cruised.summary.violations.map((v) => ({
    rule: v.rule.name,
    from: v.from,
    to: v.to,
    message: comments.get(v.rule.name) ?? v.rule.name,
  }));
  return [...fromRules, ...cycleProblems(cruised), ...unitProblems(readLayers(), unitsOnDisk(root))];
}

// ---- the picture -------------------------------------------------------------------------

const PICTURE_WIDTH = 100;
export const PICTURE_BEGIN = '<!-- layers:begin: generated from tools/layers.json by `npm run architecture`; a test keeps them equal -->';
export const PICTURE_END = '<!-- layers:end -->';

function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(' ')) {
    if (line !== '' && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else {
      line = line === '' ? word : `${line} ${word}`;
    }
  }
  if (line !== '') lines.push(line);
  return lines;
}

/** The layers, top to bottom, each unit with its line: what docs/architecture.md shows. */
export function renderPicture(layers: readonly Layer[]): string {
  const label = (unit: string): string => (unit.endsWith('.ts') ? unit : `${unit}/`);
  const column = 2 + Math.max(...layers.flatMap((l) => Object.keys(l.units).map((u) => label(u).length))) + 2;
  const out: string[] = ['src/, top to bottom: a unit imports its own layer and the layers below, never one above;', 'no cycles between units.'];
  for (const layer of layers) {
    out.push('');
    out.push(...wrap(`${layer.name.toUpperCase()}: ${layer.summary}`, PICTURE_WIDTH));
    for (const [unit, what] of Object.entries(layer.units)) {
      const [first, ...rest] = wrap(what, PICTURE_WIDTH - column);
      out.push(`  ${label(unit)}`.padEnd(column) + first);
      for (const more of rest) out.push(' '.repeat(column) + more);
    }
  }
  return `${PICTURE_BEGIN}\n\`\`\`\n${out.join('\n')}\n\`\`\`\n${PICTURE_END}`;
}

/** The picture block as docs/architecture.md has it now, or undefined. */
export function pictureInDoc(doc: string): string | undefined {
  const start = doc.indexOf(PICTURE_BEGIN);
  const end = doc.indexOf(PICTURE_END);
  return start < 0 || end < start ? undefined : doc.slice(start, end + PICTURE_END.length);
}

// ---- figures for a refactor note ---------------------------------------------------------

function largestFiles(root: string, count: number): [string, number][] {
  const files: [string, number][] = [];
  const walk = (dir: string): void => {
    for (const n of readdirSync(dir)) {
      const p = join(dir, n);
      if (statSync(p).isDirectory()) walk(p);
      else if (p.endsWith('.ts')) files.push([relative(root, p), readFileSync(p, 'utf8').split('\n').length - 1]);
    }
  };
  walk(join(root, 'src'));
  return files.sort((a, b) => b[1] - a[1]).slice(0, count);
}

async function main(argv: readonly string[]): Promise<number> {
  if (argv.includes('--write')) {
    const path = join(REPO_ROOT, 'docs/architecture.md');
    const doc = readFileSync(path, 'utf8');
    const current = pictureInDoc(doc);
    if (current === undefined) {
      process.stderr.write(`docs/architecture.md has no ${PICTURE_BEGIN} ... ${PICTURE_END} block\n`);
      return 1;
    }
    writeFileSync(path, doc.replace(current, renderPicture(readLayers())));
    return 0;
  }
  const result = await cruise();
  if (argv.includes('--stats')) {
    const components = stronglyConnected(unitGraph(result));
    const units = unitsOnDisk(REPO_ROOT).length;
    process.stdout.write(`units: ${units}; largest strongly connected component: ${components[0]?.length ?? 0} (${components[0]?.join(' ') ?? ''})\n`);
    process.stdout.write(`modules: ${result.modules.filter((m) => m.source.startsWith('src/')).length}; largest files:\n`);
    for (const [file, lines] of largestFiles(REPO_ROOT, 5)) process.stdout.write(`  ${String(lines).padStart(5)}  ${file}\n`);
    return 0;
  }
  const problems = await checkLayering(REPO_ROOT, result);
  for (const p of problems) process.stderr.write(`${p.rule}: ${p.from}${p.to ? ` → ${p.to}` : ''}\n    ${p.message}\n`);
  process.stderr.write(problems.length === 0 ? 'layers: no problems\n' : `layers: ${problems.length} problem(s)\n`);
  return problems.length === 0 ? 0 : 1;
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  process.exitCode = await main(process.argv.slice(2));
}
