import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, expect, beforeAll, afterAll, beforeEach, afterEach } from '@jest/globals';
import { IAMClient } from '@aws-sdk/client-iam';
import { REVOKED_SESSIONS_POLICY_NAME, addEntries, cutoffAfter, emptyState, fitPolicy, prune, renderPolicy, type DenyEntry } from '../../src/issuance/aws-sts/deny-policy.js';
import { SessionDenier } from '../../src/issuance/aws-sts/session-denier.js';
import { denyEntriesFor } from '../../src/issuance/aws-sts/aws-sts-revoker.js';
import type { AuditEventType } from '../../src/audit/events.js';
import { openSqliteStore, type SqliteStore } from '../../src/store/sqlite/sqlite-store.js';
import type { IssuedToken } from '../../src/store/records.js';
import { ManualClock } from '../../src/time/clock.js';
import { ROLE_POLICY_SIZE_QUOTA, policySize, startIamContractServer, type IamContractServer } from '../support/iam-contract.js';
import { deniesSession } from '../support/iam-policy-eval.js';

const ROLE = 'arn:aws:iam::123456789012:role/leash/reports-reader';
const ROLE_NAME = 'reports-reader';
const KEY = { accessKeyId: 'AKIALEASHDENY0000001', secretAccessKey: 'leash-deny-secret-for-tests-only' };
const T0 = Date.UTC(2026, 10, 25, 12, 0, 0, 400);
const MIN = 60_000;

const session = (over: Partial<IssuedToken> = {}): IssuedToken => ({
  jti: `aws:ASIA${Math.random().toString(36).slice(2, 14).toUpperCase()}`,
  plugin: 'reports-reader',
  task: 'tsk_aaaaaaaaaaaaaaaaaaaaaa',
  audience: 'aws:reports',
  scopes: ['s3:read'],
  kind: 'aws-sts',
  kid: undefined,
  issuedAt: T0 - 5 * MIN,
  expiresAt: T0 + 10 * MIN,
  jkt: undefined,
  ...over,
});

