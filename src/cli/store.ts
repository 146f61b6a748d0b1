import { userInfo } from 'node:os';
import { AuditRecorder } from '../audit/recorder.js';
import { loadConfigFile } from '../config/load.js';
import { openStore } from '../store/open-store.js';
import { describeReset } from '../store/store-identity.js';
import { systemClock } from '../time/clock.js';
import type { CliIo, Invocation } from './command-spec.js';

/**
 * `leash store`: the store's identity, and the operator's acknowledgement of a reset.
 * Talks to the store directly (as `leash audit verify` does), never to a replica: the
 * acknowledgement is written into the store, where every replica reads it on its next
 * revocation sync (`revocation.sync_interval_ms`) and serves again.
 */
export async function storeCommand(inv: Invocation, io: CliIo): Promise<number> {
  const { out, err } = io;
  const verb = inv.path[1] as 'status' | 'accept-reset';
  const loaded = await loadConfigFile(inv.string('config') as string);
  const store = await openStore(loaded.config.settings.store, systemClock, { identity: 'inspect' });
  try {
    const id = await store.identity();
    if (verb === 'status') {
      out(`store ${store.kind}: epoch ${id.epoch ?? 'none (never initialised, or wiped)'}\n`);
      if (id.genesis)
        out(
          `audit chain begins at seq ${id.genesis.seq}${id.genesis.reset ? ` (after a reset of epoch ${id.genesis.reset.previousEpoch}, accepted by ${id.genesis.reset.acceptedBy} at ${new Date(id.genesis.reset.acceptedAt).toISOString()})` : ''}\n`,
        );
      if (id.marker) {
        out(`RESET PENDING: ${describeReset(id.marker)}\n`);
        return 1;
      }
      return 0;
    }
    if (!id.marker) {
      out(`no reset pending: the store is in epoch ${id.epoch ?? 'none'}\n`);
      return 0;
    }
    if (!inv.has('yes')) {
      err(`${describeReset(id.marker)}\nAccepting tells every replica to serve again on what the store holds now. Re-run with --yes to accept.\n`);
      return 2;
    }
    const actor = `cli:${inv.string('by') ?? safeUser()}`;
    const accepted = await store.acceptReset(actor, systemClock.now());
    if (!accepted) {
      out('no reset pending any more (accepted meanwhile)\n');
      return 0;
    }
    // The first record of the new chain says what was lost and who accepted it.
    await new AuditRecorder(store, { clock: systemClock }).record('store.reset_accepted', {
      previous_epoch: accepted.marker.previousEpoch,
      epoch: accepted.epoch,
      actor,
      detected_at: accepted.marker.detectedAt,
      lost_audit_head_seq: accepted.marker.auditHead.seq,
      lost_revocation_seq: accepted.marker.revocationSeq,
      continued: accepted.continued,
    });
    const m = accepted.marker;
    out(
      [
        `reset accepted: the store is now epoch ${accepted.epoch} (was ${m.previousEpoch})`,
        accepted.continued
          ? `the audit chain continues at seq ${accepted.genesis.seq}, linked to the last head the replicas saw (seq ${m.auditHead.seq})`
          : `the audit chain had restarted before the acceptance; its genesis records the reset`,
        `the revocation feed continues above seq ${m.revocationSeq}; followers drop their cursor on the new epoch`,
        'replicas serve again within revocation.sync_interval_ms',
        'revocations and tasks from before the reset are gone from the store: tokens revoked then are live again on a replica that did not hold them;',
        'to end them, revoke the signing keys that were current before the reset (leash keys revoke <kid> --reason ...).',
      ].join('\n') + '\n',
    );
    return 0;
  } finally {
    await store.close();
  }
}

function safeUser(): string {
  try {
    return userInfo().username || 'unknown';
  } catch {
    return 'unknown';
  }
}
