import type { Settings } from '../config/schema.js';
import type { Clock } from '../time/clock.js';
import { openSqliteStore } from './sqlite/sqlite-store.js';
import type { Store } from './store.js';

/** The closed set of store backends, selected by `settings.store.kind`. */
export async function openStore(settings: Settings['store'], clock: Clock): Promise<Store> {
  switch (settings.kind) {
    case 'sqlite':
      return openSqliteStore({ path: settings.path, clock });
    case 'redis': {
      const { openRedisStore } = await import('./redis/redis-store.js');
      return openRedisStore({ url: settings.url, keyPrefix: settings.key_prefix, clock, password: process.env.LEASH_REDIS_PASSWORD });
    }
    default:
      throw new TypeError(`unknown store kind '${String((settings as { kind: unknown }).kind)}'; valid: sqlite, redis`);
  }
}