describe('the revoked-sessions policy document (pure)', () => {
  it('renders a task, a plugin and a session exactly, with the documented condition keys', () => {
    const before = cutoffAfter(T0);
    // Rounded up to the second, past the 1 s margin: 12:00:00.400 -> 12:00:02.
    expect(new Date(before).toISOString()).toBe('2026-11-25T12:00:02.000Z');
    const s = addEntries(
      emptyState(ROLE),
      [
        { kind: 'task', task: 'tsk_b', before, until: T0 + 20 * MIN },
        { kind: 'task', task: 'tsk_a', before, until: T0 + 20 * MIN },
        { kind: 'plugin', plugin: 'reports-reader', before, until: T0 + 20 * MIN },
        { kind: 'session', plugin: 'crm-sync', task: 'tsk_c', before, until: T0 + 20 * MIN },
      ],
      T0,
    );
    expect(JSON.parse(renderPolicy(s)!)).toEqual({
      Version: '2012-10-17',
      Statement: [
        { Sid: 'LeashDenyEndedTasks', Effect: 'Deny', Action: '*', Resource: '*', Condition: { StringEquals: { 'aws:PrincipalTag/leash:task': ['tsk_a', 'tsk_b'] } } },
        {
          Effect: 'Deny',
          Action: '*',
          Resource: '*',
          Condition: { StringEquals: { 'aws:SourceIdentity': 'reports-reader' }, DateLessThan: { 'aws:TokenIssueTime': '2026-11-25T12:00:02Z' } },
        },
        {
          Effect: 'Deny',
          Action: '*',
          Resource: '*',
          Condition: { StringEquals: { 'aws:SourceIdentity': 'crm-sync', 'aws:PrincipalTag/leash:task': 'tsk_c' }, DateLessThan: { 'aws:TokenIssueTime': '2026-11-25T12:00:02Z' } },
        },
      ],
    });
    expect(renderPolicy(s)).not.toMatch(/\s/);
    expect(s.rev).toBe(1);
    expect(s.pendingSince).toBe(T0);
  });

  it('denies exactly the covered sessions (evaluated as IAM would)', () => {
    const before = cutoffAfter(T0);
    const doc = renderPolicy(
      addEntries(
        emptyState(ROLE),
        [
          { kind: 'task', task: 'tsk_ended', before, until: T0 + MIN },
          { kind: 'plugin', plugin: 'suspended-plugin', before, until: T0 + MIN },
          { kind: 'session', plugin: 'p1', task: 'tsk_live', before, until: T0 + MIN },
        ],
        T0,
      ),
    );
    const ctx = (tags: Record<string, string>, sourceIdentity: string, issued: string) => ({ tags, sourceIdentity, tokenIssueTime: issued });
    const earlier = '2026-11-25T11:55:00Z';
    const after = '2026-11-25T12:00:02Z';
    // Any session of the ended task, whoever holds it.
    expect(deniesSession(doc, ctx({ 'leash:task': 'tsk_ended', 'leash:plugin': 'x' }, 'x', after))).toBe(true);
    // The suspended plugin's sessions issued before the cut-off, in any task; not those issued after it.
    expect(deniesSession(doc, ctx({ 'leash:task': 'tsk_other' }, 'suspended-plugin', earlier))).toBe(true);
    expect(deniesSession(doc, ctx({ 'leash:task': 'tsk_other' }, 'suspended-plugin', after))).toBe(false);
    // A revoked session: that plugin in that task, issued before.
    expect(deniesSession(doc, ctx({ 'leash:task': 'tsk_live' }, 'p1', earlier))).toBe(true);
    expect(deniesSession(doc, ctx({ 'leash:task': 'tsk_other' }, 'p1', earlier))).toBe(false);
    expect(deniesSession(doc, ctx({ 'leash:task': 'tsk_live' }, 'p2', earlier))).toBe(false);
    // Tag keys compare case-insensitively, values case-sensitively.
    expect(deniesSession(doc, ctx({ 'LEASH:TASK': 'tsk_ended' }, 'x', after))).toBe(true);
    expect(deniesSession(doc, ctx({ 'leash:task': 'TSK_ENDED' }, 'x', after))).toBe(false);
  });

  it('merges repeated revocations of one task/plugin into one entry, and prunes what expired', () => {
    let s = addEntries(emptyState(ROLE), [{ kind: 'plugin', plugin: 'p', before: 1000, until: T0 + MIN }], T0);
    s = addEntries(s, [{ kind: 'plugin', plugin: 'p', before: 5000, until: T0 + 2 * MIN }], T0);
    expect(s.entries).toEqual([{ kind: 'plugin', plugin: 'p', before: 5000, until: T0 + 2 * MIN }]);
    const same = addEntries(s, [{ kind: 'plugin', plugin: 'p', before: 1000, until: T0 }], T0);
    expect(same).toBe(s);
    // Already expired: nothing to add.
    expect(addEntries(s, [{ kind: 'task', task: 't', before: 1, until: T0 - 1 }], T0)).toBe(s);
    const pruned = prune(s, T0 + 2 * MIN);
    expect(pruned.entries).toEqual([]);
    expect(pruned.rev).toBe(s.rev + 1);
    expect(renderPolicy(pruned)).toBeUndefined();
  });

  it('overflow collapses into one role-wide aws:TokenIssueTime deny that still covers every entry', () => {
    const entries: DenyEntry[] = Array.from({ length: 400 }, (_, i) => ({ kind: 'task', task: `tsk_${String(i).padStart(22, '0')}`, before: T0 + i * 1000, until: T0 + 15 * MIN + i }));
    const s = addEntries(emptyState(ROLE), entries, T0);
    expect(renderPolicy(s)!.length).toBeGreaterThan(8192);
    const { state, collapsed } = fitPolicy(s, 8192, T0);
    expect(collapsed).toBe(400);
    expect(state.entries).toEqual([]);
    expect(state.roleCutoff).toEqual({ before: T0 + 399_000, until: T0 + 15 * MIN + 399 });
    expect(JSON.parse(renderPolicy(state)!)).toEqual({
      Version: '2012-10-17',
      Statement: [{ Sid: 'LeashDenyRoleSessionsIssuedBefore', Effect: 'Deny', Action: '*', Resource: '*', Condition: { DateLessThan: { 'aws:TokenIssueTime': '2026-11-25T12:06:39.400Z' } } }],
    });
    // New entries the cut-off already covers are not added back.
    expect(addEntries(state, [entries[0]!], T0)).toBe(state);
    // Under the budget nothing changes.
    expect(fitPolicy(s, 100_000, T0)).toEqual({ state: s, collapsed: 0 });
  });

  it('denyEntriesFor: one entry per task or plugin, per session for a token revoke, kept until the last covered session expires', () => {
    const a = session({ expiresAt: T0 + 10 * MIN });
    const b = session({ expiresAt: T0 + 12 * MIN, task: undefined });
    expect(denyEntriesFor([a, b], { scope: 'task', id: 'tsk_aaaaaaaaaaaaaaaaaaaaaa', revokedAt: T0 }, 30_000)).toEqual([
      { kind: 'task', task: 'tsk_aaaaaaaaaaaaaaaaaaaaaa', before: cutoffAfter(T0), until: T0 + 12 * MIN + 30_000 },
    ]);
    expect(denyEntriesFor([a, b], { scope: 'plugin', id: 'reports-reader', revokedAt: T0 }, 0)).toEqual([{ kind: 'plugin', plugin: 'reports-reader', before: cutoffAfter(T0), until: T0 + 12 * MIN }]);
    expect(denyEntriesFor([b], { scope: 'token', id: b.jti, revokedAt: T0 }, 0)).toEqual([{ kind: 'session', plugin: 'reports-reader', task: 'none', before: cutoffAfter(T0), until: T0 + 12 * MIN }]);
  });
});

