import { spawn } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';

const INSTALL_HINT = 'promtool was not found on PATH or in /usr/bin; install it (Debian/Ubuntu: apt-get install -y prometheus) to check the metrics exposition';

export function findPromtool(): string | undefined {
  const candidates = [
    ...(process.env.PATH ?? '')
      .split(delimiter)
      .filter(Boolean)
      .map((d) => join(d, 'promtool')),
    '/usr/bin/promtool',
  ];
  for (const c of candidates) {
    try {
      accessSync(c, constants.X_OK);
      return c;
    } catch {
      // next
    }
  }
  return undefined;
}

/** Whether promtool suites run: skipped with a message without it, except under CI, where they fail. */
export function promtoolAvailable(suite: string): boolean {
  if (findPromtool()) return true;
  if (process.env.CI) throw new Error(`${suite}: ${INSTALL_HINT} (CI is set, so the suite fails instead of skipping)`);
  process.stderr.write(`[skip] ${suite}: ${INSTALL_HINT}\n`);
  return false;
}

/** `promtool check metrics` over an exposition text: its exit code and what it printed (problems, one per line). */
export function promtoolCheckMetrics(text: string): Promise<{ code: number | null; output: string }> {
  const bin = findPromtool();
  if (!bin) throw new Error(INSTALL_HINT);
  return new Promise((resolve, reject) => {
    const child = spawn(bin, ['check', 'metrics'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, output }));
    child.stdin.end(text);
  });
}
