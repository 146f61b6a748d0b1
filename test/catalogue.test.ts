import { describe, expect, it } from '@jest/globals';
import { readFileSync } from 'node:fs';
import { ERROR_CODES } from '../src/errors/codes.js';
import { AUDIT_EVENT_TYPES } from '../src/audit/events.js';
import { METRIC_NAMES } from '../src/metrics/metrics.js';

/** First-column backticked names of the markdown tables in a doc, with their row cells. */
function tableRows(path: string): Map<string, string[]> {
  const rows = new Map<string, string[]>();
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    const m = /^\| `([^`]+)` \|(.*)\|\s*$/.exec(line);
    if (m)
      rows.set(
        m[1] as string,
        (m[2] as string).split('|').map((c) => c.trim().replace(/`/g, '')),
      );
  }
  return rows;
}

describe('catalogues: code and docs agree both ways', () => {
  it('docs/errors.md lists every error code with its OAuth error and status, and nothing else', () => {
    const rows = tableRows('docs/errors.md');
    const documented = [...rows.keys()].filter((k) => k.startsWith('ERR_'));
    expect(documented.sort()).toEqual(Object.keys(ERROR_CODES).sort());
    for (const [code, { oauth, status }] of Object.entries(ERROR_CODES)) {
      const cells = rows.get(code)!;
      expect([code, cells[0], cells[1]]).toEqual([code, oauth, String(status)]);
    }
  });

  it('docs/events.md lists every audit event type', () => {
    const documented = [...tableRows('docs/events.md').keys()].filter((k) => /^[a-z]+\.[a-z_]+$/.test(k));
    expect(documented.sort()).toEqual([...AUDIT_EVENT_TYPES].sort());
  });

  it('docs/metrics.md lists every metric name', () => {
    const documented = [...tableRows('docs/metrics.md').keys()].filter((k) => k.startsWith('leash_'));
    expect(documented.sort()).toEqual(Object.values(METRIC_NAMES).sort());
  });
});
