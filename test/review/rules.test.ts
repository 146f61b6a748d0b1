import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { loadForReview } from '../../src/cli/review.js';
import { issuanceEvidence } from '../../src/review/evidence.js';
import { ASI, MAESTRO, NHI } from '../../src/review/frameworks.js';
import { runReview, type ReviewReport } from '../../src/review/review.js';
import { RULES } from '../../src/review/rules.js';
import { openSqliteStore, type SqliteStore } from '../../src/store/sqlite/sqlite-store.js';

const NOW = Date.UTC(2026, 11, 1, 12, 0, 0);
const DAY = 86_400_000;
const EVERYTHING = resolve('test/fixtures/review/everything.yaml');
const CLEAN = resolve('test/fixtures/review/clean.yaml');

/** `# rule: a b` markers: the rules that must report a finding at that line. */
function markers(file: string): { rule: string; line: number }[] {
  return readFileSync(file, 'utf8')
    .split('\n')
    .flatMap((text, i) => {
      const m = /# rule: ([a-z -]+)$/.exec(text);
      return m
        ? m[1]!
            .trim()
            .split(/\s+/)
            .map((rule) => ({ rule, line: i + 1 }))
        : [];
    });
}

type Issued = { plugin: string; audience: string; scopes: string[] };

async function fill(
  store: SqliteStore,
  plan: { issued: Issued[]; denied: { plugin: string; reason: string; n: number }[]; approvals: { plugin: string; decided: boolean; n: number }[] },
): Promise<void> {
  // The oldest event reaches back beyond the 30-day window, so absence of use is evidence.
  await store.append('policy.loaded', { digest: 'x', plugins: 0, trusted_issuers: 0, initial: true }, NOW - 40 * DAY);
  let t = NOW - 3 * DAY;
  for (const i of plan.issued) {
    await store.append('exchange.issued', { decision: 'issued', reason: 'OK', plugin: i.plugin, audience: i.audience, scopes: i.scopes, jti: `j${t}` }, t++);
  }
  for (const d of plan.denied) for (let k = 0; k < d.n; k++) await store.append('exchange.denied', { decision: 'denied', reason: d.reason, plugin: d.plugin }, t++);
  for (const a of plan.approvals) {
    for (let k = 0; k < a.n; k++) {
      await store.append('approval.requested', { approval: `apr${t}`, plugin: a.plugin }, t++);
      if (a.decided) await store.append('approval.approved', { approval: `apr${t}`, plugin: a.plugin, approver: 'apikey:sec' }, t++);
    }
  }
}

