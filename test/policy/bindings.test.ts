import { describe, expect, it } from '@jest/globals';
import { ConfigError } from '../../src/config/config-error.js';
import { compilePolicy } from '../../src/policy/compile.js';
import { binding, config, identity, plugin, problemsOf } from './fixtures.js';

const SA = (name: string) => `system:serviceaccount:plugins:${name}`;

describe('binding match and resolvePlugin', () => {
  const policy = compilePolicy(
    config([
      plugin('crm', { bindings: [binding(SA('crm'))] }),
      plugin('tickets', { bindings: [binding({ glob: 'system:serviceaccount:plugins:ticket-*' })] }),
      plugin('ns-bound', {
        bindings: [binding({ glob: 'system:serviceaccount:*:worker' }, { claims: { namespace: 'team-a', cluster: { glob: 'eu-*' } } })],
      }),
      plugin('equals-form', { bindings: [binding({ equals: SA('eq') }, { issuer: 'other-cluster' })] }),
      plugin('gh', { bindings: [binding({ glob: 'repo:octo/app:ref:refs/heads/*' }, { issuer: 'github' })] }),
    ]),
  );

  const cases: [string, ReturnType<typeof identity>, string | undefined][] = [
    ['exact subject', identity(SA('crm')), 'crm'],
    ['exact subject, other issuer', identity(SA('crm'), {}, 'other-cluster'), undefined],
    ['exact subject with a suffix', identity(`${SA('crm')}x`), undefined],
    ['glob subject', identity(SA('ticket-7')), 'tickets'],
    ['glob subject, separator inside the star', identity(`${SA('ticket-7')}:x`), undefined],
    ['glob + claims all matching', identity('system:serviceaccount:ns1:worker', { namespace: 'team-a', cluster: 'eu-west' }), 'ns-bound'],
    ['glob + one claim wrong', identity('system:serviceaccount:ns1:worker', { namespace: 'team-b', cluster: 'eu-west' }), undefined],
    ['glob + claim glob wrong', identity('system:serviceaccount:ns1:worker', { namespace: 'team-a', cluster: 'us-east' }), undefined],
    ['glob + a claim missing', identity('system:serviceaccount:ns1:worker', { namespace: 'team-a' }), undefined],
    ['{equals} subject', identity(SA('eq'), {}, 'other-cluster'), 'equals-form'],
    ['{equals} subject, wrong issuer', identity(SA('eq')), undefined],
    ['github branch', identity('repo:octo/app:ref:refs/heads/main', {}, 'github'), 'gh'],
    ['github other repository', identity('repo:evil/app:ref:refs/heads/main', {}, 'github'), undefined],
    ['unknown issuer', identity(SA('crm'), {}, 'nowhere'), undefined],
  ];
  it.each(cases)('%s', (_name, who, expected) => {
    expect(policy.resolvePlugin(who)?.id).toBe(expected);
  });

  it('does not read inherited properties as attested claims', () => {
    const p = compilePolicy(config([plugin('proto', { bindings: [binding(SA('proto'), { claims: { constructor: { glob: '*' } } })] })]));
    expect(p.resolvePlugin(identity(SA('proto')))).toBeUndefined();
    expect(p.resolvePlugin(identity(SA('proto'), { constructor: 'x' }))?.id).toBe('proto');
  });

  it('exposes plugins by id, frozen', () => {
    expect([...policy.plugins.keys()]).toEqual(['crm', 'tickets', 'ns-bound', 'equals-form', 'gh']);
    expect(Object.isFrozen(policy.plugins.get('crm'))).toBe(true);
  });

  it('resolves among many plugins through the index', () => {
    const many = Array.from({ length: 2000 }, (_, i) => plugin(`p${i}`));
    const p = compilePolicy(config(many));
    expect(p.resolvePlugin(identity(SA('p1234')))?.id).toBe('p1234');
    expect(p.resolvePlugin(identity(SA('p2000')))).toBeUndefined();
  });
});

