import { describe, it, expect, beforeAll, afterAll, beforeEach } from '@jest/globals';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLocalJWKSet, decodeJwt, jwtVerify } from 'jose';
import { createDpopKey, LeashExchangeError, LeashPluginClient } from '../../src/client/index.js';
import { verifyDpopProof } from '../../src/dpop/verify-proof.js';
import type { KeyManager } from '../../src/keys/key-manager.js';
import { ManualClock } from '../../src/time/clock.js';
import { MemoryReplay, startIssuer, tempKeys, type TestIssuer } from './fixtures.js';

const clock = new ManualClock(Date.now());
let keys: KeyManager;
let cleanupKeys: () => void;
let issuer: TestIssuer;
let dir: string;
let attestationFile: string;

beforeAll(async () => {
  ({ keys, cleanup: cleanupKeys } = await tempKeys(clock));
  issuer = await startIssuer({ keys, clock });
  dir = mkdtempSync(join(tmpdir(), 'leash-att-'));
  attestationFile = join(dir, 'token');
  writeFileSync(attestationFile, 'attestation-1\n');
});
afterAll(async () => {
  await issuer.close();
  cleanupKeys();
  rmSync(dir, { recursive: true, force: true });
});
beforeEach(() => {
  Object.assign(issuer.state, { discoveryRequests: 0, tokenRequests: 0, forms: [], expiresIn: 300, nonce: undefined, delayMs: 0, announcedIssuer: undefined });
  issuer.state.refuse.clear();
  clock.set(Date.now());
});

function client(extra: Partial<ConstructorParameters<typeof LeashPluginClient>[0]> = {}): LeashPluginClient {
  return new LeashPluginClient({ issuer: issuer.url, clientId: 'search-plugin', attestation: { file: attestationFile }, clock, ...extra });
}

