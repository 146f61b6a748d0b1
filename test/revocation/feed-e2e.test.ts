import { describe, it, expect, beforeAll, afterAll } from '@jest/globals';
import express from 'express';
import { createHash } from 'node:crypto';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createRemoteJWKSet, jwtVerify, type JWTPayload } from 'jose';
import { createLeashVerifier, createRevocationFollower, type RevocationFollower } from '../../src/client/index.js';
import { TOKEN_REVOKED_EVENT } from '../../src/revocation/feed/set-event.js';
import { CRM_API, EXCHANGE, JWT_TYPE, ORCHESTRATOR_KEY, startTestBroker, type TestBroker } from '../support/broker.js';

const SECRET = 'crm-api-feed-secret-0123456789';
const sha = (s: string) => createHash('sha256').update(s).digest('hex');
const AUTH = { authorization: `Basic ${Buffer.from(`crm-api:${SECRET}`).toString('base64')}` };

/** Reads `event: revocation` records off an SSE response with fetch streaming. */
function readStream(url: string, signal: AbortSignal): { records: Array<{ id: string; data: { scope: string; id: string } }>; synced: Promise<void> } {
  const records: Array<{ id: string; data: { scope: string; id: string } }> = [];
  let onSynced!: () => void;
  const synced = new Promise<void>((r) => (onSynced = r));
  void (async () => {
    const res = await fetch(url, { headers: { accept: 'text/event-stream', ...AUTH }, signal });
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
        if (field('event') === 'synced') onSynced();
        if (field('event') === 'revocation') records.push({ id: field('id') as string, data: JSON.parse(field('data') as string) });
      }
    }
  })().catch(() => undefined);
  return { records, synced };
}

async function within(ms: number, pred: () => boolean | Promise<boolean>): Promise<number> {
  const t0 = Date.now();
  while (!(await pred())) {
    if (Date.now() - t0 > ms) throw new Error(`not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
  return Date.now() - t0;
}

describe('revocation feed end to end (a real broker)', () => {
  let tb: TestBroker;
  let receiver: Server;
  const sets: JWTPayload[] = [];
  const ac = new AbortController();
  let follower: RevocationFollower;

  beforeAll(async () => {
    const rx = express();
    let jwks: ReturnType<typeof createRemoteJWKSet> | undefined;
    rx.post('/events', express.text({ type: 'application/secevent+jwt' }), async (req, res) => {
      jwks ??= createRemoteJWKSet(new URL(`${tb.url}/jwks`));
      try {
        const { payload } = await jwtVerify(req.body as string, jwks, { issuer: tb.url, audience: 'crm-api', typ: 'secevent+jwt' });
        sets.push(payload);
        res.status(202).end();
      } catch {
        res.status(400).json({ err: 'invalid_request' });
      }
    });
    receiver = await new Promise((resolve) => {
      const s = rx.listen(0, '127.0.0.1', () => resolve(s));
    });
    const pushUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/events`;
    tb = await startTestBroker({
      patch: (cfg) => {
        cfg.resource_servers = [{ id: 'crm-api', audiences: [CRM_API], client_secret_sha256: sha(SECRET), push: { url: pushUrl, max_attempts: 3 } }];
      },
    });
    follower = createRevocationFollower({ issuer: tb.url, clientId: 'crm-api', clientSecret: SECRET });
    await follower.ready();
  });
  afterAll(async () => {
    ac.abort();
    follower?.close();
    await tb?.close();
    receiver?.closeAllConnections();
    await new Promise<void>((r) => receiver.close(() => r()));
  });

  it('a task ended through the broker reaches the poll feed, an SSE client, a verifier with a follower and a push receiver within 1 s', async () => {
    const task = await tb.openTask({ plugins: ['crm-reader'] });
    const issued = await tb.exchange({
      grant_type: EXCHANGE,
      client_id: 'crm-reader',
      subject_token: await tb.cluster.saToken({ sa: 'crm-reader' }),
      subject_token_type: JWT_TYPE,
      resource: CRM_API,
      task,
    });
    expect(issued.status).toBe(200);
    const token = issued.body.access_token as string;

    const verifier = createLeashVerifier({ issuer: tb.url, audience: CRM_API, revocations: follower });
    const request = { authorization: `Bearer ${token}`, method: 'GET', url: `${CRM_API}/contacts` };
    await expect(verifier.verify(request)).resolves.toMatchObject({ task });

    const before = (await (await fetch(`${tb.url}/revocations`, { headers: AUTH })).json()) as { cursor: number };
    const sse = readStream(`${tb.url}/revocations/stream?since=${before.cursor}`, ac.signal);
    await sse.synced;

    const ended = await fetch(`${tb.url}/tasks/${task}`, { method: 'DELETE', headers: { authorization: `Bearer ${ORCHESTRATOR_KEY}` } });
    expect(ended.status).toBeLessThan(300);
    const isOurs = (r: { scope: string; id: string }) => r.scope === 'task' && r.id === task;

    const [poll, stream, verify] = await Promise.all([
      within(1000, async () => {
        const page = (await (await fetch(`${tb.url}/revocations?since=${before.cursor}`, { headers: AUTH })).json()) as { revocations: Array<{ scope: string; id: string }> };
        return page.revocations.some(isOurs);
      }),
      within(1000, () => sse.records.some((r) => isOurs(r.data))),
      within(1000, async () => {
        const err = await verifier.verify(request).then(
          () => undefined,
          (e: { error_description?: string }) => e,
        );
        return err?.error_description === 'token revoked';
      }),
    ]);
    expect(Math.max(poll, stream, verify)).toBeLessThanOrEqual(1000);
    expect(sse.records.filter((r) => isOurs(r.data))).toHaveLength(1);

    await within(1000, () => sets.some((s) => (s.events as Record<string, { scope?: string; subject?: { id?: string } }>)[TOKEN_REVOKED_EVENT]?.subject?.id === task));
  });
});
