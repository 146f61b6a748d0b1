/*
 * Group commit: the writes that concurrent requests submit during one event-loop turn go
 * into one SQLite transaction, written in the turn's check phase (setImmediate), and each
 * caller's promise settles only after that commit. One commit writes each page it touched
 * to the WAL once instead of once per request, so fewer pages reach the WAL and the
 * checkpoints that copy them back: on this project's token and audit tables, batches of 4
 * cost ~120 µs of wall time per exchange where one transaction each cost ~180-200 µs
 * (docs/performance.md, "Group commit").
 */

/** One item's result: committed with the batch, or refused alone (the rest of the batch still commits). */
export type ItemOutcome<O> = { readonly ok: true; readonly value: O } | { readonly ok: false; readonly error: unknown };

interface Pending<I, O> {
  readonly item: I;
  readonly resolve: (value: O) => void;
  readonly reject: (error: unknown) => void;
}

/** Bounds one transaction (and the event-loop time it holds) when very many writes arrive in one turn. */
export const MAX_GROUP = 256;

export class GroupCommit<I, O> {
  readonly #commit: (items: readonly I[]) => ItemOutcome<O>[];
  #pending: Pending<I, O>[] = [];
  #scheduled = false;

  /**
   * `commit` runs the whole batch in one transaction and returns one outcome per item, in
   * order; if it throws, nothing was written and every item of the batch fails with that error.
   */
  constructor(commit: (items: readonly I[]) => ItemOutcome<O>[]) {
    this.#commit = commit;
  }

  submit(item: I): Promise<O> {
    return new Promise<O>((resolve, reject) => {
      this.#pending.push({ item, resolve, reject });
      if (!this.#scheduled) {
        this.#scheduled = true;
        setImmediate(this.#flush);
      }
    });
  }

  readonly #flush = (): void => {
    this.#scheduled = false;
    const all = this.#pending;
    this.#pending = [];
    for (let at = 0; at < all.length; at += MAX_GROUP) this.#write(all.length <= MAX_GROUP ? all : all.slice(at, at + MAX_GROUP));
  };

  #write(batch: readonly Pending<I, O>[]): void {
    let outcomes: ItemOutcome<O>[];
    try {
      outcomes = this.#commit(batch.map((p) => p.item));
    } catch (err) {
      for (const p of batch) p.reject(err);
      return;
    }
    for (let i = 0; i < batch.length; i++) {
      const o = outcomes[i];
      const p = batch[i]!;
      if (o === undefined) p.reject(new Error('group commit: no outcome for an item'));
      else if (o.ok) p.resolve(o.value);
      else p.reject(o.error);
    }
  }
}
