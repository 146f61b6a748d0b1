import type { IssuedToken, Revocation } from '../store/records.js';
import type { RevocationService } from '../revocation/revocation-service.js';

/**
 * When each live revocation was made, as the revocation view delivers them (every record
 * within its keepUntil, from the first sync on). The view answers "is it revoked now"; a
 * usage report is about a call made a moment ago, so "was it used after its revocation"
 * needs the revocation's time: a call made before a revocation and reported after it is
 * not an anomaly. Bounded like the view: records are forgotten at their keepUntil.
 */
export class RevocationTimes {
  readonly #tokens = new Map<string, { at: number; keepUntil: number }>();
  readonly #tasks = new Map<string, { at: number; keepUntil: number }>();
  readonly #keys = new Map<string, { at: number; keepUntil: number }>();
  readonly #plugins = new Map<string, Array<{ at: number; issuedBefore: number; keepUntil: number }>>();
  readonly #unsubscribe: () => void;

  constructor(revocation: Pick<RevocationService, 'onRevocation'>) {
    this.#unsubscribe = revocation.onRevocation((r) => this.#add(r));
  }

  #add(r: Revocation): void {
    const keep = (m: Map<string, { at: number; keepUntil: number }>) => {
      const prev = m.get(r.id);
      m.set(r.id, { at: Math.min(prev?.at ?? r.revokedAt, r.revokedAt), keepUntil: Math.max(prev?.keepUntil ?? 0, r.keepUntil) });
    };
    if (r.scope === 'token') keep(this.#tokens);
    else if (r.scope === 'task') keep(this.#tasks);
    else if (r.scope === 'key') keep(this.#keys);
    else {
      const list = this.#plugins.get(r.id) ?? [];
      list.push({ at: r.revokedAt, issuedBefore: r.issuedBefore, keepUntil: r.keepUntil });
      // A few per plugin at most (suspensions, reloads); keep the list short anyway.
      if (list.length > 16) list.shift();
      this.#plugins.set(r.id, list);
    }
  }

  /** The earliest revocation covering the token (ms), or undefined when none is known. */
  revokedAt(t: Pick<IssuedToken, 'jti' | 'plugin' | 'task' | 'kid' | 'issuedAt'>): number | undefined {
    // Asked for every use a usage batch reports: no allocation on the way.
    let at = this.#tokens.get(t.jti)?.at;
    if (t.task !== undefined) at = earlier(at, this.#tasks.get(t.task)?.at);
    if (t.kid !== undefined) at = earlier(at, this.#keys.get(t.kid)?.at);
    const plugin = this.#plugins.get(t.plugin);
    // A plugin-wide revocation covers tokens issued before it, by their iat in whole seconds as the revocation view compares.
    if (plugin !== undefined) for (const p of plugin) if (Math.floor(t.issuedAt / 1000) * 1000 <= p.issuedBefore) at = earlier(at, p.at);
    return at;
  }

  prune(now: number): void {
    for (const m of [this.#tokens, this.#tasks, this.#keys]) for (const [id, v] of m) if (v.keepUntil <= now) m.delete(id);
    for (const [id, list] of this.#plugins) {
      const live = list.filter((p) => p.keepUntil > now);
      if (live.length === 0) this.#plugins.delete(id);
      else this.#plugins.set(id, live);
    }
  }

  close(): void {
    this.#unsubscribe();
  }
}

function earlier(a: number | undefined, b: number | undefined): number | undefined {
  return a === undefined ? b : b === undefined || a <= b ? a : b;
}
