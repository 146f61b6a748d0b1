import { afterEach, beforeEach, describe, expect, it } from '@jest/globals';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createApprovalService, dedupeKey, requestHash } from '../../src/approvals/approval-service.js';
import { ApprovalDecisions, type Approver } from '../../src/approvals/decisions.js';
import type { ApprovalGate, ApprovalRequestInput } from '../../src/approvals/gate.js';
import type { ApprovalRecord } from '../../src/store/records.js';
import type { ApprovalSettingsConfig } from '../../src/config/schema.js';
import { LeashError } from '../../src/errors/leash-error.js';
import { toOAuthError } from '../../src/errors/oauth-error.js';
import { compilePolicy } from '../../src/policy/compile.js';
import type { CompiledPolicy } from '../../src/policy/types.js';
import { openSqliteStore, type SqliteStore } from '../../src/store/sqlite/sqlite-store.js';
import { ManualClock } from '../../src/time/clock.js';
import { NOW, config, grant, identity, plugin, settings as baseSettings } from '../policy/fixtures.js';

const API = 'https://api.example.com';
const task = {
  id: 'tsk_0123456789ab',
  plugins: ['writer'],
  attributes: {},
  createdAt: NOW,
  expiresAt: NOW + 3600_000,
  createdBy: 'apikey:o',
  state: 'active' as const,
  endedAt: undefined,
  endedBy: undefined,
};

function policyWith(opts: { allowOwner?: boolean } = {}): CompiledPolicy {
  return compilePolicy(
    config(
      [
        plugin('writer', { owner: 'team-writer@example.com', grants: [grant({ audience: API, scopes: ['a', 'b', 'c'], effect: 'write' })], allow_owner_approval: opts.allowOwner ?? false }),
        plugin('other', { owner: 'team-other@example.com', grants: [grant({ audience: API, scopes: ['a'], effect: 'write' })] }),
      ],
      { settings: baseSettings() },
    ),
  );
}

interface Harness {
  clock: ManualClock;
  store: SqliteStore;
  gate: ApprovalGate;
  decisions: ApprovalDecisions;
  audit: Array<{ type: string; event: Record<string, unknown> }>;
  notified: ApprovalRecord[];
  counts: Record<string, number>;
  policy: CompiledPolicy;
  settings: ApprovalSettingsConfig;
  input(over?: Partial<ApprovalRequestInput>): ApprovalRequestInput;
}

const security: Approver = { id: 'apikey:sec', roles: new Set(['security']), groups: new Set() };

async function code(p: Promise<unknown>): Promise<LeashError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof LeashError) return err;
    throw err;
  }
  throw new Error('expected a LeashError, got success');
}

