import { describe, it, expect, beforeAll, afterAll } from '@jest/globals';
import express from 'express';
import { mkdtempSync, rmSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify, type JWTPayload } from 'jose';
import type { ResourceServerConfig } from '../../src/config/schema.js';
import type { KeyManager } from '../../src/keys/key-manager.js';
import { createLocalKeyManager } from '../../src/keys/local/index.js';
import { CAEP_SESSION_REVOKED_EVENT, TOKEN_REVOKED_EVENT } from '../../src/revocation/feed/set-event.js';
import { createSetPusher, type SetPushOutcome } from '../../src/revocation/feed/set-push.js';
import { RevocationView } from '../../src/revocation/revocation-view.js';
import type { Revocation } from '../../src/store/records.js';
import { openSqliteStore } from '../../src/store/sqlite/sqlite-store.js';
import { closedPort } from '../support/net.js';
import { systemClock } from '../../src/time/clock.js';

const ISSUER = 'https://leash.test';
let dir: string;
let keys: KeyManager;
let jwksUrl: string;
const closers: Array<() => Promise<void>> = [];

async function listen(app: express.Express): Promise<string> {
  const server: Server = await new Promise((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  closers.push(
    () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  );
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

interface Receiver {
  url: string;
  /** Every POST, as received. */
  posts: Array<{ contentType: string | undefined; jti: string; claims: JWTPayload | undefined; verifyError?: string }>;
  /** Statuses to answer, in order; the last one repeats. */
  answers: Array<number | { status: number; err: string }>;
  /** Delay before answering, ms. */
  delayMs: number;
}

/** An RFC 8935 push receiver that verifies each SET with jose against Leash's JWKS (fetched over HTTP). */
async function startReceiver(audience: string, answers: Receiver['answers'] = [202]): Promise<Receiver> {
  const jwks = createRemoteJWKSet(new URL(jwksUrl));
  const rx: Receiver = { url: '', posts: [], answers, delayMs: 0 };
  const app = express();
  app.post('/events', express.text({ type: 'application/secevent+jwt' }), async (req, res) => {
    const token = typeof req.body === 'string' ? req.body : '';
    let claims: JWTPayload | undefined;
    let verifyError: string | undefined;
    try {
      ({ payload: claims } = await jwtVerify(token, jwks, { issuer: ISSUER, audience, typ: 'secevent+jwt', algorithms: ['ES256'] }));
    } catch (err) {
      verifyError = (err as Error).message;
    }
    rx.posts.push({ contentType: req.headers['content-type'], jti: String(claims?.jti), claims, ...(verifyError ? { verifyError } : {}) });
    if (rx.delayMs > 0) await new Promise((r) => setTimeout(r, rx.delayMs));
    const a = rx.answers[Math.min(rx.posts.length - 1, rx.answers.length - 1)] as Receiver['answers'][number];
    if (verifyError) return res.status(400).json({ err: 'invalid_request', description: 'bad SET' });
    if (typeof a === 'number') return res.status(a).end();
    return res.status(a.status).json({ err: a.err, description: 'refused' });
  });
  rx.url = `${await listen(app)}/events`;
  return rx;
}

let seq = 0;
function revocation(scope: Revocation['scope'] = 'token', id = `jti-${seq + 1}`): Revocation {
  const now = Date.now();
  return { seq: ++seq, scope, id, issuedBefore: now, revokedAt: now, keepUntil: now + 600_000, reason: 'leaked', actor: 'apikey:ops' };
}

function server(id: string, url: string, max_attempts = 4): ResourceServerConfig {
  return { id, audiences: [`https://${id}.example.com`], client_secret_sha256: '0'.repeat(64), push: { url, max_attempts } };
}

function recorder() {
  const outcomes: Array<[string, SetPushOutcome]> = [];
  return { outcomes, onResult: (s: ResourceServerConfig, o: SetPushOutcome) => void outcomes.push([s.id, o]) };
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'leash-push-'));
  keys = createLocalKeyManager({ dir: join(dir, 'keys'), algorithm: 'ES256', clock: systemClock });
  await keys.init();
  const app = express();
  app.get('/jwks', (_req, res) => void res.json(keys.jwks()));
  jwksUrl = `${await listen(app)}/jwks`;
});
afterAll(async () => {
  for (const c of closers.reverse()) await c();
  rmSync(dir, { recursive: true, force: true });
});

