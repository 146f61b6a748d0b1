import type { LoadResult } from './load.js';
import type { ServerName, WorkloadName } from './options.js';
import type { ProfileSummary } from './profile.js';

export interface RunRecord extends LoadResult {
  readonly workload: WorkloadName;
  readonly server: ServerName;
  /** Server CPU seconds during the measured run: main thread and other threads (libuv pool, V8 helpers). */
  readonly serverCpu: Record<string, number>;
  /** Server CPU per answered request, µs, all threads. */
  readonly cpuMicrosPerRequest: number;
}

const pad = (s: string, n: number, right = false) => (right ? s.padEnd(n) : s.padStart(n));

export function formatTable(runs: readonly RunRecord[]): string {
  const head = ['workload', 'server', 'req/s', 'p50 ms', 'p99 ms', 'non-2xx', 'errors', 'cpu µs/req', 'cpu main/other s'];
  const widths = [9, 9, 9, 8, 8, 8, 7, 11, 17];
  const line = (cells: string[]) => cells.map((c, i) => pad(c, widths[i] as number, i < 2)).join('  ');
  const rows = runs.map((r) =>
    line([
      r.workload,
      r.server,
      r.reqPerSec.toFixed(0),
      r.p50.toFixed(2),
      r.p99.toFixed(2),
      String(r.non2xx),
      String(r.errors + r.timeouts),
      r.cpuMicrosPerRequest.toFixed(0),
      `${(r.serverCpu.main ?? 0).toFixed(1)}/${(r.serverCpu.other ?? 0).toFixed(1)}`,
    ]),
  );
  return [line(head), line(widths.map((w) => '-'.repeat(w))), ...rows].join('\n');
}

export interface Ratio {
  readonly workload: WorkloadName;
  readonly leashOverBaseline: number;
}

export function ratios(runs: readonly RunRecord[]): Ratio[] {
  const out: Ratio[] = [];
  for (const workload of new Set(runs.map((r) => r.workload))) {
    const base = runs.find((r) => r.workload === workload && r.server === 'baseline');
    const leash = runs.find((r) => r.workload === workload && r.server === 'leash');
    if (base && leash && base.reqPerSec > 0) out.push({ workload, leashOverBaseline: Math.round((leash.reqPerSec / base.reqPerSec) * 1000) / 1000 });
  }
  return out;
}

export function formatProfile(summary: ProfileSummary): string {
  const rows = (title: string, list: ProfileSummary['byPackage']) =>
    [title, ...list.map((e) => `  ${e.share.toFixed(1).padStart(5)}%  ${e.ms.toFixed(0).padStart(7)} ms  ${e.name}`)].join('\n');
  return [
    `main-thread self time, ${summary.sampledMs} ms sampled${summary.fromMicros === undefined ? ' (including boot)' : ' after the server was ready'}, idle excluded`,
    rows('by package / module (self time):', summary.byPackage),
    rows('by package / module, node built-ins and native code charged to their caller:', summary.byCallingPackage),
    rows('by function:', summary.byFunction),
  ].join('\n');
}