describe('approval service (real SQLite store, ManualClock)', () => {
  let dir: string;
  let h: Harness;

  function build(policy: CompiledPolicy, store: SqliteStore, clock: ManualClock, s: ApprovalSettingsConfig): Harness {
    const audit: Harness['audit'] = [];
    const notified: ApprovalRecord[] = [];
    const counts: Record<string, number> = {};
    const metrics = { approvals: { inc: ({ outcome }: { outcome: string }) => void (counts[outcome] = (counts[outcome] ?? 0) + 1) } };
    const auditSink = { record: async (type: string, event: Record<string, unknown>) => void audit.push({ type, event }) };
    const gate = createApprovalService({ store, settings: () => s, audit: auditSink, metrics, notifier: { notify: (a) => void notified.push(a) } });
    const decisions = new ApprovalDecisions({ store, clock, settings: () => s, policy: () => policy, audit: auditSink, metrics });
    const writer = policy.plugins.get('writer')!;
    return {
      clock,
      store,
      gate,
      decisions,
      audit,
      notified,
      counts,
      policy,
      settings: s,
      input: (over = {}) => ({
        plugin: writer,
        grant: writer.grants[0]!,
        identity: identity('system:serviceaccount:plugins:writer'),
        task,
        audience: API,
        scopes: ['a', 'b'],
        ttl: 300,
        justification: 'rotate the on-call schedule',
        approvalId: undefined,
        chain: undefined,
        cause: 'grant',
        now: clock.now(),
        ...over,
      }),
    };
  }

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'leash-approvals-'));
    const clock = new ManualClock(NOW);
    h = build(policyWith(), openSqliteStore({ path: join(dir, 'leash.db'), clock }), clock, { ...baseSettings().approvals });
  });
  afterEach(async () => {
    await h.store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Create a pending approval; returns its id. */
  async function request(over: Partial<ApprovalRequestInput> = {}): Promise<string> {
    const err = await code(h.gate.check(h.input(over)));
    expect(err.code).toBe('ERR_APPROVAL_PENDING');
    return String(err.fields!.approval_id);
  }
  const poll = (id: string, over: Partial<ApprovalRequestInput> = {}) => h.gate.check(h.input({ approvalId: id, now: h.clock.now(), ...over }));

  describe('request binding', () => {
    it('the hash ignores scope order and changes with every bound field', () => {
      const base = h.input();
      const other = h.policy.plugins.get('other')!;
      expect(requestHash({ ...base, scopes: ['b', 'a'] })).toBe(requestHash(base));
      const variants = [
        { ...base, plugin: other },
        { ...base, task: undefined },
        { ...base, task: { ...task, id: 'tsk_zzzzzzzzzzzz' } },
        { ...base, audience: 'https://elsewhere.example.com' },
        { ...base, scopes: ['a'] },
        { ...base, scopes: ['a', 'b', 'c'] },
        { ...base, ttl: 299 },
        { ...base, grant: { ...base.grant, kind: 'aws-sts' as const } },
        { ...base, chain: ['root', 'writer'] },
        { ...base, jkt: 'NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs' },
      ];
      const hashes = new Set(variants.map((v) => requestHash(v)));
      expect(hashes.size).toBe(variants.length);
      expect(hashes.has(requestHash(base))).toBe(false);
    });

    it('an approval created with one DPoP key cannot be redeemed with another (or with none)', async () => {
      const id = await request({ jkt: 'key-one-thumbprint' });
      h.clock.advance(10);
      expect((await code(poll(id, { jkt: 'key-two-thumbprint' }))).code).toBe('ERR_APPROVAL_MISMATCH');
      h.clock.advance(10);
      expect((await code(poll(id, { jkt: undefined }))).code).toBe('ERR_APPROVAL_MISMATCH');
      h.clock.advance(10);
      expect((await code(poll(id, { jkt: 'key-one-thumbprint' }))).code).toBe('ERR_APPROVAL_PENDING');
    });
  });

  it('a new request creates a pending approval in the store, audits, notifies and answers authorization_pending', async () => {
    const err = await code(h.gate.check(h.input()));
    expect(err.code).toBe('ERR_APPROVAL_PENDING');
    const id = String(err.fields!.approval_id);
    expect(id).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(err.fields).toEqual({ approval_id: id, interval: 5, expires_in: 900 });
    expect(toOAuthError(err)).toEqual({ status: 400, body: { approval_id: id, interval: 5, expires_in: 900, error: 'authorization_pending', error_description: expect.any(String) } });
    const stored = await h.store.getApproval(id);
    expect(stored).toMatchObject({
      state: 'pending',
      plugin: 'writer',
      owner: 'team-writer@example.com',
      task: task.id,
      scopes: ['a', 'b'],
      ttl: 300,
      kind: 'jwt',
      effect: 'write',
      justification: 'rotate the on-call schedule',
      expiresAt: NOW + 900_000,
    });
    expect(h.audit.map((a) => a.type)).toEqual(['approval.requested']);
    expect(h.audit[0]!.event).toMatchObject({ approval: id, plugin: 'writer', justification: 'rotate the on-call schedule', risk: 'low' });
    expect(h.notified.map((a) => a.id)).toEqual([id]);
    expect(h.counts).toEqual({ requested: 1 });
    // A different request gets its own approval (ids are random) ...
    const other = await request({ scopes: ['a'] });
    expect(other).not.toBe(id);
    // ... the same request asked again while pending gets the pending one back: no copy, no second notice.
    h.clock.advance(60);
    const again = await code(h.gate.check(h.input({ now: h.clock.now() })));
    expect(again.code).toBe('ERR_APPROVAL_PENDING');
    expect(again.fields).toEqual({ approval_id: id, interval: 5, expires_in: 840 });
    expect(h.notified.map((a) => a.id)).toEqual([id, other]);
    expect(h.counts).toEqual({ requested: 2 });
  });

  it('the same request with another TTL or DPoP key gets the pending approval back, which still binds the first TTL and key', async () => {
    const id = await request({ ttl: 300, jkt: 'key-one-thumbprint' });
    for (const over of [{ ttl: 299 }, { ttl: 17, jkt: 'key-two-thumbprint' }, { jkt: undefined }]) {
      const again = await code(h.gate.check(h.input({ ...over, now: h.clock.now() })));
      expect([again.code, again.fields!.approval_id]).toEqual(['ERR_APPROVAL_PENDING', id]);
      expect(again.description).toContain('another lifetime or DPoP key');
    }
    expect(h.notified).toHaveLength(1);
    expect(h.counts).toEqual({ requested: 1 });
    // The dedupe key ignores TTL and key, and nothing else.
    const base = h.input();
    expect(dedupeKey({ ...base, ttl: 1, jkt: 'x' })).toBe(dedupeKey(base));
    expect(dedupeKey({ ...base, scopes: ['a'] })).not.toBe(dedupeKey(base));
    expect(dedupeKey({ ...base, task: undefined })).not.toBe(dedupeKey(base));
    // Redeeming needs the exact request the approval was made for.
    h.clock.advance(10);
    expect((await code(poll(id, { ttl: 299, jkt: 'key-one-thumbprint' }))).code).toBe('ERR_APPROVAL_MISMATCH');
  });

  it('past max_pending_per_plugin: slow_down (ERR_APPROVAL_LIMIT) with an interval, counted; nothing stored', async () => {
    h.settings.max_pending_per_plugin = 2;
    await request({ scopes: ['a'] });
    await request({ scopes: ['b'] });
    const err = await code(h.gate.check(h.input({ scopes: ['c'] })));
    expect(err.code).toBe('ERR_APPROVAL_LIMIT');
    expect(toOAuthError(err)).toEqual({ status: 400, body: { error: 'slow_down', error_description: expect.stringContaining('at most 2'), interval: 10 } });
    expect(err.detail).toEqual({ limit_scope: 'plugin', pending: 2, limit: 2 });
    expect(h.counts).toEqual({ requested: 2, limited: 1 });
    expect(await h.store.listApprovals({ state: 'pending', now: h.clock.now(), limit: 10 })).toHaveLength(2);
    expect(h.notified).toHaveLength(2);
  });

  it('once the pending approval is decided or expired, the same request makes a new one', async () => {
    const id = await request();
    h.clock.advance(901);
    const later = await request({ now: h.clock.now() });
    expect(later).not.toBe(id);
  });

  it('pending → slow_down when polled sooner than the interval → pending → approve → receipt, then used', async () => {
    const id = await request();
    h.clock.advance(2);
    const fast = await code(poll(id));
    expect(fast.code).toBe('ERR_APPROVAL_SLOW_DOWN');
    expect(toOAuthError(fast).body).toMatchObject({ error: 'slow_down', interval: 10, approval_id: id });
    h.clock.advance(5);
    const still = await code(poll(id));
    expect(still.code).toBe('ERR_APPROVAL_PENDING');
    expect(still.fields).toMatchObject({ approval_id: id, interval: 5, expires_in: 893 });
    h.clock.advance(1);
    const view = await h.decisions.decide(security, id, 'approved', 'looks right');
    expect(view).toMatchObject({ state: 'approved', decided_by: 'apikey:sec', decision_reason: 'looks right' });
    const decidedAt = h.clock.now();
    h.clock.advance(1); // approved: no pacing needed, the answer is final
    const receipt = await poll(id);
    expect(receipt).toEqual({ id, approver: 'apikey:sec', at: Math.floor(decidedAt / 1000) });
    h.clock.advance(10);
    expect((await code(poll(id))).code).toBe('ERR_APPROVAL_USED');
    expect((await h.store.getApproval(id))?.state).toBe('used');
    expect(h.counts).toMatchObject({ requested: 1, approved: 1, redeemed: 1 });
    expect(h.audit.map((a) => a.type)).toEqual(['approval.requested', 'approval.approved']);
    expect(h.audit[1]!.event).toMatchObject({ approval: id, approver: 'apikey:sec', reason: 'looks right' });
  });

  it('denied → access_denied on every later poll', async () => {
    const id = await request();
    await h.decisions.decide(security, id, 'denied', 'not during the freeze');
    h.clock.advance(6);
    const err = await code(poll(id));
    expect(err.code).toBe('ERR_APPROVAL_DENIED');
    expect(toOAuthError(err).body.error).toBe('access_denied');
    expect((await code(poll(id))).code).toBe('ERR_APPROVAL_DENIED');
    expect(h.audit.at(-1)).toMatchObject({ type: 'approval.denied', event: { approver: 'apikey:sec', reason: 'not during the freeze' } });
  });

  it('expires when nobody decides within pending_ttl; a late decision is a conflict', async () => {
    const id = await request();
    h.clock.advance(900);
    const err = await code(poll(id));
    expect(err.code).toBe('ERR_APPROVAL_EXPIRED');
    expect(toOAuthError(err).body.error).toBe('expired_token');
    const late = await code(h.decisions.decide(security, id, 'approved', undefined));
    expect(late.code).toBe('ERR_ADMIN_CONFLICT');
    expect(toOAuthError(late).status).toBe(409);
    expect(await h.decisions.list(security, 'pending', 10)).toEqual([]);
  });

  it('an approved request not redeemed within redeem_ttl expires', async () => {
    const id = await request();
    await h.decisions.decide(security, id, 'approved', undefined);
    h.clock.advance(300);
    await expect(poll(id)).resolves.toMatchObject({ id });
    const id2 = await request();
    await h.decisions.decide(security, id2, 'approved', undefined);
    h.clock.advance(301);
    expect((await code(poll(id2))).code).toBe('ERR_APPROVAL_EXPIRED');
  });

  it('an approval cannot be redeemed by a different request, another plugin, or an unknown id', async () => {
    const id = await request();
    await h.decisions.decide(security, id, 'approved', undefined);
    for (const over of [{ scopes: ['a', 'b', 'c'] }, { ttl: 60 }, { audience: 'https://elsewhere.example.com' }, { task: undefined }, { chain: ['root', 'writer'] }]) {
      const err = await code(poll(id, over));
      expect(err.code).toBe('ERR_APPROVAL_MISMATCH');
      // never reveals the request it was given for
      expect(err.description).not.toMatch(/api\.example|\ba\b.*\bb\b|300/);
    }
    const other = h.policy.plugins.get('other')!;
    expect((await code(poll(id, { plugin: other, grant: other.grants[0]! }))).code).toBe('ERR_APPROVAL_UNKNOWN');
    expect((await code(poll('AAAAAAAAAAAAAAAAAAAAAA'))).code).toBe('ERR_APPROVAL_UNKNOWN');
    // the failed attempts did not consume it: the exact request still redeems once
    await expect(poll(id, { scopes: ['b', 'a'] })).resolves.toMatchObject({ id });
  });

  it('two concurrent redemptions: exactly one wins', async () => {
    const id = await request();
    await h.decisions.decide(security, id, 'approved', undefined);
    const results = await Promise.allSettled([poll(id), poll(id), poll(id)]);
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    for (const r of results.filter((r): r is PromiseRejectedResult => r.status === 'rejected')) expect((r.reason as LeashError).code).toBe('ERR_APPROVAL_USED');
  });

  describe('decisions: who may decide, separation of duties', () => {
    it('needs the security role or an approver group', async () => {
      const id = await request();
      const ops: Approver = { id: 'apikey:ops', roles: new Set(['ops']), groups: new Set(['sre']) };
      expect((await code(h.decisions.decide(ops, id, 'approved', undefined))).code).toBe('ERR_ADMIN_FORBIDDEN');
      expect((await code(h.decisions.list(ops, 'pending', 10))).code).toBe('ERR_ADMIN_FORBIDDEN');
      h.settings.approver_groups.push('sre');
      await expect(h.decisions.decide(ops, id, 'approved', undefined)).resolves.toMatchObject({ state: 'approved', decided_by: 'apikey:ops' });
    });

    it.each([
      ['a group equal to the owner', { id: 'apikey:alice', roles: new Set(['security']), groups: new Set(['team-writer@example.com']) }],
      ['a JWT subject equal to the owner', { id: 'jwt:https://idp.example.com#team-writer@example.com', roles: new Set(['security']), groups: new Set<string>() }],
      ['an API key id equal to the owner', { id: 'apikey:team-writer@example.com', roles: new Set(['security']), groups: new Set<string>() }],
    ])('the owner (%s) cannot approve its own plugin, may deny it', async (_n, owner) => {
      const id = await request();
      const err = await code(h.decisions.decide(owner, id, 'approved', undefined));
      expect(err.code).toBe('ERR_ADMIN_FORBIDDEN');
      expect(err.description).toContain('separation of duties');
      expect((await h.store.getApproval(id))?.state).toBe('pending');
      await expect(h.decisions.decide(owner, id, 'denied', 'no')).resolves.toMatchObject({ state: 'denied' });
    });

    it('allow_owner_approval lets the owner approve', async () => {
      await h.store.close();
      const clock = new ManualClock(NOW);
      h = build(policyWith({ allowOwner: true }), openSqliteStore({ path: join(dir, 'leash.db'), clock }), clock, { ...baseSettings().approvals });
      const id = await request();
      const owner: Approver = { id: 'apikey:alice', roles: new Set(['security']), groups: new Set(['team-writer@example.com']) };
      await expect(h.decisions.decide(owner, id, 'approved', undefined)).resolves.toMatchObject({ state: 'approved' });
    });

    it('a decided approval cannot be decided again (409); unknown or malformed ids are 404', async () => {
      const id = await request();
      await h.decisions.decide(security, id, 'denied', undefined);
      expect((await code(h.decisions.decide(security, id, 'approved', undefined))).code).toBe('ERR_ADMIN_CONFLICT');
      expect((await code(h.decisions.get(security, 'AAAAAAAAAAAAAAAAAAAAAA'))).code).toBe('ERR_ADMIN_NOT_FOUND');
      expect((await code(h.decisions.get(security, '../etc'))).code).toBe('ERR_ADMIN_NOT_FOUND');
    });

    it('lists by state, newest first, with no request hash', async () => {
      const a = await request();
      h.clock.advance(1);
      const b = await request({ scopes: ['c'] });
      await h.decisions.decide(security, a, 'denied', undefined);
      const pending = await h.decisions.list(security, 'pending', 10);
      expect(pending.map((v) => v.id)).toEqual([b]);
      expect(pending[0]).not.toHaveProperty('requestHash');
      expect(pending[0]).toMatchObject({ state: 'pending', expired: false, plugin: 'writer', scopes: ['c'], justification: 'rotate the on-call schedule' });
      expect((await h.decisions.list(security, undefined, 10)).map((v) => v.id)).toEqual([b, a]);
      expect((await h.decisions.list(security, 'denied', 10)).map((v) => v.id)).toEqual([a]);
    });
  });
});