describe('SET push (RFC 8417 / RFC 8935)', () => {
  it('delivers one signed SET per revocation and receiver, verifiable against the JWKS', async () => {
    const rx = await startReceiver('crm-api');
    const rec = recorder();
    const pusher = createSetPusher({ issuer: ISSUER, keys, servers: [server('crm-api', rx.url)], baseDelayMs: 5, onResult: rec.onResult, epoch: () => 'epoch-of-the-store' });
    const r = revocation('task', 'task-42');
    pusher.publish(r);
    await pusher.idle();
    expect(rx.posts).toHaveLength(1);
    const post = rx.posts[0]!;
    expect(post.verifyError).toBeUndefined();
    expect(post.contentType).toBe('application/secevent+jwt');
    expect(post.claims).toEqual({
      iss: ISSUER,
      aud: 'crm-api',
      iat: expect.any(Number),
      jti: expect.stringMatching(/^[0-9a-f-]{36}$/),
      txn: `revocation-${r.seq}`,
      toe: Math.floor(r.revokedAt / 1000),
      events: {
        [TOKEN_REVOKED_EVENT]: {
          subject: { format: 'opaque', id: 'task-42' },
          scope: 'task',
          seq: r.seq,
          issued_before: Math.floor(r.issuedBefore / 1000),
          keep_until: Math.ceil(r.keepUntil / 1000),
          event_timestamp: Math.floor(r.revokedAt / 1000),
          epoch: 'epoch-of-the-store',
        },
        [CAEP_SESSION_REVOKED_EVENT]: {
          subject: { format: 'opaque', id: 'task:task-42' },
          event_timestamp: Math.floor(r.revokedAt / 1000),
          initiating_entity: 'admin',
        },
      },
    });
    // Neither who revoked nor the admin's free-text reason leaves Leash.
    expect(JSON.stringify(post.claims)).not.toContain('apikey:ops');
    expect(JSON.stringify(post.claims)).not.toContain('leaked');
    expect(rec.outcomes).toEqual([['crm-api', expect.objectContaining({ kind: 'delivered', seq: r.seq, attempt: 1, status: 202 })]]);
    expect(pusher.stats()).toEqual({ 'crm-api': { queued: 0, delivered: 1, failed: 0, dropped: 0 } });
  });

  it('a token revocation carries only the Leash event; the header says secevent+jwt with the current kid', async () => {
    let raw = '';
    const app = express();
    app.post('/events', express.text({ type: '*/*' }), (req, res) => {
      raw = req.body as string;
      res.status(202).end();
    });
    const url = `${await listen(app)}/events`;
    const pusher = createSetPusher({ issuer: ISSUER, keys, servers: [server('api', url)] });
    pusher.publish(revocation('token', 'jti-x'));
    await pusher.idle();
    expect(decodeProtectedHeader(raw)).toEqual({ alg: 'ES256', kid: keys.current().kid, typ: 'secevent+jwt' });
    const claims = JSON.parse(Buffer.from(raw.split('.')[1]!, 'base64url').toString()) as { events: Record<string, unknown> };
    expect(Object.keys(claims.events)).toEqual([TOKEN_REVOKED_EVENT]);
  });

  it('retries 500s with backoff and the same jti, then succeeds on 202', async () => {
    const rx = await startReceiver('crm-api', [500, 503, 202]);
    const rec = recorder();
    const pusher = createSetPusher({ issuer: ISSUER, keys, servers: [server('crm-api', rx.url, 5)], baseDelayMs: 20, random: () => 0, onResult: rec.onResult });
    const started = Date.now();
    pusher.publish(revocation());
    await pusher.idle();
    expect(rx.posts.map((p) => p.verifyError)).toEqual([undefined, undefined, undefined]);
    expect(new Set(rx.posts.map((p) => p.jti)).size).toBe(1);
    // Equal jitter with random 0: 10 ms then 20 ms at least.
    expect(Date.now() - started).toBeGreaterThanOrEqual(30);
    expect(pusher.stats()['crm-api']).toEqual({ queued: 0, delivered: 1, failed: 0, dropped: 0 });
    expect(rec.outcomes.map(([, o]) => o.kind)).toEqual(['retry', 'retry', 'delivered']);
    expect(rec.outcomes[0]?.[1]).toMatchObject({ status: 500, delayMs: 10 });
  });

  it('gives up after max_attempts and reports every retry and the failure', async () => {
    const rx = await startReceiver('crm-api', [500]);
    const rec = recorder();
    const pusher = createSetPusher({ issuer: ISSUER, keys, servers: [server('crm-api', rx.url, 3)], baseDelayMs: 2, onResult: rec.onResult });
    pusher.publish(revocation());
    await pusher.idle();
    expect(rx.posts).toHaveLength(3);
    expect(rec.outcomes.map(([, o]) => [o.kind, 'attempt' in o ? o.attempt : 0])).toEqual([
      ['retry', 1],
      ['retry', 2],
      ['failed', 3],
    ]);
    expect(rec.outcomes[2]?.[1]).toMatchObject({ status: 500, error: 'receiver answered 500' });
    expect(pusher.stats()['crm-api']).toMatchObject({ delivered: 0, failed: 1 });
  });

  it('does not retry a permanent refusal (400 invalid_request) but does retry invalid_key', async () => {
    const refused = await startReceiver('a', [{ status: 400, err: 'invalid_audience' }]);
    const staleKey = await startReceiver('b', [{ status: 400, err: 'invalid_key' }, 202]);
    const rec = recorder();
    const pusher = createSetPusher({ issuer: ISSUER, keys, servers: [server('a', refused.url), server('b', staleKey.url)], baseDelayMs: 2, onResult: rec.onResult });
    pusher.publish(revocation());
    await pusher.idle();
    expect(refused.posts).toHaveLength(1);
    expect(staleKey.posts).toHaveLength(2);
    expect(rec.outcomes.find(([id]) => id === 'a')?.[1]).toMatchObject({ kind: 'failed', status: 400, error: expect.stringContaining('invalid_audience') });
    expect(pusher.stats()).toMatchObject({ a: { failed: 1 }, b: { delivered: 1 } });
  });

  it('keeps trying a receiver that is down, then gives up; publish never waits for it', async () => {
    const port = await closedPort(); // nothing listens there
    const rec = recorder();
    const pusher = createSetPusher({ issuer: ISSUER, keys, servers: [server('down', `http://127.0.0.1:${port}/events`, 3)], baseDelayMs: 2, onResult: rec.onResult });
    const t0 = performance.now();
    for (let i = 0; i < 20; i++) pusher.publish(revocation());
    expect(performance.now() - t0).toBeLessThan(50);
    await pusher.idle();
    expect(pusher.stats().down).toEqual({ queued: 0, delivered: 0, failed: 20, dropped: 0 });
    expect(rec.outcomes.find(([, o]) => o.kind === 'failed')?.[1]).toMatchObject({ error: 'network error ECONNREFUSED' });
  });

  it('never follows a redirect', async () => {
    const target = await startReceiver('crm-api');
    const app = express();
    app.post('/events', (_req, res) => void res.redirect(307, target.url));
    const redirecting = `${await listen(app)}/events`;
    const rec = recorder();
    const pusher = createSetPusher({ issuer: ISSUER, keys, servers: [server('crm-api', redirecting)], baseDelayMs: 2, onResult: rec.onResult });
    pusher.publish(revocation());
    await pusher.idle();
    expect(target.posts).toHaveLength(0);
    expect(rec.outcomes).toEqual([['crm-api', expect.objectContaining({ kind: 'failed', attempt: 1, status: 307 })]]);
  });

  it('times out a receiver that does not answer', async () => {
    const rx = await startReceiver('slow');
    rx.delayMs = 1000;
    const rec = recorder();
    const pusher = createSetPusher({ issuer: ISSUER, keys, servers: [server('slow', rx.url, 2)], baseDelayMs: 2, timeoutMs: 100, onResult: rec.onResult });
    pusher.publish(revocation());
    await pusher.idle();
    expect(rec.outcomes.map(([, o]) => o.kind)).toEqual(['retry', 'failed']);
    expect(rec.outcomes[1]?.[1]).toMatchObject({ error: 'timed out' });
  });

  it('bounds each queue, dropping the oldest, and a slow receiver does not delay another', async () => {
    const slow = await startReceiver('slow');
    slow.delayMs = 150;
    const fast = await startReceiver('fast');
    const rec = recorder();
    const pusher = createSetPusher({ issuer: ISSUER, keys, servers: [server('slow', slow.url), server('fast', fast.url)], queueLimit: 3, onResult: rec.onResult });
    const sent = Array.from({ length: 8 }, () => revocation());
    for (const r of sent) pusher.publish(r);
    const t0 = Date.now();
    while (fast.posts.length < 3 && Date.now() - t0 < 2000) await new Promise((r) => setTimeout(r, 10));
    // The fast receiver drained its (bounded) queue while the slow one was still on its first SET.
    expect(slow.posts.length).toBeLessThanOrEqual(1);
    await pusher.idle();
    const slowStats = pusher.stats().slow!;
    expect(slowStats.dropped).toBeGreaterThan(0);
    expect(slowStats.delivered + slowStats.dropped).toBe(8);
    // The newest always survives.
    const last = sent[7]!;
    expect(slow.posts.at(-1)?.claims?.txn).toBe(`revocation-${last.seq}`);
    expect(rec.outcomes.filter(([id, o]) => id === 'slow' && o.kind === 'dropped')).toHaveLength(slowStats.dropped);
  });

  it('follows a RevocationService: start subscribes, stop unsubscribes and aborts', async () => {
    const store = openSqliteStore({ path: join(dir, 'view.db'), clock: systemClock });
    const view = new RevocationView({ store, clock: systemClock, syncIntervalMs: 60_000, maxStalenessMs: 60_000, maxTokenLifeMs: () => 600_000, revokers: new Map() });
    await view.start();
    const rx = await startReceiver('crm-api');
    const withoutPush: ResourceServerConfig = { id: 'no-push', audiences: ['x'], client_secret_sha256: '0'.repeat(64) };
    const pusher = createSetPusher({ issuer: ISSUER, keys, servers: [server('crm-api', rx.url), withoutPush] });
    expect(Object.keys(pusher.stats())).toEqual(['crm-api']);
    pusher.start(view);
    expect(() => pusher.start(view)).toThrow(TypeError);
    const r = await view.revokePlugin('crm-reader', { actor: 'system:quota-exceeded', reason: 'quota' });
    await pusher.idle();
    expect(rx.posts).toHaveLength(1);
    const events = rx.posts[0]?.claims?.events as Record<string, Record<string, unknown>>;
    expect(events[TOKEN_REVOKED_EVENT]).toMatchObject({ scope: 'plugin', subject: { format: 'opaque', id: 'crm-reader' }, seq: r.seq });
    expect(events[CAEP_SESSION_REVOKED_EVENT]).toMatchObject({ initiating_entity: 'policy' });
    pusher.stop();
    await view.revokeToken('after-stop', { actor: 'apikey:ops', reason: 'x' });
    await pusher.idle();
    expect(rx.posts).toHaveLength(1);
    view.stop();
    await store.close();
  });
});
