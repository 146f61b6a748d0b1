import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createTokenReviewer } from '../../src/attestation/kubernetes/token-review.js';
import { LeashError } from '../../src/errors/leash-error.js';
import { ManualClock } from '../../src/time/clock.js';
import { CRM_API, EXCHANGE, JWT_TYPE, startTestBroker, type TestBroker } from '../support/broker.js';
import { TestCluster } from '../support/cluster.js';
import { TokenReviewContract } from '../support/tokenreview-contract.js';
import { patched, problemsOf } from '../config/fixtures.js';
import { testTls } from '../support/x509.js';

const LEASH_SA_TOKEN = 'leash-own-sa-token.eyJzdWIiOiJsZWFzaCJ9.sig';
const ROTATED_SA_TOKEN = 'leash-rotated-sa-token.eyJzdWIiOiJsZWFzaCJ9.sig2';

/**
 * Kubernetes TokenReview: a projected token whose pod was deleted is refused before its
 * `exp`, through a real broker, against a contract server for the TokenReview API (HTTPS
 * with its own CA, bearer-authenticated), with the API server down failing closed.
 */
describe('kubernetes TokenReview (per trusted issuer)', () => {
  let tb: TestBroker;
  let k8s: TokenReviewContract;
  let clock: ManualClock;
  let dir: string;
  let task: string;
  const nowS = () => Math.floor(clock.now() / 1000);

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'leash-tokenreview-'));
    clock = new ManualClock(Date.now());
    const cluster = await TestCluster.create();
    k8s = await TokenReviewContract.start({ cluster, now: () => clock.now() });
    k8s.authorized.add(LEASH_SA_TOKEN);
    k8s.authorized.add(ROTATED_SA_TOKEN);
    await writeFile(join(dir, 'ca.crt'), k8s.ca);
    await writeFile(join(dir, 'sa-token'), `${LEASH_SA_TOKEN}\n`);
    tb = await startTestBroker({
      cluster,
      broker: { clock },
      patch: (cfg) => {
        cfg.trusted_issuers[0].token_review = { api_server: k8s.url, ca_file: join(dir, 'ca.crt'), token_file: join(dir, 'sa-token'), cache_seconds: 10, timeout_ms: 1000 };
      },
    });
    task = await tb.openTask({ plugins: ['crm-reader'] });
  }, 30000);
  afterAll(async () => {
    await tb?.close();
    await k8s?.close();
    await rm(dir, { recursive: true, force: true });
  });

  const exchange = async (subjectToken: string) => tb.exchange({ grant_type: EXCHANGE, client_id: 'crm-reader', subject_token: subjectToken, subject_token_type: JWT_TYPE, resource: CRM_API, task });
  const lastDenied = async () => (await tb.broker.testing.store.read(1, 100_000)).filter((e) => e.type === 'exchange.denied').at(-1)!.event;

  it('a token of a running pod is reviewed once (with the issuer audience, as Leash), then served from the short cache', async () => {
    const token = await k8s.podToken({ sa: 'crm-reader', pod: 'crm-reader-7d9f', nowSeconds: nowS() });
    const before = k8s.calls.length;
    for (let i = 0; i < 5; i++) expect((await exchange(token)).status).toBe(200);
    expect(k8s.calls.length - before).toBe(1);
    const call = k8s.calls.at(-1)!;
    expect(call.authorization).toBe(`Bearer ${LEASH_SA_TOKEN}`);
    expect(call.body).toEqual({ apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token, audiences: ['leash'] } });
    // After cache_seconds the cluster is asked again.
    clock.advance(11);
    expect((await exchange(token)).status).toBe(200);
    expect(k8s.calls.length - before).toBe(2);
  });

  it('once the pod is deleted, its still-unexpired token is refused (invalid_request, RFC 8693 §2.2.2) within cache_seconds; the API text stays in the audit', async () => {
    const token = await k8s.podToken({ sa: 'crm-reader', pod: 'crm-reader-doomed', nowSeconds: nowS() });
    expect((await exchange(token)).status).toBe(200);
    k8s.deletePod('plugins', 'crm-reader-doomed');
    clock.advance(11);
    const res = await exchange(token);
    expect(res.status).toBe(400);
    expect(res.body).toMatchObject({ error: 'invalid_request' });
    expect(res.body.access_token).toBeUndefined();
    expect(String(res.body.error_description)).not.toContain('invalidated');
    expect(await lastDenied()).toMatchObject({ reason: 'ERR_ATTESTATION_REVIEW_REJECTED', detail: { review: 'not_authenticated', api_error: '[invalid bearer token, token has been invalidated]' } });
    // The refusal is cached too: asking again does not call the API server.
    const calls = k8s.calls.length;
    expect((await exchange(token)).status).toBe(400);
    expect(k8s.calls.length).toBe(calls);
    // The token verifies locally all along: only the review refuses it.
    expect(JSON.stringify(await tb.broker.testing.store.read(1, 100_000))).not.toContain(token);
  });

  it('a deleted service account refuses its tokens too', async () => {
    const token = await k8s.podToken({ ns: 'plugins', sa: 'crm-reader', pod: 'crm-reader-sa-gone', nowSeconds: nowS() });
    const uid = k8s.serviceAccountUid('plugins', 'crm-reader')!;
    k8s.deleteServiceAccount('plugins', 'crm-reader');
    try {
      expect((await exchange(token)).body).toMatchObject({ error: 'invalid_request' });
    } finally {
      k8s.addServiceAccount('plugins', 'crm-reader', uid);
    }
  });

  it('the API server down, failing, or refusing Leash: temporarily_unavailable (fail closed, not cached)', async () => {
    const token = await k8s.podToken({ sa: 'crm-reader', pod: 'crm-reader-outage', nowSeconds: nowS() });
    await k8s.down();
    try {
      const res = await exchange(token);
      expect(res.status).toBe(503);
      expect(res.body).toMatchObject({ error: 'temporarily_unavailable' });
      expect(res.body.access_token).toBeUndefined();
      expect(await lastDenied()).toMatchObject({ reason: 'ERR_ATTESTATION_REVIEW_UNAVAILABLE', detail: { review: 'unreachable' } });
    } finally {
      await k8s.up();
    }
    k8s.failWith = 500;
    try {
      expect((await exchange(token)).status).toBe(503);
      expect(await lastDenied()).toMatchObject({ detail: { review: 'api_status', status: 500 } });
    } finally {
      k8s.failWith = undefined;
    }
    // Leash's own credential not accepted (401) or without the auth-delegator role (403).
    k8s.authorized.delete(LEASH_SA_TOKEN);
    try {
      expect((await exchange(token)).status).toBe(503);
      expect(await lastDenied()).toMatchObject({ detail: { review: 'leash_credential_refused', status: 401, api_reason: 'Unauthorized' } });
      k8s.forbidden.add(LEASH_SA_TOKEN);
      expect((await exchange(token)).status).toBe(503);
      expect(await lastDenied()).toMatchObject({ detail: { review: 'leash_credential_refused', status: 403, api_reason: 'Forbidden' } });
    } finally {
      k8s.forbidden.delete(LEASH_SA_TOKEN);
      k8s.authorized.add(LEASH_SA_TOKEN);
    }
    // Nothing of the outage was cached: the same token is issued as soon as the API answers.
    expect((await exchange(token)).status).toBe(200);
  });

  it("re-reads Leash's own token file for each review (the kubelet rotates it)", async () => {
    await writeFile(join(dir, 'sa-token'), ROTATED_SA_TOKEN);
    try {
      const token = await k8s.podToken({ sa: 'crm-reader', pod: 'crm-reader-rotated', nowSeconds: nowS() });
      expect((await exchange(token)).status).toBe(200);
      expect(k8s.calls.at(-1)!.authorization).toBe(`Bearer ${ROTATED_SA_TOKEN}`);
    } finally {
      await writeFile(join(dir, 'sa-token'), LEASH_SA_TOKEN);
    }
  });
});

