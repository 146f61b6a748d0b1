import { describe, expect, it } from '@jest/globals';
import { TurnBuffer } from '../../src/log/logger.js';

const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

describe('TurnBuffer (stderr log lines, one write per event-loop turn)', () => {
  it('writes the lines of one turn in one write, in order, at the end of the turn', async () => {
    const writes: string[] = [];
    const b = new TurnBuffer({ write: (chunk: string) => writes.push(chunk) });
    b.write('a\n');
    b.write('b\n');
    b.write('c\n');
    expect(writes).toEqual([]);
    await turn();
    expect(writes).toEqual(['a\nb\nc\n']);
    b.write('d\n');
    await turn();
    expect(writes).toEqual(['a\nb\nc\n', 'd\n']);
  });

  it('flush writes what is pending at once, and only once', async () => {
    const writes: string[] = [];
    const b = new TurnBuffer({ write: (chunk: string) => writes.push(chunk) });
    b.write('x\n');
    b.flush();
    expect(writes).toEqual(['x\n']);
    await turn();
    expect(writes).toEqual(['x\n']);
  });
});
