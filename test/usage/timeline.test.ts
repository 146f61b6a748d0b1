import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import express from 'express';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CryptoKey, JWK } from 'jose';
import { createLeashVerifier, createUsageReporter, requireLeashToken } from '../../src/client/index.js';
import { runTaskCli } from '../../src/cli/task.js';
import { openSqliteStore, type SqliteStore } from '../../src/store/sqlite/sqlite-store.js';
import { ManualClock } from '../../src/time/clock.js';
import { listen } from '../client/fixtures.js';
import { CRM_RS_SECRET, ticketsKey, withResourceServers } from '../http/introspect-support.js';
import { CRM_API, EXCHANGE, JWT_TYPE, OPS_KEY, ORCHESTRATOR_KEY, startTestBroker, type TestBroker } from '../support/broker.js';

const OTHER_ORCHESTRATOR_KEY = 'another-orchestrator-key-0123456789';

describe('task timeline: GET /admin/tasks/{id}/timeline and leash task show', () => {
  let dir: string;
  let tb: TestBroker;
  let clock: ManualClock;
  let store: SqliteStore;
  let tickets: { privateKey: CryptoKey; jwk: JWK };
  let task: string;
  let jti: string;
  const closers: Array<() => Promise<void>> = [];

  beforeAll(async () => {
    clock = new ManualClock(Date.now());
    dir = await mkdtemp(join(tmpdir(), 'leash-timeline-'));
    store = openSqliteStore({ path: join(dir, 'leash.db'), clock });
    tickets = await ticketsKey();
    tb = await startTestBroker({
      dir,
      broker: { clock, store },
      patch: withResourceServers(tickets, (cfg) => {
        cfg.settings.revocation = { max_staleness_ms: 300000 };
        cfg.admin.api_keys.push({ id: 'orchestrator-2', sha256: createHash('sha256').update(OTHER_ORCHESTRATOR_KEY).digest('hex'), roles: ['orchestrator'] });
      }),
    });

    // A small incident: a task, an issued token and a refused exchange, uses (one with a hostile
    // route name), a second caller address (shared token), a downstream event, then the task's end.
    task = await tb.openTask({ plugins: ['crm-reader', 'prod-only'] });
    const exchange = async (scope: string) =>
      tb.exchange({
        grant_type: EXCHANGE,
        client_id: 'crm-reader',
        subject_token: await tb.cluster.saToken({ sa: 'crm-reader', nowSeconds: Math.floor(clock.now() / 1000) }),
        subject_token_type: JWT_TYPE,
        resource: CRM_API,
        scope,
        task,
      });
    const ok = await exchange('contacts:read');
    const token = ok.body.access_token as string;
    jti = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()).jti as string;
    clock.advance(1);
    expect((await exchange('contacts:delete')).status).toBe(400);
    clock.advance(1);
    const reporter = createUsageReporter({ issuer: tb.url, clientId: 'crm-api', clientSecret: CRM_RS_SECRET, flushIntervalMs: 10, clock });
    const app = express();
    app.set('trust proxy', true);
    app.get(
      '/contacts/:id',
      requireLeashToken(createLeashVerifier({ issuer: tb.url, audience: CRM_API, clock }), { usage: reporter, route: (req) => (req.query.evil ? '/x/<script>alert(1)</script>' : '/contacts/:id') }),
      (_req, res) => {
        res.json({ ok: true });
      },
    );
    const srv = await listen(app);
    closers.push(srv.close);
    for (const [ip, evil] of [
      ['198.51.100.7', ''],
      ['198.51.100.7', '?evil=1'],
      ['203.0.113.9', ''],
    ] as const) {
      await fetch(`${srv.url}/contacts/1${evil}`, { headers: { authorization: `Bearer ${token}`, 'x-forwarded-for': ip } });
    }
    await reporter.close();
    await store.recordDownstream(
      [
        {
          id: 'ct-1',
          source: 'cloudtrail',
          at: clock.now(),
          task,
          plugin: 'crm-reader',
          jti: '',
          action: 's3:GetObject',
          target: 'arn:aws:s3:::exports/contacts.csv',
          outcome: 'success',
          principal: 'arn:aws:sts::111122223333:assumed-role/crm/leash.crm-reader.x',
          link: 'session_tag',
          sourceAddress: '203.0.113.9',
        },
      ],
      clock.now() + 86400_000,
    );
    clock.advance(1);
    const end = await fetch(`${tb.url}/tasks/${task}`, { method: 'DELETE', headers: { authorization: `Bearer ${ORCHESTRATOR_KEY}` } });
    expect(end.status).toBe(200);
  });
  afterAll(async () => {
    for (const c of closers.reverse()) await c();
    await tb.close();
    await rm(dir, { recursive: true, force: true });
  });

  const get = (format: string, key = OPS_KEY, id = task) => fetch(`${tb.url}/admin/tasks/${id}/timeline?format=${format}`, { headers: { authorization: `Bearer ${key}` } });

  it('JSON: every exchange, use, anomaly, downstream event and revocation of the task, in order, with who and what', async () => {
    const res = await get('json');
    expect(res.status).toBe(200);
    const t = (await res.json()) as {
      task: { id: string; state: string };
      lanes: string[];
      entries: Array<{ at: string; kind: string; lane: string; type: string; who: string; what: string; seq?: number }>;
    };
    expect(t.task).toMatchObject({ id: task, state: 'ended' });
    expect(t.lanes).toEqual(['task', 'crm-reader', 'prod-only']);
    const kinds = t.entries.map((e) => `${e.kind}:${e.type}`);
    for (const k of [
      'task:task.opened',
      'exchange:exchange.issued',
      'denied:exchange.denied',
      'use:usage',
      'use:token.first_use',
      'anomaly:token.shared',
      'downstream:cloudtrail',
      'revocation:token.revoked',
      'task:task.ended',
    ]) {
      expect(kinds).toContain(k);
    }
    // Time order, the opening first and the end (with its revocation) last.
    const times = t.entries.map((e) => Date.parse(e.at));
    expect([...times].sort((a, b) => a - b)).toEqual(times);
    expect(kinds[0]).toBe('task:task.opened');
    expect(kinds.indexOf('denied:exchange.denied')).toBeGreaterThan(kinds.indexOf('exchange:exchange.issued'));
    const issued = t.entries.find((e) => e.type === 'exchange.issued')!;
    expect(issued).toMatchObject({ lane: 'crm-reader', who: 'crm-reader' });
    expect(issued.what).toContain(jti);
    const use = t.entries.find((e) => e.type === 'usage' && e.what.startsWith('GET /contacts/:id'))!;
    expect(use).toMatchObject({ lane: 'crm-reader', who: 'crm-api' });
    expect(use.what).toContain('×2');
    expect(t.entries.find((e) => e.type === 'task.ended')).toMatchObject({ lane: 'task', who: 'apikey:orchestrator' });
    // Audit entries carry their seq: verifiable against the chain.
    const seqs = t.entries.filter((e) => e.seq !== undefined).map((e) => e.seq!);
    const chain = await store.read(1, 100_000);
    for (const s of seqs) expect(chain.find((r) => r.seq === s)?.event).toBeDefined();
  });

  it('HTML: one self-contained page with a swim lane per plugin, everything escaped, no script allowed', async () => {
    const res = await get('html');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/html/);
    expect(res.headers.get('content-security-policy')).toContain("default-src 'none'");
    const html = await res.text();
    expect(html).toContain('<svg');
    for (const lane of ['crm-reader', 'prod-only']) expect(html).toMatch(new RegExp(`<text[^>]*>${lane}</text>`));
    expect(html).toContain('&lt;script&gt;alert(1)&lt;/script&gt;');
    expect(html).not.toMatch(/<script/i);
    expect(html).toContain('1 anomaly');
  });

  it('text, and the same through `leash task show`', async () => {
    const text = await (await get('text')).text();
    expect(text.split('\n')[0]).toContain(`task ${task} (ended)`);
    expect(text).toMatch(/crm-reader\s+anomaly\s+SHARED TOKEN/);
    const out: string[] = [];
    const err: string[] = [];
    const io = { out: (s: string) => void out.push(s), err: (s: string) => void err.push(s), env: { LEASH_ADMIN_KEY: OPS_KEY, LEASH_URL: tb.url } };
    expect(await runTaskCli(['show', task], io)).toBe(0);
    expect(out.join('')).toBe(text);
    const file = join(dir, 'timeline.html');
    expect(await runTaskCli(['show', task, '--format', 'html', '--out', file], io)).toBe(0);
    expect(await readFile(file, 'utf8')).toContain('<svg');
    expect(await runTaskCli(['show', 'tsk_doesnotexist00000'], io)).toBe(1);
    expect(err.join('')).toContain('404');
    expect(await runTaskCli(['show'], io)).toBe(2);
    expect(await runTaskCli(['show', task, '--format', 'pdf'], io)).toBe(2);
  });

  it('the orchestrator that opened it and security may read it; anyone else gets 404 (audited) or 401', async () => {
    expect((await get('json', ORCHESTRATOR_KEY)).status).toBe(200);
    expect((await get('json', OTHER_ORCHESTRATOR_KEY)).status).toBe(404);
    expect((await get('json', 'wrong-key')).status).toBe(401);
    expect((await get('json', OPS_KEY, 'tsk_unknown0000000000')).status).toBe(404);
    expect((await get('yaml')).status).toBe(400);
    const denied = (await store.read(1, 100_000)).filter((r) => r.type === 'admin.denied' && r.event.route === 'tasks.timeline');
    expect(denied.map((r) => r.event.reason)).toEqual(expect.arrayContaining(['ERR_TASK_NOT_OWNER', 'ERR_ADMIN_UNAUTHENTICATED']));
  });
});
