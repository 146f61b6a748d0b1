import { describe, it, expect, beforeAll, afterAll } from '@jest/globals';
import express from 'express';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRemoteJWKSet, decodeJwt, jwtVerify, type JWTPayload } from 'jose';
import { createRevocationFollower, type RevocationFollower } from '../../src/client/index.js';
import { createResourceServerAuthenticator } from '../../src/http/oauth/client-auth.js';
import { revocationFeedRouter } from '../../src/http/feed/feed-routes.js';
import { TOKEN_REVOKED_EVENT } from '../../src/revocation/feed/set-event.js';
import { RevocationView } from '../../src/revocation/revocation-view.js';
import { openSqliteStore } from '../../src/store/sqlite/sqlite-store.js';
import { ManualClock } from '../../src/time/clock.js';
import { CRM_API, EXCHANGE, JWT_TYPE, OPS_KEY, ORCHESTRATOR_KEY, startTestBroker, type TestBroker } from '../support/broker.js';

const TICKETS = 'https://tickets.example.com/read';
const SECRETS = { 'crm-api': 'crm-api-feed-secret-0123456789', 'tickets-api': 'tickets-api-feed-secret-012345' } as const;
type Rs = keyof typeof SECRETS;
const RS: readonly Rs[] = ['crm-api', 'tickets-api'];
const sha = (s: string) => createHash('sha256').update(s).digest('hex');
const basic = (rs: Rs) => ({ authorization: `Basic ${Buffer.from(`${rs}:${SECRETS[rs]}`).toString('base64')}` });
const REASON = 'suspected exfiltration by contractor X, see INC-977';

type Item = { seq: number; scope: string; id: string } & Record<string, unknown>;

/** Every `event: revocation` of one SSE connection, in order. */
function stream(url: string, headers: Record<string, string>, signal: AbortSignal): { items: Item[]; synced: Promise<number> } {
  const items: Item[] = [];
  let onSynced!: (cursor: number) => void;
  const synced = new Promise<number>((r) => (onSynced = r));
  void (async () => {
    const res = await fetch(url, { headers: { accept: 'text/event-stream', ...headers }, signal });
    if (res.status !== 200 || !res.body) throw new Error(`stream answered ${res.status}`);
    const decoder = new TextDecoder();
    let buf = '';
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      buf += decoder.decode(chunk, { stream: true });
      let end: number;
      while ((end = buf.indexOf('\n\n')) >= 0) {
        const block = buf.slice(0, end).split('\n');
        buf = buf.slice(end + 2);
        const field = (name: string) => block.find((l) => l.startsWith(`${name}: `))?.slice(name.length + 2);
        if (field('event') === 'synced') onSynced((JSON.parse(field('data') as string) as { cursor: number }).cursor);
        if (field('event') === 'revocation') items.push(JSON.parse(field('data') as string) as Item);
      }
    }
  })().catch(() => undefined);
  return { items, synced };
}

