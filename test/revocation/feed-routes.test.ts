import { describe, it, expect, beforeAll, afterAll, beforeEach, afterEach } from '@jest/globals';
import express from 'express';
import { createHash, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SignJWT, exportJWK, generateKeyPair, type CryptoKey } from 'jose';
import type { ResourceServerConfig } from '../../src/config/schema.js';
import { createResourceServerAuthenticator } from '../../src/http/oauth/client-auth.js';
import { revocationFeedRouter, type RevocationFeedDeps, type RevocationFeedRouter } from '../../src/http/feed/feed-routes.js';
import { RevocationView } from '../../src/revocation/revocation-view.js';
import type { Revocation } from '../../src/store/records.js';
import { openSqliteStore } from '../../src/store/sqlite/sqlite-store.js';
import type { Store } from '../../src/store/store.js';
import { ManualClock } from '../../src/time/clock.js';
import { LeashError } from '../../src/errors/leash-error.js';

const SECRET = 'rs-secret-0123456789abcdef';
const sha = (s: string) => createHash('sha256').update(s).digest('hex');
const basic = (id: string, secret: string) => `Basic ${Buffer.from(`${id}:${secret}`).toString('base64')}`;
const AUTH = { authorization: basic('crm-api', SECRET) };

interface Feed {
  url: string;
  store: Store;
  view: RevocationView;
  router: RevocationFeedRouter;
  /** Live revocation listeners currently subscribed through the router. */
  listeners(): number;
  /** Makes the view report itself stale (as a replica whose sync or pub/sub failed does). */
  setStale(stale: boolean): void;
  close(): Promise<void>;
}

const dirs: string[] = [];
let rsKey: CryptoKey;
let servers: ResourceServerConfig[];

async function startFeed(clock: ManualClock, opts: Partial<RevocationFeedDeps> & { gate?: () => Promise<void> } = {}): Promise<Feed> {
  const dir = mkdtempSync(join(tmpdir(), 'leash-feed-'));
  dirs.push(dir);
  const store = openSqliteStore({ path: join(dir, 'leash.db'), clock });
  const view = new RevocationView({ store, clock, syncIntervalMs: 60_000, maxStalenessMs: 60_000, maxTokenLifeMs: () => 600_000, revokers: new Map() });
  await view.start();
  let listeners = 0;
  let stale = false;
  const authenticator = createResourceServerAuthenticator(servers, { issuer: 'https://leash.test', endpointUrls: [], clock, replay: store, baseDir: dir });
  const router = revocationFeedRouter({
    authenticate: (req) => authenticator.authenticate(req),
    store: {
      async revocationsSince(cursor, limit, now) {
        await opts.gate?.();
        return store.revocationsSince(cursor, limit, now);
      },
      epoch: () => store.epoch(),
    },
    revocation: {
      assertFresh: () => {
        if (stale) throw new LeashError('ERR_BACKEND_UNAVAILABLE', 'the revocation list cannot be confirmed right now; retry later');
        view.assertFresh();
      },
      onRevocation(listener) {
        listeners++;
        const off = view.onRevocation(listener);
        return () => {
          listeners--;
          off();
        };
      },
    },
    clock,
    ...opts,
  });
  const app = express();
  app.set('query parser', 'simple');
  app.use(router);
  const server: Server = await new Promise((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    store,
    view,
    router,
    listeners: () => listeners,
    setStale: (value) => void (stale = value),
    async close() {
      view.stop();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
      await store.close().catch(() => undefined);
    },
  };
}

const by = { actor: 'apikey:ops', reason: 'leaked in a log' };

async function getJson(url: string, headers: Record<string, string> = AUTH): Promise<{ status: number; body: any; headers: Headers }> {
  const res = await fetch(url, { headers });
  return { status: res.status, body: await res.json(), headers: res.headers };
}

type SseMessage = { kind: 'event'; event: string; id?: string; data: string } | { kind: 'comment'; text: string };

/** A small EventSource written with fetch streaming: every event and comment, in order. */
class SseClient {
  readonly messages: SseMessage[] = [];
  ended = false;
  status = 0;
  private readonly ac = new AbortController();
  private waiters: Array<() => void> = [];
  private done!: Promise<void>;

  static async open(url: string, headers: Record<string, string> = AUTH): Promise<SseClient> {
    const c = new SseClient();
    const res = await fetch(url, { headers: { accept: 'text/event-stream', ...headers }, signal: c.ac.signal });
    c.status = res.status;
    if (res.status !== 200 || !res.body) {
      c.ended = true;
      (c as { body?: unknown }).body = await res.json().catch(() => undefined);
      c.done = Promise.resolve();
      return c;
    }
    c.done = c.read(res.body);
    return c;
  }

  private async read(body: ReadableStream<Uint8Array>): Promise<void> {
    const decoder = new TextDecoder();
    let buf = '';
    let cur: { event?: string; id?: string; data: string[] } = { data: [] };
    try {
      for await (const chunk of body as unknown as AsyncIterable<Uint8Array>) {
        buf += decoder.decode(chunk, { stream: true });
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          if (line === '') {
            if (cur.data.length > 0) this.messages.push({ kind: 'event', event: cur.event ?? 'message', ...(cur.id !== undefined ? { id: cur.id } : {}), data: cur.data.join('\n') });
            cur = { data: [] };
          } else if (line.startsWith(':')) this.messages.push({ kind: 'comment', text: line.slice(1).trim() });
          else {
            const i = line.indexOf(':');
            const field = line.slice(0, i);
            const value = line.slice(i + 1).replace(/^ /, '');
            if (field === 'data') cur.data.push(value);
            else if (field === 'event') cur.event = value;
            else if (field === 'id') cur.id = value;
          }
          this.notify();
        }
      }
    } catch {
      // aborted by close()
    } finally {
      this.ended = true;
      this.notify();
    }
  }

  private notify(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  revocations(): Array<{ id: string; body: any }> {
    return this.messages.flatMap((m) => (m.kind === 'event' && m.event === 'revocation' ? [{ id: m.id as string, body: JSON.parse(m.data) }] : []));
  }

  async until(pred: (c: SseClient) => boolean, ms = 3000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!pred(this)) {
      if (Date.now() > deadline) throw new Error(`timed out; got ${JSON.stringify(this.messages)}`);
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 50);
      });
    }
  }

  synced(): boolean {
    return this.messages.some((m) => m.kind === 'event' && m.event === 'synced');
  }

  async close(): Promise<void> {
    this.ac.abort();
    await this.done;
  }
}

