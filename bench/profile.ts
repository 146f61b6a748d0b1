import { readFile } from 'node:fs/promises';
import { sep } from 'node:path';

/** The parts of V8's .cpuprofile format (Chrome DevTools protocol Profiler.Profile) read here. */
interface CpuProfile {
  readonly nodes: readonly { id: number; callFrame: { functionName: string; url: string }; children?: number[] }[];
  readonly startTime: number;
  readonly endTime: number;
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
}

export interface SelfTime {
  readonly name: string;
  readonly ms: number;
  readonly share: number;
}

export interface ProfileSummary {
  readonly sampledMs: number;
  readonly fromMicros: number | undefined;
  readonly byFunction: readonly SelfTime[];
  readonly byPackage: readonly SelfTime[];
  /** Like byPackage, but time in node built-ins and native code is charged to the nearest package or Leash module that called it. */
  readonly byCallingPackage: readonly SelfTime[];
}

/** Frames whose time is better charged to whoever called them. */
const isPlumbing = (pkg: string) => pkg.startsWith('node:') || pkg.startsWith('(native)');

/**
 * Where a frame's code lives: `node_modules/<pkg>` (scoped packages kept whole, the
 * innermost node_modules wins), a Leash module (`src/<folder>`), a node built-in
 * (`node:crypto`, `node:http`, ...), or a V8 pseudo-frame (`(gc)`, `(program)`, `(idle)`).
 * Native code without a URL (the C++ behind node:crypto's sign and verify, JSON, Buffer)
 * is reported as `(native) <name>` so OpenSSL time is visible as such.
 */
export function packageOf(url: string, functionName: string, root: string): string {
  if (url === '') {
    if (functionName === '(garbage collector)') return '(gc)';
    if (functionName.startsWith('(')) return functionName;
    return `(native) ${functionName || 'anonymous'}`;
  }
  const path = url.startsWith('file://') ? decodeURIComponent(url.slice('file://'.length)) : url;
  // Leash's own code first: the compiled tree the bench may run lives under node_modules/.cache.
  const own = path.startsWith(root) ? path.slice(root.length).replace(/^\/+/, '') : undefined;
  if (own !== undefined && !own.startsWith(`node_modules${sep}`)) {
    const parts = own.split(sep);
    if (parts[0] === 'src') return parts.length > 2 ? `leash src/${parts[1]}` : `leash ${own}`;
    return `leash ${parts[0]}`;
  }
  const nm = path.lastIndexOf(`${sep}node_modules${sep}`);
  if (nm >= 0) {
    const parts = path.slice(nm + '/node_modules/'.length).split(sep);
    return parts[0]?.startsWith('@') ? `${parts[0]}/${parts[1]}` : (parts[0] ?? path);
  }
  if (path.startsWith('node:')) return nodeBuiltin(path.slice('node:'.length));
  return path;
}

