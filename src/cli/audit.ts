import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import type { JSONWebKeySet } from 'jose';
import { CHECKPOINT_EVENT, CheckpointError, checkpointJws, verifyCheckpoint, type VerifiedCheckpoint } from '../audit/checkpoint.js';
import { verifyStoreAudit } from '../audit/verify.js';
import { loadConfigFile } from '../config/load.js';
import { openStore } from '../store/open-store.js';
import { systemClock } from '../time/clock.js';
import type { CliIo, Invocation } from './command-spec.js';

/** The compact JWS that looks like one, without trusting anything in it yet. */
const COMPACT = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;

/**
 * `leash audit verify`: the store's chain from its genesis, in its epoch, and (with
 * `--checkpoint`) against the newest valid signed checkpoint. Exit 0 intact, 1 broken,
 * 2 when a given checkpoint could not be checked (no valid one, JWKS unreachable).
 */
export async function auditVerifyCommand(inv: Invocation, io: CliIo): Promise<number> {
  const { out, err } = io;
  const loaded = await loadConfigFile(inv.string('config') as string);
  const settings = loaded.config.settings;

  let checkpoint: VerifiedCheckpoint | undefined;
  const source = inv.string('checkpoint');
  if (source !== undefined) {
    const candidates = await readCheckpoints(source);
    if (candidates.length === 0) {
      err(`no audit checkpoint found in ${source === '-' ? 'stdin' : source}\n`);
      return 2;
    }
    let jwks: JSONWebKeySet;
    try {
      jwks = await loadJwks(inv.string('jwks') ?? `${settings.issuer}/jwks`);
    } catch (e) {
      err(`cannot read the JWKS to verify the checkpoint: ${(e as Error).message}\n`);
      return 2;
    }
    for (const c of candidates) {
      try {
        checkpoint = await verifyCheckpoint(c, jwks, { issuer: settings.issuer });
        break;
      } catch (e) {
        if (e instanceof CheckpointError && e.reason === 'unknown_key') {
          err(`note: skipped a checkpoint: ${e.message}\n`);
          continue;
        }
        // A checkpoint that fails its signature is evidence of tampering with the log, not noise.
        err(`audit checkpoint INVALID: ${(e as Error).message}\n`);
        return 1;
      }
    }
    if (!checkpoint) {
      err('no checkpoint could be verified with the JWKS given\n');
      return 2;
    }
  }

  const store = await openStore(settings.store, systemClock, { identity: 'inspect' });
  try {
    const v = await verifyStoreAudit(store, { checkpoint });
    const cp = checkpoint ? `checkpoint seq ${checkpoint.seq} of epoch ${checkpoint.epoch} (kid ${checkpoint.kid}, signed ${new Date(checkpoint.iat * 1000).toISOString()})` : undefined;
    if (v.ok) {
      const range = v.count > 0 ? `seq ${v.first}..${v.last}, ` : '';
      out(`audit chain intact: ${v.count} events (${range}store epoch ${v.epoch ?? 'none'})${cp ? `; agrees with ${cp}` : ''}\n`);
      if (!cp) err('note: no checkpoint given: records cut off the end of the chain would not show (pass --checkpoint; see docs/events.md)\n');
      return 0;
    }
    err(`audit chain BROKEN at seq ${v.brokenAt}: ${v.reason}${cp ? ` [against ${cp}]` : ''}\n`);
    return 1;
  } finally {
    await store.close();
  }
}

/** Candidate checkpoints (compact JWS), newest first by their (not yet verified) iat, then seq. */
async function readCheckpoints(source: string): Promise<string[]> {
  // A value shaped like a JWS is one, unless a file of that name exists.
  const text = source === '-' ? await readStdin() : COMPACT.test(source) && !existsSync(source) ? source : await readFile(source, 'utf8');
  const found: string[] = [];
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (line === '') continue;
    if (COMPACT.test(line)) {
      found.push(line);
      continue;
    }
    // Audit JSON lines; anything else a log pipeline interleaves is skipped.
    const start = line.indexOf('{');
    if (start < 0) continue;
    let obj: Record<string, unknown>;
    try {
      obj = JSON.parse(line.slice(start)) as Record<string, unknown>;
    } catch {
      continue;
    }
    if (obj?.type !== CHECKPOINT_EVENT) continue;
    const jws = checkpointJws(obj);
    if (jws) found.push(jws);
  }
  const claims = (jws: string) => {
    try {
      const p = JSON.parse(Buffer.from(jws.split('.')[1] as string, 'base64url').toString('utf8')) as { iat?: unknown; seq?: unknown };
      return { iat: typeof p.iat === 'number' ? p.iat : 0, seq: typeof p.seq === 'number' ? p.seq : 0 };
    } catch {
      return { iat: 0, seq: 0 };
    }
  };
  return found
    .map((jws) => ({ jws, ...claims(jws) }))
    .sort((x, y) => y.iat - x.iat || y.seq - x.seq)
    .map((c) => c.jws);
}

async function loadJwks(where: string): Promise<JSONWebKeySet> {
  let doc: unknown;
  if (/^https?:\/\//.test(where)) {
    const res = await fetch(where, { signal: AbortSignal.timeout(5000), redirect: 'error', headers: { accept: 'application/json' } });
    if (!res.ok) throw new Error(`${where} answered ${res.status}`);
    doc = await res.json();
  } else {
    doc = JSON.parse(await readFile(where, 'utf8'));
  }
  if (!doc || !Array.isArray((doc as { keys?: unknown }).keys)) throw new Error(`${where} is not a JWKS`);
  return doc as JSONWebKeySet;
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}