async function eventually(pred: () => boolean, ms = 3000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

beforeAll(async () => {
  const pair = await generateKeyPair('ES256');
  rsKey = pair.privateKey;
  servers = [
    { id: 'crm-api', audiences: ['https://crm.example.com/api'], client_secret_sha256: sha(SECRET) },
    {
      id: 'jwt-api',
      audiences: ['https://jwt.example.com'],
      jwks: { inline: { keys: [{ ...(await exportJWK(pair.publicKey)), kid: 'rs-1', alg: 'ES256' }] }, timeout_ms: 5000, cooldown_ms: 30_000, cache_max_age_ms: 600_000 },
    },
  ];
});
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('GET /revocations (poll)', () => {
  let clock: ManualClock;
  let feed: Feed;
  let revoked: Revocation[];
  beforeAll(async () => {
    clock = new ManualClock();
    feed = await startFeed(clock, { maxBatch: 3 });
    revoked = [
      await feed.view.revokeToken('jti-1', by),
      await feed.view.revokeTask('task-1', by),
      await feed.view.revokePlugin('crm-reader', { actor: 'system:quota', reason: 'quota' }),
      await feed.view.revokeKey('kid-1', by),
    ];
  });
  afterAll(() => feed.close());

  it('needs resource-server authentication: 401 invalid_client with a Basic challenge', async () => {
    for (const headers of [{} as Record<string, string>, { authorization: basic('crm-api', 'wrong-secret') }, { authorization: basic('nobody', SECRET) }]) {
      const res = await getJson(`${feed.url}/revocations`, headers);
      expect(res.status).toBe(401);
      expect(res.body.error).toBe('invalid_client');
      expect(res.headers.get('cache-control')).toBe('no-store');
    }
    expect((await getJson(`${feed.url}/revocations`, {})).headers.get('www-authenticate')).toMatch(/^Basic realm=/);
  });

  it('serves records oldest first, in epoch seconds, without the actor or the reason, not cacheable', async () => {
    const res = await getJson(`${feed.url}/revocations?limit=2`);
    expect(res.status).toBe(200);
    expect(res.headers.get('cache-control')).toBe('no-store');
    const first = revoked[0] as Revocation;
    expect(res.body).toEqual({
      revocations: [
        {
          seq: first.seq,
          scope: 'token',
          id: 'jti-1',
          issued_before: Math.floor(first.issuedBefore / 1000),
          revoked_at: Math.floor(first.revokedAt / 1000),
          keep_until: Math.ceil(first.keepUntil / 1000),
          epoch: feed.store.epoch(),
        },
        expect.objectContaining({ seq: revoked[1]?.seq, scope: 'task', id: 'task-1', epoch: feed.store.epoch() }),
      ],
      cursor: revoked[1]?.seq,
      more: true,
      epoch: feed.store.epoch(),
    });
    expect(feed.store.epoch()).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(JSON.stringify(res.body)).not.toContain('apikey:ops');
    expect(JSON.stringify(res.body)).not.toContain('leaked in a log');
  });

  it('pages with the cursor until more is false; since missing means from the start', async () => {
    const seen: string[] = [];
    let since: number | undefined;
    for (let i = 0; i < 5; i++) {
      const res = await getJson(`${feed.url}/revocations${since === undefined ? '' : `?since=${since}`}`);
      seen.push(...res.body.revocations.map((r: { scope: string; id: string }) => `${r.scope}:${r.id}`));
      since = res.body.cursor;
      if (!res.body.more) break;
    }
    expect(seen).toEqual(['token:jti-1', 'task:task-1', 'plugin:crm-reader', 'key:kid-1']);
    // maxBatch 3: a larger limit is clamped, and `more` tells the client to come back.
    const big = await getJson(`${feed.url}/revocations?limit=1000`);
    expect(big.body.revocations).toHaveLength(3);
    expect(big.body.more).toBe(true);
  });

  it('answers an empty page with the given cursor when nothing is newer', async () => {
    const last = revoked[3]?.seq as number;
    const res = await getJson(`${feed.url}/revocations?since=${last}`);
    expect(res.body).toEqual({ revocations: [], cursor: last, more: false, epoch: feed.store.epoch() });
    expect((await getJson(`${feed.url}/revocations?since=999999`)).body).toEqual({ revocations: [], cursor: 999999, more: false, epoch: feed.store.epoch() });
  });

  it.each([['since=-1'], ['since=abc'], ['since=1.5'], ['since=01'], ['since='], ['since=1&since=2'], ['since=99999999999999999999'], ['limit=0'], ['limit=-3'], ['limit=ten'], ['limit=1&limit=2']])(
    'refuses %s with 400 invalid_request',
    async (query) => {
      const res = await getJson(`${feed.url}/revocations?${query}`);
      expect(res.status).toBe(400);
      expect(res.body.error).toBe('invalid_request');
      expect(res.body.error_description).toMatch(/since|limit/);
    },
  );

  it('accepts a form POST with a private_key_jwt assertion (which has no GET form)', async () => {
    const assertion = () =>
      new SignJWT({})
        .setProtectedHeader({ alg: 'ES256', kid: 'rs-1' })
        .setIssuer('jwt-api')
        .setSubject('jwt-api')
        .setAudience('https://leash.test')
        .setJti(randomUUID())
        .setIssuedAt(Math.floor(clock.now() / 1000))
        .setExpirationTime(Math.floor(clock.now() / 1000) + 60)
        .sign(rsKey);
    const post = async (body: Record<string, string>, query = '') => {
      const res = await fetch(`${feed.url}/revocations${query}`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams(body),
      });
      return { status: res.status, body: (await res.json()) as any };
    };
    const assertionType = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
    const ok = await post({ since: String(revoked[2]?.seq), client_assertion_type: assertionType, client_assertion: await assertion() });
    expect(ok.status).toBe(200);
    expect(ok.body.revocations.map((r: { id: string }) => r.id)).toEqual(['kid-1']);
    // The assertion is single use.
    const again = await assertion();
    expect((await post({ client_assertion_type: assertionType, client_assertion: again })).status).toBe(200);
    expect((await post({ client_assertion_type: assertionType, client_assertion: again })).status).toBe(401);
    // Parameters in the URL of a POST are refused: one source is authoritative.
    const mixed = await post({ client_assertion_type: assertionType, client_assertion: await assertion() }, '?since=1');
    expect(mixed.status).toBe(400);
    expect(mixed.body.error).toBe('invalid_request');
  });

  it('stops serving a record once every token it covers has expired', async () => {
    const clock2 = new ManualClock();
    const feed2 = await startFeed(clock2);
    try {
      await feed2.view.revokeToken('short', by); // keepUntil = now + 600 s
      expect((await getJson(`${feed2.url}/revocations`)).body.revocations).toHaveLength(1);
      clock2.advance(601);
      await feed2.view.sync();
      expect((await getJson(`${feed2.url}/revocations`)).body.revocations).toEqual([]);
    } finally {
      await feed2.close();
    }
  });

  it('refuses with 503 temporarily_unavailable while the view is stale, and recovers', async () => {
    const clock2 = new ManualClock();
    const feed2 = await startFeed(clock2);
    try {
      feed2.setStale(true);
      const stale = await getJson(`${feed2.url}/revocations`);
      expect(stale.status).toBe(503);
      expect(stale.body.error).toBe('temporarily_unavailable');
      expect(stale.headers.get('retry-after')).toBe('2');
      feed2.setStale(false);
      expect((await getJson(`${feed2.url}/revocations`)).status).toBe(200);
    } finally {
      await feed2.close();
    }
  });

  it('refuses with 503 when the store is down (poll and stream)', async () => {
    const clock2 = new ManualClock();
    const feed2 = await startFeed(clock2);
    try {
      await feed2.store.close();
      const res = await getJson(`${feed2.url}/revocations`);
      expect(res.status).toBe(503);
      expect(res.body).toEqual({ error: 'temporarily_unavailable', error_description: expect.any(String) });
      const sse = await SseClient.open(`${feed2.url}/revocations/stream`);
      expect(sse.status).toBe(503);
      expect(feed2.listeners()).toBe(0);
      expect(feed2.router.openStreams()).toBe(0);
    } finally {
      await feed2.close();
    }
  });
});

