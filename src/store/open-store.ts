import { resolve } from 'node:path';
import type { Settings } from '../config/schema.js';
import { LeashError } from '../errors/leash-error.js';
import type { Clock } from '../time/clock.js';
import type { CheckedStore } from './shared/checked-store.js';
import { openSqliteStore } from './sqlite/sqlite-store.js';
import type { IdentityMode } from './store-identity.js';

export interface OpenStoreOptions {
  /** `serve` (default) for a replica; `inspect` for operator tooling (never initialises, never refuses a reset). */
  readonly identity?: IdentityMode;
  /** Operational warnings from the backend. */
  readonly log?: (msg: string, fields?: Record<string, unknown>) => void;
}

/**
 * A store that could not be opened, said in one line for the operator: which store (the
 * SQLite path, or the Redis address without credentials) and why. `cause` is the
 * LeashError (ERR_BACKEND_UNAVAILABLE or ERR_STORE_RESET) the backend threw.
 */
export class StoreOpenError extends Error {
  constructor(
    message: string,
    readonly code: string,
    options: { cause: unknown },
  ) {
    super(message, options);
    this.name = 'StoreOpenError';
  }
}

/**
 * The closed set of store backends, selected by `settings.store.kind`. Typed CheckedStore,
 * not Store: a backend that does not take the shared argument checks does not compile here.
 */
export async function openStore(settings: Settings['store'], clock: Clock, opts: OpenStoreOptions = {}): Promise<CheckedStore> {
  switch (settings.kind) {
    case 'sqlite':
      try {
        return openSqliteStore({ path: settings.path, clock, identity: opts.identity });
      } catch (err) {
        throw openError(`the sqlite store at ${settings.path === ':memory:' ? ':memory:' : resolve(settings.path)}`, err);
      }
    case 'redis': {
      const { openRedisStore, redisAddress } = await import('./redis/redis-store.js');
      try {
        return await openRedisStore({
          url: settings.url,
          keyPrefix: settings.key_prefix,
          clock,
          password: process.env.LEASH_REDIS_PASSWORD,
          allowVolatile: settings.allow_volatile,
          identity: opts.identity,
          log: opts.log,
        });
      } catch (err) {
        throw openError(`the redis store at ${redisAddress(settings.url)} (key prefix ${settings.key_prefix})`, err, [process.env.LEASH_REDIS_PASSWORD, urlPassword(settings.url)]);
      }
    }
    default:
      throw new TypeError(`unknown store kind '${String((settings as { kind: unknown }).kind)}'; valid: sqlite, redis`);
  }
}

function openError(what: string, err: unknown, secrets: ReadonlyArray<string | undefined> = []): unknown {
  if (!(err instanceof LeashError)) return err;
  const d = err.detail ?? {};
  let why = typeof d.message === 'string' ? d.message : err.description;
  const code = typeof d.code === 'string' && !why.startsWith(d.code) ? `${d.code}: ` : '';
  // No client library is known to echo a password, but the line goes to logs: make sure.
  for (const s of secrets) if (s) why = why.split(s).join('[redacted]');
  return new StoreOpenError(`cannot open ${what}: ${code}${why}`, err.code, { cause: err });
}

function urlPassword(url: string): string | undefined {
  try {
    const p = decodeURIComponent(new URL(url).password);
    return p.length > 0 ? p : undefined;
  } catch {
    return undefined;
  }
}
