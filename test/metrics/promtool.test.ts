import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Gauge, Registry } from 'prom-client';
import { buildInfo } from '../../src/config/build-info.js';
import { CRM_API, EXCHANGE, JWT_TYPE, startTestBroker, type TestBroker } from '../support/broker.js';
import { promtoolAvailable, promtoolCheckMetrics } from '../support/promtool.js';

const RUN = promtoolAvailable('promtool check metrics on a live /metrics');

/**
 * The exposition of a running broker, process metrics included, passes Prometheus's own
 * linter (`promtool check metrics`: naming, suffixes, HELP/TYPE), with the exchange,
 * task and key series that only appear once something happened.
 */
(RUN ? describe : describe.skip)('/metrics passes promtool check metrics', () => {
  let tb: TestBroker;
  let text: string;

  beforeAll(async () => {
    tb = await startTestBroker({ broker: { defaultMetrics: true } });
    const task = await tb.openTask({ plugins: ['crm-reader'] });
    const base = { grant_type: EXCHANGE, client_id: 'crm-reader', subject_token_type: JWT_TYPE, resource: CRM_API, task };
    expect((await tb.exchange({ ...base, subject_token: await tb.cluster.saToken() })).status).toBe(200);
    expect((await tb.exchange({ ...base, subject_token: await tb.cluster.saToken(), scope: 'contacts:delete' })).status).toBe(400);
    expect((await tb.exchange({ ...base, subject_token: 'not-a-jwt' })).status).toBe(400);
    const res = await fetch(`${tb.managementUrl}/metrics`);
    expect(res.status).toBe(200);
    text = await res.text();
  });
  afterAll(async () => tb?.close());

  it('promtool finds no problem', async () => {
    // The series the check must have seen: process metrics, labelled exchange counters, histograms.
    expect(text).toMatch(/^leash_process_process_cpu_seconds_total \d/m);
    expect(text).toMatch(/^leash_process_nodejs_active_handles\{type="[^"]+"\} \d/m);
    expect(text).toMatch(/^leash_exchanges_total\{outcome="issued",reason="OK",plugin="crm-reader"\} 1$/m);
    expect(text).toMatch(/^leash_exchanges_total\{outcome="denied",reason="ERR_[A-Z_]+",plugin="-"\} 1$/m);
    expect(text).toMatch(/^leash_exchange_duration_seconds_bucket\{/m);
    const { code, output } = await promtoolCheckMetrics(text);
    expect(output).toBe('');
    expect(code).toBe(0);
  });

  it('no gauge carries the _total suffix Prometheus reserves for counters', () => {
    const gauges = [...text.matchAll(/^# TYPE (\S+) gauge$/gm)].map((m) => m[1]);
    expect(gauges.length).toBeGreaterThan(5);
    expect(gauges.filter((g) => g!.endsWith('_total'))).toEqual([]);
  });

  it('leash_build_info is 1 with the package version and the runtime', () => {
    const { version } = buildInfo();
    expect(version).toMatch(/^\d+\.\d+\.\d+/);
    expect(text).toContain(`leash_build_info{version="${version}",node_version="${process.version}"} 1\n`);
  });

  it('the check can fail: promtool refuses a gauge named like a counter (what prom-client exports by default)', async () => {
    const registry = new Registry();
    new Gauge({ name: 'leash_process_nodejs_active_handles_total', help: 'x', registers: [registry] }).set(1);
    const { code, output } = await promtoolCheckMetrics(await registry.metrics());
    expect(code).not.toBe(0);
    expect(output).toContain('non-counter metrics should not have "_total" suffix');
  });
});
