import { referencedFiles, type LoadedConfig } from './load.js';
import type { Settings } from './schema.js';

/** Settings that shape the process: a reload that changes one is refused (they apply on restart). */
export const RESTART_ONLY_SETTINGS = ['listen', 'management', 'store', 'keys', 'issuer', 'vault', 'tls', 'workers'] as const;

/** Whether a newly loaded config is the one in force: same file and, when it names files (JWKS), the same files. */
export function unchangedConfig(next: LoadedConfig, current: LoadedConfig): boolean {
  return next.digest === current.digest && next.filesDigest === current.filesDigest;
}

/** Throws, naming them, when the new settings change any restart-only setting. */
export function assertReloadable(next: Settings, current: Settings): void {
  const changed: string[] = RESTART_ONLY_SETTINGS.filter((k) => JSON.stringify(next[k]) !== JSON.stringify(current[k]));
  // The audit sinks hold connections and on-disk backlogs: they are built once, at start.
  if (JSON.stringify(next.audit.sinks) !== JSON.stringify(current.audit.sinks)) changed.push('audit.sinks');
  if (changed.length > 0) throw new Error(`settings ${changed.join(', ')} change only on restart`);
}

/** How `policy.loaded` names a policy: its file's digest, and that of the files it names when there are any. */
export function policyDigests(loaded: LoadedConfig): { digest: string; files_digest?: string } {
  const files = referencedFiles(loaded.config, loaded.baseDir);
  return files.length > 0 && loaded.filesDigest !== undefined ? { digest: loaded.digest, files_digest: loaded.filesDigest } : { digest: loaded.digest };
}
