import { readFileSync, watch, type FSWatcher } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, dirname, resolve } from 'node:path';
import { ConfigError } from './config-error.js';
import { configDigest, loadConfigBytes, type LoadedConfig } from './load.js';

export type ConfigWatchResult = { ok: true; loaded: LoadedConfig } | { ok: false; error: ConfigError | Error };

export interface WatchConfigOptions {
  /** Stops the watcher when aborted. */
  readonly signal?: AbortSignal;
  /** Quiet time after the last file event before reading the file (editors write in bursts). Default 200 ms. */
  readonly debounceMs?: number;
  /** Digest of the config the caller is running; default: the file's digest when the watcher starts. */
  readonly initialDigest?: string;
  /** Reload on SIGHUP (default true). */
  readonly sighup?: boolean;
}

export interface ConfigWatcher {
  close(): void;
  /** Read the file now (as SIGHUP does); resolves once the check, and any delivery, is done. */
  reload(): Promise<void>;
}

function currentDigest(path: string): string | undefined {
  try {
    return configDigest(readFileSync(path));
  } catch {
    return undefined;
  }
}

/**
 * Calls `onChange` whenever the config file's content changes (file events or SIGHUP),
 * with the validated config or the reason it was rejected. Content that has not changed
 * since the last delivery (same SHA-256) is not delivered again, so saving without edits
 * or a SIGHUP with nothing new does nothing. Whether to keep the running policy on an
 * error is the caller's decision.
 *
 * The folder is watched, not the file: editors that save by writing a temporary file and
 * renaming it over the original replace the inode a file watch would be attached to, and
 * Kubernetes updates mounted ConfigMaps by swapping a `..data` symlink in the folder.
 */
export function watchConfig(path: string, onChange: (result: ConfigWatchResult) => void, opts: WatchConfigOptions = {}): ConfigWatcher {
  if (typeof path !== 'string' || path.length === 0) throw new TypeError('watchConfig: path must be a non-empty string');
  if (typeof onChange !== 'function') throw new TypeError('watchConfig: onChange must be a function');
  const debounceMs = opts.debounceMs ?? 200;
  if (!Number.isFinite(debounceMs) || debounceMs < 0) throw new TypeError('watchConfig: debounceMs must be a non-negative number');

  const file = resolve(path);
  const name = basename(file);
  let lastDigest = opts.initialDigest ?? currentDigest(file);
  let closed = false;
  let timer: NodeJS.Timeout | undefined;
  // Checks run one after another, so deliveries keep the order of the file's versions.
  let queue: Promise<void> = Promise.resolve();

  const deliver = (result: ConfigWatchResult) => {
    if (closed) return;
    try {
      onChange(result);
    } catch (e) {
      // A throwing callback must not take the watcher (or, from an fs event, the process) down.
      process.emitWarning(`config watcher callback threw: ${(e as Error).message}`);
    }
  };

  const check = async () => {
    let bytes: Buffer;
    try {
      bytes = await readFile(file);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code ?? 'unreadable';
      const marker = `unreadable:${code}`;
      if (closed || lastDigest === marker) return;
      lastDigest = marker;
      deliver({ ok: false, error: new ConfigError([{ path: '', message: `cannot read config file '${file}': ${code}` }]) });
      return;
    }
    const digest = configDigest(bytes);
    if (closed || digest === lastDigest) return;
    lastDigest = digest;
    let result: ConfigWatchResult;
    try {
      result = { ok: true, loaded: loadConfigBytes(bytes, file) };
    } catch (e) {
      result = { ok: false, error: e instanceof Error ? e : new Error(String(e)) };
    }
    deliver(result);
  };

  const reload = (): Promise<void> => {
    queue = queue.then(() => (closed ? undefined : check()));
    return queue;
  };

  const schedule = () => {
    if (closed) return;
    if (timer) clearTimeout(timer);
    timer = setTimeout(() => {
      timer = undefined;
      void reload();
    }, debounceMs);
    timer.unref();
  };

  let watcher: FSWatcher | undefined = watch(dirname(file), { persistent: false }, (_event, filename) => {
    // Some platforms do not name the file; then any change in the folder may be ours.
    if (filename === null || filename === name || filename.startsWith('..data')) schedule();
  });
  watcher.on('error', (error) => deliver({ ok: false, error }));

  const onHup = () => void reload();
  if (opts.sighup !== false) process.on('SIGHUP', onHup);

  const close = () => {
    if (closed) return;
    closed = true;
    if (timer) clearTimeout(timer);
    watcher?.close();
    watcher = undefined;
    process.off('SIGHUP', onHup);
    opts.signal?.removeEventListener('abort', close);
  };
  if (opts.signal?.aborted) close();
  else opts.signal?.addEventListener('abort', close, { once: true });

  return { close, reload };
}
