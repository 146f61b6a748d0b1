import { describe, it, expect, beforeAll, afterAll } from '@jest/globals';
import express from 'express';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SignJWT, exportJWK, generateKeyPair, type CryptoKey } from 'jose';
import {
  createLeashVerifier,
  createRevocationFollower,
  LeashVerifyError,
  requireLeashToken,
  type LeashRevocationView,
  type RevocationFollower,
  type RevocationFollowerOptions,
} from '../../src/client/index.js';
import type { ResourceServerConfig } from '../../src/config/schema.js';
import { createResourceServerAuthenticator } from '../../src/http/oauth/client-auth.js';
import type { KeyManager } from '../../src/keys/key-manager.js';
import { signJwt } from '../../src/keys/jws.js';
import { revocationFeedRouter, type RevocationFeedRouter } from '../../src/http/feed/feed-routes.js';
import { RevocationView } from '../../src/revocation/revocation-view.js';
import { openSqliteStore } from '../../src/store/sqlite/sqlite-store.js';
import type { Store } from '../../src/store/store.js';
import { ManualClock, systemClock, type Clock } from '../../src/time/clock.js';
import { listen, startIssuer, tempKeys, type TestIssuer } from './fixtures.js';

const SECRET = 'rs-secret-0123456789abcdef';
const sha = (s: string) => createHash('sha256').update(s).digest('hex');
const by = { actor: 'apikey:ops', reason: 'test' };
const dirs: string[] = [];
const cleanups: Array<() => void | Promise<void>> = [];
let rsKey: CryptoKey;
let servers: ResourceServerConfig[];

interface Feed {
  url: string;
  store: Store;
  view: RevocationView;
  router: RevocationFeedRouter;
  /** Headers of every stream request, in order. */
  streamRequests: Array<Record<string, string | string[] | undefined>>;
  pollRequests: number;
  /**
   * Leash restarted on an empty store that nobody remembered (a new file: a new epoch, the
   * feed numbered from 1 again), at the same URL; open streams are dropped.
   */
  restartEmpty(): Promise<void>;
  close(): Promise<void>;
}

