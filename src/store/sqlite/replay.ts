import type Database from 'better-sqlite3';
import type { ReplayCache, ReplayView } from '../store.js';
import type { SqliteHandle } from './handle.js';

/* The replay cache (DPoP proofs, client assertions): expiry by the injected clock, purged lazily. */

function prepare(db: Database.Database) {
  return {
    remember: db.prepare('INSERT INTO replay (key, expires_at) VALUES (@key, @expiresAt) ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at WHERE replay.expires_at <= @now'),
    purge: db.prepare('DELETE FROM replay WHERE expires_at <= ?'),
    seen: db.prepare('SELECT 1 FROM replay WHERE key = ? AND expires_at > ?'),
  };
}

export class SqliteReplay implements ReplayCache, ReplayView {
  readonly #h: SqliteHandle;
  readonly #s: ReturnType<typeof prepare>;
  readonly #purgeEvery: number;
  #calls = 0;

  constructor(h: SqliteHandle, purgeEvery: number) {
    this.#h = h;
    this.#s = prepare(h.db);
    this.#purgeEvery = purgeEvery;
  }

  async remember(key: string, expiresAt: number): Promise<boolean> {
    const now = this.#h.clock.now();
    return this.#h.run('remember', () => {
      // Amortised clean-up instead of a timer: no background work to stop, no lost wake-ups.
      if (++this.#calls % this.#purgeEvery === 0) this.#s.purge.run(now);
      // One statement: insert, or take over a row whose expiry has passed; a live row is
      // left alone and changes nothing, which is the replay.
      return this.#s.remember.run({ key, expiresAt, now }).changes === 1;
    });
  }

  async seen(key: string): Promise<boolean> {
    const now = this.#h.clock.now();
    // The same test as remember's: a row whose expiry has passed is forgotten, purged or not.
    return this.#h.run('seen', () => this.#s.seen.get(key, now) !== undefined);
  }
}
