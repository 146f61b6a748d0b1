import type { Env } from './interpolate.js';

/**
 * LEASH_* environment variables for the settings an operator sets per environment (where
 * to listen, what the issuer URL is, which store, how much to log), so one policy file
 * serves every environment. One naming rule: `LEASH_` + the path under `settings`,
 * upper-cased, `.` as `_` (`settings.store.url` → `LEASH_STORE_URL`). Only the settings
 * below: policy (issuers, plugins, grants, guardrails) never comes from the environment.
 * An override wins over the file; an empty variable counts as unset.
 */
export const ENV_OVERRIDABLE_SETTINGS = [
  'issuer',
  'listen.host',
  'listen.port',
  'management.listen.host',
  'management.listen.port',
  'store.kind',
  'store.path',
  'store.url',
  'store.key_prefix',
  'keys.backend',
  'keys.dir',
  'log.level',
  'production',
] as const;

export const envNameOf = (setting: string): string => `LEASH_${setting.toUpperCase().replace(/\./g, '_')}`;

/** One override that applied: which variable set which setting (JSON pointer). The value is not kept: it may be a secret. */
export interface EnvOverride {
  readonly env: string;
  readonly path: string;
}

export interface OverrideResult {
  readonly value: unknown;
  readonly applied: readonly EnvOverride[];
  /** What each variable set, to keep it out of messages. */
  readonly substituted: ReadonlyMap<string, string>;
}

const isRecord = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

/** Apply the overrides the environment sets to a parsed config (a private copy: changed in place). */
export function applyEnvOverrides(config: unknown, env: Env): OverrideResult {
  const applied: EnvOverride[] = [];
  const substituted = new Map<string, string>();
  if (!isRecord(config)) return { value: config, applied, substituted };
  for (const setting of ENV_OVERRIDABLE_SETTINGS) {
    const name = envNameOf(setting);
    const value = env[name];
    if (value === undefined || value === '') continue;
    const keys = ['settings', ...setting.split('.')];
    let at: Record<string, unknown> = config;
    let reachable = true;
    for (const key of keys.slice(0, -1)) {
      if (at[key] === undefined) at[key] = {};
      const next = at[key];
      // A section written as something else than an object: the schema reports it.
      if (!isRecord(next)) {
        reachable = false;
        break;
      }
      at = next;
    }
    if (!reachable) continue;
    at[keys[keys.length - 1]!] = value;
    applied.push({ env: name, path: `/${keys.join('/')}` });
    substituted.set(name, value);
  }
  return { value: config, applied, substituted };
}
