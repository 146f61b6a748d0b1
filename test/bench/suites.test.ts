import { readFile } from 'node:fs/promises';
import { describe, expect, it } from '@jest/globals';
import { SECTION_END, SECTION_START, renderFullRun, replaceSection } from '../../bench/docs-section.js';
import { FULL_SUITES, fullSuiteDuration, parseOptions, type BenchOptions } from '../../bench/options.js';
import { verdict, type LatencyPoint, type LatencyResult } from '../../bench/latency.js';
import { overloadConfigs } from '../../bench/overload.js';
import { ratios, workerScaling, type RunRecord } from '../../bench/report.js';

const parse = (argv: string[]) => parseOptions(argv) as BenchOptions;

describe('bench options for the latency, overload and full suites', () => {
  it('takes each suite by name, with the goal-4 and goal-5 defaults', () => {
    for (const suite of ['throughput', 'propagation', 'latency', 'overload', 'full'] as const) expect(parse(['--suite', suite]).suite).toBe(suite);
    const o = parse(['--suite', 'latency']);
    expect(o.fraction).toBe(0.4);
    expect(o.overload).toBe(3);
    expect(o.clientTimeoutMs).toBe(1000);
    expect(o.duration).toBe(10);
  });

  it('full runs throughput, latency and overload, never itself or propagation', () => {
    expect(FULL_SUITES).toEqual(expect.arrayContaining(['throughput', 'latency', 'overload']));
    expect(FULL_SUITES).not.toContain('full');
    expect(FULL_SUITES).not.toContain('propagation');
  });

  it('full gives the open-loop suites 8 s per point and the others 10 s, unless --duration says otherwise', () => {
    const full = parse(['--suite', 'full']);
    expect(FULL_SUITES.map((s) => [s, fullSuiteDuration(full, s)])).toEqual([
      ['throughput', 10],
      ['latency', 8],
      ['overload', 8],
      ['growth', 10],
    ]);
    const given = parse(['--suite', 'full', '--duration', '6']);
    expect(FULL_SUITES.map((s) => fullSuiteDuration(given, s))).toEqual([6, 6, 6, 6]);
  });

  it('overload compares four configs on its own, and in full the goal config (the defaults) with its reference (unbounded)', () => {
    expect(overloadConfigs('overload').map((c) => c.name)).toEqual(['admission defaults', 'one accept socket', 'loop delay 200 ms', 'unbounded']);
    expect(overloadConfigs('full').map((c) => c.name)).toEqual(['admission defaults', 'unbounded']);
  });

  it('runs the servers compiled on plain node unless told tsx, and refuses another runtime', () => {
    expect(parse([]).runtime).toBe('node');
    expect(parse(['--runtime', 'tsx']).runtime).toBe('tsx');
    expect(() => parse(['--runtime', 'bun'])).toThrow(/--runtime takes node or tsx/);
  });

  it('refuses an unknown suite and out-of-range rates', () => {
    expect(() => parse(['--suite', 'everything'])).toThrow(/--suite takes/);
    expect(() => parse(['--suite', 'latency', '--fraction', '0'])).toThrow(/--fraction/);
    expect(() => parse(['--suite', 'latency', '--fraction', '1.5'])).toThrow(/--fraction/);
    expect(() => parse(['--suite', 'overload', '--overload', '1'])).toThrow(/--overload/);
    expect(() => parse(['--suite', 'overload', '--client-timeout', '5'])).toThrow(/--client-timeout/);
    expect(parse(['--suite', 'latency', '--fraction', '0.25']).fraction).toBe(0.25);
  });
});

