/**
 * What CEL conditions cost per exchange: the policy decision (`evaluate`, which builds the
 * CEL bindings once and runs every condition of the grant) with no conditions, with the
 * existing attribute conditions, and with CEL expressions from typical to the most
 * expensive the load-time cost bound accepts. In-process, so the number is the CPU the
 * decision adds to one exchange. See docs/performance.md.
 *
 *   npm run bench:cel -- [--iterations 20000]
 */
import { compilePolicy } from '../src/policy/compile.js';
import { CEL_COST_LIMIT, compileCelCondition } from '../src/policy/cel/expression.js';
import type { ConditionConfig, LeashConfig } from '../src/config/schema.js';
import type { PolicyInput } from '../src/policy/types.js';
import { config, grant, identity, NOW, plugin, task } from '../test/policy/fixtures.js';

const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const ITERATIONS = arg('iterations', 20000);

const SCOPES = Array.from({ length: 8 }, (_, i) => `deploy:scope-${i}`);
/** [name, conditions, attested attributes of the workload (64 is the most conditions accept)] */
const CASES: Array<[string, ConditionConfig[], number?]> = [
  ['no conditions', []],
  [
    '3 attribute conditions (equals, glob, in)',
    [
      { attr: 'workload.repository', equals: 'octo/app' },
      { attr: 'workload.ref', glob: 'refs/heads/*' },
      { attr: 'task.env', in: ['prod', 'staging'] },
    ],
  ],
  ['1 CEL: one claim equality', [{ expr: "workload.claims.repository == 'octo/app'" }]],
  [
    '1 CEL: typical (claims, scopes loop, task, ttl)',
    [
      {
        expr: "workload.claims.repository == 'octo/app' && workload.claims.ref.startsWith('refs/heads/') && request.scopes.all(s, s.startsWith('deploy:')) && task.attributes.env == 'prod' && request.ttl <= 120",
      },
    ],
  ],
  [
    '3 CEL: typical set',
    [
      { expr: "workload.claims.repository == 'octo/app' && workload.claims.ref.matches('^refs/heads/(main|release-[0-9]+)$')" },
      { expr: "request.scopes.all(s, s.startsWith('deploy:')) && size(request.scopes) <= 3" },
      { expr: "task.attributes.env in ['prod', 'staging'] && now.getDayOfWeek() != 0 && delegation.depth == 0" },
    ],
  ],
  ['1 CEL: business hours in a named time zone', [{ expr: "now.getHours('Europe/Paris') >= 8 && now.getHours('Europe/Paris') < 19" }]],
  ['1 CEL: nested loop at the cost limit, 64 claims x 8 scopes', [{ expr: 'workload.claims.all(k, request.scopes.all(s, s != k) && k.size() < 100)' }], 64],
];

function input(policy: ReturnType<typeof compilePolicy>, attributes: number): PolicyInput {
  const claims: Record<string, string> = { repository: 'octo/app', ref: 'refs/heads/main', sha: 'a'.repeat(40), workflow: 'deploy', actor: 'alice', environment: 'prod' };
  for (let i = Object.keys(claims).length; i < attributes; i++) claims[`extra_${i}`] = `value-${i}`;
  return {
    plugin: policy.plugins.get('p')!,
    identity: identity('repo:octo/app:ref:refs/heads/main', claims, 'github'),
    task: task({ env: 'prod', ticket: 'CHG-1' }, ['p']),
    request: { audience: 'https://api.example.com', scopes: attributes > 14 ? SCOPES : SCOPES.slice(0, 3), ttl: 60, params: { audience: 'https://api.example.com' } },
    now: NOW,
  };
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

const rows: string[][] = [];
for (const [name, conditions, attributes = 14] of CASES) {
  const cfg: LeashConfig = config([plugin('p', { bindings: [{ issuer: 'github', subject: 'repo:octo/app:ref:refs/heads/main', claims: {} }], grants: [grant({ scopes: SCOPES, conditions })] })]);
  const started = process.hrtime.bigint();
  const policy = compilePolicy(cfg);
  const compileMs = Number(process.hrtime.bigint() - started) / 1e6;
  const cost = conditions
    .filter((c) => c.expr)
    .reduce((n, c) => {
      const o = compileCelCondition(c.expr!, { audience: 'https://api.example.com', scopes: SCOPES });
      return n + (o.ok ? o.expression.cost : 0);
    }, 0);
  const one = input(policy, attributes);
  const check = policy.evaluate(one);
  if (!check.allow) throw new Error(`${name}: the benchmark input must be allowed (${check.description})`);
  for (let i = 0; i < 2000; i++) policy.evaluate(one);
  const samples: number[] = [];
  for (let i = 0; i < ITERATIONS; i++) {
    const t0 = process.hrtime.bigint();
    policy.evaluate(one);
    samples.push(Number(process.hrtime.bigint() - t0) / 1000);
  }
  samples.sort((a, b) => a - b);
  rows.push([name, String(cost), compileMs.toFixed(2), percentile(samples, 50).toFixed(1), percentile(samples, 99).toFixed(1)]);
}

const header = ['decision with', 'CEL cost units', 'compile ms', 'p50 µs', 'p99 µs'];
const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
const line = (r: string[]) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
process.stdout.write(`CEL cost limit: ${CEL_COST_LIMIT} units; ${ITERATIONS} decisions per row; node ${process.version}\n`);
process.stdout.write(`${line(header)}\n${rows.map(line).join('\n')}\n`);
