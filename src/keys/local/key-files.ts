import { closeSync, fsyncSync, openSync, renameSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { basename, dirname, join } from 'node:path';

/** A problem with the local key folder that the operator must fix before Leash can start. */
export class LocalKeyError extends Error {
  readonly file: string;
  constructor(file: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'LocalKeyError';
    this.file = file;
  }
}

const CHECK_MODES = process.platform !== 'win32';

/**
 * Refuses a private key file that group or others can access, as ssh does ("UNPROTECTED
 * PRIVATE KEY FILE"): a key others could read is a key others may already have copied.
 */
export function assertPrivateFileMode(file: string): void {
  if (!CHECK_MODES) return;
  const mode = statSync(file).mode & 0o777;
  if ((mode & 0o077) !== 0) {
    throw new LocalKeyError(
      file,
      `permissions ${mode.toString(8).padStart(4, '0')} for '${file}' are too open: a private signing key must not be ` +
        `accessible by group or others. Fix with: chmod 600 '${file}'` +
        ' (for a Kubernetes Secret volume set defaultMode: 0400)',
    );
  }
}

/**
 * Writes `data` to `file` atomically with mode 0600: a temp file created 0600 in the same
 * folder (so the secret is never world-readable, even for an instant), flushed, then
 * renamed over the target. A crash leaves either the old file or the new one, never half.
 */
export function writePrivateFileAtomic(file: string, data: string): void {
  const tmp = join(dirname(file), `.${basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
  // 'wx': fail if the temp name exists (never follow a planted symlink).
  const fd = openSync(tmp, 'wx', 0o600);
  try {
    writeSync(fd, data);
    fsyncSync(fd);
  } catch (err) {
    closeSync(fd);
    unlinkSync(tmp);
    throw err;
  }
  closeSync(fd);
  try {
    renameSync(tmp, file);
  } catch (err) {
    unlinkSync(tmp);
    throw err;
  }
  syncDir(dirname(file));
}

/** Makes the rename durable; some platforms cannot open a folder for fsync, which is fine. */
function syncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, 'r');
    fsyncSync(fd);
  } catch {
    // best effort
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}