describe('GET /revocations/stream (SSE)', () => {
  let clock: ManualClock;
  let feed: Feed;
  beforeEach(async () => {
    clock = new ManualClock();
    feed = await startFeed(clock, { heartbeatMs: 60_000 });
    await feed.view.revokeToken('a', by);
    await feed.view.revokeToken('b', by);
    await feed.view.revokeTask('t', by);
  });
  afterEach(async () => {
    await feed.close();
  });

  it('replays history, says synced, then streams live revocations with ids', async () => {
    const sse = await SseClient.open(`${feed.url}/revocations/stream`);
    try {
      expect(sse.status).toBe(200);
      await sse.until((c) => c.synced());
      expect(sse.revocations().map((r) => [r.id, r.body.id])).toEqual([
        ['1', 'a'],
        ['2', 'b'],
        ['3', 't'],
      ]);
      const live = await feed.view.revokePlugin('crm-reader', by);
      await sse.until((c) => c.revocations().length === 4);
      const last = sse.revocations()[3];
      expect(last?.id).toBe(String(live.seq));
      expect(last?.body).toEqual({
        seq: live.seq,
        scope: 'plugin',
        id: 'crm-reader',
        issued_before: Math.floor(live.issuedBefore / 1000),
        revoked_at: Math.floor(live.revokedAt / 1000),
        keep_until: Math.ceil(live.keepUntil / 1000),
        epoch: feed.store.epoch(),
      });
      expect(sse.revocations().every((r) => r.body.epoch === feed.store.epoch())).toBe(true);
    } finally {
      await sse.close();
    }
  });

  it('resumes after Last-Event-ID (or since), which wins over since', async () => {
    const resumed = await SseClient.open(`${feed.url}/revocations/stream?since=0`, { ...AUTH, 'last-event-id': '2' });
    const bySince = await SseClient.open(`${feed.url}/revocations/stream?since=1`);
    try {
      await resumed.until((c) => c.synced());
      await bySince.until((c) => c.synced());
      expect(resumed.revocations().map((r) => r.body.id)).toEqual(['t']);
      expect(bySince.revocations().map((r) => r.body.id)).toEqual(['b', 't']);
      expect(resumed.messages.find((m) => m.kind === 'event' && m.event === 'synced')).toMatchObject({ data: JSON.stringify({ cursor: 3, epoch: feed.store.epoch() }) });
    } finally {
      await resumed.close();
      await bySince.close();
    }
  });

  it('never doubles a record published while the replay is being read', async () => {
    let release!: () => void;
    let entered!: () => void;
    const inReplay = new Promise<void>((r) => (entered = r));
    const gate = new Promise<void>((r) => (release = r));
    let calls = 0;
    const gated = await startFeed(clock, {
      heartbeatMs: 60_000,
      gate: async () => {
        if (calls++ === 0) {
          entered();
          await gate;
        }
      },
    });
    try {
      await gated.view.revokeToken('before', by);
      const opening = SseClient.open(`${gated.url}/revocations/stream`);
      await inReplay;
      // Subscribed and about to read the store: these reach the stream live AND are in the replay.
      await gated.view.revokeToken('during-1', by);
      await gated.view.revokeToken('during-2', by);
      release();
      const sse = await opening;
      await sse.until((c) => c.synced());
      await gated.view.revokeToken('after', by);
      await sse.until((c) => c.revocations().some((r) => r.body.id === 'after'));
      expect(sse.revocations().map((r) => r.body.id)).toEqual(['before', 'during-1', 'during-2', 'after']);
      await sse.close();
    } finally {
      await gated.close();
    }
  });

  it('sends a heartbeat comment, and ends the stream when the view goes stale', async () => {
    const hb = await startFeed(clock, { heartbeatMs: 40 });
    try {
      const sse = await SseClient.open(`${hb.url}/revocations/stream`);
      await sse.until((c) => c.messages.some((m) => m.kind === 'comment' && m.text === 'heartbeat'));
      hb.setStale(true);
      await sse.until((c) => c.ended);
      await eventually(() => hb.router.openStreams() === 0 && hb.listeners() === 0);
    } finally {
      await hb.close();
    }
  });

  it('unsubscribes when the client disconnects', async () => {
    const a = await SseClient.open(`${feed.url}/revocations/stream`);
    const b = await SseClient.open(`${feed.url}/revocations/stream`);
    await a.until((c) => c.synced());
    await b.until((c) => c.synced());
    expect(feed.router.openStreams()).toBe(2);
    expect(feed.listeners()).toBe(2);
    await a.close();
    await eventually(() => feed.router.openStreams() === 1 && feed.listeners() === 1);
    // The remaining stream still gets live records; the closed one's listener is gone.
    await feed.view.revokeToken('later', by);
    await b.until((c) => c.revocations().some((r) => r.body.id === 'later'));
    await b.close();
    await eventually(() => feed.router.openStreams() === 0 && feed.listeners() === 0);
  });

  it('bounds concurrent streams: 503 beyond the limit, room again after one closes', async () => {
    const small = await startFeed(clock, { maxStreams: 2, heartbeatMs: 60_000 });
    try {
      const a = await SseClient.open(`${small.url}/revocations/stream`);
      const b = await SseClient.open(`${small.url}/revocations/stream`);
      const c = await SseClient.open(`${small.url}/revocations/stream`);
      expect([a.status, b.status, c.status]).toEqual([200, 200, 503]);
      expect((c as unknown as { body: { error: string } }).body.error).toBe('temporarily_unavailable');
      await a.close();
      await eventually(() => small.router.openStreams() === 1);
      const d = await SseClient.open(`${small.url}/revocations/stream`);
      expect(d.status).toBe(200);
      await b.close();
      await d.close();
    } finally {
      await small.close();
    }
  });

  it('refuses without credentials (401) and a bad Last-Event-ID (400), before any stream opens', async () => {
    const anon = await SseClient.open(`${feed.url}/revocations/stream`, {});
    expect(anon.status).toBe(401);
    const bad = await SseClient.open(`${feed.url}/revocations/stream`, { ...AUTH, 'last-event-id': 'x1' });
    expect(bad.status).toBe(400);
    expect(feed.router.openStreams()).toBe(0);
    expect(feed.listeners()).toBe(0);
  });

  it('answers HEAD without holding a stream open', async () => {
    const res = await fetch(`${feed.url}/revocations/stream`, { method: 'HEAD', headers: AUTH });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    expect(feed.router.openStreams()).toBe(0);
    expect(feed.listeners()).toBe(0);
  });

  it('closeStreams ends every stream (shutdown)', async () => {
    const a = await SseClient.open(`${feed.url}/revocations/stream`);
    await a.until((c) => c.synced());
    feed.router.closeStreams();
    await a.until((c) => c.ended);
    expect(feed.router.openStreams()).toBe(0);
    expect(feed.listeners()).toBe(0);
  });
});