async function until(pred: () => boolean | Promise<boolean>, ms = 3000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await pred())) {
    if (Date.now() > deadline) throw new Error(`not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/**
 * A resource server sees only the revocations that concern its audiences (plus plugin and
 * key revocations), on every channel: poll, SSE and SET push; and never the admin's reason.
 */
describe('the revocation feed is scoped to each resource server', () => {
  let tb: TestBroker;
  let receiver: Server;
  const pushed: Record<Rs, JWTPayload[]> = { 'crm-api': [], 'tickets-api': [] };
  const ac = new AbortController();
  let streams: Record<Rs, ReturnType<typeof stream>>;
  let follower: RevocationFollower;

  beforeAll(async () => {
    const rx = express();
    let jwks: ReturnType<typeof createRemoteJWKSet> | undefined;
    rx.post('/events/:rs', express.text({ type: 'application/secevent+jwt' }), async (req, res) => {
      jwks ??= createRemoteJWKSet(new URL(`${tb.url}/jwks`));
      const rs = req.params.rs as Rs;
      const { payload } = await jwtVerify(req.body as string, jwks, { issuer: tb.url, audience: rs, typ: 'secevent+jwt' });
      pushed[rs].push(payload);
      res.status(202).end();
    });
    receiver = await new Promise((resolve) => {
      const s = rx.listen(0, '127.0.0.1', () => resolve(s));
    });
    const push = (rs: Rs) => ({ url: `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/events/${rs}`, max_attempts: 3 });
    tb = await startTestBroker({
      patch: (cfg) => {
        cfg.plugins.push({
          id: 'ticket-reader',
          owner: 'team-support@example.com',
          risk: 'low',
          bindings: [{ issuer: 'test-cluster', subject: 'system:serviceaccount:plugins:ticket-reader' }],
          grants: [{ audience: TICKETS, scopes: ['tickets:read'], kind: 'jwt', effect: 'read', max_ttl: 300 }],
        });
        cfg.resource_servers = [
          { id: 'crm-api', audiences: [CRM_API], client_secret_sha256: sha(SECRETS['crm-api']), push: push('crm-api') },
          { id: 'tickets-api', audiences: [TICKETS, 'https://tickets.example.com/other'], client_secret_sha256: sha(SECRETS['tickets-api']), push: push('tickets-api') },
        ];
      },
    });
    streams = { 'crm-api': stream(`${tb.url}/revocations/stream`, basic('crm-api'), ac.signal), 'tickets-api': stream(`${tb.url}/revocations/stream`, basic('tickets-api'), ac.signal) };
    await Promise.all(RS.map((rs) => streams[rs].synced));
    follower = createRevocationFollower({ issuer: tb.url, clientId: 'tickets-api', clientSecret: SECRETS['tickets-api'] });
    await follower.ready();
  });
  afterAll(async () => {
    ac.abort();
    follower?.close();
    await tb?.close();
    receiver?.closeAllConnections();
    await new Promise<void>((r) => receiver.close(() => r()));
  });

  const exchange = async (plugin: string, resource: string, task: string) => {
    const res = await tb.exchange({ grant_type: EXCHANGE, client_id: plugin, subject_token: await tb.cluster.saToken({ sa: plugin }), subject_token_type: JWT_TYPE, resource, task });
    expect(res.status).toBe(200);
    return { token: String(res.body.access_token), jti: String(decodeJwt(String(res.body.access_token)).jti) };
  };
  const revoke = async (scope: string, id: string) => {
    const res = await fetch(`${tb.url}/admin/revocations`, {
      method: 'POST',
      headers: { authorization: `Bearer ${OPS_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ scope, id, reason: REASON }),
    });
    expect(res.status).toBe(201);
    return ((await res.json()) as { seq: number }).seq;
  };
  const poll = async (rs: Rs): Promise<{ revocations: Item[]; cursor: number; more: boolean }> => (await fetch(`${tb.url}/revocations`, { headers: basic(rs) })).json() as never;
  const pushedIds = (rs: Rs) => pushed[rs].map((p) => (p.events as Record<string, { scope: string; subject: { id: string } }>)[TOKEN_REVOKED_EVENT]!).map((e) => `${e.scope}:${e.subject.id}`);

  it('each server gets what concerns its audiences, and plugin and key revocations, on poll, SSE and push', async () => {
    // a CRM task, ended: only the CRM API
    const crmTask = await tb.openTask({ plugins: ['crm-reader'] });
    await exchange('crm-reader', CRM_API, crmTask);
    expect((await fetch(`${tb.url}/tasks/${crmTask}`, { method: 'DELETE', headers: { authorization: `Bearer ${ORCHESTRATOR_KEY}` } })).status).toBe(200);
    // a tickets token, revoked by jti: only the tickets API
    const ticketTask = await tb.openTask({ plugins: ['ticket-reader'] });
    const ticket = await exchange('ticket-reader', TICKETS, ticketTask);
    await revoke('token', ticket.jti);
    // a task both plugins may work in, with only a CRM token so far: both (the tickets plugin
    // is granted there, and a token may be on its way)
    const shared = await tb.openTask({ plugins: ['crm-reader', 'ticket-reader'] });
    const crmInShared = await exchange('crm-reader', CRM_API, shared);
    await revoke('task', shared);
    // a token of that task, by jti: both (a delegated token derived from it may be for either)
    await revoke('token', crmInShared.jti);
    // plugin and key revocations: everyone; an unknown jti: everyone (Leash cannot tell)
    await revoke('plugin', 'ticket-reader');
    await revoke('key', 'some-retired-kid');
    await revoke('token', 'jti-leash-never-issued');

    const expected: Record<Rs, string[]> = {
      'crm-api': [`task:${crmTask}`, `task:${shared}`, `token:${crmInShared.jti}`, 'plugin:ticket-reader', 'key:some-retired-kid', 'token:jti-leash-never-issued'],
      'tickets-api': [`token:${ticket.jti}`, `task:${shared}`, `token:${crmInShared.jti}`, 'plugin:ticket-reader', 'key:some-retired-kid', 'token:jti-leash-never-issued'],
    };
    for (const rs of RS) {
      const page = await poll(rs);
      expect([rs, page.revocations.map((r) => `${r.scope}:${r.id}`)]).toEqual([rs, expected[rs]]);
      expect(page.more).toBe(false);
      await until(() => streams[rs].items.length >= expected[rs].length);
      expect([rs, streams[rs].items.map((r) => `${r.scope}:${r.id}`)]).toEqual([rs, expected[rs]]);
      await until(() => pushed[rs].length >= expected[rs].length);
      expect([rs, pushedIds(rs)]).toEqual([rs, expected[rs]]);
      // No channel carries the admin's reason (nor who revoked).
      for (const text of [JSON.stringify(page), JSON.stringify(streams[rs].items), JSON.stringify(pushed[rs])]) {
        expect(text).not.toContain('INC-977');
        expect(text).not.toContain('apikey:ops');
      }
    }
    // Both polls end at the same head: records of other audiences were stepped over.
    expect((await poll('crm-api')).cursor).toBe((await poll('tickets-api')).cursor);
    // The audit trail keeps the reason.
    const events = await tb.broker.testing.store.read(1, 100_000);
    expect(events.some((e) => e.type === 'token.revoked' && e.event.id === ticket.jti && e.event.reason === REASON)).toBe(true);
  });

  it('the SDK follower of one server learns what concerns it, and nothing else', async () => {
    const ticketTask = await tb.openTask({ plugins: ['ticket-reader'] });
    await exchange('ticket-reader', TICKETS, ticketTask);
    const crmTask = await tb.openTask({ plugins: ['crm-reader'] });
    await exchange('crm-reader', CRM_API, crmTask);
    await revoke('task', crmTask);
    await revoke('task', ticketTask);
    const facts = (task: string) => ({ jti: 'any', plugin: 'some-plugin', task, iat: Math.floor(Date.now() / 1000) });
    await until(() => follower.isRevoked(facts(ticketTask)));
    expect(follower.isRevoked(facts(crmTask))).toBe(false);
    expect(follower.fresh()).toBe(true);
  });
});

