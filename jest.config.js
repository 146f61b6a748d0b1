/**
 * Jest runs TypeScript through @swc/jest (no type-check: `npm test` runs tsc first).
 *
 * Three projects (CONTRIBUTING.md, "Test it"): unit (this process only), integration
 * (loopback sockets, temp folders with SQLite files, redis-server) and e2e (any other child
 * process: the `leash` command, npm, go, chromium, promtool). test/projects.json names the
 * integration and e2e files, each with what puts it there; every other test file is unit.
 * The test environment (test/setup/project-environment.ts) fails a file that does more, or
 * less, than its project is for.
 */
import { readFileSync } from 'node:fs';

// `leash serve` defaults to one worker per core (settings.workers: auto). Set here, in the
// process jest starts its workers from, so every `leash serve` a test spawns (whatever env
// it passes on) tests the one-process path unless it asks for workers (--workers wins).
process.env.LEASH_WORKERS ??= '1';

const manifest = JSON.parse(readFileSync(new URL('./test/projects.json', import.meta.url), 'utf8'));
const listed = (project) => Object.keys(manifest[project]).map((file) => `<rootDir>/${file}`);
const escape = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

const common = {
  testEnvironment: '<rootDir>/test/setup/project-environment.ts',
  extensionsToTreatAsEsm: ['.ts'],
  transform: {
    '^.+\\.ts$': ['@swc/jest', { jsc: { parser: { syntax: 'typescript' }, target: 'es2022' }, module: { type: 'es6' } }],
  },
  moduleNameMapper: { '^(\\.{1,2}/.*)\\.js$': '$1' },
  setupFiles: ['<rootDir>/test/setup/realm.ts', '<rootDir>/test/setup/aws-env.ts'],
};

const project = (name, match) => ({ ...common, displayName: name, testEnvironmentOptions: { project: name }, ...match });

export default {
  testTimeout: 30000,
  projects: [
    project('unit', {
      testMatch: ['<rootDir>/test/**/*.test.ts'],
      testPathIgnorePatterns: ['/node_modules/', ...[...listed('integration'), ...listed('e2e')].map((f) => `^${escape(f)}$`)],
    }),
    // An empty testMatch would match every file: a project with no files is left out.
    ...['integration', 'e2e'].filter((name) => listed(name).length > 0).map((name) => project(name, { testMatch: listed(name) })),
  ],
};
