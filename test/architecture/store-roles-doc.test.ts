import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from '@jest/globals';
import { REPO_ROOT } from '../../tools/layers.js';

/** The role interfaces `Store` extends, as src/store/store.ts declares them. */
function storeRoles(): string[] {
  const source = readFileSync(join(REPO_ROOT, 'src/store/store.ts'), 'utf8');
  const m = /export interface Store\s+extends([^{]+)\{/.exec(source);
  if (!m) throw new Error('src/store/store.ts: no `export interface Store extends ...`');
  return m[1]!
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '')
    .sort();
}

describe('docs/architecture.md, State', () => {
  it('names every role interface of Store, and no other', () => {
    const doc = readFileSync(join(REPO_ROOT, 'docs/architecture.md'), 'utf8');
    const m = /`Store` \(`src\/store\/store\.ts`\) is a set of role interfaces:([^.]+)\./.exec(doc);
    expect(m).not.toBeNull();
    const named = [...m![1]!.matchAll(/`([A-Za-z]+)`/g)].map((x) => x[1]!).sort();
    expect(named).toEqual(storeRoles());
  });
});