describe('latency goal verdict (Leash p99 <= 2x the ceiling p99 at the same rate, every request answered)', () => {
  const at = (server: string, p99: number, sent = 1000, ok = sent): LatencyPoint => ({
    pair: 'leash/sqlite/warm/leash',
    workload: 'warm',
    server,
    basis: 'leash',
    basisCapacity: 600,
    offeredPerSec: 240,
    okPerSec: ok / 10,
    sent,
    ok,
    p50: 1,
    p90: 2,
    p99,
    max: p99 * 2,
    rejected503: sent - ok,
    clientTimeouts: 0,
    otherErrors: 0,
    senderLagP99: 1,
    generatorCpuMicrosPerRequest: 100,
    loadavg1: 0.5,
  });
  const result = (...points: LatencyPoint[]): LatencyResult => ({ fraction: 0.4, seconds: 10, clientTimeoutMs: 1000, capacities: [], points });

  it('is met at 2x and not above', () => {
    const ceiling = at('ceiling', 5);
    expect(verdict(result(ceiling, at('leash/sqlite', 10)), at('leash/sqlite', 10))).toMatchObject({ met: true, ratio: 2 });
    expect(verdict(result(ceiling, at('leash/sqlite', 10.5)), at('leash/sqlite', 10.5)).met).toBe(false);
  });

  it('is not met when any request went unanswered, however good the p99 of the rest', () => {
    const leash = at('leash/sqlite', 1, 1000, 990);
    const v = verdict(result(at('ceiling', 5), leash), leash);
    expect(v.met).toBe(false);
    expect(v.why).toMatch(/10 of 1000 requests not answered 200/);
  });

  it('compares only with the ceiling slices it alternated with', () => {
    const leash = at('leash/sqlite', 10);
    const other = { ...at('ceiling', 100), pair: 'leash/redis/warm/leash' };
    expect(verdict(result(other, leash), leash)).toMatchObject({ met: false, why: 'no ceiling point at that rate' });
  });
});

