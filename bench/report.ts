import type { LoadResult } from './load.js';
import type { ServerName, WorkloadName } from './options.js';
import type { ProfileSummary } from './profile.js';

export interface RunRecord extends LoadResult {
  readonly workload: WorkloadName;
  readonly server: ServerName;
  /** Leash's store, with `+<key backend>` when not local (the baseline has none). */
  readonly store?: string;
  /** Server CPU seconds during the measured run: main thread and other threads (libuv pool, V8 helpers). */
  readonly serverCpu: Record<string, number>;
  /** Server CPU per answered request, µs, all threads. */
  readonly cpuMicrosPerRequest: number;
  /** redis-server CPU per answered request, µs (Redis store only: it competes for the same cores). */
  readonly storeCpuMicrosPerRequest?: number;
}

const label = (r: { server: ServerName; store?: string }) => (r.store ? `${r.server}/${r.store}` : r.server);

const pad = (s: string, n: number, right = false) => (right ? s.padEnd(n) : s.padStart(n));

export function formatTable(runs: readonly RunRecord[]): string {
  const head = ['workload', 'server', 'req/s', 'p50 ms', 'p99 ms', 'non-2xx', 'errors', 'cpu µs/req', 'cpu main/other s', 'redis µs/req'];
  const widths = [10, 26, 9, 8, 8, 8, 7, 11, 17, 12];
  const line = (cells: string[]) => cells.map((c, i) => pad(c, widths[i] as number, i < 2)).join('  ');
  const rows = runs.map((r) =>
    line([
      r.workload,
      label(r),
      r.reqPerSec.toFixed(0),
      r.p50.toFixed(2),
      r.p99.toFixed(2),
      String(r.non2xx),
      String(r.errors + r.timeouts),
      r.cpuMicrosPerRequest.toFixed(0),
      // With workers, main/other add up the workers' threads (the primary's own CPU is in the total, not here).
      `${((r.serverCpu.main ?? 0) + (r.serverCpu['workers:main'] ?? 0)).toFixed(1)}/${((r.serverCpu.other ?? 0) + (r.serverCpu['workers:other'] ?? 0)).toFixed(1)}`,
      r.storeCpuMicrosPerRequest === undefined ? '' : r.storeCpuMicrosPerRequest.toFixed(0),
    ]),
  );
  return [line(head), line(widths.map((w) => '-'.repeat(w))), ...rows].join('\n');
}

export interface Ratio {
  readonly workload: WorkloadName;
  readonly store?: string;
  /** Leash's req/s over the bare-crypto baseline's. */
  readonly leashOverBaseline?: number;
  /** Leash's req/s over the ceiling's. */
  readonly leashOverCeiling?: number;
  /** The ceiling's CPU per request over Leash's (1 = as cheap as the ceiling): steadier than req/s on a shared machine. */
  readonly cpuLeashOverCeiling?: number;
}

const round3 = (n: number) => Math.round(n * 1000) / 1000;

/** Leash against the baseline and the ceiling of the same run, per workload and Leash store. */
export function ratios(runs: readonly RunRecord[]): Ratio[] {
  const out: Ratio[] = [];
  for (const leash of runs.filter((r) => r.server === 'leash')) {
    const base = runs.find((r) => r.workload === leash.workload && r.server === 'baseline');
    // Against the ceiling with as many processes: `leash/sqlite×2w` against `ceiling/×2w`.
    const workers = /×\d+w$/.exec(leash.store ?? '')?.[0];
    const ceiling = runs.find((r) => r.workload === leash.workload && r.server === 'ceiling' && r.store === workers);
    const ratio: Ratio = {
      workload: leash.workload,
      store: leash.store,
      ...(base && base.reqPerSec > 0 ? { leashOverBaseline: round3(leash.reqPerSec / base.reqPerSec) } : {}),
      ...(ceiling && ceiling.reqPerSec > 0 && leash.cpuMicrosPerRequest > 0
        ? { leashOverCeiling: round3(leash.reqPerSec / ceiling.reqPerSec), cpuLeashOverCeiling: round3(ceiling.cpuMicrosPerRequest / leash.cpuMicrosPerRequest) }
        : {}),
    };
    if (ratio.leashOverBaseline !== undefined || ratio.leashOverCeiling !== undefined) out.push(ratio);
  }
  return out;
}

/** A run with N worker processes (`×Nw` in its variant) against the same server and workload as one process. */
export interface WorkerScaling {
  readonly variant: string;
  readonly workload: WorkloadName;
  readonly workers: number;
  /** req/s with N workers over req/s with one. */
  readonly ratio: number;
}

export function workerScaling(runs: readonly RunRecord[]): WorkerScaling[] {
  const out: WorkerScaling[] = [];
  for (const r of runs) {
    const m = /^(.*?)×(\d+)w$/.exec(r.store ?? '');
    if (!m) continue;
    const base = m[1] === '' ? undefined : m[1];
    const one = runs.find((x) => x.server === r.server && x.workload === r.workload && x.store === base);
    if (one && one.reqPerSec > 0) out.push({ variant: label(r), workload: r.workload, workers: Number(m[2]), ratio: round3(r.reqPerSec / one.reqPerSec) });
  }
  return out;
}

export const ratioLabel = (r: Ratio) => (r.store ? `${r.workload} (${r.store})` : r.workload);

export function formatProfile(summary: ProfileSummary): string {
  const rows = (title: string, list: ProfileSummary['byPackage']) => [title, ...list.map((e) => `  ${e.share.toFixed(1).padStart(5)}%  ${e.ms.toFixed(0).padStart(7)} ms  ${e.name}`)].join('\n');
  return [
    `main-thread self time, ${summary.sampledMs} ms sampled${summary.fromMicros === undefined ? ' (including boot)' : ' after the server was ready'}, idle excluded`,
    rows('by package / module (self time):', summary.byPackage),
    rows('by package / module, node built-ins and native code charged to their caller:', summary.byCallingPackage),
    rows('by function:', summary.byFunction),
  ].join('\n');
}