describe('leash review: the rule fixture plants every rule; the clean policy has none', () => {
  let dir: string;
  let store: SqliteStore;
  let cleanStore: SqliteStore;
  let report: ReviewReport;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'leash-review-'));
    store = openSqliteStore({ path: join(dir, 'everything.db') });
    const { config, input } = loadForReview(EVERYTHING);
    const skip = new Set(['idle', 'partial']);
    await fill(store, {
      issued: [
        ...config.plugins.filter((p) => !skip.has(p.id)).flatMap((p) => p.grants.map((g) => ({ plugin: p.id, audience: g.audience, scopes: [...g.scopes] }))),
        { plugin: 'partial', audience: 'https://status.example.com', scopes: ['status:read'] },
      ],
      denied: [
        { plugin: 'prober', reason: 'ERR_SCOPE_NOT_GRANTED', n: 5 },
        { plugin: 'runaway', reason: 'ERR_QUOTA_EXCEEDED', n: 2 },
        { plugin: 'crm-digest', reason: 'ERR_SCOPE_NOT_GRANTED', n: 1 },
      ],
      approvals: [{ plugin: 'silent-owner', decided: false, n: 2 }],
    });
    await store.suspendPlugin({ plugin: 'frozen', since: NOW - 10 * DAY, actor: 'apikey:sec', reason: 'leaked token' });
    const use = await issuanceEvidence(store).collect({ since: NOW - 30 * DAY, until: NOW });
    report = runReview({ ...input, now: NOW, use, suspensions: await store.listSuspensions(), keys: [{ kid: 'k-old', state: 'current', createdAt: NOW - 60 * DAY }] }).report;

    cleanStore = openSqliteStore({ path: join(dir, 'clean.db') });
    await fill(cleanStore, {
      issued: [
        { plugin: 'crm-reader', audience: 'https://crm.example.com', scopes: ['contacts:read'] },
        { plugin: 'crm-reader', audience: 'https://crm.example.com', scopes: ['contacts:search'] },
        { plugin: 'ticket-writer', audience: 'https://tickets.example.com', scopes: ['tickets:write'] },
      ],
      denied: [{ plugin: 'crm-reader', reason: 'ERR_SCOPE_NOT_GRANTED', n: 2 }],
      approvals: [{ plugin: 'ticket-writer', decided: true, n: 3 }],
    });
  });
  afterAll(async () => {
    await store?.close();
    await cleanStore?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('every rule of the catalogue fires on the fixture', () => {
    const fired = new Set(report.findings.map((f) => f.rule));
    expect(RULES.map((r) => r.id).filter((id) => !fired.has(id))).toEqual([]);
  });

  it('each planted finding is reported at its marked line of the policy file', () => {
    const missing = markers(EVERYTHING).filter((m) => !report.findings.some((f) => f.rule === m.rule && f.line === m.line && f.file === EVERYTHING));
    expect(missing).toEqual([]);
    expect(markers(EVERYTHING).length).toBeGreaterThanOrEqual(RULES.length);
  });

  it('findings carry plugin, grant, JSON pointer, fix and framework mappings', () => {
    const by = (rule: string) => report.findings.find((f) => f.rule === rule)!;
    expect(by('broad-scope')).toMatchObject({ plugin: 'wide', grant: 'https://crm.example.com', pointer: '/plugins/4/grants/0/scopes/0', severity: 'high' });
    expect(by('broad-binding')).toMatchObject({ plugin: 'ns-wide', binding: 0, pointer: '/plugins/0/bindings/0' });
    expect(by('exception-expired')).toMatchObject({ exception: 'exc-expired', pointer: '/exceptions/0/expires_at', severity: 'critical' });
    expect(by('unused-scope')).toMatchObject({ plugin: 'partial', pointer: '/plugins/16/grants/0/scopes/1' });
    expect(by('toxic-delegation-path').evidence).toMatchObject({ hops: ['hr-reader', 'summarizer', 'mailer'], blocked: false, blocking: 'open' });
    expect(by('toxic-delegation-path').severity).toBe('high');
    expect(by('cross-system-write-path')).toMatchObject({ severity: 'low', evidence: expect.objectContaining({ blocking: 'narrowing' }) });
    expect(by('repeated-denials').evidence).toMatchObject({ reason: 'ERR_SCOPE_NOT_GRANTED', count: 5 });
    for (const f of report.findings) {
      expect(f.fix.length).toBeGreaterThan(10);
      expect(f.fingerprint).toMatch(/^[0-9a-f]{16}$/);
      expect(f.mappings.nhi.every((id) => id in NHI) && f.mappings.asi.every((id) => id in ASI) && f.mappings.maestro.every((id) => id in MAESTRO)).toBe(true);
      expect(f.mappings.nhi.length + f.mappings.asi.length + f.mappings.maestro.length).toBeGreaterThan(0);
    }
    // Only the one uncovered guardrail violation (the wildcard scope); covered ones are not violations.
    expect(report.findings.filter((f) => f.rule === 'guardrail-violation').map((f) => f.pointer)).toEqual(['/plugins/4/grants/0/scopes/0']);
  });

  it("the exchange-time rules change a path's severity: a deny rule makes a toxic path low", () => {
    const { config, input } = loadForReview(EVERYTHING);
    const guarded = {
      ...config,
      settings: {
        ...config.settings,
        delegation: { ...config.settings.delegation, toxic_combinations: [{ upstream: 'read-sensitive' as const, downstream: 'exfiltrate' as const, action: 'deny' as const }] },
        tasks: { ...config.settings.tasks, toxic_combinations: [{ effects: ['read-sensitive' as const, 'exfiltrate' as const], action: 'approval' as const }] },
      },
    };
    const r = runReview({ ...input, config: guarded, now: NOW }).report;
    const path = r.findings.find((f) => f.rule === 'toxic-delegation-path')!;
    expect([path.severity, path.evidence.blocking]).toEqual(['low', 'deny']);
    expect(r.findings.find((f) => f.rule === 'toxic-task-pair')!.severity).toBe('medium');
  });

  it('the clean policy has zero findings, with the store and fresh keys', async () => {
    const { input } = loadForReview(CLEAN);
    const use = await issuanceEvidence(cleanStore).collect({ since: NOW - 30 * DAY, until: NOW });
    const r = runReview({ ...input, now: NOW, use, suspensions: [], keys: [{ kid: 'k-new', state: 'current', createdAt: NOW - 5 * DAY }] }).report;
    expect(r.findings).toEqual([]);
    expect(r.evidence).toMatchObject({ sources: ['issuance'], covers_window: true });
  });

  it('without a store the use rules do not run; with a store younger than the window, absence-of-use rules are skipped', async () => {
    const { input } = loadForReview(EVERYTHING);
    const policyOnly = runReview({ ...input, now: NOW }).report;
    expect(policyOnly.evidence).toBeNull();
    expect(policyOnly.findings.filter((f) => RULES.find((r) => r.id === f.rule)!.needs !== 'policy')).toEqual([]);
    const young = openSqliteStore({ path: join(dir, 'young.db') });
    try {
      await young.append('exchange.denied', { plugin: 'prober', reason: 'ERR_SCOPE_NOT_GRANTED' }, NOW - DAY);
      const use = await issuanceEvidence(young).collect({ since: NOW - 30 * DAY, until: NOW });
      const r = runReview({ ...input, now: NOW, use }).report;
      expect(r.evidence?.covers_window).toBe(false);
      expect(r.findings.some((f) => f.rule.startsWith('unused-'))).toBe(false);
    } finally {
      await young.close();
    }
  });
});
