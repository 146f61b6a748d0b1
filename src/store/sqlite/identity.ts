import type Database from 'better-sqlite3';
import type { ChainAnchor } from '../../formats/chain-hash.js';
import {
  freshGenesis,
  genesisAnchor,
  mergeMarker,
  newEpoch,
  parseGenesis,
  parseMarker,
  storeResetError,
  type AcceptedReset,
  type AuditGenesis,
  type IdentityChange,
  type IdentityState,
  type ResetMarker,
  type StoreIdentity,
} from '../store-identity.js';
import type { SqliteHandle } from './handle.js';

/** Rows of the `meta` table that make up the store's identity (see store-identity.ts). */
const EPOCH = 'epoch';
const RESET = 'reset';
const GENESIS = 'audit_genesis';

export type IdentityStatements = Record<'get' | 'put' | 'del' | 'firstAudit' | 'revocationSeq' | 'setRevocationSeq' | 'insertRevocationSeq', Database.Statement>;

export function prepareIdentity(db: Database.Database): IdentityStatements {
  return {
    get: db.prepare('SELECT value FROM meta WHERE key = ?'),
    put: db.prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value'),
    del: db.prepare('DELETE FROM meta WHERE key = ?'),
    firstAudit: db.prepare('SELECT seq FROM audit ORDER BY seq LIMIT 1'),
    // AUTOINCREMENT keeps the highest seq ever handed out in sqlite_sequence.
    revocationSeq: db.prepare("SELECT seq FROM sqlite_sequence WHERE name = 'revocations'"),
    setRevocationSeq: db.prepare("UPDATE sqlite_sequence SET seq = ? WHERE name = 'revocations' AND seq < ?"),
    insertRevocationSeq: db.prepare("INSERT INTO sqlite_sequence (name, seq) SELECT 'revocations', ? WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'revocations')"),
  };
}

function value(s: IdentityStatements, key: string): string | null {
  return (s.get.get(key) as { value: string } | undefined)?.value ?? null;
}

export function readEpoch(s: IdentityStatements): string | null {
  return value(s, EPOCH);
}

export function readIdentity(s: IdentityStatements): IdentityState {
  return { epoch: value(s, EPOCH), marker: parseMarker(value(s, RESET)), genesis: parseGenesis(value(s, GENESIS)) };
}

export function readGenesis(s: IdentityStatements): AuditGenesis | null {
  return parseGenesis(value(s, GENESIS));
}

/**
 * A replica opening the store: writes the epoch (and the genesis of a chain that begins
 * now) if the store has none. Run inside an IMMEDIATE transaction by the caller. Returns
 * the state after.
 */
export function initialiseIdentity(s: IdentityStatements): IdentityState {
  const state = readIdentity(s);
  if (state.marker || state.epoch !== null) return state;
  const epoch = newEpoch();
  s.put.run(EPOCH, epoch);
  // An existing chain (a store from before epochs) began at seq 1 too.
  const genesis = state.genesis ?? freshGenesis(epoch);
  if (!state.genesis) s.put.run(GENESIS, JSON.stringify(genesis));
  return { epoch, marker: null, genesis };
}

/** Leaves (or raises) the reset marker; returns the marker now stored. */
export function markReset(s: IdentityStatements, mine: ResetMarker): ResetMarker {
  const merged = mergeMarker(parseMarker(value(s, RESET)), mine);
  s.put.run(RESET, JSON.stringify(merged));
  return merged;
}

/** `leash store accept-reset` on SQLite; inside an IMMEDIATE transaction. */
export function acceptResetRows(s: IdentityStatements, by: string, at: number): AcceptedReset | undefined {
  const state = readIdentity(s);
  const marker = state.marker;
  if (!marker) return undefined;
  s.del.run(RESET);
  // A false alarm (the store still has the epoch the replicas knew): nothing was lost.
  if (state.epoch === marker.previousEpoch) return { marker, epoch: state.epoch, genesis: state.genesis ?? freshGenesis(state.epoch), continued: false };
  const epoch = state.epoch ?? newEpoch();
  s.put.run(EPOCH, epoch);
  const reset = { ...marker, acceptedAt: at, acceptedBy: by };
  const empty = s.firstAudit.get() === undefined;
  const base: AuditGenesis = state.genesis?.epoch === epoch ? state.genesis : freshGenesis(epoch);
  const head: ChainAnchor = marker.auditHead;
  // An empty chain continues the lost one's numbering and links to its last known hash, so
  // the shipped audit lines stay one chain and seqs are never reused.
  const genesis: AuditGenesis = empty ? { epoch, seq: head.seq + 1, prevHash: head.hash, reset } : { ...base, reset };
  s.put.run(GENESIS, JSON.stringify(genesis));
  // The feed never hands out a seq a follower may already hold.
  s.setRevocationSeq.run(marker.revocationSeq, marker.revocationSeq);
  s.insertRevocationSeq.run(marker.revocationSeq);
  return { marker, epoch, genesis, continued: empty };
}

/** The identity role: the handle keeps the epoch and judges it (handle.ts); this is its face to callers and operators. */
export class SqliteIdentity implements StoreIdentity {
  readonly #h: SqliteHandle;

  constructor(h: SqliteHandle) {
    this.#h = h;
  }

  epoch(): string | undefined {
    return this.#h.identity.epoch;
  }

  resetPending(): ResetMarker | undefined {
    return this.#h.identity.reset;
  }

  onIdentityChange(listener: (change: IdentityChange) => void): () => void {
    return this.#h.identity.subscribe(listener);
  }

  async identity(): Promise<IdentityState> {
    return this.#h.run('identity', () => readIdentity(this.#h.identityRows), { ungated: true });
  }

  async checkEpoch(): Promise<void> {
    const h = this.#h;
    h.run('checkEpoch', () => h.judge(), { ungated: true });
    const reset = h.identity.reset;
    if (reset) throw storeResetError(reset, 'sqlite', 'checkEpoch');
  }

  async acceptReset(by: string, at: number): Promise<AcceptedReset | undefined> {
    const h = this.#h;
    const i = h.identityRows;
    const accepted = h.run('acceptReset', () => h.durably(() => h.db.transaction(() => acceptResetRows(i, by, at)).immediate()), { ungated: true });
    if (accepted) {
      h.identity.set(accepted.epoch);
      if (!h.auditHeadRow()) h.head = genesisAnchor(accepted.genesis);
      h.run('checkEpoch', () => h.judge(), { ungated: true });
    }
    return accepted;
  }
}
