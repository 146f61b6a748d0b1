import { closeSync, openSync, rmSync, statSync, writeSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

/** A lock file older than this is a crashed holder's: the read-compare-write it guards takes milliseconds. */
const STALE_MS = 10_000;
const WAIT_MS = 5;
const GIVE_UP_MS = 15_000;

/**
 * An exclusive lock between processes on one key folder (`serve --workers N`, or replicas
 * on one volume): a file created with O_EXCL, removed when done. It makes the keyring's
 * compare-and-set one step across processes, as it already is within one.
 */
export async function withKeyringLock<T>(lockFile: string, fn: () => T): Promise<T> {
  const started = Date.now();
  for (;;) {
    let fd: number | undefined;
    try {
      fd = openSync(lockFile, 'wx', 0o600);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    if (fd !== undefined) {
      try {
        writeSync(fd, String(process.pid));
        return fn();
      } finally {
        closeSync(fd);
        rmSync(lockFile, { force: true });
      }
    }
    clearIfStale(lockFile);
    if (Date.now() - started > GIVE_UP_MS) throw new Error(`the keyring lock '${lockFile}' stayed held for ${GIVE_UP_MS} ms`);
    await sleep(WAIT_MS);
  }
}

function clearIfStale(lockFile: string): void {
  try {
    if (Date.now() - statSync(lockFile).mtimeMs > STALE_MS) rmSync(lockFile, { force: true });
  } catch {
    // gone meanwhile: the next attempt takes it
  }
}