/** A real revocation feed: SQLite store, the broker's RevocationView, real client authentication. */
async function startFeed(opts: { clock?: Clock; heartbeatMs?: number; noStream?: boolean } = {}): Promise<Feed> {
  const clock = opts.clock ?? systemClock;
  const dir = mkdtempSync(join(tmpdir(), 'leash-follow-'));
  dirs.push(dir);
  let generation = 0;
  const open = async () => {
    const store = openSqliteStore({ path: join(dir, `leash-${++generation}.db`), clock });
    const view = new RevocationView({ store, clock, syncIntervalMs: 60_000, maxStalenessMs: 600_000, maxTokenLifeMs: () => 600_000, revokers: new Map() });
    await view.start();
    return { store, view };
  };
  const first = await open();
  const authenticator = createResourceServerAuthenticator(servers, { issuer: 'https://leash.test', endpointUrls: [], clock, replay: first.store, baseDir: dir });
  const router = revocationFeedRouter({
    authenticate: (req) => authenticator.authenticate(req),
    // Through the feed object, so restartEmpty() swaps what the same URL serves.
    store: { revocationsSince: (...a) => feed.store.revocationsSince(...a), epoch: () => feed.store.epoch() },
    revocation: { assertFresh: () => feed.view.assertFresh(), onRevocation: (l) => feed.view.onRevocation(l) },
    clock,
    heartbeatMs: opts.heartbeatMs ?? 60_000,
  });
  const feed = { store: first.store, view: first.view, router, streamRequests: [], pollRequests: 0 } as unknown as Feed;
  const retired: Store[] = [];
  feed.restartEmpty = async () => {
    feed.view.stop();
    retired.push(feed.store);
    const next = await open();
    feed.store = next.store;
    feed.view = next.view;
    router.closeStreams();
  };
  const app = express();
  app.set('query parser', 'simple');
  app.use('/revocations/stream', (req, res, next) => {
    feed.streamRequests.push({ ...req.headers });
    if (opts.noStream) return void res.status(404).json({ error: 'not_found' });
    next();
  });
  app.use('/revocations', (req, _res, next) => {
    if (req.path === '/') feed.pollRequests++;
    next();
  });
  app.use(router);
  const server: Server = await new Promise((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  feed.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  feed.close = async () => {
    feed.view.stop();
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
    for (const s of [...retired, feed.store]) await s.close().catch(() => undefined);
  };
  cleanups.push(() => feed.close());
  return feed;
}

function follow(feed: Feed, extra: Partial<RevocationFollowerOptions> = {}): RevocationFollower {
  const f = createRevocationFollower({ issuer: feed.url, clientId: 'crm-api', clientSecret: SECRET, reconnectDelayMs: 20, ...extra } as RevocationFollowerOptions);
  cleanups.push(() => f.close());
  return f;
}

async function eventually(pred: () => boolean, ms = 2000): Promise<number> {
  const t0 = Date.now();
  while (!pred()) {
    if (Date.now() - t0 > ms) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
  return Date.now() - t0;
}

const facts = (extra: Partial<{ jti: string; plugin: string; task: string; kid: string; iat: number; upstream: string[] }> = {}) => ({
  jti: 'jti-ok',
  plugin: 'p-ok',
  task: 'task-ok',
  kid: 'kid-ok',
  iat: Math.floor(Date.now() / 1000),
  ...extra,
});

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
afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('createRevocationFollower', () => {
  it('refuses ambiguous credentials (a programming error)', () => {
    expect(() => createRevocationFollower({ issuer: 'http://x', clientId: 'a' })).toThrow(TypeError);
    expect(() => createRevocationFollower({ issuer: 'http://x', clientId: 'a', clientSecret: 's', clientAssertion: async () => 'x' })).toThrow(TypeError);
  });

  it('streams: replays what exists, then applies live revocations of every scope within a second', async () => {
    const feed = await startFeed();
    await feed.view.revokeToken('old-jti', by);
    const f = follow(feed);
    expect(f.fresh()).toBe(false);
    await f.ready();
    expect(f.fresh()).toBe(true);
    expect(f.mode()).toBe('sse');
    expect(f.isRevoked(facts({ jti: 'old-jti' }))).toBe(true);
    expect(f.isRevoked(facts())).toBe(false);

    await feed.view.revokeTask('task-9', by);
    await feed.view.revokeKey('kid-9', by);
    const plugin = await feed.view.revokePlugin('p-9', by);
    const took = await eventually(() => f.cursor() === plugin.seq, 1000);
    expect(took).toBeLessThan(1000);
    expect(f.isRevoked(facts({ task: 'task-9' }))).toBe(true);
    expect(f.isRevoked(facts({ kid: 'kid-9' }))).toBe(true);
    // Plugin scope: tokens issued at or before the revocation only.
    const cut = Math.floor(plugin.issuedBefore / 1000);
    expect(f.isRevoked(facts({ plugin: 'p-9', iat: cut }))).toBe(true);
    expect(f.isRevoked(facts({ plugin: 'p-9', iat: cut + 1 }))).toBe(false);
    expect(f.size()).toBe(4);
    expect(feed.pollRequests).toBe(0);
  });

  it('reconnects with Last-Event-ID after the stream drops and misses nothing revoked meanwhile', async () => {
    const feed = await startFeed();
    const f = follow(feed);
    await f.ready();
    const first = await feed.view.revokeToken('before-drop', by);
    await eventually(() => f.cursor() === first.seq);
    feed.router.closeStreams();
    const during = await feed.view.revokeToken('while-down', by);
    await eventually(() => feed.streamRequests.length >= 2 && f.isRevoked(facts({ jti: 'while-down' })));
    expect(feed.streamRequests[0]?.['last-event-id']).toBeUndefined();
    expect(Number(feed.streamRequests[1]?.['last-event-id'])).toBeGreaterThanOrEqual(first.seq);
    await eventually(() => feed.router.openStreams() === 1);
    const after = await feed.view.revokeToken('after-reconnect', by);
    await eventually(() => f.cursor() === after.seq);
    expect(f.isRevoked(facts({ jti: 'after-reconnect' }))).toBe(true);
    expect(during.seq).toBeLessThan(after.seq);
  });

  it.each(['sse', 'poll'] as const)('%s: Leash restarted on an empty store (new epoch, seqs from 1): the follower drops its cursor and misses nothing revoked there', async (mode) => {
    const feed = await startFeed();
    for (const j of ['a', 'b', 'c']) await feed.view.revokeToken(`old-${j}`, by);
    const errors: Error[] = [];
    const f = follow(feed, { mode, pollIntervalMs: 30, onError: (e) => errors.push(e) });
    await f.ready();
    await eventually(() => f.cursor() === 3);
    const before = feed.store.epoch();
    expect(f.epoch()).toBe(before);

    await feed.restartEmpty();
    expect(feed.store.epoch()).not.toBe(before);
    // seq 1 of the new store: a follower that kept cursor 3 would never ask for it
    const fresh = await feed.view.revokeToken('new-1', by);
    expect(fresh.seq).toBe(1);
    await eventually(() => f.isRevoked(facts({ jti: 'new-1' })), 3000);
    expect(f.epoch()).toBe(feed.store.epoch());
    expect(f.cursor()).toBe(1);
    expect(errors.map((e) => e.message)).toContainEqual(expect.stringMatching(/store was reset \(epoch .* -> .*\): dropped the cursor/));
    // what it knew is kept: those were real revocations, lost only by the store
    expect(f.isRevoked(facts({ jti: 'old-a' }))).toBe(true);
    await eventually(() => f.fresh());
  });

  it('an answer without the epoch after answers with one is refused: the follower turns stale instead of trusting it', async () => {
    const feed = await startFeed();
    const clock = new ManualClock(Date.now());
    let strip = false;
    const errors: Error[] = [];
    const f = follow(feed, {
      mode: 'poll',
      pollIntervalMs: 20,
      clock,
      maxStalenessMs: 1000,
      onError: (e) => errors.push(e),
      fetch: async (url, init) => {
        const res = await fetch(url, init);
        if (!strip) return res;
        const { epoch: _dropped, ...body } = (await res.json()) as Record<string, unknown>;
        return new Response(JSON.stringify(body), { status: res.status, headers: res.headers });
      },
    });
    await f.ready();
    strip = true;
    await eventually(() => errors.some((e) => /without the store epoch/.test(e.message)));
    clock.advance(1001);
    expect(f.fresh()).toBe(false);
  });

  it('polls in poll mode', async () => {
    const feed = await startFeed();
    const f = follow(feed, { mode: 'poll', pollIntervalMs: 30 });
    await f.ready();
    await feed.view.revokeToken('polled', by);
    await eventually(() => f.isRevoked(facts({ jti: 'polled' })), 1000);
    expect(feed.streamRequests).toHaveLength(0);
    expect(f.mode()).toBe('poll');
  });

  it('falls back to polling when the server has no stream', async () => {
    const feed = await startFeed({ noStream: true });
    const errors: Error[] = [];
    const f = follow(feed, { pollIntervalMs: 30, onError: (e) => errors.push(e) });
    await f.ready();
    expect(f.mode()).toBe('poll');
    await feed.view.revokeTask('polled-task', by);
    await eventually(() => f.isRevoked(facts({ task: 'polled-task' })), 1000);
    expect(feed.streamRequests).toHaveLength(1);
    expect(errors[0]?.message).toMatch(/404/);
  });

  it('authenticates with private_key_jwt (a fresh assertion per request, sent in a form POST)', async () => {
    const feed = await startFeed();
    let minted = 0;
    const f = follow(feed, {
      clientSecret: undefined,
      clientId: 'jwt-api',
      clientAssertion: () => {
        minted++;
        const now = Math.floor(Date.now() / 1000);
        return new SignJWT({})
          .setProtectedHeader({ alg: 'ES256', kid: 'rs-1' })
          .setIssuer('jwt-api')
          .setSubject('jwt-api')
          .setAudience('https://leash.test')
          .setJti(randomUUID())
          .setIssuedAt(now)
          .setExpirationTime(now + 60)
          .sign(rsKey);
      },
    });
    await f.ready();
    await feed.view.revokeToken('via-assertion', by);
    await eventually(() => f.isRevoked(facts({ jti: 'via-assertion' })));
    expect(minted).toBe(1);
  });

  it('with a wrong secret: reports 401 invalid_client, never becomes fresh', async () => {
    const feed = await startFeed();
    const errors: Error[] = [];
    const f = follow(feed, { clientSecret: 'zz9-bad-secret', onError: (e) => errors.push(e) });
    await eventually(() => errors.length >= 2);
    expect(errors[0]?.message).toMatch(/401: invalid_client/);
    expect(errors.map((e) => e.message).join('\n')).not.toContain('zz9-bad-secret');
    expect(f.fresh()).toBe(false);
    const settled = await Promise.race([f.ready().then(() => 'ready'), new Promise((r) => setTimeout(() => r('pending'), 100))]);
    expect(settled).toBe('pending');
  });

  it('turns stale when nothing is heard for maxStalenessMs, and forgets records past keep_until', async () => {
    const clock = new ManualClock(Date.now());
    const feed = await startFeed({ clock });
    const f = follow(feed, { clock, maxStalenessMs: 10_000 });
    await f.ready();
    await feed.view.revokeToken('short-lived', by); // kept 600 s
    await eventually(() => f.isRevoked(facts({ jti: 'short-lived' })));
    clock.advance(11);
    expect(f.fresh()).toBe(false);
    clock.advance(600);
    expect(f.isRevoked(facts({ jti: 'short-lived' }))).toBe(false);
  });

  it('close() stops following and rejects a pending ready()', async () => {
    const feed = await startFeed({ noStream: true });
    await feed.store.close();
    const f = follow(feed, { mode: 'poll', pollIntervalMs: 20 });
    const ready = f.ready();
    f.close();
    await expect(ready).rejects.toThrow(/closed/);
    const count = feed.pollRequests;
    await new Promise((r) => setTimeout(r, 80));
    expect(feed.pollRequests).toBeLessThanOrEqual(count + 1);
  });
});

describe('createLeashVerifier({ revocations })', () => {
  const AUD = 'https://api.example.com';
  let keys: KeyManager;
  let issuer: TestIssuer;
  let feed: Feed;
  let follower: RevocationFollower;

  const mint = (extra: Record<string, unknown> = {}) => {
    const now = Math.floor(Date.now() / 1000);
    return signJwt(
      keys.current(),
      { typ: 'at+jwt' },
      { iss: issuer.url, sub: 'p', aud: AUD, iat: now, exp: now + 300, jti: randomBytes(8).toString('hex'), scope: 'items:read', plugin: 'p', task: 'task-1', ...extra },
    );
  };
  const jtiOf = (token: string) => JSON.parse(Buffer.from(token.split('.')[1] as string, 'base64url').toString()).jti as string;

  beforeAll(async () => {
    const k = await tempKeys(systemClock);
    keys = k.keys;
    cleanups.push(k.cleanup);
    issuer = await startIssuer({ keys, clock: systemClock });
    cleanups.push(() => issuer.close());
    feed = await startFeed();
    follower = follow(feed);
    await follower.ready();
  });

  it('rejects a token revoked by jti, task, plugin or key with invalid_token "token revoked"; others pass', async () => {
    const verifier = createLeashVerifier({ issuer: issuer.url, audience: AUD, revocations: follower });
    const req = (token: string) => ({ authorization: `Bearer ${token}`, method: 'GET', url: `${AUD}/items` });
    const good = await mint();
    const byJti = await mint();
    const byTask = await mint({ task: 'task-dead' });
    const byPlugin = await mint({ plugin: 'p-dead' });
    await expect(verifier.verify(req(good))).resolves.toMatchObject({ plugin: 'p' });

    await feed.view.revokeToken(jtiOf(byJti), by);
    await feed.view.revokeTask('task-dead', by);
    const last = await feed.view.revokePlugin('p-dead', by);
    await eventually(() => follower.cursor() >= last.seq, 1000);
    for (const token of [byJti, byTask, byPlugin]) {
      const err = await verifier.verify(req(token)).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(LeashVerifyError);
      expect(err).toMatchObject({ error: 'invalid_token', error_description: 'token revoked', status: 401 });
    }
    await expect(verifier.verify(req(good))).resolves.toMatchObject({ task: 'task-1' });
    // A plugin token issued after the plugin's revocation is good again.
    const later = await mint({ plugin: 'p-dead', iat: Math.floor(last.issuedBefore / 1000) + 1 });
    await expect(verifier.verify(req(later))).resolves.toMatchObject({ plugin: 'p-dead' });

    // Key revocation: everything signed by the key is dead.
    const key = await feed.view.revokeKey(keys.current().kid, by);
    await eventually(() => follower.cursor() >= key.seq, 1000);
    await expect(verifier.verify(req(good))).rejects.toMatchObject({ error_description: 'token revoked' });
  });

  it('cascade: a delegated token is revoked when an upstream jti in its chain_jti is; a malformed chain_jti is invalid_token', async () => {
    // Its own signing key and issuer: the test above revoked the shared key.
    const k = await tempKeys(systemClock);
    cleanups.push(k.cleanup);
    const iss = await startIssuer({ keys: k.keys, clock: systemClock });
    cleanups.push(() => iss.close());
    const mint = (extra: Record<string, unknown> = {}) => {
      const now = Math.floor(Date.now() / 1000);
      return signJwt(
        k.keys.current(),
        { typ: 'at+jwt' },
        { iss: iss.url, sub: 'p', aud: AUD, iat: now, exp: now + 300, jti: randomBytes(8).toString('hex'), scope: 'items:read', plugin: 'p', task: 'task-1', ...extra },
      );
    };
    const verifier = createLeashVerifier({ issuer: iss.url, audience: AUD, revocations: follower });
    const req = (token: string) => ({ authorization: `Bearer ${token}`, method: 'GET', url: `${AUD}/items` });
    const upstreamA = randomBytes(8).toString('hex');
    const upstreamB = randomBytes(8).toString('hex');
    const delegated = (chain_jti: unknown, act: unknown = { sub: 'p', act: { sub: 'q' } }) => mint({ sub: 'root', act, chain_jti });
    const c = await delegated([upstreamA, upstreamB]);
    const other = await delegated([randomBytes(8).toString('hex'), randomBytes(8).toString('hex')]);
    await expect(verifier.verify(req(c))).resolves.toMatchObject({ plugin: 'p', sub: 'root' });
    expect(follower.isRevoked(facts({ upstream: [upstreamA] }))).toBe(false);

    const rev = await feed.view.revokeToken(upstreamA, by);
    await eventually(() => follower.cursor() >= rev.seq, 1000);
    expect(follower.isRevoked(facts({ upstream: ['unrelated', upstreamA] }))).toBe(true);
    expect(follower.isRevoked(facts())).toBe(false);
    await expect(verifier.verify(req(c))).rejects.toMatchObject({ error: 'invalid_token', error_description: 'token revoked' });
    await expect(verifier.verify(req(other))).resolves.toMatchObject({ plugin: 'p' });

    // Malformed: not an array, a non-string item, more jtis than actors, no act at all, its own jti.
    for (const bad of [
      await delegated('x'),
      await delegated([1, 2]),
      await delegated(['a', 'b', 'c']),
      await mint({ chain_jti: ['a'] }),
      await mint({ jti: 'self', act: { sub: 'p' }, chain_jti: ['self'] }),
    ]) {
      await expect(verifier.verify(req(bad))).rejects.toMatchObject({ error: 'invalid_token', error_description: "the token's 'chain_jti' claim is malformed" });
    }
  });

  it("kill switch down the chain: revoking the root's or an earlier actor's plugin revokes a delegated token", async () => {
    const k = await tempKeys(systemClock);
    cleanups.push(k.cleanup);
    const iss = await startIssuer({ keys: k.keys, clock: systemClock });
    cleanups.push(() => iss.close());
    const now = Math.floor(Date.now() / 1000);
    const root = `root-${randomBytes(4).toString('hex')}`;
    const mid = `mid-${randomBytes(4).toString('hex')}`;
    // root -> mid -> p: sub is the root, act nests p (outermost) and mid.
    const token = await signJwt(
      k.keys.current(),
      { typ: 'at+jwt' },
      {
        iss: iss.url,
        sub: root,
        aud: AUD,
        iat: now,
        exp: now + 300,
        jti: randomBytes(8).toString('hex'),
        scope: 'items:read',
        plugin: 'p-chain',
        task: 'task-1',
        act: { sub: 'p-chain', act: { sub: mid } },
        chain_jti: [randomBytes(8).toString('hex'), randomBytes(8).toString('hex')],
      },
    );
    const verifier = createLeashVerifier({ issuer: iss.url, audience: AUD, revocations: follower });
    const req = { authorization: `Bearer ${token}`, method: 'GET', url: `${AUD}/items` };
    await expect(verifier.verify(req)).resolves.toMatchObject({ plugin: 'p-chain' });
    expect(follower.isRevoked(facts({ plugin: 'p-chain' }))).toBe(false);
    const rev = await feed.view.revokePlugin(mid, by);
    await eventually(() => follower.cursor() >= rev.seq, 1000);
    await expect(verifier.verify(req)).rejects.toMatchObject({ error: 'invalid_token', error_description: 'token revoked' });
    expect(follower.isRevoked({ ...facts({ plugin: 'p-chain', iat: now }), chainPlugins: [root, mid] })).toBe(true);
    expect(follower.isRevoked({ ...facts({ plugin: 'p-chain', iat: now }), chainPlugins: [root] })).toBe(false);
  });

  it('fails closed: a view that is not fresh refuses every token with 503 temporarily_unavailable', async () => {
    let fresh = false;
    const view: LeashRevocationView = { fresh: () => fresh, isRevoked: () => false };
    const verifier = createLeashVerifier({ issuer: issuer.url, audience: AUD, revocations: view });
    const app = express();
    app.get('/items', requireLeashToken(verifier), (_req, res) => void res.json({ ok: true }));
    const srv = await listen(app);
    cleanups.push(srv.close);
    const token = await mint();
    const stale = await fetch(`${srv.url}/items`, { headers: { authorization: `Bearer ${token}` } });
    expect(stale.status).toBe(503);
    expect(await stale.json()).toMatchObject({ error: 'temporarily_unavailable' });
    fresh = true;
    const ok = await fetch(`${srv.url}/items`, { headers: { authorization: `Bearer ${token}` } });
    expect(ok.status).toBe(200);
  });

  it('checks revocation only after the signature: a forged token is invalid_token, not revoked', async () => {
    const calls: unknown[] = [];
    const view: LeashRevocationView = { fresh: () => true, isRevoked: (f) => (calls.push(f), true) };
    const verifier = createLeashVerifier({ issuer: issuer.url, audience: AUD, revocations: view });
    const token = await mint();
    const forged = `${token.slice(0, token.lastIndexOf('.'))}.${Buffer.alloc(64).toString('base64url')}`;
    await expect(verifier.verify({ authorization: `Bearer ${forged}`, method: 'GET', url: AUD })).rejects.toMatchObject({ error_description: 'the token signature is invalid' });
    expect(calls).toHaveLength(0);
    await expect(verifier.verify({ authorization: `Bearer ${token}`, method: 'GET', url: AUD })).rejects.toMatchObject({ error_description: 'token revoked' });
    expect(calls[0]).toEqual({ jti: jtiOf(token), plugin: 'p', task: 'task-1', kid: keys.current().kid, iat: expect.any(Number) });
  });
});