describe('binding overlap is a config error', () => {
  it('exact vs exact, same subject', () => {
    const problems = problemsOf(() => compilePolicy(config([plugin('a', { bindings: [binding(SA('x'))] }), plugin('b', { bindings: [binding(SA('x'))] })])));
    expect(problems).toHaveLength(1);
    expect(problems[0]!.path).toBe('/plugins/1/bindings/0');
    expect(problems[0]!.message).toContain("plugin 'b'");
    expect(problems[0]!.message).toContain("plugin 'a' at /plugins/0/bindings/0");
  });

  it('glob vs exact', () => {
    const problems = problemsOf(() =>
      compilePolicy(config([plugin('a', { bindings: [binding(SA('ticket-1'))] }), plugin('b', { bindings: [binding(SA('other')), binding({ glob: SA('ticket-*') })] })])),
    );
    expect(problems.map((p) => p.path)).toEqual(['/plugins/1/bindings/1']);
    expect(problems[0]!.message).toContain("'a' at /plugins/0/bindings/0");
  });

  it('glob vs glob', () => {
    const problems = problemsOf(() =>
      compilePolicy(config([plugin('a', { bindings: [binding({ glob: 'system:serviceaccount:*:crm' })] }), plugin('b', { bindings: [binding({ glob: 'system:serviceaccount:plugins:*' })] })])),
    );
    expect(problems.map((p) => p.path)).toEqual(['/plugins/1/bindings/0']);
  });

  it('a claim constrained by one side only does not separate them', () => {
    const problems = problemsOf(() =>
      compilePolicy(config([plugin('a', { bindings: [binding(SA('x'), { claims: { namespace: 'n1' } })] }), plugin('b', { bindings: [binding(SA('x'), { claims: { cluster: 'c1' } })] })])),
    );
    expect(problems).toHaveLength(1);
  });

  it('intersecting claim globs overlap', () => {
    const problems = problemsOf(() =>
      compilePolicy(
        config([plugin('a', { bindings: [binding(SA('x'), { claims: { env: { glob: 'prod-*' } } })] }), plugin('b', { bindings: [binding(SA('x'), { claims: { env: { glob: '*-eu' } } })] })]),
      ),
    );
    expect(problems).toHaveLength(1);
  });

  it('reports every overlap at once, in config order, with other problems', () => {
    const problems = problemsOf(() =>
      compilePolicy(
        config([
          plugin('a', { bindings: [binding({ glob: SA('*') })] }),
          plugin('b', { bindings: [binding(SA('b'))] }),
          plugin('c', { bindings: [binding(SA('c')), binding(SA('c'), { issuer: 'nope' })] }),
        ]),
      ),
    );
    expect(problems.map((p) => p.path)).toEqual(['/plugins/2/bindings/1/issuer', '/plugins/1/bindings/0', '/plugins/2/bindings/0']);
  });

  const disjoint: [string, Parameters<typeof plugin>[1], Parameters<typeof plugin>[1]][] = [
    ['same subject, disjoint exact claims', { bindings: [binding(SA('x'), { claims: { namespace: 'n1' } })] }, { bindings: [binding(SA('x'), { claims: { namespace: 'n2' } })] }],
    ['same subject, disjoint claim globs', { bindings: [binding(SA('x'), { claims: { env: { glob: 'prod-*' } } })] }, { bindings: [binding(SA('x'), { claims: { env: { glob: 'dev-*' } } })] }],
    ['different issuers, same subject', { bindings: [binding(SA('x'))] }, { bindings: [binding(SA('x'), { issuer: 'other-cluster' })] }],
    ['disjoint globs', { bindings: [binding({ glob: SA('crm-*') })] }, { bindings: [binding({ glob: SA('tickets-*') })] }],
    ['glob whose star cannot cross a separator', { bindings: [binding({ glob: 'system:serviceaccount:*' })] }, { bindings: [binding(SA('x'))] }],
  ];
  it.each(disjoint)('no overlap: %s', (_name, a, b) => {
    const policy = compilePolicy(config([plugin('a', a), plugin('b', b)]));
    expect(policy.plugins.size).toBe(2);
  });

  it('bindings of the same plugin may overlap', () => {
    const policy = compilePolicy(config([plugin('a', { bindings: [binding(SA('a')), binding({ glob: SA('*') })] })]));
    expect(policy.resolvePlugin(identity(SA('a')))?.id).toBe('a');
  });
});