describe('TokenReview answers Leash does not trust', () => {
  let server: Server;
  let answer: { status: number; body: unknown };
  let url: string;
  let dir: string;
  const expectation = { subject: 'system:serviceaccount:plugins:crm-reader', serviceAccountUid: 'sa-uid', podUid: 'pod-uid', expiresAt: Math.floor(Date.now() / 1000) + 600 };
  const ok = (over: Record<string, unknown> = {}) => ({
    kind: 'TokenReview',
    apiVersion: 'authentication.k8s.io/v1',
    status: {
      authenticated: true,
      user: { username: expectation.subject, uid: 'sa-uid', extra: { 'authentication.kubernetes.io/pod-uid': ['pod-uid'] } },
      audiences: ['leash'],
      ...over,
    },
  });

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'leash-tokenreview-stub-'));
    await writeFile(join(dir, 'sa-token'), LEASH_SA_TOKEN);
    server = createServer((req, res) => {
      req.resume();
      req.on('end', () => res.writeHead(answer.status, { 'content-type': 'application/json' }).end(typeof answer.body === 'string' ? answer.body : JSON.stringify(answer.body)));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
    await rm(dir, { recursive: true, force: true });
  });

  const review = async (token: string, cfg: Record<string, unknown> = {}) => {
    const reviewer = createTokenReviewer({ api_server: url, token_file: join(dir, 'sa-token'), cache_seconds: 10, timeout_ms: 1000, ...cfg } as never, {
      clock: new ManualClock(Date.now()),
      audiences: ['leash'],
    });
    try {
      await reviewer.review(token, token, expectation);
      return 'accepted';
    } catch (err) {
      return `${(err as LeashError).code} ${String((err as LeashError).detail?.review)}`;
    }
  };

  it.each([
    ['a clean answer', 201, ok(), 'accepted'],
    ['a 200 answer', 200, ok(), 'accepted'],
    ['no audiences confirmed (an audience-unaware reviewer)', 201, ok({ audiences: [] }), 'ERR_ATTESTATION_REVIEW_REJECTED audience_not_confirmed'],
    ['another audience confirmed', 201, ok({ audiences: ['https://kubernetes.default.svc'] }), 'ERR_ATTESTATION_REVIEW_REJECTED audience_not_confirmed'],
    ['another user', 201, ok({ user: { username: 'system:serviceaccount:plugins:other' } }), 'ERR_ATTESTATION_REVIEW_REJECTED user_mismatch'],
    ['another service-account uid', 201, ok({ user: { username: expectation.subject, uid: 'other-uid' } }), 'ERR_ATTESTATION_REVIEW_REJECTED uid_mismatch'],
    ['another pod', 201, ok({ user: { username: expectation.subject, extra: { 'authentication.kubernetes.io/pod-uid': ['other-pod'] } } }), 'ERR_ATTESTATION_REVIEW_REJECTED pod_mismatch'],
    ['not authenticated', 201, { kind: 'TokenReview', status: { authenticated: false, error: 'boom' } }, 'ERR_ATTESTATION_REVIEW_REJECTED not_authenticated'],
    ['not a TokenReview', 201, { kind: 'Status' }, 'ERR_ATTESTATION_REVIEW_UNAVAILABLE malformed_answer'],
    ['not JSON', 201, '<html>', 'ERR_ATTESTATION_REVIEW_UNAVAILABLE malformed_answer'],
    ['a 429', 429, { kind: 'Status', reason: 'TooManyRequests' }, 'ERR_ATTESTATION_REVIEW_UNAVAILABLE api_status'],
  ])('%s → %s', async (_n, status, body, expected) => {
    answer = { status, body };
    expect(await review('header.payload.sig')).toBe(expected);
  });

  it('an API server whose certificate the CA bundle does not vouch for is unavailable, not trusted', async () => {
    const tls = testTls();
    const { createServer: createHttps } = await import('node:https');
    const https = createHttps({ cert: tls.cert, key: tls.key }, (req, res) => {
      req.resume();
      req.on('end', () => res.writeHead(201, { 'content-type': 'application/json' }).end(JSON.stringify(ok())));
    });
    await new Promise<void>((r) => https.listen(0, '127.0.0.1', () => r()));
    try {
      const other = testTls();
      await writeFile(join(dir, 'other-ca.crt'), other.ca);
      await writeFile(join(dir, 'right-ca.crt'), tls.ca);
      const httpsUrl = `https://127.0.0.1:${(https.address() as AddressInfo).port}`;
      expect(await review('a.b.c', { api_server: httpsUrl, ca_file: join(dir, 'other-ca.crt') })).toBe('ERR_ATTESTATION_REVIEW_UNAVAILABLE unreachable');
      expect(await review('a.b.c', { api_server: httpsUrl, ca_file: join(dir, 'right-ca.crt') })).toBe('accepted');
      expect(await review('a.b.c', { api_server: httpsUrl, ca_file: join(dir, 'missing.crt') })).toBe('ERR_ATTESTATION_REVIEW_UNAVAILABLE ca_file_unreadable');
      expect(await review('a.b.c', { api_server: httpsUrl, ca_file: join(dir, 'right-ca.crt'), token_file: join(dir, 'missing') })).toBe('ERR_ATTESTATION_REVIEW_UNAVAILABLE token_file_unreadable');
    } finally {
      https.closeAllConnections();
      await new Promise<void>((r) => https.close(() => r()));
    }
  });

  it('a slow API server times out as unavailable', async () => {
    const slow = createServer(() => undefined);
    await new Promise<void>((r) => slow.listen(0, '127.0.0.1', () => r()));
    try {
      expect(await review('a.b.c', { api_server: `http://127.0.0.1:${(slow.address() as AddressInfo).port}`, timeout_ms: 150 })).toBe('ERR_ATTESTATION_REVIEW_UNAVAILABLE timeout');
    } finally {
      slow.closeAllConnections();
      await new Promise<void>((r) => slow.close(() => r()));
    }
  });
});

describe('token_review config', () => {
  const review = { api_server: 'http://k8s.internal:6443' };
  it('only on kubernetes issuers, and https:// in production', () => {
    const onOidc = problemsOf(
      patched((c) => {
        c.trusted_issuers[0].kind = 'oidc';
        c.trusted_issuers[0].token_review = review;
      }),
    );
    expect(onOidc.map((p) => p.path)).toContain('/trusted_issuers/0/token_review');
    const prod = problemsOf(
      patched((c) => {
        c.trusted_issuers[0].kind = 'kubernetes';
        c.trusted_issuers[0].token_review = review;
        c.settings = { ...(c.settings ?? {}), production: true, issuer: 'https://leash.example.com', store: { path: '/var/lib/leash/leash.db' } };
      }),
    );
    expect(prod.map((p) => p.path)).toContain('/trusted_issuers/0/token_review/api_server');
  });
});
