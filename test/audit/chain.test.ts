import { describe, it, expect } from '@jest/globals';
import { createHash } from 'node:crypto';
import { GENESIS_HASH, canonicalJson, chainHash, verifyChain } from '../../src/audit/chain.js';
import type { AuditRecord } from '../../src/store/records.js';

/** Builds a valid chain in memory, as a store would. */
function buildChain(n: number): AuditRecord[] {
  const out: AuditRecord[] = [];
  let prev = GENESIS_HASH;
  for (let seq = 1; seq <= n; seq++) {
    const ts = 1_700_000_000_000 + seq;
    const type = seq % 2 ? 'exchange.issued' : 'exchange.denied';
    const event = { seq_label: `e${seq}`, plugin: 'p', scopes: ['a', 'b'], nested: { z: seq, a: [seq] } };
    const hash = chainHash(prev, seq, ts, type, event);
    out.push({ seq, ts, type, event, prevHash: prev, hash });
    prev = hash;
  }
  return out;
}

describe('canonicalJson', () => {
  it('sorts keys recursively, keeps array order and drops undefined members', () => {
    expect(canonicalJson({ b: 1, a: { d: [3, { y: 1, x: 2 }], c: undefined } })).toBe('{"a":{"d":[3,{"x":2,"y":1}]},"b":1}');
  });

  it('follows JSON.stringify for the odd values', () => {
    expect(canonicalJson([undefined, () => 1, NaN, Infinity, -0, null])).toBe('[null,null,null,null,0,null]');
    expect(canonicalJson({ when: new Date(0) })).toBe('{"when":"1970-01-01T00:00:00.000Z"}');
    expect(canonicalJson('é"\n')).toBe(JSON.stringify('é"\n'));
  });

  it('refuses what JSON cannot carry, as a TypeError', () => {
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    expect(() => canonicalJson({ n: 1n })).toThrow(TypeError);
    expect(() => canonicalJson(cyclic)).toThrow(TypeError);
    expect(() => canonicalJson(undefined)).toThrow(TypeError);
  });

  it('allows the same object twice when it is not a cycle', () => {
    const shared = { k: 1 };
    expect(canonicalJson({ a: shared, b: shared })).toBe('{"a":{"k":1},"b":{"k":1}}');
  });
});

describe('chainHash', () => {
  it('is sha256 over the canonical {event, prev, seq, ts, type}', () => {
    const expected = createHash('sha256').update(`{"event":{"a":1,"b":"x"},"prev":"${GENESIS_HASH}","seq":1,"ts":1000,"type":"task.opened"}`).digest('hex');
    expect(chainHash(GENESIS_HASH, 1, 1000, 'task.opened', { b: 'x', a: 1 })).toBe(expected);
    expect(GENESIS_HASH).toBe('0'.repeat(64));
  });

  it('changes with every input and not with member order', () => {
    const base = chainHash(GENESIS_HASH, 1, 1000, 't', { a: 1, b: 2 });
    expect(chainHash(GENESIS_HASH, 1, 1000, 't', { b: 2, a: 1 })).toBe(base);
    const variants = [
      chainHash('1'.repeat(64), 1, 1000, 't', { a: 1, b: 2 }),
      chainHash(GENESIS_HASH, 2, 1000, 't', { a: 1, b: 2 }),
      chainHash(GENESIS_HASH, 1, 1001, 't', { a: 1, b: 2 }),
      chainHash(GENESIS_HASH, 1, 1000, 'u', { a: 1, b: 2 }),
      chainHash(GENESIS_HASH, 1, 1000, 't', { a: 1, b: 3 }),
      chainHash(GENESIS_HASH, 1, 1000, 't', { a: 1, b: '2' }),
    ];
    expect(new Set([base, ...variants]).size).toBe(variants.length + 1);
  });
});

