import { appendFile, mkdir, rename, rm, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { SinkItem, SinkTransport } from './sink-runner.js';

export interface FileSinkOptions {
  readonly path: string;
  /** Rotate when the file would pass this size. */
  readonly maxBytes: number;
  /** Rotated files kept (`<path>.1` newest ... `<path>.<n>` oldest). */
  readonly maxFiles: number;
}

/**
 * One JSON document per line, appended; rotated by size (`leash-audit.log` →
 * `leash-audit.log.1` → ...), the oldest beyond `maxFiles` removed. Files are 0600.
 */
export function createFileSink(opts: FileSinkOptions): SinkTransport {
  let size: number | undefined;
  return {
    async send(items: readonly SinkItem[]): Promise<void> {
      const text = items.map((i) => `${i.payload}\n`).join('');
      const bytes = Buffer.byteLength(text);
      if (size === undefined) {
        await mkdir(dirname(opts.path), { recursive: true, mode: 0o700 });
        size = await stat(opts.path).then(
          (s) => s.size,
          () => 0,
        );
      }
      if (size > 0 && size + bytes > opts.maxBytes) {
        await rm(`${opts.path}.${opts.maxFiles}`, { force: true });
        for (let i = opts.maxFiles - 1; i >= 1; i--) await rename(`${opts.path}.${i}`, `${opts.path}.${i + 1}`).catch(() => undefined);
        await rename(opts.path, `${opts.path}.1`);
        size = 0;
      }
      await appendFile(opts.path, text, { mode: 0o600 });
      size += bytes;
    },
    async close() {},
  };
}
