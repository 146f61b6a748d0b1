import { readFileSync, watch, type FSWatcher } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, dirname, resolve } from 'node:path';
import { ConfigError } from './config-error.js';
import { configDigest, loadConfigBytes, referencedFiles, referencedFilesDigest, type LoadedConfig } from './load.js';

export type ConfigWatchResult = { ok: true; loaded: LoadedConfig } | { ok: false; error: ConfigError | Error };

export interface WatchConfigOptions {
  /** Stops the watcher when aborted. */
  readonly signal?: AbortSignal;
  /** Quiet time after the last file event before reading the file (editors write in bursts). Default 200 ms. */
  readonly debounceMs?: number;
  /** Digest of the config the caller is running; default: the file's digest when the watcher starts. */
  readonly initialDigest?: string;
  /**
   * The config the caller is running (wins over `initialDigest`): its digests are the
   * baseline, and the files it names are watched from the start. Default: the file as it is
   * when the watcher starts.
   */
  readonly initial?: LoadedConfig;
  /** Reload on SIGHUP (default true). */
  readonly sighup?: boolean;
  /** How the bytes become a config (default loadConfigBytes): `leash serve --guardrails` re-reads its guardrails file here. */
  readonly load?: (bytes: Uint8Array, path: string) => LoadedConfig;
}

export interface ConfigWatcher {
  close(): void;
  /** Read the file now (as SIGHUP does); resolves once the check, and any delivery, is done. */
  reload(): Promise<void>;
}

/** The files a loaded config names, and their digest as loaded. */
interface Referenced {
  readonly paths: readonly string[];
  readonly digest: string;
}

const referencedBy = (loaded: LoadedConfig): Referenced => {
  // A guardrails file is watched like the files the config names.
  const paths = [...referencedFiles(loaded.config, loaded.baseDir), ...(loaded.guardrailsPath !== undefined ? [loaded.guardrailsPath] : [])];
  return { paths, digest: loaded.filesDigest ?? referencedFilesDigest(paths) };
};

function currentState(path: string, load: (bytes: Uint8Array, path: string) => LoadedConfig): { digest: string | undefined; referenced: Referenced | undefined } {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch {
    return { digest: undefined, referenced: undefined };
  }
  try {
    return { digest: configDigest(bytes), referenced: referencedBy(load(bytes, path)) };
  } catch {
    return { digest: configDigest(bytes), referenced: undefined };
  }
}

/**
 * Calls `onChange` whenever the config file's content changes, or the content of a file it
 * names (`referencedFiles`: JWKS files), on file events or SIGHUP, with the validated
 * config or the reason it was rejected. Nothing is delivered when neither changed since the
 * last delivery (same SHA-256s), so saving without edits or a SIGHUP with nothing new does
 * nothing. Whether to keep the running policy on an error is the caller's decision.
 *
 * Folders are watched, not files: editors that save by writing a temporary file and
 * renaming it over the original replace the inode a file watch would be attached to, and
 * Kubernetes updates mounted ConfigMaps by swapping a `..data` symlink in the folder. The
 * folders of referenced files are watched too when they exist (one watch per folder);
 * SIGHUP re-reads them whatever the platform reports.
 */
export function watchConfig(path: string, onChange: (result: ConfigWatchResult) => void, opts: WatchConfigOptions = {}): ConfigWatcher {
  if (typeof path !== 'string' || path.length === 0) throw new TypeError('watchConfig: path must be a non-empty string');
  if (typeof onChange !== 'function') throw new TypeError('watchConfig: onChange must be a function');
  const debounceMs = opts.debounceMs ?? 200;
  if (!Number.isFinite(debounceMs) || debounceMs < 0) throw new TypeError('watchConfig: debounceMs must be a non-negative number');

  const file = resolve(path);
  const load = opts.load ?? ((bytes: Uint8Array, p: string) => loadConfigBytes(bytes, p));
  const start = opts.initial ? { digest: opts.initial.digest, referenced: referencedBy(opts.initial) } : currentState(file, load);
  let lastDigest = opts.initial ? start.digest : (opts.initialDigest ?? start.digest);
  // The files named by the last config that parsed, and their digest when it was delivered.
  let referenced = start.referenced;
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
    if (closed) return;
    if (digest === lastDigest) {
      // Same config: still a change when a file it names changed.
      const files = referenced ? referencedFilesDigest(referenced.paths) : undefined;
      if (!referenced || files === referenced.digest) return;
      referenced = { paths: referenced.paths, digest: files! };
    }
    lastDigest = digest;
    let result: ConfigWatchResult;
    try {
      result = { ok: true, loaded: load(bytes, file) };
      referenced = referencedBy(result.loaded);
      watchFolders(referenced.paths);
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

  // Folder -> its watch and the names in it that matter (the config file, referenced files).
  const folders = new Map<string, { watcher: FSWatcher; names: Set<string> }>();
  const watchFolder = (folder: string, names: Set<string>, required: boolean) => {
    const current = folders.get(folder);
    if (current) {
      current.names = names;
      return;
    }
    let watcher: FSWatcher;
    try {
      watcher = watch(folder, { persistent: false }, (_event, filename) => {
        // Some platforms do not name the file; then any change in the folder may be ours.
        if (filename === null || filename.startsWith('..data') || folders.get(folder)?.names.has(filename)) schedule();
      });
    } catch (e) {
      if (required) throw e;
      return; // a referenced file's folder that does not exist (yet): SIGHUP still re-reads it
    }
    watcher.on('error', (error) => deliver({ ok: false, error }));
    folders.set(folder, { watcher, names });
  };
  const configFolder = dirname(file);
  const watchFolders = (paths: readonly string[]) => {
    if (closed) return;
    const wanted = new Map<string, Set<string>>([[configFolder, new Set([basename(file)])]]);
    for (const p of paths) {
      const names = wanted.get(dirname(p)) ?? new Set<string>();
      names.add(basename(p));
      wanted.set(dirname(p), names);
    }
    for (const [folder, entry] of folders) {
      if (!wanted.has(folder)) {
        entry.watcher.close();
        folders.delete(folder);
      }
    }
    for (const [folder, names] of wanted) watchFolder(folder, names, folder === configFolder);
  };
  watchFolders(referenced?.paths ?? []);

  const onHup = () => void reload();
  if (opts.sighup !== false) process.on('SIGHUP', onHup);

  const close = () => {
    if (closed) return;
    closed = true;
    if (timer) clearTimeout(timer);
    for (const entry of folders.values()) entry.watcher.close();
    folders.clear();
    process.off('SIGHUP', onHup);
    opts.signal?.removeEventListener('abort', close);
  };
  if (opts.signal?.aborted) close();
  else opts.signal?.addEventListener('abort', close, { once: true });

  return { close, reload };
}
