import { readFileSync } from 'node:fs';

/** What this build is: `leash --version`, the `leash_build_info` metric and the start log line say it. */
export interface BuildInfo {
  /** The `version` of the leash-broker package this code was built from. */
  readonly version: string;
  /** The Node.js runtime it runs on (`process.version`). */
  readonly nodeVersion: string;
}

let cached: BuildInfo | undefined;

/**
 * Read once from the package's own package.json: this file sits two levels below it both in
 * the source tree (src/config/) and in the published build (dist/config/).
 */
export function buildInfo(): BuildInfo {
  if (cached) return cached;
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: unknown };
  if (typeof pkg.version !== 'string') throw new Error('package.json has no version');
  cached = Object.freeze({ version: pkg.version, nodeVersion: process.version });
  return cached;
}
