import { describe, expect, it } from '@jest/globals';
import { runReview } from '../../src/review/review.js';
import { binding, config, grant, NOW, plugin } from '../policy/fixtures.js';

/*
 * Issue 18, goal 6: the scheduled review runs in the broker's event loop. Its split-workload
 * check compared every pair of plugins with one owner: 10,000 plugins of one team held the
 * loop for tens of seconds a minute after start. Pairs are bucketed by owner and workload
 * source now.
 */
describe('the review of a large policy', () => {
  it('10,000 plugins of one owner: split-workload still finds the one pair sharing a workload source, in bounded time', () => {
    const plugins = Array.from({ length: 10_000 }, (_, i) =>
      plugin(`p${i}`, {
        owner: 'team@example.com',
        bindings: [binding(i % 2 === 0 ? `system:serviceaccount:ns-${i}:sa-${i}` : { glob: `system:serviceaccount:ns-${i}:worker-*` })],
        grants: [grant({ audience: 'https://crm.example.com/api', scopes: ['contacts:read'] })],
      }),
    );
    // Same owner, same namespace as p4, an overlapping grant: the one split.
    plugins.push(
      plugin('p4-twin', {
        owner: 'team@example.com',
        bindings: [binding('system:serviceaccount:ns-4:other')],
        grants: [grant({ audience: 'https://crm.example.com/api', scopes: ['contacts:read'] })],
      }),
    );
    const t0 = performance.now();
    const { report } = runReview({ config: config(plugins), now: NOW });
    const ms = performance.now() - t0;
    const splits = report.findings.filter((f) => f.rule === 'split-workload');
    expect(splits.map((f) => f.plugin)).toEqual(['p4-twin']);
    expect(splits[0]!.message).toContain("plugins 'p4' and 'p4-twin' have the same owner");
    // Pairwise took ~50 s here; generous for a loaded shared machine.
    expect(ms).toBeLessThan(10_000);
  });
});