describe('SessionDenier against the IAM contract server (real @aws-sdk/client-iam, real SQLite)', () => {
  let iam: IamContractServer;
  let dir: string;
  let store: SqliteStore;
  let clock: ManualClock;
  let events: { type: AuditEventType; event: Record<string, unknown> }[];
  let counts: Record<string, number>;
  let client: IAMClient;

  const denier = (over: { owner?: string; maxChars?: number; iam?: IAMClient; storeOverride?: SqliteStore } = {}) =>
    new SessionDenier({
      store: over.storeOverride ?? store,
      iam: () => over.iam ?? client,
      clock,
      maxChars: () => over.maxChars ?? 8192,
      audit: { record: async (type, event) => void events.push({ type, event }) },
      metrics: { awsDenyUpdates: { inc: ({ outcome }) => void (counts[outcome] = (counts[outcome] ?? 0) + 1) } },
      log: () => undefined,
      intervalMs: 1000,
      random: () => 0,
      ...(over.owner ? { owner: over.owner } : {}),
    });

  beforeAll(async () => {
    iam = await startIamContractServer({ credentials: [KEY], roles: [ROLE_NAME, 'other-role'] });
  });
  afterAll(async () => {
    await iam.close();
  });
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'leash-deny-'));
    clock = new ManualClock(T0);
    store = openSqliteStore({ path: join(dir, 'leash.db'), clock });
    events = [];
    counts = {};
    iam.policies.clear();
    client = new IAMClient({ region: iam.region, endpoint: iam.url, credentials: KEY, maxAttempts: 1 });
  });
  afterEach(async () => {
    await store.close().catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  });

  const taskEntry = (task: string, until = T0 + 15 * MIN): DenyEntry => ({ kind: 'task', task, before: cutoffAfter(T0), until });

  it('puts the policy on the role by name, SigV4-signed, with the exact document, and audits it', async () => {
    const n = iam.requests.length;
    expect(await denier().deny(ROLE, [taskEntry('tsk_one')])).toBe('put');
    const sent = iam.requests.slice(n);
    expect(sent).toHaveLength(1);
    expect(sent[0]).toMatchObject({ action: 'PutRolePolicy', signatureValid: true, service: 'iam', status: 200 });
    expect(sent[0]!.params).toMatchObject({ RoleName: ROLE_NAME, PolicyName: REVOKED_SESSIONS_POLICY_NAME });
    expect(iam.policies.get(`${ROLE_NAME}/${REVOKED_SESSIONS_POLICY_NAME}`)).toBe(
      '{"Version":"2012-10-17","Statement":[{"Sid":"LeashDenyEndedTasks","Effect":"Deny","Action":"*","Resource":"*","Condition":{"StringEquals":{"aws:PrincipalTag/leash:task":"tsk_one"}}}]}',
    );
    expect(events.map((e) => e.type)).toEqual(['aws.deny_policy_updated']);
    expect(events[0]!.event).toMatchObject({ role_arn: ROLE, action: 'put', rev: 1, entries: 1, next_expiry: new Date(T0 + 15 * MIN).toISOString() });
    expect(events[0]!.event.request_id).toMatch(/^[0-9a-f-]{36}$/);
    const state = await denier().state(ROLE);
    expect(state).toMatchObject({ rev: 1, applied: 1, failures: 0 });
    expect(state?.pendingSince).toBeUndefined();
    expect(state?.lock).toBeUndefined();
    expect(counts).toEqual({ put: 1 });
  });

  it('IAM unreachable: the deny stays pending in the store, is reported, retried with backoff, and applied after a restart', async () => {
    const down = new IAMClient({ region: 'us-east-1', endpoint: 'http://127.0.0.1:9', credentials: KEY, maxAttempts: 1 });
    expect(await denier({ iam: down }).deny(ROLE, [taskEntry('tsk_pending')])).toBe('failed');
    expect(events.map((e) => e.type)).toEqual(['aws.deny_policy_failed']);
    expect(events[0]!.event).toMatchObject({ role_arn: ROLE, rev: 1, applied: 0, failures: 1, reason_code: 'ERR_UPSTREAM_UNAVAILABLE', retry_at: new Date(T0 + 500).toISOString() });
    expect(counts).toEqual({ failed: 1 });
    expect(await denier({ iam: down }).pendingRoles()).toBe(1);
    // The retry waits for its backoff (0.5 s with this jitter), then fails again and backs off further.
    const n = iam.requests.length;
    expect(await denier({ iam: down }).apply(ROLE)).toBe('waiting');
    clock.advance(1);
    expect(await denier({ iam: down }).apply(ROLE)).toBe('failed');
    expect(events.at(-1)!.event).toMatchObject({ failures: 2, retry_at: new Date(T0 + 1000 + 1000).toISOString() });

    // "Restart": a new process on the same database, IAM reachable again.
    await store.close();
    store = openSqliteStore({ path: join(dir, 'leash.db'), clock });
    clock.advance(5);
    const again = denier();
    expect(await again.sweep()).toBe(1);
    expect(iam.requests.length).toBe(n + 1);
    expect(JSON.parse(iam.policies.get(`${ROLE_NAME}/${REVOKED_SESSIONS_POLICY_NAME}`)!).Statement[0].Condition.StringEquals['aws:PrincipalTag/leash:task']).toBe('tsk_pending');
    expect(await again.pendingRoles()).toBe(0);
    expect(await again.state(ROLE)).toMatchObject({ applied: 1, failures: 0 });
    expect((await again.state(ROLE))?.lastError).toBeUndefined();
  });

  it('Leash lacking iam:PutRolePolicy is reported as refused and keeps retrying; a new revocation does not wait for the backoff', async () => {
    iam.failNext({ code: 'AccessDenied', status: 403 });
    expect(await denier().deny(ROLE, [taskEntry('tsk_x')])).toBe('failed');
    expect(events.at(-1)!.event).toMatchObject({ reason_code: 'ERR_UPSTREAM_REFUSED', detail: { iam_error: 'AccessDenied', http_status: 403 } });
    expect(JSON.stringify(events)).not.toContain('999999999999');
    expect(await denier().deny(ROLE, [taskEntry('tsk_y')])).toBe('put');
    const doc = JSON.parse(iam.policies.get(`${ROLE_NAME}/${REVOKED_SESSIONS_POLICY_NAME}`)!);
    expect(doc.Statement[0].Condition.StringEquals['aws:PrincipalTag/leash:task']).toEqual(['tsk_x', 'tsk_y']);
  });

  it('removes each entry once its sessions expired, and deletes the policy when nothing is left', async () => {
    const d = denier();
    await d.deny(ROLE, [taskEntry('tsk_short', T0 + 5 * MIN), taskEntry('tsk_long', T0 + 20 * MIN)]);
    clock.set(T0 + 5 * MIN);
    expect(await d.sweep()).toBe(1);
    expect(JSON.parse(iam.policies.get(`${ROLE_NAME}/${REVOKED_SESSIONS_POLICY_NAME}`)!).Statement[0].Condition.StringEquals['aws:PrincipalTag/leash:task']).toBe('tsk_long');
    expect(await d.sweep()).toBe(0);
    clock.set(T0 + 20 * MIN);
    const n = iam.requests.length;
    expect(await d.sweep()).toBe(1);
    expect(iam.requests.slice(n).map((r) => r.action)).toEqual(['DeleteRolePolicy']);
    expect(iam.policies.has(`${ROLE_NAME}/${REVOKED_SESSIONS_POLICY_NAME}`)).toBe(false);
    expect(events.at(-1)!.event).toMatchObject({ action: 'delete', entries: 0 });
    expect(await store.listAwsDenyRoles()).toEqual([]);
    expect(counts).toMatchObject({ put: 2, deleted: 1 });
  });

  it('an already-deleted policy counts as deleted (NoSuchEntity is what was wanted)', async () => {
    const d = denier();
    await d.deny(ROLE, [taskEntry('tsk_gone', T0 + MIN)]);
    iam.policies.clear();
    clock.set(T0 + MIN);
    expect(await d.sweep()).toBe(1);
    expect(await store.listAwsDenyRoles()).toEqual([]);
  });

  it('over the size budget: collapses to the role-wide cut-off, audits the overflow, and the document fits', async () => {
    const d = denier({ maxChars: 1024 });
    const entries = Array.from({ length: 60 }, (_, i) => taskEntry(`tsk_${String(i).padStart(22, '0')}`));
    expect(await d.deny(ROLE, entries)).toBe('put');
    const doc = iam.policies.get(`${ROLE_NAME}/${REVOKED_SESSIONS_POLICY_NAME}`)!;
    expect(JSON.parse(doc)).toEqual({
      Version: '2012-10-17',
      Statement: [{ Sid: 'LeashDenyRoleSessionsIssuedBefore', Effect: 'Deny', Action: '*', Resource: '*', Condition: { DateLessThan: { 'aws:TokenIssueTime': '2026-11-25T12:00:02Z' } } }],
    });
    expect(doc.length).toBeLessThanOrEqual(1024);
    expect(events.map((e) => e.type)).toEqual(['aws.deny_policy_overflow', 'aws.deny_policy_updated']);
    expect(events[0]!.event).toMatchObject({ cause: 'budget', entries_collapsed: 60, denied_before: '2026-11-25T12:00:02.000Z' });
    expect(counts).toMatchObject({ overflow: 1, put: 1 });
    // Still a deny for every covered session: any of those tasks' sessions issued before the cut-off.
    expect(deniesSession(doc, { tags: { 'leash:task': 'tsk_0000000000000000000007' }, sourceIdentity: 'p', tokenIssueTime: '2026-11-25T12:00:00Z' })).toBe(true);
    // The role-wide deny leaves when the last of them has expired.
    clock.set(T0 + 15 * MIN);
    await d.sweep();
    expect(iam.policies.has(`${ROLE_NAME}/${REVOKED_SESSIONS_POLICY_NAME}`)).toBe(false);
  });

  it("IAM's LimitExceeded (the role's other inline policies use the room) also falls back to the role-wide cut-off", async () => {
    // Another inline policy of ~9.9k characters on the role leaves ~300 for Leash.
    const big = JSON.stringify({
      Version: '2012-10-17',
      Statement: [{ Effect: 'Allow', Action: 's3:GetObject', Resource: Array.from({ length: 258 }, (_, i) => `arn:aws:s3:::b/${String(i).padStart(20, '0')}`) }],
    });
    iam.policies.set(`${ROLE_NAME}/team-inline`, big);
    expect(policySize(big)).toBeGreaterThan(ROLE_POLICY_SIZE_QUOTA - 400);
    const d = denier();
    const n = iam.requests.length;
    expect(
      await d.deny(
        ROLE,
        Array.from({ length: 20 }, (_, i) => taskEntry(`tsk_${String(i).padStart(22, '0')}`)),
      ),
    ).toBe('put');
    expect(iam.requests.slice(n).map((r) => r.status)).toEqual([409, 200]);
    expect(events.find((e) => e.type === 'aws.deny_policy_overflow')?.event).toMatchObject({ cause: 'limit_exceeded', entries_collapsed: 20 });
    expect(JSON.parse(iam.policies.get(`${ROLE_NAME}/${REVOKED_SESSIONS_POLICY_NAME}`)!).Statement).toHaveLength(1);
  });

  it('two replicas on one store: the one holding the role writes, and a revocation arriving mid-write is written right after', async () => {
    const a = denier({ owner: 'replica-a' });
    const b = denier({ owner: 'replica-b' });
    // A's write is slow: B records its entry while A holds the lock.
    const slow = new IAMClient({ region: iam.region, endpoint: iam.url, credentials: KEY, maxAttempts: 1 });
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const send = slow.send.bind(slow) as (c: unknown) => Promise<unknown>;
    (slow as unknown as { send: (c: unknown) => Promise<unknown> }).send = async (c) => {
      await gate;
      return send(c);
    };
    const aSlow = denier({ owner: 'replica-a', iam: slow });
    const pending = aSlow.deny(ROLE, [taskEntry('tsk_a')]);
    await new Promise((r) => setTimeout(r, 50));
    expect(await b.deny(ROLE, [taskEntry('tsk_b')])).toBe('busy');
    release();
    expect(await pending).toBe('put');
    // A saw B's newer revision after its write and wrote again.
    expect(JSON.parse(iam.policies.get(`${ROLE_NAME}/${REVOKED_SESSIONS_POLICY_NAME}`)!).Statement[0].Condition.StringEquals['aws:PrincipalTag/leash:task']).toEqual(['tsk_a', 'tsk_b']);
    expect(await a.state(ROLE)).toMatchObject({ rev: 2, applied: 2 });
    expect((await a.state(ROLE))?.lock).toBeUndefined();
  });

  it("a crashed writer's lock expires: another replica takes over after a minute", async () => {
    await store.casAwsDeny(ROLE, undefined, JSON.stringify({ ...addEntries(emptyState(ROLE), [taskEntry('tsk_z')], T0), lock: { owner: 'dead', until: T0 + 60_000 } }));
    expect(await denier().apply(ROLE)).toBe('busy');
    clock.advance(61);
    expect(await denier().apply(ROLE)).toBe('put');
  });
});
