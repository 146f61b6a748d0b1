/**
 * The bench's servers as JavaScript on plain node, which is what ships: `leash serve` runs
 * dist/ (tsc output) on node, not TypeScript through tsx. The two are not the same speed:
 * under tsx's loader, node:crypto's `{ key, dsaEncoding }` form cost nothing extra, while on
 * plain node it added ~25 µs to an ES256 signature (2026-12-07), so a bench under tsx
 * measured something no deployment runs. `compileBench` emits src, bench and test/support
 * with the project's own tsc into node_modules/.cache (node resolves the packages from there
 * as from the checkout) and `startServer` (child.ts) runs the `.js` of each server script.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { copyFile, rm } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
/** Inside the checkout's node_modules, so bare imports resolve to the checkout's packages. */
const OUT = join(ROOT, 'node_modules', '.cache', 'leash-bench-js');

let compiledDir: string | undefined;

/** Compiles the tree (~15 s here) and makes `startServer` run the compiled scripts. */
export async function compileBench(log: (m: string) => void): Promise<void> {
  const t0 = performance.now();
  await rm(OUT, { recursive: true, force: true });
  const tsc = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
  // The type check is npm test's; here only the emit matters.
  await promisify(execFile)(process.execPath, [tsc, '-p', join(ROOT, 'tsconfig.json'), '--outDir', OUT, '--noCheck', '--sourceMap', 'false', '--declaration', 'false'], {
    cwd: ROOT,
    maxBuffer: 16 * 1024 * 1024,
  });
  // build-info reads the version two levels above src/config, as from dist/config; and it says "type": "module".
  await copyFile(join(ROOT, 'package.json'), join(OUT, 'package.json'));
  compiledDir = OUT;
  log(`compiled the servers to JavaScript for plain node in ${((performance.now() - t0) / 1000).toFixed(1)} s (${relative(ROOT, OUT)})`);
}

/** Where the compiled tree's root is (its src/, bench/ ...), when the bench runs compiled. */
export function compiledRoot(): string | undefined {
  return compiledDir;
}

/** The compiled JavaScript of a server script, when the bench runs compiled; else undefined (tsx). */
export function compiledScript(script: string): string | undefined {
  if (!compiledDir) return undefined;
  const js = join(compiledDir, relative(ROOT, script)).replace(/\.ts$/, '.js');
  if (!existsSync(js)) throw new Error(`${script} has no compiled counterpart at ${js}`);
  return js;
}
