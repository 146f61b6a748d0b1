/** A capped token remembers no new source: every source counts as known from then on. */
export const ANY_SOURCE = '\u0000any';

/**
 * Which sources each token has on record, remembered by one process so a repeated (token,
 * source) use costs the store nothing: it changes nothing that decides (not a first use,
 * not a new source). Trusted only while the store's sources version is the one this memory
 * was built at: every change to recorded sources by any process (a source added to a token,
 * token rows purged) moves the version, and a batch that finds it moved starts afresh. An
 * entry is not trusted past its keep-until either (a row may expire there on its own).
 * Bounded; the oldest token is forgotten first.
 */
export class KnownSources {
  readonly #known = new Map<string, { readonly sources: Set<string>; n: number; keepUntil: number }>();
  /** The store's sources version this memory is true at; undefined: nothing is trusted. */
  version: number | undefined;
  constructor(readonly max = 50_000) {}

  /** The token's count of recorded sources when this use's source is among them at `now`; undefined: ask the store. */
  countIfKnown(jti: string, source: string, now: number): number | undefined {
    const e = this.#known.get(jti);
    return e !== undefined && now < e.keepUntil && (e.sources.has(source) || e.sources.has(ANY_SOURCE)) ? e.n : undefined;
  }

  /**
   * `sources`: what the row holds now (the store's answer), `n` its count, `keepUntil` how
   * long the row is kept at least; a use without a source ('') is remembered too, and every
   * source once the token is capped. `fresh`: the row was just created (a token forgotten by
   * retention and used again), so what was known goes.
   */
  learn(jti: string, sources: readonly string[], n: number, keepUntil: number, fresh: boolean, capped: boolean): void {
    let e = fresh ? undefined : this.#known.get(jti);
    if (!e) {
      this.#known.delete(jti);
      if (this.#known.size >= this.max) this.#known.delete(this.#known.keys().next().value as string);
      this.#known.set(jti, (e = { sources: new Set(['']), n, keepUntil }));
    }
    e.n = n;
    if (keepUntil > e.keepUntil) e.keepUntil = keepUntil;
    for (const src of sources) e.sources.add(src);
    if (capped) e.sources.add(ANY_SOURCE);
  }

  forget(): void {
    this.#known.clear();
    this.version = undefined;
  }
}
