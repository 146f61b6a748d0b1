import { describe, expect, it } from '@jest/globals';
import { readFileSync } from 'node:fs';
import { ISSUER_KINDS } from '../src/config/schema.js';
import { CEL_VARIABLES } from '../src/policy/cel/variables.js';

/** docs/attestation.md and docs/conditions.md keep up with the kinds and the CEL variables, both ways. */

describe('identity docs agree with the code', () => {
  it('docs/attestation.md has a section with a binding example for every trusted-issuer kind, and no other', () => {
    const doc = readFileSync('docs/attestation.md', 'utf8');
    const sections = [...doc.matchAll(/^## ([a-z0-9-]+)$/gm)].map((m) => m[1]);
    expect([...sections].sort()).toEqual([...ISSUER_KINDS].sort());
    for (const kind of ISSUER_KINDS) {
      const body = doc.split(`## ${kind}\n`)[1]!.split(/^## /m)[0]!;
      expect({ kind, example: /bindings:/.test(body) && new RegExp(`kind: ${kind}`).test(body) }).toEqual({ kind, example: true });
    }
  });

  it('docs/conditions.md lists every CEL variable with its type, and no other', () => {
    const rows = [...readFileSync('docs/conditions.md', 'utf8').matchAll(/^\| `([a-z._]+)` \| ([^|]+) \|/gm)].map((m) => m[1]);
    expect([...rows].sort()).toEqual(CEL_VARIABLES.map((v) => v.name).sort());
  });
});
