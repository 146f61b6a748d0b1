import { describe, it, expect } from '@jest/globals';
import { GroupCommit, MAX_GROUP, type ItemOutcome } from '../../src/store/sqlite/group-commit.js';

/** A commit that records each batch it was given and answers per item. */
function recording(answer: (item: number) => ItemOutcome<string> = (n) => ({ ok: true, value: `v${n}` })) {
  const batches: number[][] = [];
  const group = new GroupCommit<number, string>((items) => {
    batches.push([...items]);
    return items.map(answer);
  });
  return { group, batches };
}

describe('GroupCommit', () => {
  it('commits what one turn submits as one batch, in order, and settles each caller after it', async () => {
    const { group, batches } = recording();
    const settled: number[] = [];
    const all = [1, 2, 3, 4].map((n) => group.submit(n).then((v) => (settled.push(n), v)));
    // Nothing is written (or settled) before the turn's check phase.
    await Promise.resolve();
    expect(batches).toEqual([]);
    expect(settled).toEqual([]);
    expect(await Promise.all(all)).toEqual(['v1', 'v2', 'v3', 'v4']);
    expect(batches).toEqual([[1, 2, 3, 4]]);
  });

  it('a later turn is a batch of its own', async () => {
    const { group, batches } = recording();
    await Promise.all([group.submit(1), group.submit(2)]);
    await group.submit(3);
    expect(batches).toEqual([[1, 2], [3]]);
  });

  it('an item refused alone fails alone; the others of its batch are committed', async () => {
    const { group, batches } = recording((n) => (n === 2 ? { ok: false, error: new TypeError('duplicate') } : { ok: true, value: `v${n}` }));
    const results = await Promise.allSettled([1, 2, 3].map((n) => group.submit(n)));
    expect(batches).toEqual([[1, 2, 3]]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect((results[1] as PromiseRejectedResult).reason).toBeInstanceOf(TypeError);
  });

  it('a commit that throws fails every item of its batch with that error, and the next turn commits again', async () => {
    let fail = true;
    const group = new GroupCommit<number, number>((items) => {
      if (fail) throw new Error('store down');
      return items.map((n) => ({ ok: true, value: n }));
    });
    const results = await Promise.allSettled([group.submit(1), group.submit(2)]);
    expect(results.map((r) => (r.status === 'rejected' ? (r.reason as Error).message : 'ok'))).toEqual(['store down', 'store down']);
    fail = false;
    await expect(group.submit(3)).resolves.toBe(3);
  });

  it('splits a turn of more than MAX_GROUP writes into transactions of at most MAX_GROUP', async () => {
    const { group, batches } = recording();
    const n = MAX_GROUP * 2 + 5;
    const values = await Promise.all(Array.from({ length: n }, (_, i) => group.submit(i)));
    expect(values).toHaveLength(n);
    expect(values[n - 1]).toBe(`v${n - 1}`);
    expect(batches.map((b) => b.length)).toEqual([MAX_GROUP, MAX_GROUP, 5]);
    expect(batches.flat()).toEqual(Array.from({ length: n }, (_, i) => i));
  });

  it('a commit that answers for fewer items than it was given fails the ones left unanswered', async () => {
    const group = new GroupCommit<number, number>((items) => items.slice(0, 1).map((n) => ({ ok: true, value: n })));
    const results = await Promise.allSettled([group.submit(1), group.submit(2)]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected']);
  });
});
