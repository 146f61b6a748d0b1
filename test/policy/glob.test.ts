import { describe, expect, it } from '@jest/globals';
import { compileGlob, globsIntersect } from '../../src/policy/glob.js';
import { prng } from './fixtures.js';

/** An independent oracle: the textbook RegExp translation of the glob language. */
function reference(glob: string): (s: string) => boolean {
  const body = glob
    .split('*')
    .map((part) => part.replace(/[.*+?^${}()|[\]\\/-]/g, '\\$&'))
    .join('[^/:]*');
  const re = new RegExp(`^${body}$`, 's');
  return (s) => re.test(s);
}

describe('compileGlob', () => {
  const table: [string, string, boolean][] = [
    ['system:serviceaccount:plugins:*', 'system:serviceaccount:plugins:crm', true],
    ['system:serviceaccount:plugins:*', 'system:serviceaccount:plugins:', true], // `*` may be empty
    ['system:serviceaccount:plugins:*', 'system:serviceaccount:plugins:a:b', false], // `*` stops at `:`
    ['spiffe://prod/ns/*/sa/crm', 'spiffe://prod/ns/team/sa/crm', true],
    ['spiffe://prod/ns/*/sa/crm', 'spiffe://prod/ns/a/b/sa/crm', false], // `*` stops at `/`
    ['repo:octo/app:*', 'repo:octo/app:ref:refs/heads/main', false],
    ['repo:octo/app:ref:refs/heads/*', 'repo:octo/app:ref:refs/heads/main', true],
    ['a*b', 'ab', true],
    ['a*b', 'axxb', true],
    ['a*b', 'axxbc', false], // anchored at the end
    ['a*b', 'xab', false], // anchored at the start
    ['a.b', 'axb', false], // `.` is literal
    ['a.b', 'a.b', true],
    ['(x)+[y]?', '(x)+[y]?', true], // regex metacharacters are literal
    ['(x)+[y]?', 'xxy', false],
    ['^a$', '^a$', true],
    ['a\\*', 'a\\', true], // backslash is literal, not an escape; `*` stays a wildcard
    ['a\\*', 'a\\zz', true],
    ['**', 'abc', true], // `**` is `*`
    ['**', 'a/b', false],
    ['*', '', true],
    ['exact', 'exact', true],
    ['exact', 'exactly', false],
    ['x*y*z', 'xaaybbz', true],
    ['x*y*z', 'xa:ybbz', false],
    ['ünï*cödé', 'ünïXcödé', true],
  ];
  it.each(table)('%s against %s -> %s', (glob, s, expected) => {
    expect(compileGlob(glob)(s)).toBe(expected);
  });

  it('is linear on a pattern that makes a backtracking RegExp explode', () => {
    const m = compileGlob('*a*a*a*a*a*a*a*b');
    const s = 'a'.repeat(20000);
    expect(m(s)).toBe(false);
    expect(m(`${s}b`)).toBe(true);
  });

  it('rejects a non-string glob as programmer misuse', () => {
    expect(() => compileGlob(undefined as unknown as string)).toThrow(TypeError);
    expect(() => globsIntersect('a', 3 as unknown as string)).toThrow(TypeError);
  });

  it('agrees with the reference RegExp on random patterns and strings', () => {
    const rnd = prng(7);
    const pick = (alphabet: string, max: number) => Array.from({ length: Math.floor(rnd() * (max + 1)) }, () => alphabet[Math.floor(rnd() * alphabet.length)]).join('');
    let positives = 0;
    for (let p = 0; p < 400; p++) {
      const glob = pick('ab/:.*', 6);
      const mine = compileGlob(glob);
      const ref = reference(glob);
      for (let k = 0; k < 60; k++) {
        const s = pick('ab/:.c', 8);
        const expected = ref(s);
        if (expected) positives++;
        expect([glob, s, mine(s)]).toEqual([glob, s, expected]);
      }
    }
    expect(positives).toBeGreaterThan(100); // the sample exercises matches, not only misses
  });
});

describe('globsIntersect', () => {
  const table: [string, string, boolean][] = [
    ['abc', 'abc', true],
    ['abc', 'abd', false],
    ['a*', 'abc', true],
    ['a*', 'b', false],
    ['a*', 'a/b', false], // `*` cannot produce `/`
    ['*', '', true],
    ['*', ':', false],
    ['a*', '*b', true], // 'ab'
    ['a*c', 'ab*', true], // 'abc'
    ['a*', 'b*', false],
    ['*:x', '*:y', false],
    ['x:*', '*:y', true], // 'x:y'
    ['ns:*:sa', 'ns:*', false], // the second glob cannot contain a second `:`
    ['ns:*:sa', 'ns:*:*', true],
    ['repo:octo/*:ref', 'repo:octo/app:*', true],
    ['repo:octo/*:ref', 'repo:other/*:*', false],
    ['a*b*c', '*x*', true], // 'abxc'
    ['a*', '*/', false], // the first never ends in `/`
    ['a*b*c', 'a*x*c', true], // 'abxc'
    ['*a', '*b', false],
    ['**', '*', true],
  ];
  it.each(table)('%s ∩ %s -> %s', (a, b, expected) => {
    expect(globsIntersect(a, b)).toBe(expected);
    expect(globsIntersect(b, a)).toBe(expected); // symmetric
  });

  it('agrees with brute force over all short strings, for random small patterns', () => {
    // A shortest common string has at most lits(a) + lits(b) characters (every step consumes a
    // literal of one side), so with at most 3 literals per pattern, strings of length <= 6 over
    // the literal alphabet plus a fresh character decide every pair exactly.
    const alphabet = ['a', 'b', '/', ':', 'c'];
    const strings: string[] = [''];
    for (let len = 1, layer = ['']; len <= 6; len++) {
      layer = layer.flatMap((s) => alphabet.map((c) => s + c));
      strings.push(...layer);
    }
    const rnd = prng(42);
    const patterns = new Set<string>(['', '*', 'a', ':', '*:*', 'a*', '*a']);
    while (patterns.size < 90) {
      const len = 1 + Math.floor(rnd() * 4);
      let g = '';
      for (let i = 0; i < len; i++) g += ['a', 'b', '/', ':', '*', '*'][Math.floor(rnd() * 6)];
      if (g.replace(/\*/g, '').length <= 3) patterns.add(g);
    }
    const list = [...patterns];
    const matched = list.map((g) => {
      const m = compileGlob(g);
      return strings.map((s) => m(s));
    });
    let overlapping = 0;
    let disjoint = 0;
    for (let i = 0; i < list.length; i++) {
      for (let j = 0; j < list.length; j++) {
        const brute = matched[i]!.some((hit, k) => hit && matched[j]![k]!);
        if (brute) overlapping++;
        else disjoint++;
        expect([list[i], list[j], globsIntersect(list[i]!, list[j]!)]).toEqual([list[i], list[j], brute]);
      }
    }
    // Both outcomes are well represented, so the cross-check can fail either way.
    expect(overlapping).toBeGreaterThan(500);
    expect(disjoint).toBeGreaterThan(500);
  });
});