describe('LeashPluginClient: exchange', () => {
  it('sends the RFC 8693 form, with resource for a URL audience, and returns a verifiable token', async () => {
    const c = client();
    const t = await c.getToken({ audience: 'https://api.example.com', scope: ['write', 'read'], task: 't-1', ttl: 120 });
    expect(issuer.state.forms).toEqual([
      {
        grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange',
        client_id: 'search-plugin',
        subject_token: 'attestation-1',
        subject_token_type: 'urn:ietf:params:oauth:token-type:jwt',
        resource: 'https://api.example.com',
        scope: 'read write',
        task: 't-1',
        expires_in: '120',
      },
    ]);
    expect(t.tokenType).toBe('Bearer');
    expect(t.scope).toEqual(['read', 'write']);
    expect(t.expiresAt).toBe(clock.now() + 120_000);
    const { payload } = await jwtVerify(t.accessToken, createLocalJWKSet(keys.jwks()), { typ: 'at+jwt', audience: 'https://api.example.com', currentDate: new Date(clock.now()) });
    expect(payload.task).toBe('t-1');
  });

  it('sends audience (not resource) for a logical API name and omits absent scope and ttl', async () => {
    await client().getToken({ audience: 'billing-api', task: 't-2' });
    const form = issuer.state.forms[0];
    expect(form?.audience).toBe('billing-api');
    expect(form).not.toHaveProperty('resource');
    expect(form).not.toHaveProperty('scope');
    expect(form).not.toHaveProperty('expires_in');
  });

  it('discovers the token endpoint once', async () => {
    const c = client();
    await c.getToken({ audience: 'a', task: 't1' });
    await c.getToken({ audience: 'b', task: 't1' });
    expect(issuer.state.discoveryRequests).toBe(1);
    expect(issuer.state.tokenRequests).toBe(2);
  });

  it('refuses a discovery document naming another issuer', async () => {
    issuer.state.announcedIssuer = 'https://evil.example.com';
    await expect(client().getToken({ audience: 'a', task: 't' })).rejects.toMatchObject({ error: 'invalid_response' });
    expect(issuer.state.tokenRequests).toBe(0);
  });

  it('surfaces an OAuth error as LeashExchangeError and does not cache it', async () => {
    writeFileSync(attestationFile, 'untrusted');
    issuer.state.refuse.add('untrusted');
    const c = client();
    const err = await c.getToken({ audience: 'a', task: 't' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LeashExchangeError);
    expect(err).toMatchObject({ error: 'invalid_grant', error_description: 'the attestation is not trusted', status: 400 });
    writeFileSync(attestationFile, 'attestation-1');
    await expect(c.getToken({ audience: 'a', task: 't' })).resolves.toHaveProperty('tokenType', 'Bearer');
    expect(issuer.state.tokenRequests).toBe(2);
  });

  it('reports an unreachable broker as network_error', async () => {
    const c = new LeashPluginClient({ issuer: 'http://127.0.0.1:1', clientId: 'p', attestation: { token: () => 'x' } });
    await expect(c.getToken({ audience: 'a', task: 't' })).rejects.toMatchObject({ error: 'network_error', status: 0 });
  });

  it('re-reads the attestation file on every exchange (the kubelet rotates it)', async () => {
    const c = client();
    writeFileSync(attestationFile, 'attestation-1');
    await c.getToken({ audience: 'a', task: 'one' });
    writeFileSync(attestationFile, 'attestation-2');
    await c.getToken({ audience: 'a', task: 'two' });
    expect(issuer.state.forms.map((f) => f.subject_token)).toEqual(['attestation-1', 'attestation-2']);
    writeFileSync(attestationFile, 'attestation-1');
  });

  it('calls an attestation function on every exchange', async () => {
    let n = 0;
    const c = client({ attestation: { token: async () => `fn-${++n}` } });
    await c.getToken({ audience: 'a', task: 'one' });
    await c.getToken({ audience: 'a', task: 'two' });
    expect(issuer.state.forms.map((f) => f.subject_token)).toEqual(['fn-1', 'fn-2']);
  });
});

describe('LeashPluginClient: cache', () => {
  it('answers a second identical call from the cache (no HTTP request), in any scope order', async () => {
    const c = client();
    const a = await c.getToken({ audience: 'a', scope: ['x', 'y'], task: 't' });
    const b = await c.getToken({ audience: 'a', scope: ['y', 'x', 'x'], task: 't' });
    expect(b).toBe(a);
    expect(issuer.state.tokenRequests).toBe(1);
  });

  it('keeps separate tokens per audience, scopes and task', async () => {
    const c = client();
    await c.getToken({ audience: 'a', scope: ['x'], task: 't' });
    await c.getToken({ audience: 'b', scope: ['x'], task: 't' });
    await c.getToken({ audience: 'a', scope: ['y'], task: 't' });
    await c.getToken({ audience: 'a', scope: ['x'], task: 'u' });
    expect(issuer.state.tokenRequests).toBe(4);
  });

  it('refreshes refreshSkewSeconds before expiry', async () => {
    const c = client({ refreshSkewSeconds: 30 });
    const first = await c.getToken({ audience: 'a', task: 't' });
    clock.advance(269);
    expect(await c.getToken({ audience: 'a', task: 't' })).toBe(first);
    expect(issuer.state.tokenRequests).toBe(1);
    clock.advance(2);
    const second = await c.getToken({ audience: 'a', task: 't' });
    expect(second).not.toBe(first);
    expect(second.accessToken).not.toBe(first.accessToken);
    expect(issuer.state.tokenRequests).toBe(2);
  });

  it('reuses a token shorter-lived than the skew for half its life', async () => {
    issuer.state.expiresIn = 20;
    const c = client({ refreshSkewSeconds: 30 });
    const first = await c.getToken({ audience: 'a', task: 't' });
    clock.advance(9);
    expect(await c.getToken({ audience: 'a', task: 't' })).toBe(first);
    clock.advance(2);
    expect(await c.getToken({ audience: 'a', task: 't' })).not.toBe(first);
  });

  it('falls back to the JWT exp when the answer has no expires_in', async () => {
    issuer.state.expiresIn = undefined;
    const t = await client().getToken({ audience: 'a', task: 't' });
    expect(t.expiresAt).toBe((decodeJwt(t.accessToken).exp as number) * 1000);
  });

  it('runs one exchange for concurrent identical requests', async () => {
    issuer.state.delayMs = 50;
    const c = client();
    const tokens = await Promise.all(Array.from({ length: 5 }, () => c.getToken({ audience: 'a', scope: ['r'], task: 't' })));
    expect(issuer.state.tokenRequests).toBe(1);
    expect(new Set(tokens).size).toBe(1);
  });

  it('clearCache forgets tokens', async () => {
    const c = client();
    await c.getToken({ audience: 'a', task: 't' });
    c.clearCache();
    await c.getToken({ audience: 'a', task: 't' });
    expect(issuer.state.tokenRequests).toBe(2);
  });
});

describe('LeashPluginClient: DPoP', () => {
  it('sends a proof and gets a DPoP-bound token whose headers carry a proof with ath', async () => {
    const key = await createDpopKey('EdDSA', { clock });
    const c = client({ dpop: key });
    const t = await c.getToken({ audience: 'https://api.example.com', task: 't' });
    expect(t.tokenType).toBe('DPoP');
    expect(decodeJwt(t.accessToken).cnf).toEqual({ jkt: key.jkt });

    const headers = await c.authorizationHeaders(t, { method: 'GET', url: 'https://api.example.com/items?x=1' });
    expect(headers.authorization).toBe(`DPoP ${t.accessToken}`);
    await expect(
      verifyDpopProof({
        proof: headers.dpop,
        method: 'GET',
        url: 'https://api.example.com/items',
        now: clock.now(),
        maxAgeSeconds: 60,
        clockSkewSeconds: 5,
        algorithms: ['EdDSA'],
        replay: new MemoryReplay(),
        accessToken: t.accessToken,
      }),
    ).resolves.toEqual({ jkt: key.jkt });
  });

  it('generates its own key with dpop: true', async () => {
    const t = await client({ dpop: true }).getToken({ audience: 'a', task: 't' });
    expect(t.tokenType).toBe('DPoP');
    expect(typeof (decodeJwt(t.accessToken).cnf as { jkt: string }).jkt).toBe('string');
  });

  it('retries once with the server nonce on use_dpop_nonce', async () => {
    issuer.state.nonce = 'n-123';
    const t = await client({ dpop: true }).getToken({ audience: 'a', task: 't' });
    expect(t.tokenType).toBe('DPoP');
    expect(issuer.state.tokenRequests).toBe(2);
  });

  it('builds a Bearer header without a proof for a bearer token', async () => {
    const c = client();
    const t = await c.getToken({ audience: 'a', task: 't' });
    expect(await c.authorizationHeaders(t, { method: 'GET', url: 'https://api.example.com/' })).toEqual({ authorization: `Bearer ${t.accessToken}` });
  });
});
