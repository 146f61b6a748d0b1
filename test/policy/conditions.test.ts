import { describe, expect, it } from '@jest/globals';
import type { ConditionConfig, GrantConfig } from '../../src/config/schema.js';
import type { ConfigProblem } from '../../src/config/config-error.js';
import { compileConditions } from '../../src/policy/conditions.js';
import type { CompiledPlugin, PolicyInput } from '../../src/policy/types.js';
import { identity, NOW, task } from './fixtures.js';

type Time = NonNullable<GrantConfig['time']>;

function check(conditions: ConditionConfig[], time?: Time) {
  const problems: ConfigProblem[] = [];
  const fn = compileConditions(conditions, time, '/plugins/0/grants/0', problems);
  expect(problems).toEqual([]);
  return fn;
}

function input(over: { attributes?: Record<string, string>; task?: PolicyInput['task'] | null; params?: Record<string, string>; now?: number } = {}): PolicyInput {
  return {
    plugin: {} as CompiledPlugin,
    identity: identity('system:serviceaccount:plugins:p', over.attributes ?? { namespace: 'plugins' }),
    task: over.task === null ? undefined : (over.task ?? task({ env: 'prod' })),
    request: { audience: 'https://api.example.com', scopes: undefined, ttl: undefined, params: over.params ?? {} },
    now: over.now ?? NOW,
  };
}

describe('conditions', () => {
  it('equals', () => {
    const fn = check([{ attr: 'task.env', equals: 'prod' }]);
    expect(fn(input())).toEqual([]);
    expect(fn(input({ task: task({ env: 'dev' }) }))).toEqual(["task.env must equal 'prod'"]);
    expect(fn(input({ task: task({}) }))).toEqual(["task.env must equal 'prod'"]);
  });

  it('in', () => {
    const fn = check([{ attr: 'workload.namespace', in: ['plugins', 'tools'] }]);
    expect(fn(input())).toEqual([]);
    expect(fn(input({ attributes: { namespace: 'tools' } }))).toEqual([]);
    expect(fn(input({ attributes: { namespace: 'kube-system' } }))).toEqual(["workload.namespace must be one of 'plugins', 'tools'"]);
    expect(fn(input({ attributes: {} }))).toEqual(["workload.namespace must be one of 'plugins', 'tools'"]);
  });

  it('glob (anchored, `*` stops at separators)', () => {
    const fn = check([{ attr: 'request.region', glob: 'eu-*' }]);
    expect(fn(input({ params: { region: 'eu-west' } }))).toEqual([]);
    expect(fn(input({ params: { region: 'us-east' } }))).toEqual(["request.region must match 'eu-*'"]);
    expect(fn(input({ params: { region: 'eu-west/1' } }))).toEqual(["request.region must match 'eu-*'"]);
    expect(fn(input({ params: { region: 'xeu-west' } }))).toEqual(["request.region must match 'eu-*'"]);
    expect(fn(input())).toEqual(["request.region must match 'eu-*'"]);
  });

  it('present true and false', () => {
    const must = check([{ attr: 'request.ticket', present: true }]);
    expect(must(input({ params: { ticket: 'T-1' } }))).toEqual([]);
    expect(must(input({ params: { ticket: '' } }))).toEqual([]); // sent, even if empty
    expect(must(input())).toEqual(['request.ticket must be present']);
    const mustNot = check([{ attr: 'request.debug', present: false }]);
    expect(mustNot(input())).toEqual([]);
    expect(mustNot(input({ params: { debug: '1' } }))).toEqual(['request.debug must be absent']);
  });

  it('workload.subject and workload.issuer fall back to the identity itself', () => {
    const fn = check([
      { attr: 'workload.subject', glob: 'system:serviceaccount:plugins:*' },
      { attr: 'workload.issuer', equals: 'cluster' },
    ]);
    expect(fn(input())).toEqual([]);
    expect(fn(input({ attributes: { subject: 'spoofed', issuer: 'elsewhere' } }))).toHaveLength(2);
  });

  it('task conditions fail when the request has no task (whatever the operator)', () => {
    const fn = check([
      { attr: 'task.env', equals: 'prod' },
      { attr: 'task.ticket', present: false },
    ]);
    expect(fn(input({ task: null }))).toEqual(['task.env needs a task, and the request names none', 'task.ticket needs a task, and the request names none']);
  });

  it('lists every failed condition, never the offending value', () => {
    const fn = check([
      { attr: 'task.env', equals: 'prod' },
      { attr: 'request.region', in: ['eu'] },
    ]);
    const failed = fn(input({ task: task({ env: 's3cr3t-value' }), params: { region: 'sneaky' } }));
    expect(failed).toHaveLength(2);
    expect(failed.join(' ')).not.toMatch(/s3cr3t|sneaky/);
  });

  it('reads own attributes only', () => {
    const fn = check([{ attr: 'request.constructor', present: true }]);
    expect(fn(input())).toEqual(['request.constructor must be present']);
  });

  it('an empty list always holds', () => {
    expect(check([])(input({ task: null }))).toEqual([]);
  });
});