describe('binding config problems', () => {
  it('an unknown issuer names the known ones', () => {
    const problems = problemsOf(() => compilePolicy(config([plugin('a', { bindings: [binding(SA('a'), { issuer: 'typo' })] })])));
    expect(problems).toEqual([{ path: '/plugins/0/bindings/0/issuer', message: expect.stringContaining("'cluster', 'other-cluster', 'github'") }]);
  });

  it('a match with both or neither of equals/glob', () => {
    const problems = problemsOf(() => compilePolicy(config([plugin('a', { bindings: [binding({ equals: 'x', glob: 'y*' }, { claims: { 'a/b': {} } })] })])));
    expect(problems.map((p) => p.path)).toEqual(['/plugins/0/bindings/0/subject', '/plugins/0/bindings/0/claims/a~1b']);
  });

  it('a duplicate plugin id', () => {
    const problems = problemsOf(() => compilePolicy(config([plugin('a'), plugin('a', { bindings: [binding(SA('a2'))] })])));
    expect(problems).toEqual([{ path: '/plugins/1/id', message: expect.stringContaining('/plugins/0') }]);
  });

  it('throws a ConfigError (not a TypeError) listing everything', () => {
    expect(() => compilePolicy(config([plugin('a', { bindings: [binding(SA('a'), { issuer: 'typo' })] })]))).toThrow(ConfigError);
    expect(() => compilePolicy(null as never)).toThrow(TypeError);
  });
});

describe('github-actions bindings must constrain the repository', () => {
  const gh = (b: ReturnType<typeof binding>) => config([plugin('ci', { bindings: [{ ...b, issuer: 'github' }] })]);
  const refused: [string, ReturnType<typeof binding>][] = [
    ['any subject', binding({ glob: '*' })],
    ['any repository of an owner', binding({ glob: 'repo:octo/*:ref:refs/heads/main' })],
    ['any owner', binding({ glob: 'repo:*/app:*' })],
    ['repository claim as a glob', binding({ glob: 'repo:*' }, { claims: { repository: { glob: 'octo/*' } } })],
    ['only another claim', binding({ glob: 'repo:*' }, { claims: { ref: 'refs/heads/main' } })],
  ];
  it.each(refused)('refuses %s', (_name, b) => {
    const problems = problemsOf(() => compilePolicy(gh(b)));
    expect(problems).toEqual([{ path: '/plugins/0/bindings/0', message: expect.stringContaining('github-actions binding must constrain the repository') }]);
    expect(problems[0]!.message).toContain('every repository on GitHub');
  });

  const accepted: [string, ReturnType<typeof binding>][] = [
    ['exact subject', binding('repo:octo/app:ref:refs/heads/main')],
    ['glob without a star', binding({ glob: 'repo:octo/app:environment:prod' })],
    ['subject glob fixing the repository', binding({ glob: 'repo:octo/app:*' })],
    ['exact repository claim', binding({ glob: 'repo:*' }, { claims: { repository: 'octo/app' } })],
    ['repository claim as {equals}', binding({ glob: 'repo:*' }, { claims: { repository: { equals: 'octo/app' } } })],
  ];
  it.each(accepted)('accepts %s', (_name, b) => {
    expect(compilePolicy(gh(b)).plugins.has('ci')).toBe(true);
  });

  it('does not apply to other issuer kinds', () => {
    expect(compilePolicy(config([plugin('k', { bindings: [binding({ glob: '*' })] })])).plugins.has('k')).toBe(true);
  });
});
