import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CHECKPOINT_TYP, CheckpointWriter, checkpointJws, signCheckpoint, verifyCheckpoint, type CheckpointEvent } from '../../src/audit/checkpoint.js';
import { AuditRecorder, formatAuditLine, parseAuditLine } from '../../src/audit/recorder.js';
import { verifyStoreAudit } from '../../src/audit/verify.js';
import { createLocalKeyManager } from '../../src/keys/create-key-manager.js';
import type { KeyManager } from '../../src/keys/key-manager.js';
import { signJwt } from '../../src/keys/jws.js';
import { openSqliteStore } from '../../src/store/sqlite/sqlite-store.js';
import { ManualClock } from '../../src/time/clock.js';
import type { AuditEventType } from '../../src/audit/events.js';
import type { AuditRecord } from '../../src/store/records.js';

const ISSUER = 'https://leash.test';
let dir: string;
let keys: KeyManager;
let other: KeyManager;
const clock = new ManualClock(Date.UTC(2026, 11, 1));

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'leash-checkpoint-'));
  keys = createLocalKeyManager({ dir: join(dir, 'keys'), algorithm: 'ES256', clock });
  other = createLocalKeyManager({ dir: join(dir, 'other'), algorithm: 'EdDSA', clock });
  await keys.init();
  await other.init();
});
afterAll(async () => {
  await keys.close();
  await other.close();
  rmSync(dir, { recursive: true, force: true });
});

const claims = { iss: ISSUER, iat: 1_800_000_000, epoch: 'epoch-1', seq: 41, hash: 'ab'.repeat(32) };

describe('signed audit checkpoints', () => {
  it('signs with the current key and verifies with the JWKS', async () => {
    const event = await signCheckpoint(keys, claims);
    expect(event).toMatchObject({ epoch: 'epoch-1', head_seq: 41, head_hash: claims.hash, kid: keys.current().kid });
    const compact = checkpointJws(event as unknown as Record<string, unknown>)!;
    const v = await verifyCheckpoint(compact, keys.jwks(), { issuer: ISSUER });
    expect(v).toEqual({ ...claims, kid: keys.current().kid, compact });
    expect(JSON.parse(Buffer.from(compact.split('.')[0]!, 'base64url').toString())).toMatchObject({ typ: CHECKPOINT_TYP, alg: 'ES256' });
  });

  it('refuses an altered payload, another key, another issuer and a JWS that is not a checkpoint', async () => {
    const compact = checkpointJws((await signCheckpoint(keys, claims)) as unknown as Record<string, unknown>)!;
    const [h, , sig] = compact.split('.');
    const forged = `${h}.${Buffer.from(JSON.stringify({ ...claims, seq: 999 })).toString('base64url')}.${sig}`;
    await expect(verifyCheckpoint(forged, keys.jwks())).rejects.toMatchObject({ reason: 'invalid' });
    await expect(verifyCheckpoint(compact, other.jwks())).rejects.toMatchObject({ reason: 'unknown_key' });
    await expect(verifyCheckpoint(compact, keys.jwks(), { issuer: 'https://elsewhere' })).rejects.toMatchObject({ reason: 'invalid' });
    const accessToken = await signJwt(keys.current(), { typ: 'at+jwt' }, { ...claims });
    await expect(verifyCheckpoint(accessToken, keys.jwks())).rejects.toThrow(/not a checkpoint/);
    const noHash = await signJwt(keys.current(), { typ: CHECKPOINT_TYP }, { ...claims, hash: undefined });
    await expect(verifyCheckpoint(noHash, keys.jwks())).rejects.toThrow(/lacks/);
  });

  it('survives the event scrubber: the audit line carries the JWS parts intact', async () => {
    const store = openSqliteStore({ path: ':memory:', clock });
    try {
      const lines: string[] = [];
      const recorder = new AuditRecorder(store, { clock, stdout: true, write: (l) => void lines.push(l) });
      const event = await signCheckpoint(keys, claims);
      const rec = await recorder.record('audit.checkpoint', { ...event });
      expect(rec.event.scrubbed).toBeUndefined();
      const back = parseAuditLine(lines[0]!);
      expect(await verifyCheckpoint(checkpointJws(back.event)!, keys.jwks())).toMatchObject({ seq: 41 });
      expect(formatAuditLine(rec)).toBe(lines[0]);
    } finally {
      await store.close();
    }
  });
});

describe('CheckpointWriter', () => {
  async function setup(everyEvents: number) {
    const store = openSqliteStore({ path: ':memory:', clock });
    const written: CheckpointEvent[] = [];
    const outcomes: string[] = [];
    let writer!: CheckpointWriter;
    // Fillers: the writer's counting is tested, not the payloads (the recorder as data sees it).
    const recorder = new AuditRecorder(store, { clock, onRecorded: (r) => writer.noted(r) }) as unknown as { record(type: AuditEventType, event: Record<string, unknown>): Promise<AuditRecord> };
    writer = new CheckpointWriter({
      issuer: ISSUER,
      keys,
      clock,
      epoch: () => store.epoch(),
      record: (e) => {
        written.push(e);
        return recorder.record('audit.checkpoint', { ...e });
      },
      everyEvents,
      intervalMs: 60_000,
      onResult: (o) => void outcomes.push(o),
    });
    return { store, recorder, writer, written, outcomes };
  }

  it('writes one after every N events, covering the head it saw, chained like any event', async () => {
    const { store, recorder, writer, written } = await setup(3);
    try {
      const recs = [];
      for (let i = 0; i < 7; i++) {
        recs.push(await recorder.record('exchange.issued', { i }));
        await writer.idle();
      }
      expect(written.map((w) => w.head_seq)).toEqual([3, 7]);
      // the first covers seq 3; the checkpoint record itself (seq 4) is not counted as an event
      expect(written[0]).toMatchObject({ epoch: store.epoch(), head_seq: 3, head_hash: recs[2]!.hash });
      const chain = await store.read(1, 100);
      expect(chain.filter((r) => r.type === 'audit.checkpoint').map((r) => r.event.head_seq)).toEqual([3, 7]);
      const v = await verifyCheckpoint(checkpointJws(chain.find((r) => r.type === 'audit.checkpoint')!.event)!, keys.jwks());
      expect(await verifyStoreAudit(store, { checkpoint: v })).toMatchObject({ ok: true });
    } finally {
      await store.close();
    }
  });

  it('on its timer writes only when events wait for one, and stops failing quietly when the store refuses', async () => {
    const { store, recorder, writer, written, outcomes } = await setup(1000);
    try {
      await writer.checkpoint();
      expect(written).toEqual([]); // nothing to cover
      await recorder.record('task.opened', {});
      await writer.checkpoint();
      await writer.checkpoint();
      expect(written.map((w) => w.head_seq)).toEqual([1]);
      await recorder.record('task.ended', {});
      await store.close();
      await writer.checkpoint(); // the store is closed: failed, not thrown
      expect(outcomes).toEqual(['written', 'failed']);
    } finally {
      await store.close();
    }
  });
});
