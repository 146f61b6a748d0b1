import { describe, it, expect, beforeEach, afterEach } from '@jest/globals';
import { AUDIT_EVENT_MEANINGS, AUDIT_EVENT_TYPES, isAuditEventType, type AuditEventType } from '../../src/audit/events.js';
import { verifyChain } from '../../src/audit/chain.js';
import { AuditRecorder, formatAuditLine, parseAuditLine } from '../../src/audit/recorder.js';
import { isLeashError } from '../../src/errors/leash-error.js';
import { openSqliteStore, type SqliteStore } from '../../src/store/sqlite/sqlite-store.js';
import { ManualClock } from '../../src/time/clock.js';
import type { AuditRecord } from '../../src/store/records.js';

// A JWT-shaped string (header.payload.signature); no real credential.
const JWT = 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2EifQ.c2lnbmF0dXJlLWJ5dGVz';
const SECRET = 's3cr3t-value-that-must-not-leak';

/**
 * The recorder as data sees it: its run-time checks (scrubbing, reserved keys, unknown
 * types) are tested with payloads its per-event types would refuse at compile time.
 */
type UntypedRecorder = { record(type: AuditEventType, event: Record<string, unknown>): Promise<AuditRecord> };

describe('AuditRecorder', () => {
  let store: SqliteStore;
  let clock: ManualClock;
  let lines: string[];
  let recorder: UntypedRecorder;
  let scrubbed: Array<[AuditEventType, readonly string[]]>;

  beforeEach(() => {
    clock = new ManualClock();
    store = openSqliteStore({ path: ':memory:', clock });
    lines = [];
    scrubbed = [];
    recorder = new AuditRecorder(store, { clock, stdout: true, write: (l) => lines.push(l), onScrubbed: (t, p) => scrubbed.push([t, p]) }) as unknown as UntypedRecorder;
  });
  afterEach(async () => {
    await store.close();
  });

  it('appends to the chain with the clock time and returns the record', async () => {
    const r = await recorder.record('task.opened', { task: 'tsk_1', plugins: ['a'] });
    expect(r).toMatchObject({ seq: 1, ts: clock.now(), type: 'task.opened', event: { task: 'tsk_1', plugins: ['a'] } });
    clock.advance(10);
    const r2 = await recorder.record('task.ended', { task: 'tsk_1' });
    expect(r2.ts).toBe(r.ts + 10_000);
    expect(r2.prevHash).toBe(r.hash);
    expect(await store.read(1, 10)).toEqual([r, r2]);
  });

  it('writes one JSON line per event: ts, seq, type first, the event, then prev and hash', async () => {
    const r = await recorder.record('exchange.issued', { plugin: 'p', jti: 'j1', jkt: undefined });
    expect(lines).toHaveLength(1);
    expect(lines[0]!.endsWith('\n')).toBe(true);
    expect(lines[0]!.slice(0, -1)).not.toContain('\n');
    const obj = JSON.parse(lines[0]!) as Record<string, unknown>;
    expect(Object.keys(obj)).toEqual(['ts', 'seq', 'type', 'jti', 'plugin', 'prev', 'hash']);
    expect(obj).toEqual({ ts: r.ts, seq: 1, type: 'exchange.issued', jti: 'j1', plugin: 'p', prev: r.prevHash, hash: r.hash });
  });

  it('writes nothing when stdout is off, and still records', async () => {
    const quiet: string[] = [];
    const rec = new AuditRecorder(store, { clock, stdout: false, write: (l) => quiet.push(l) }) as unknown as UntypedRecorder;
    await rec.record('policy.loaded', { digest: 'abc' });
    expect(quiet).toEqual([]);
    expect(await store.read(1, 10)).toHaveLength(1);
  });

  it('emits lines a log pipeline can verify on its own', async () => {
    for (let i = 0; i < 5; i++) await recorder.record('exchange.denied', { reason: 'ERR_SCOPE_NOT_GRANTED', i, nested: { b: 1, a: [i] } });
    const records = lines.map(parseAuditLine);
    expect(verifyChain(records)).toEqual({ ok: true, count: 5 });
    const forged = [...records];
    forged[2] = parseAuditLine(lines[2]!.replace('ERR_SCOPE_NOT_GRANTED', 'OK'));
    expect(verifyChain(forged)).toMatchObject({ ok: false, brokenAt: 3 });
    expect(formatAuditLine(records[0]!)).toBe(lines[0]);
    expect(() => parseAuditLine('{"seq":1}')).toThrow(TypeError);
  });

  it('refuses an unknown event type or a reserved member, recording nothing', async () => {
    await expect(recorder.record('exchange.maybe' as AuditEventType, {})).rejects.toThrow(TypeError);
    for (const key of ['ts', 'seq', 'type', 'prev', 'hash']) {
      await expect(recorder.record('task.opened', { [key]: 1 })).rejects.toThrow(TypeError);
    }
    await expect(recorder.record('task.opened', [] as unknown as Record<string, unknown>)).rejects.toThrow(TypeError);
    expect(await store.read(1, 10)).toEqual([]);
    expect(lines).toEqual([]);
  });

  // Defence in depth: one row per way a credential could slip into an event.
  const leaks: Array<[string, Record<string, unknown>, string[]]> = [
    ['subject_token', { subject_token: SECRET }, ['subject_token']],
    ['actor_token', { actor_token: SECRET }, ['actor_token']],
    ['access_token', { access_token: SECRET }, ['access_token']],
    ['token', { token: SECRET }, ['token']],
    ['secret', { secret: SECRET }, ['secret']],
    ['password', { password: SECRET }, ['password']],
    ['client_secret', { client_secret: SECRET }, ['client_secret']],
    ['api_key', { api_key: SECRET }, ['api_key']],
    ['camelCase subjectToken', { subjectToken: SECRET }, ['subjectToken']],
    ['kebab Client-Secret', { 'Client-Secret': SECRET }, ['Client-Secret']],
    ['AWS SessionToken', { aws: { SessionToken: SECRET } }, ['aws.SessionToken']],
    ['nested in detail', { detail: { request: { token: SECRET } } }, ['detail.request.token']],
    ['inside an array', { items: [{ ok: 1 }, { password: SECRET }] }, ['items[1].password']],
    ['a token object, not a string', { access_token: { value: SECRET } }, ['access_token']],
    ['a JWT inside an error message', { detail: { internal: `bad token ${JWT} rejected` } }, ['detail.internal']],
    ['a bare JWT in an innocent field', { note: JWT }, ['note']],
  ];

  it.each(leaks)('scrubs and flags %s', async (_label, event, paths) => {
    const r = await recorder.record('exchange.denied', { reason: 'ERR_X', ...event });
    const stored = JSON.stringify((await store.read(r.seq, 1))[0]);
    for (const text of [stored, lines[0]!, JSON.stringify(r)]) {
      expect(text).not.toContain(SECRET);
      expect(text).not.toContain(JWT);
    }
    expect(r.event.scrubbed).toEqual(paths);
    expect(r.event.reason).toBe('ERR_X');
    expect(scrubbed).toEqual([['exchange.denied', paths]]);
    expect(verifyChain([r]).ok).toBe(true);
  });

  it('leaves digests and ordinary members alone and does not flag a clean event', async () => {
    const event = { subject_token_sha256: 'abc', token_type: 'urn:ietf:params:oauth:token-type:jwt', jti: 'j', tokens_issued: 3, secret_ref: null };
    const r = await recorder.record('exchange.issued', event);
    expect(r.event).toEqual({ subject_token_sha256: 'abc', token_type: 'urn:ietf:params:oauth:token-type:jwt', jti: 'j', tokens_issued: 3, secret_ref: null });
    expect(r.event).not.toHaveProperty('scrubbed');
    expect(scrubbed).toEqual([]);
  });

  it('propagates a store outage and writes no line', async () => {
    await store.close();
    let caught: unknown;
    try {
      await recorder.record('task.opened', { task: 't' });
    } catch (err) {
      caught = err;
    }
    expect(isLeashError(caught) && caught.code).toBe('ERR_BACKEND_UNAVAILABLE');
    expect(lines).toEqual([]);
  });
});

describe('audit event catalogue', () => {
  it('gives every type a one-line meaning and has no extra meanings', () => {
    expect(Object.keys(AUDIT_EVENT_MEANINGS).sort()).toEqual([...AUDIT_EVENT_TYPES].sort());
    for (const t of AUDIT_EVENT_TYPES) {
      expect(AUDIT_EVENT_MEANINGS[t].length).toBeGreaterThan(10);
      expect(AUDIT_EVENT_MEANINGS[t]).not.toContain('\n');
      expect(t).toMatch(/^[a-z]+\.[a-z_]+$/);
    }
    expect(new Set(AUDIT_EVENT_TYPES).size).toBe(AUDIT_EVENT_TYPES.length);
    expect(isAuditEventType('exchange.issued')).toBe(true);
    expect(isAuditEventType('exchange.whatever')).toBe(false);
  });
});
