/**
 * Writes test/projects.json from what test files really did: run jest with
 * LEASH_TEST_PROJECTS_RECORD=<file> (the test environment then records instead of refusing),
 * then `tsx tools/test-projects.ts <file>...`. Each file goes to the cheapest project that
 * allows everything it did (rules in test/setup/project-environment.ts), with a reason. A
 * file whose run skipped tests and did nothing keeps its current place (what it did then
 * says nothing about what it needs). Later records of a file replace earlier ones.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { projectFor, type Capability, type Project } from '../test/setup/project-environment.js';

interface Record {
  readonly file: string;
  readonly used: Capability[];
  readonly skipped: number;
}

const MANIFEST = 'test/projects.json';

function reason(project: Project, used: readonly Capability[]): string {
  const spawned = used.filter((c) => c.startsWith('spawn:')).map((c) => c.slice('spawn:'.length));
  if (project === 'e2e') return `runs ${spawned.filter((s) => s !== 'redis-server').join(', ')}`;
  const parts: string[] = [];
  if (spawned.includes('redis-server')) parts.push('redis-server');
  if (used.includes('listen') || used.includes('connect')) parts.push('sockets on loopback');
  if (used.includes('tempdir')) parts.push('a temp folder');
  return parts.join(', ');
}

const current = JSON.parse(readFileSync(MANIFEST, 'utf8')) as { integration: { [file: string]: string }; e2e: { [file: string]: string } };
const records = new Map<string, Record>();
for (const path of process.argv.slice(2)) {
  for (const line of readFileSync(path, 'utf8').split('\n')) if (line.trim()) records.set((JSON.parse(line) as Record).file, JSON.parse(line) as Record);
}
if (records.size === 0) throw new Error('usage: tsx tools/test-projects.ts <record file>...');

const next: { integration: { [file: string]: string }; e2e: { [file: string]: string } } = { integration: {}, e2e: {} };
for (const project of ['integration', 'e2e'] as const) for (const [file, why] of Object.entries(current[project])) if (!records.has(file)) next[project][file] = why;
for (const r of [...records.values()].sort((a, b) => a.file.localeCompare(b.file))) {
  const project = projectFor(r.used);
  if (project === 'unit' && r.skipped > 0) {
    for (const p of ['integration', 'e2e'] as const) {
      const why = current[p][r.file];
      if (why !== undefined) next[p][r.file] = why;
    }
    continue;
  }
  if (project !== 'unit') next[project][r.file] = reason(project, r.used);
}
const sorted = (o: { [file: string]: string }) => Object.fromEntries(Object.entries(o).sort(([a], [b]) => a.localeCompare(b)));
writeFileSync(MANIFEST, JSON.stringify({ integration: sorted(next.integration), e2e: sorted(next.e2e) }, null, 2) + '\n');
process.stdout.write(`${MANIFEST}: ${Object.keys(next.integration).length} integration, ${Object.keys(next.e2e).length} e2e; every other test file is unit\n`);
