import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import express from 'express';
import { calculateJwkThumbprint, decodeJwt, decodeProtectedHeader, exportJWK } from 'jose';
import * as oidc from 'openid-client';
import { createDpopKey, createLeashVerifier, requireLeashToken } from '../../src/client/index.js';
import { verifyDpopProof } from '../../src/dpop/verify-proof.js';
import { ManualClock } from '../../src/time/clock.js';
import { createMemoryReplayCache } from '../../src/client/replay-memory.js';
import { EXCHANGE, JWT_TYPE, TICKETS_API, startTestBroker, type TestBroker } from '../support/broker.js';

/**
 * openid-client 6 signs Ed25519 DPoP proofs as `alg: Ed25519`, RFC 9864's fully-specified
 * name for EdDSA over Ed25519. An unmodified openid-client exchanges a token with such a
 * proof at Leash and calls a resource server guarded by the SDK's verifier with it.
 */

describe('Ed25519 DPoP proofs (alg "Ed25519", RFC 9864)', () => {
  let tb: TestBroker;
  let api: Server;
  let apiUrl: string;

  beforeAll(async () => {
    tb = await startTestBroker();
    const app = express();
    const verifier = createLeashVerifier({ issuer: tb.url, audience: TICKETS_API });
    app.get('/tickets', requireLeashToken(verifier, { requiredScopes: ['tickets:write'] }), (req, res) => {
      res.json({ plugin: req.leash?.plugin, jkt: req.leash?.jkt });
    });
    api = await new Promise<Server>((resolve) => {
      const s = app.listen(0, '127.0.0.1', () => resolve(s));
    });
    apiUrl = `http://127.0.0.1:${(api.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await new Promise<void>((resolve) => api.close(() => resolve()));
    await tb.close();
  });

  it('discovery advertises Ed25519 next to EdDSA', async () => {
    const meta = (await (await fetch(`${tb.url}/.well-known/openid-configuration`)).json()) as { dpop_signing_alg_values_supported: string[] };
    expect(meta.dpop_signing_alg_values_supported).toEqual(expect.arrayContaining(['ES256', 'EdDSA', 'Ed25519']));
  });

  it('an unmodified openid-client: token exchange with an Ed25519 DPoP key, then a call to a resource server', async () => {
    const task = await tb.openTask({ plugins: ['ticket-writer'] });
    // ticket-writer is high risk: DPoP is required, so the proof is really checked.
    const config = await oidc.discovery(new URL(tb.url), 'ticket-writer', undefined, oidc.None(), { execute: [oidc.allowInsecureRequests] });
    const keyPair = await oidc.randomDPoPKeyPair('EdDSA');
    const DPoP = oidc.getDPoPHandle(config, keyPair);
    const jkt = await calculateJwkThumbprint(await exportJWK(keyPair.publicKey));

    const token = await oidc.genericGrantRequest(
      config,
      EXCHANGE,
      { subject_token: await tb.cluster.saToken({ sa: 'ticket-writer-2' }), subject_token_type: JWT_TYPE, resource: TICKETS_API, task },
      { DPoP },
    );
    expect(token.token_type.toLowerCase()).toBe('dpop');
    expect(decodeJwt(token.access_token).cnf).toEqual({ jkt });

    const res = await oidc.fetchProtectedResource(config, token.access_token, new URL(`${apiUrl}/tickets`), 'GET', undefined, undefined, { DPoP });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ plugin: 'ticket-writer', jkt });
  });

  it('the proofs openid-client sends really say alg Ed25519 (so the test above tests that)', async () => {
    const keyPair = await oidc.randomDPoPKeyPair('EdDSA');
    const config = await oidc.discovery(new URL(tb.url), 'ticket-writer', undefined, oidc.None(), { execute: [oidc.allowInsecureRequests] });
    let seen: string | undefined;
    config[oidc.customFetch] = async (url, init) => {
      seen = new Headers(init.headers).get('dpop') ?? undefined;
      return fetch(url, init as RequestInit);
    };
    await oidc.genericGrantRequest(config, EXCHANGE, { subject_token: 'x', subject_token_type: JWT_TYPE, resource: TICKETS_API }, { DPoP: oidc.getDPoPHandle(config, keyPair) }).catch(() => undefined);
    expect(seen).toBeDefined();
    expect(decodeProtectedHeader(seen!)).toMatchObject({ typ: 'dpop+jwt', alg: 'Ed25519', jwk: { kty: 'OKP', crv: 'Ed25519' } });
  });

  it('verifyDpopProof: Ed25519 is accepted when listed, refused when not, and the SDK key can sign it', async () => {
    const clock = new ManualClock(Date.now());
    const key = await createDpopKey('Ed25519', { clock });
    const url = 'https://leash.example.com/token';
    const proof = await key.proof({ method: 'POST', url });
    expect(decodeProtectedHeader(proof).alg).toBe('Ed25519');
    const opts = { proof, method: 'POST', url, now: clock.now(), maxAgeSeconds: 60, clockSkewSeconds: 30, replay: createMemoryReplayCache({ now: () => clock.now() }) };
    await expect(verifyDpopProof({ ...opts, algorithms: ['ES256', 'EdDSA'] })).rejects.toMatchObject({ code: 'ERR_DPOP_INVALID' });
    await expect(verifyDpopProof({ ...opts, algorithms: ['Ed25519'] })).resolves.toEqual({ jkt: key.jkt });
    // The same key signing as EdDSA (the polymorphic name) still verifies, under that name only.
    const legacy = await createDpopKey('EdDSA', { clock });
    const legacyProof = await legacy.proof({ method: 'POST', url });
    await expect(verifyDpopProof({ ...opts, proof: legacyProof, algorithms: ['Ed25519'] })).rejects.toMatchObject({ code: 'ERR_DPOP_INVALID' });
    await expect(verifyDpopProof({ ...opts, proof: legacyProof, algorithms: ['EdDSA'] })).resolves.toEqual({ jkt: legacy.jkt });
  });

  it('an Ed25519 proof carrying a P-256 key is refused (the key must fit the alg)', async () => {
    const clock = new ManualClock(Date.now());
    const ec = await createDpopKey('ES256', { clock });
    const genuine = await ec.proof({ method: 'POST', url: 'https://leash.example.com/token' });
    const [, payload, signature] = genuine.split('.');
    const header = Buffer.from(JSON.stringify({ typ: 'dpop+jwt', alg: 'Ed25519', jwk: ec.publicJwk })).toString('base64url');
    await expect(
      verifyDpopProof({
        proof: `${header}.${payload}.${signature}`,
        method: 'POST',
        url: 'https://leash.example.com/token',
        now: clock.now(),
        maxAgeSeconds: 60,
        clockSkewSeconds: 30,
        algorithms: ['Ed25519'],
        replay: createMemoryReplayCache({ now: () => clock.now() }),
      }),
    ).rejects.toMatchObject({ code: 'ERR_DPOP_INVALID' });
  });
});