describe('time window (UTC)', () => {
  // 2026-11-23 is a Monday.
  const at = (day: number, hh: number, mm: number, ss = 0) => Date.UTC(2026, 10, 23 + day, hh, mm, ss);
  const office: Time = { days: ['mon', 'tue', 'wed', 'thu', 'fri'], from: '09:00', to: '17:00' };

  it.each([
    ['mon 09:00:00 (from is inclusive)', at(0, 9, 0), true],
    ['mon 08:59:59', at(0, 8, 59, 59), false],
    ['fri 16:59:59', at(4, 16, 59, 59), true],
    ['fri 17:00:00 (to is exclusive)', at(4, 17, 0), false],
    ['wed noon', at(2, 12, 0), true],
    ['sat noon', at(5, 12, 0), false],
    ['sun noon', at(6, 12, 0), false],
  ])('office hours: %s', (_name, now, ok) => {
    const failed = check([], office)(input({ now }));
    expect(failed).toEqual(ok ? [] : ['the grant may only be used on mon, tue, wed, thu, fri from 09:00 to 17:00 UTC']);
  });

  it('24:00 covers the last minute of the day; the next day is another day', () => {
    const fn = check([], { days: ['sat'], from: '22:00', to: '24:00' });
    expect(fn(input({ now: at(5, 23, 59, 59) }))).toEqual([]);
    expect(fn(input({ now: at(6, 0, 0) }))).toHaveLength(1); // sunday 00:00
    expect(fn(input({ now: at(5, 21, 59, 59) }))).toHaveLength(1);
  });

  it('defaults: every day, all day', () => {
    const fn = check([], { days: ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'], from: '00:00', to: '24:00' });
    for (let d = 0; d < 7; d++) expect(fn(input({ now: at(d, 0, 0) }))).toEqual([]);
  });

  it('combines with conditions', () => {
    const fn = check([{ attr: 'task.env', equals: 'prod' }], office);
    expect(fn(input({ now: at(5, 12, 0), task: task({ env: 'dev' }) }))).toHaveLength(2);
  });
});

describe('condition config problems', () => {
  const problemsFor = (conditions: ConditionConfig[], time?: Time) => {
    const problems: ConfigProblem[] = [];
    compileConditions(conditions, time, '/g', problems);
    return problems;
  };

  it('exactly one operator', () => {
    expect(problemsFor([{ attr: 'task.env' }, { attr: 'task.env', equals: 'a', in: ['a'] }])).toEqual([
      { path: '/g/conditions/0', message: expect.stringContaining('exactly one of') },
      { path: '/g/conditions/1', message: expect.stringContaining('found equals, in') },
    ]);
  });

  it('attr must name a known source', () => {
    expect(problemsFor([{ attr: 'env.x', equals: 'a' }])).toEqual([{ path: '/g/conditions/0/attr', message: expect.any(String) }]);
  });

  it('a window must not be empty or inverted, and times must be valid', () => {
    expect(problemsFor([], { days: ['mon'], from: '17:00', to: '09:00' })).toEqual([{ path: '/g/time', message: expect.stringContaining('earlier') }]);
    expect(problemsFor([], { days: ['mon'], from: '09:00', to: '09:00' })).toHaveLength(1);
    expect(problemsFor([], { days: ['mon'], from: '24:00', to: '24:30' }).map((p) => p.path)).toEqual(['/g/time/from', '/g/time/to']);
    expect(problemsFor([], { days: ['mon', 'xyz' as 'mon'], from: '09:00', to: '10:00' }).map((p) => p.path)).toEqual(['/g/time/days/1']);
  });
});