describe('verifyChain', () => {
  it('accepts an intact chain and an empty one', () => {
    expect(verifyChain(buildChain(10))).toEqual({ ok: true, count: 10 });
    expect(verifyChain([])).toEqual({ ok: true, count: 0 });
  });

  it('accepts an async iterable', async () => {
    async function* gen() {
      yield* buildChain(5);
    }
    await expect(verifyChain(gen())).resolves.toEqual({ ok: true, count: 5 });
  });

  // One row per way to tamper with the log; each must be pinpointed.
  const attacks: Array<[string, (c: AuditRecord[]) => AuditRecord[], number, RegExp]> = [
    ['a modified event', (c) => c.map((r) => (r.seq === 4 ? { ...r, event: { ...r.event, plugin: 'evil' } } : r)), 4, /modified/],
    ['a modified type', (c) => c.map((r) => (r.seq === 6 ? { ...r, type: 'exchange.issued' } : r)), 6, /modified/],
    ['a modified timestamp', (c) => c.map((r) => (r.seq === 2 ? { ...r, ts: r.ts + 1 } : r)), 2, /modified/],
    ['an added event member', (c) => c.map((r) => (r.seq === 3 ? { ...r, event: { ...r.event, extra: true } } : r)), 3, /modified/],
    ['a deleted record', (c) => c.filter((r) => r.seq !== 5), 5, /missing.*deleted/],
    ['a deleted first record', (c) => c.slice(1), 1, /missing/],
    ['two records swapped', (c) => [c[0]!, c[2]!, c[1]!, ...c.slice(3)], 2, /missing|reordered/],
    ['a record replayed twice', (c) => [...c.slice(0, 5), c[4]!, ...c.slice(5)], 6, /reordered or duplicated/],
    [
      'a record re-hashed after editing (the next link breaks)',
      (c) =>
        c.map((r) => {
          if (r.seq !== 7) return r;
          const event = { ...r.event, plugin: 'evil' };
          return { ...r, event, hash: chainHash(r.prevHash, r.seq, r.ts, r.type, event) };
        }),
      8,
      /does not link/,
    ],
    [
      'a wrong prev link with a consistent own hash',
      (c) =>
        c.map((r) => {
          if (r.seq !== 3) return r;
          const prevHash = 'f'.repeat(64);
          return { ...r, prevHash, hash: chainHash(prevHash, r.seq, r.ts, r.type, r.event) };
        }),
      3,
      /does not link/,
    ],
    ['a renumbered tail after a deletion', (c) => [...c.slice(0, 4), ...c.slice(5).map((r) => ({ ...r, seq: r.seq - 1 }))], 5, /does not link|modified/],
  ];

  it.each(attacks)('detects %s', (_label, tamper, brokenAt, reason) => {
    const verdict = verifyChain(tamper(buildChain(10)));
    expect(verdict.ok).toBe(false);
    expect(verdict.brokenAt).toBe(brokenAt);
    expect(verdict.reason).toMatch(reason);
    expect(verdict.count).toBe(brokenAt - 1);
  });

  it('verifies a slice from an anchor, and refuses a slice without one', () => {
    const chain = buildChain(10);
    const tail = chain.slice(6);
    expect(verifyChain(tail, { anchor: { seq: 6, hash: chain[5]!.hash } })).toEqual({ ok: true, count: 4 });
    expect(verifyChain(tail)).toMatchObject({ ok: false, brokenAt: 1 });
    expect(verifyChain(tail, { anchor: { seq: 6, hash: chain[4]!.hash } })).toMatchObject({ ok: false, brokenAt: 7 });
  });

  it('with a known head, detects a cut-off tail and a rewritten log', () => {
    const chain = buildChain(10);
    const head = { seq: 10, hash: chain[9]!.hash };
    expect(verifyChain(chain, { head })).toEqual({ ok: true, count: 10 });
    expect(verifyChain(chain.slice(0, 8), { head })).toMatchObject({ ok: false, brokenAt: 9, reason: expect.stringMatching(/cut off/) });
    expect(verifyChain(chain, { head: { seq: 9, hash: chain[9]!.hash } })).toMatchObject({ ok: false, brokenAt: 9 });
    // A log that grew past the head still verifies.
    expect(verifyChain(chain, { head: { seq: 5, hash: chain[4]!.hash } })).toEqual({ ok: true, count: 10 });
  });
});