/** node:internal/crypto/sig → node:crypto, _http_server → node:http, and so on. */
function nodeBuiltin(id: string): string {
  const rest = id.replace(/^internal\//, '');
  if (/^(_http|http|internal\/http|https)/.test(rest)) return 'node:http';
  if (/^(streams|stream|_stream)/.test(rest)) return 'node:stream';
  if (/^(url|querystring)/.test(rest)) return 'node:url';
  if (/^(timers|process\/task_queues|async_hooks)/.test(rest)) return 'node:event-loop';
  return `node:${rest.split('/')[0]}`;
}

function top(map: Map<string, number>, total: number, n: number): SelfTime[] {
  return [...map.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, n)
    .map(([name, us]) => ({ name, ms: Math.round(us / 100) / 10, share: total === 0 ? 0 : Math.round((us / total) * 1000) / 10 }));
}

/**
 * Self time by function and by package from a .cpuprofile. Each sample is charged the time
 * until the next sample (the last one gets nothing). Samples before `fromMicros` (the
 * server's ready time, same monotonic clock as the profile) are skipped, so boot and module
 * loading do not count; `(idle)` is dropped: it is time the main thread had nothing to do.
 */
export function summariseProfile(profile: CpuProfile, opts: { root: string; fromMicros?: number; top?: number }): ProfileSummary {
  const n = opts.top ?? 15;
  const nodes = new Map(profile.nodes.map((node) => [node.id, node]));
  const parents = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parents.set(child, node.id);
  const labels = new Map<number, string>();
  const label = (id: number): string => {
    let cached = labels.get(id);
    if (cached === undefined) {
      cached = functionLabel(id, nodes, parents, opts.root);
      labels.set(id, cached);
    }
    return cached;
  };
  const inRange = opts.fromMicros !== undefined && opts.fromMicros > profile.startTime && opts.fromMicros < profile.endTime;
  const from = inRange ? (opts.fromMicros as number) : profile.startTime;
  const byFunction = new Map<string, number>();
  const byPackage = new Map<string, number>();
  const byCallingPackage = new Map<string, number>();
  const callers = new Map<number, string>();
  const caller = (id: number, own: string): string => {
    let cached = callers.get(id);
    if (cached === undefined) {
      cached = own;
      for (let up = parents.get(id); up !== undefined; up = parents.get(up)) {
        const frame = nodes.get(up)?.callFrame;
        if (!frame || frame.url === '') continue;
        const pkg = packageOf(frame.url, frame.functionName, opts.root);
        if (!isPlumbing(pkg)) {
          cached = pkg;
          break;
        }
      }
      callers.set(id, cached);
    }
    return cached;
  };
  let total = 0;
  let t = profile.startTime;
  for (let i = 0; i < profile.samples.length; i++) {
    t += profile.timeDeltas[i] ?? 0;
    const dt = profile.timeDeltas[i + 1] ?? 0;
    if (t < from || dt <= 0) continue;
    const id = profile.samples[i] as number;
    const node = nodes.get(id);
    if (!node) continue;
    const { functionName, url } = node.callFrame;
    if (functionName === '(idle)') continue;
    const pkg = packageOf(url, functionName, opts.root);
    const fn = label(id);
    byFunction.set(fn, (byFunction.get(fn) ?? 0) + dt);
    byPackage.set(pkg, (byPackage.get(pkg) ?? 0) + dt);
    const charged = isPlumbing(pkg) ? caller(id, pkg) : pkg;
    byCallingPackage.set(charged, (byCallingPackage.get(charged) ?? 0) + dt);
    total += dt;
  }
  return {
    sampledMs: Math.round(total / 1000),
    fromMicros: inRange ? from : undefined,
    byFunction: top(byFunction, total, n),
    byPackage: top(byPackage, total, n),
    byCallingPackage: top(byCallingPackage, total, n),
  };
}

/**
 * `name (file)`. Line numbers are left out: tsx serves each TypeScript module as one
 * transpiled line, so they say nothing. An anonymous function (a callback passed to
 * SQLite's run, a promise reaction) is named after its nearest named caller.
 */
function functionLabel(id: number, nodes: Map<number, CpuProfile['nodes'][number]>, parents: Map<number, number>, root: string): string {
  const node = nodes.get(id);
  if (!node) return '(unknown)';
  const { functionName, url } = node.callFrame;
  const where = url === '' ? '' : ` (${shortUrl(url, root)})`;
  if (functionName !== '') return `${functionName}${where}`;
  const named: string[] = [];
  for (let up = parents.get(id), hops = 0; up !== undefined && hops < 12 && named.length < 2; up = parents.get(up), hops++) {
    const name = nodes.get(up)?.callFrame.functionName;
    if (name && !name.startsWith('(')) named.push(name);
  }
  return `(anonymous in ${named.length > 0 ? named.join(' < ') : '?'})${where}`;
}

function shortUrl(url: string, root: string): string {
  const path = url.startsWith('file://') ? decodeURIComponent(url.slice('file://'.length)) : url;
  if (path.startsWith(root)) return path.slice(root.length).replace(/^\/+/, '');
  const nm = path.lastIndexOf('/node_modules/');
  return nm >= 0 ? path.slice(nm + 1) : path;
}

export async function readProfile(file: string): Promise<CpuProfile> {
  return JSON.parse(await readFile(file, 'utf8')) as CpuProfile;
}