/**
 * The poll's cost does not grow with history: a server with no record among many of other
 * audiences gets bounded pages that move its cursor, and the SDK follower pages through.
 */
describe('scoped paging', () => {
  it('reads at most four store batches per poll, moves the cursor past other audiences, and the follower pages to the head', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'leash-feed-scope-'));
    const clock = new ManualClock(Date.now());
    const store = openSqliteStore({ path: join(dir, 'leash.db'), clock });
    const view = new RevocationView({ store, clock, syncIntervalMs: 60_000, maxStalenessMs: 60_000, maxTokenLifeMs: () => 600_000, revokers: new Map() });
    await view.start();
    const servers = [{ id: 'quiet-api', audiences: ['https://quiet.example'], client_secret_sha256: sha('quiet-secret-0123456789') }];
    const auth = createResourceServerAuthenticator(servers, { issuer: 'https://leash.test', endpointUrls: [], clock, replay: store, baseDir: dir });
    let reads = 0;
    const router = revocationFeedRouter({
      authenticate: (req) => auth.authenticate(req),
      store: { revocationsSince: (c, l, n) => (reads++, store.revocationsSince(c, l, n)), epoch: () => store.epoch() },
      revocation: view,
      clock,
      maxBatch: 2,
    });
    const app = express();
    app.set('query parser', 'simple');
    app.use(router);
    const server: Server = await new Promise((resolve) => {
      const s = app.listen(0, '127.0.0.1', () => resolve(s));
    });
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const headers = { authorization: `Basic ${Buffer.from('quiet-api:quiet-secret-0123456789').toString('base64')}` };
    try {
      for (let i = 0; i < 20; i++)
        await store.addRevocation({
          scope: 'task',
          id: `tsk_other_${i}`,
          issuedBefore: clock.now(),
          revokedAt: clock.now(),
          keepUntil: clock.now() + 600_000,
          reason: 'r',
          actor: 'a',
          audiences: ['https://loud.example'],
        });
      const mine = await store.addRevocation({
        scope: 'task',
        id: 'tsk_quiet',
        issuedBefore: clock.now(),
        revokedAt: clock.now(),
        keepUntil: clock.now() + 600_000,
        reason: 'r',
        actor: 'a',
        audiences: ['https://quiet.example'],
      });

      reads = 0;
      const first = (await (await fetch(`${url}/revocations`, { headers })).json()) as { revocations: Item[]; cursor: number; more: boolean };
      expect(reads).toBe(4);
      expect(first).toEqual({ revocations: [], cursor: 8, more: true, epoch: store.epoch() });
      const pages: Array<{ revocations: Item[]; cursor: number; more: boolean }> = [first];
      while (pages.at(-1)!.more) pages.push((await (await fetch(`${url}/revocations?since=${pages.at(-1)!.cursor}`, { headers })).json()) as never);
      expect(pages.flatMap((p) => p.revocations.map((r) => r.id))).toEqual(['tsk_quiet']);
      expect(pages.at(-1)!.cursor).toBe(mine.seq);

      for (const mode of ['poll', 'sse'] as const) {
        const f = createRevocationFollower({ issuer: url, clientId: 'quiet-api', clientSecret: 'quiet-secret-0123456789', mode, clock });
        try {
          await f.ready();
          expect([mode, f.cursor()]).toEqual([mode, mine.seq]);
          expect(f.isRevoked({ jti: 'j', plugin: 'p', task: 'tsk_quiet', iat: Math.floor(clock.now() / 1000) })).toBe(true);
          expect(f.isRevoked({ jti: 'j', plugin: 'p', task: 'tsk_other_3', iat: Math.floor(clock.now() / 1000) })).toBe(false);
        } finally {
          f.close();
        }
      }
    } finally {
      router.closeStreams();
      view.stop();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
