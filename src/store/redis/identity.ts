import {
  freshGenesis,
  genesisAnchor,
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
import { formatHead, parseHead, type RedisConnection } from './connection.js';
import { ACCEPT_RESET } from './redis-scripts.js';

/*
 * The identity role: the connection keeps the epoch and judges it after every reconnection
 * (connection.ts); this is its face to callers and operators (`leash store accept-reset`).
 */
export class RedisIdentity implements StoreIdentity {
  readonly #c: RedisConnection;

  constructor(c: RedisConnection) {
    this.#c = c;
  }

  epoch(): string | undefined {
    return this.#c.identity.epoch;
  }

  resetPending(): ResetMarker | undefined {
    return this.#c.identity.reset;
  }

  onIdentityChange(listener: (change: IdentityChange) => void): () => void {
    return this.#c.identity.subscribe(listener);
  }

  async identity(): Promise<IdentityState> {
    return this.#c.call('identity', () => this.#c.readIdentity(), { ungated: true });
  }

  async checkEpoch(): Promise<void> {
    const c = this.#c;
    await c.call(
      'checkEpoch',
      async () => {
        // A server refused for lack of AOF is no witness of the store's identity: its
        // identity is judged only once it persists again (the refusal then ends).
        if (c.refusal) await c.verifyConnection();
        else await c.judge();
      },
      { ungated: true },
    );
    if (c.refusal) throw c.refusal;
    const reset = c.identity.reset;
    if (reset) throw storeResetError(reset, 'redis', 'checkEpoch');
  }

  async acceptReset(by: string, at: number): Promise<AcceptedReset | undefined> {
    const c = this.#c;
    const k = c.k;
    return c.call(
      'acceptReset',
      async () => {
        for (let attempt = 0; attempt < 10; attempt++) {
          const [epochRaw, markerRaw, genesisRaw] = await c.client.mget(k.storeEpoch, k.storeReset, k.auditGenesis);
          const marker = parseMarker(markerRaw);
          if (!marker) return undefined;
          const falseAlarm = epochRaw === marker.previousEpoch;
          const epoch = epochRaw ?? newEpoch();
          const current = parseGenesis(genesisRaw);
          const reset = { ...marker, acceptedAt: at, acceptedBy: by };
          const continued: AuditGenesis = { epoch, seq: marker.auditHead.seq + 1, prevHash: marker.auditHead.hash, reset };
          const recorded: AuditGenesis = { ...(current?.epoch === epoch ? current : freshGenesis(epoch)), reset };
          const r = Number(
            await ACCEPT_RESET.run(
              c.client,
              [k.storeEpoch, k.storeReset, k.auditGenesis, k.auditHead, k.revocationSeq],
              [markerRaw ?? '', epochRaw ?? '', epoch, JSON.stringify(continued), JSON.stringify(recorded), formatHead(marker.auditHead), marker.revocationSeq, falseAlarm ? '1' : '0'],
            ),
          );
          if (r < 0) continue;
          const genesis = r === 0 ? (current ?? freshGenesis(epoch)) : r === 2 ? continued : recorded;
          c.identity.set(epoch);
          c.genesis = genesis;
          const head = await c.client.get(k.auditHead);
          c.head = head ? parseHead(head) : genesisAnchor(genesis);
          if (c.mode === 'serve') await c.judge();
          return { marker, epoch, genesis, continued: r === 2 };
        }
        throw new Error('accept-reset: the store kept changing underneath (10 attempts)');
      },
      { ungated: true },
    );
  }
}