describe('--suite full writes its printout into the docs', () => {
  const report = (text: string, ok = true) => ({
    date: new Date('2026-12-05T16:00:00Z'),
    machine: { nproc: 2, cpu: 'AMD EPYC', memoryGiB: 23, node: 'v24.21.0', platform: 'linux x64' },
    loadAverage: { start: [0.5, 0.4, 0.3], end: [2, 1.5, 1] },
    minutes: 13.2,
    command: 'npm run bench -- --suite full',
    suites: [{ suite: 'throughput', ok, text }],
  });

  it('full defaults to docs/performance.md and both stores; other suites write nowhere; none turns it off', () => {
    expect(parse(['--suite', 'full']).docs).toBe('docs/performance.md');
    expect(parse(['--suite', 'full']).stores).toEqual(['sqlite', 'redis']);
    expect(parse(['--suite', 'full', '--store', 'sqlite']).stores).toEqual(['sqlite']);
    expect(parse(['--suite', 'full', '--docs', 'none']).docs).toBeUndefined();
    expect(parse(['--suite', 'full', '--docs', 'x.md']).docs).toBe('x.md');
    expect(parse([]).docs).toBeUndefined();
    expect(parse([]).stores).toEqual(['sqlite']);
    expect(() => parse(['--suite', 'latency', '--docs', 'x.md'])).toThrow(/--docs goes with --suite full/);
  });

  it('renders the machine, the date, the load and each suite, marking a failed one', () => {
    const md = renderFullRun(report('cold  leash/sqlite  1146', false));
    expect(md).toContain('### Last full run: 2026-12-05 16:00 UTC');
    expect(md).toContain('2 CPUs (AMD EPYC), 23 GiB, linux x64, Node v24.21.0');
    expect(md).toContain('load average 0.50 0.40 0.30 at the start, 2.00 1.50 1.00 at the end');
    expect(md).toContain('**throughput** (FAILED');
    expect(renderFullRun({ ...report('x'), suites: [{ suite: 'growth', ok: true, text: 'x', minutes: 4.25 }] })).toContain('**growth** (4.3 min)');
    expect(md).toContain('```text\ncold  leash/sqlite  1146\n```');
  });

  it('replaces only what lies between the markers, and again on the next run', () => {
    const doc = `# Perf\n\nbefore\n\n${SECTION_START}\n\nold run\n\n${SECTION_END}\n\nafter\n`;
    const once = replaceSection(doc, renderFullRun(report('first')));
    expect(once).not.toContain('old run');
    expect(once.startsWith('# Perf\n\nbefore\n\n')).toBe(true);
    expect(once.endsWith(`${SECTION_END}\n\nafter\n`)).toBe(true);
    const twice = replaceSection(once, renderFullRun(report('second')));
    expect(twice).toContain('second');
    expect(twice).not.toContain('first');
  });

  it('refuses a document without the markers, with them out of order, or twice', () => {
    expect(() => replaceSection('# nothing here\n', 'x')).toThrow(/no '<!-- bench:full:start/);
    expect(() => replaceSection(`${SECTION_END}\n${SECTION_START}\n`, 'x')).toThrow(/no '<!-- bench:full:start/);
    expect(() => replaceSection(`${SECTION_START}\n${SECTION_END}\n${SECTION_START}\n${SECTION_END}\n`, 'x')).toThrow(/more than one/);
  });

  it('docs/performance.md carries the section', async () => {
    const doc = await readFile('docs/performance.md', 'utf8');
    expect(() => replaceSection(doc, 'x')).not.toThrow();
  });
});

describe('throughput report with worker processes (issue 18, goal 3)', () => {
  const run = (server: RunRecord['server'], workload: RunRecord['workload'], reqPerSec: number, cpu: number, store?: string): RunRecord =>
    ({ server, workload, reqPerSec, cpuMicrosPerRequest: cpu, serverCpu: {}, ...(store ? { store } : {}) }) as unknown as RunRecord;
  const runs = [
    run('ceiling', 'cold', 4000, 250),
    run('ceiling', 'cold', 6000, 260, '×2w'),
    run('leash', 'cold', 1000, 800, 'sqlite'),
    run('leash', 'cold', 1500, 850, 'sqlite×2w'),
    run('leash', 'cold', 1400, 700, 'redis'),
  ];

  it('judges Leash against the ceiling with as many processes', () => {
    const byStore = Object.fromEntries(ratios(runs).map((r) => [r.store, r.leashOverCeiling]));
    expect(byStore).toEqual({ sqlite: 0.25, 'sqlite×2w': 0.25, redis: 0.35 });
  });

  it('reports every N-worker run over the same server as one process, the ceiling included', () => {
    expect(workerScaling(runs)).toEqual([
      { variant: 'ceiling/×2w', workload: 'cold', workers: 2, ratio: 1.5 },
      { variant: 'leash/sqlite×2w', workload: 'cold', workers: 2, ratio: 1.5 },
    ]);
  });
});

describe('profile attribution (bench/profile.ts)', () => {
  it("charges the compiled tree's frames to Leash, though it lives under node_modules/.cache, and packages to their package", async () => {
    const { packageOf } = await import('../../bench/profile.js');
    const root = '/repo/node_modules/.cache/leash-bench-js';
    expect(packageOf(`file://${root}/src/keys/jws-verify.js`, 'verify', root)).toBe('leash src/keys');
    expect(packageOf(`file://${root}/bench/leash-server.js`, 'main', root)).toBe('leash bench');
    expect(packageOf('file:///repo/node_modules/express/lib/response.js', 'json', root)).toBe('express');
    expect(packageOf('file:///repo/node_modules/@aws-sdk/client-sts/dist/index.js', 'send', '/repo')).toBe('@aws-sdk/client-sts');
    expect(packageOf('file:///repo/src/http/app.ts', 'x', '/repo')).toBe('leash src/http');
    expect(packageOf('node:internal/crypto/sig', 'verifyOneShot', root)).toBe('node:crypto');
    expect(packageOf('', '(garbage collector)', root)).toBe('(gc)');
  });
});
