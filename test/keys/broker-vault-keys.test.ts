import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { calculateJwkThumbprint, createLocalJWKSet, decodeProtectedHeader, exportJWK, jwtVerify, type JSONWebKeySet } from 'jose';
import { ManualClock } from '../../src/time/clock.js';
import { CRM_API, EXCHANGE, JWT_TYPE, OPS_KEY, startTestBroker, type TestBroker } from '../support/broker.js';
import { TestCluster } from '../support/cluster.js';
import { startVaultContract, type VaultContract } from '../support/vault-contract.js';
import { waitFor } from '../support/wait.js';
import { basic, CRM_RS_SECRET, sha256hex } from '../http/introspect-support.js';

/**
 * The Vault key backends end to end: a real broker over HTTP, Leash's own Vault session and
 * the real node-vault client against the Vault contract server. Key tickers are parked
 * (refresh_interval_ms 600000); the tests call `broker.testing.keys.tick()` where a replica would refresh.
 */

const TOKEN_ENV = 'LEASH_BROKER_VAULT_KEYS_TEST_TOKEN';
/** Anything that would tell an OAuth client about Vault or where it runs. */
const VAULT_TEXT = /vault|ECONNREFUSED|127\.0\.0\.1|transit|secret\/|sealed|permission denied/i;

let vault: VaultContract;
let cluster: TestCluster;

beforeAll(async () => {
  vault = await startVaultContract();
  process.env[TOKEN_ENV] = vault.rootToken;
  cluster = await TestCluster.create();
});

afterAll(async () => {
  await vault?.close();
  delete process.env[TOKEN_ENV];
});

function vaultKeys(keys: Record<string, unknown>, extra?: (cfg: Record<string, any>) => void) {
  return (cfg: Record<string, any>) => {
    cfg.settings.vault = { address: vault.url, timeout_ms: 5000, auth: { method: 'token', token_env: TOKEN_ENV } };
    cfg.settings.keys = { ...cfg.settings.keys, refresh_interval_ms: 600000, ...keys };
    // Tests step a ManualClock by a minute; the revocation view must not go stale meanwhile.
    cfg.settings.revocation = { max_staleness_ms: 300000 };
    cfg.resource_servers = [{ id: 'crm-api', audiences: [CRM_API], client_secret_sha256: sha256hex(CRM_RS_SECRET) }];
    extra?.(cfg);
  };
}

async function exchange(tb: TestBroker, nowMs = Date.now()) {
  const task = await tb.openTask({ plugins: ['crm-reader'], ttl_seconds: 900 });
  return tb.exchange({
    grant_type: EXCHANGE,
    client_id: 'crm-reader',
    subject_token: await cluster.saToken({ sa: 'crm-reader', nowSeconds: Math.floor(nowMs / 1000) }),
    subject_token_type: JWT_TYPE,
    resource: CRM_API,
    task,
  });
}

async function jwks(tb: TestBroker): Promise<JSONWebKeySet> {
  const res = await fetch(`${tb.url}/jwks`);
  expect(res.status).toBe(200);
  return (await res.json()) as JSONWebKeySet;
}

const kids = (set: JSONWebKeySet) => set.keys.map((k) => k.kid as string).sort();

async function rotate(tb: TestBroker): Promise<{ status: number; text: string; json: Record<string, any> }> {
  const res = await fetch(`${tb.url}/admin/keys/rotate`, {
    method: 'POST',
    headers: { authorization: `Bearer ${OPS_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify({ force: true, reason: 'e2e' }),
  });
  const text = await res.text();
  return { status: res.status, text, json: text ? (JSON.parse(text) as Record<string, any>) : {} };
}

async function events(tb: TestBroker, type: string): Promise<Record<string, unknown>[]> {
  return (await tb.broker.testing.store.read(0, 100000)).filter((r) => r.type === type).map((r) => r.event as Record<string, unknown>);
}

function expectUnavailable(res: { status: number; body: Record<string, unknown> }): void {
  expect(res.status).toBe(503);
  expect(res.body.error).toBe('temporarily_unavailable');
  expect(res.body.access_token).toBeUndefined();
  const text = JSON.stringify(res.body);
  expect(text).not.toMatch(VAULT_TEXT);
  expect(text).not.toContain(String(vault.port));
}

describe('vault-transit through the broker', () => {
  const KEY = 'leash-e2e-transit';
  let tb: TestBroker;
  const logs: string[] = [];
  beforeAll(async () => {
    tb = await startTestBroker({ cluster, broker: { write: (line) => void logs.push(line) }, patch: vaultKeys({ backend: 'vault-transit', vault_kv: { mount: 'secret', path: 'leash/e2e-transit' }, vault_transit: { mount: 'transit', key: KEY } }) });
  });
  afterAll(async () => {
    await vault.up();
    await tb?.close();
  });

  it('issues a token signed by Vault Transit: its kid is in /jwks, it verifies, and is one Transit key version', async () => {
    const signCalls = () => vault.callsTo(new RegExp(`^transit/sign/${KEY}/sha2-256$`)).filter((c) => c.status === 200).length;
    const before = signCalls();
    const res = await exchange(tb);
    expect(res.status).toBe(200);
    // exactly one Transit sign for one token: Vault made the signature
    expect(signCalls()).toBe(before + 1);

    const token = res.body.access_token as string;
    const { kid, alg } = decodeProtectedHeader(token);
    expect(alg).toBe('ES256');
    const set = await jwks(tb);
    expect(kids(set)).toContain(kid);
    const { payload } = await jwtVerify(token, createLocalJWKSet(set), { issuer: tb.url, audience: CRM_API });
    expect(payload).toMatchObject({ plugin: 'crm-reader' });

    // The kid is the thumbprint of a public key Vault holds (the private half never left it).
    const thumbprints = await Promise.all([...vault.transitPublicKeys(KEY).values()].map(async (k) => calculateJwkThumbprint(await exportJWK(k), 'sha256')));
    expect(thumbprints).toContain(kid);
    expect(tb.broker.testing.keys.list().find((k) => k.kid === kid)).toMatchObject({ state: 'current', backend: 'vault-transit' });
  });

  it('Vault down: 503 temporarily_unavailable, no token, no Vault text; Vault back: exchanges succeed without a restart', async () => {
    const task = await tb.openTask({ plugins: ['crm-reader'], ttl_seconds: 900 });
    await vault.down();
    let res;
    try {
      for (let i = 0; i < 2; i++) {
        res = await tb.exchange({ grant_type: EXCHANGE, client_id: 'crm-reader', subject_token: await cluster.saToken(), subject_token_type: JWT_TYPE, resource: CRM_API, task });
        expectUnavailable(res);
      }
    } finally {
      await vault.up();
    }
    const denied = (await events(tb, 'exchange.denied')).at(-1);
    expect(denied).toMatchObject({ reason: 'ERR_SIGNING_UNAVAILABLE' });
    expect(JSON.stringify(denied)).not.toMatch(/ECONNREFUSED/);

    const again = await exchange(tb);
    expect(again.status).toBe(200);
    await jwtVerify(again.body.access_token as string, createLocalJWKSet(await jwks(tb)), { issuer: tb.url, audience: CRM_API });
  });

  it('Vault sealed or refusing to sign (500): 503 temporarily_unavailable without Vault text', async () => {
    vault.seal();
    try {
      expectUnavailable(await exchange(tb));
    } finally {
      vault.unseal();
    }
    vault.failNext(new RegExp(`^transit/sign/${KEY}/`), 500);
    expectUnavailable(await exchange(tb));
    expect((await exchange(tb)).status).toBe(200);
  });

  it('a rotation while Vault is down answers 503 without Vault text and leaves key.rotation_failed in the audit chain', async () => {
    const kidsBefore = kids(await jwks(tb));
    await vault.down();
    let res;
    try {
      res = await rotate(tb);
    } finally {
      await vault.up();
    }
    expect(res.status).toBe(503);
    expect(res.json.error).toBe('temporarily_unavailable');
    expect(res.text).not.toMatch(VAULT_TEXT);
    expect(await events(tb, 'key.rotation_failed')).toEqual(
      expect.arrayContaining([expect.objectContaining({ operation: 'rotate', actor: 'apikey:ops', error: 'ERR_BACKEND_UNAVAILABLE' })]),
    );
    // nothing changed, and the same keys keep signing
    expect(kids(await jwks(tb))).toEqual(kidsBefore);
    expect((await exchange(tb)).status).toBe(200);
  });

  it('after all of the above, neither the logs nor the audit chain hold Leash\'s Vault token', async () => {
    expect(logs.length).toBeGreaterThan(0);
    expect(logs.join('')).not.toContain(vault.rootToken);
    expect(JSON.stringify(await tb.broker.testing.store.read(0, 100000))).not.toContain(vault.rootToken);
  });
});

describe('vault-kv through the broker: signing through an outage up to max_vault_outage', () => {
  const clock = new ManualClock(Date.now());
  let tb: TestBroker;
  beforeAll(async () => {
    tb = await startTestBroker({
      cluster,
      broker: { clock },
      patch: vaultKeys({ backend: 'vault-kv', max_vault_outage: 60, vault_kv: { mount: 'secret', path: 'leash/e2e-kv-outage' } }),
    });
  });
  afterAll(async () => {
    await vault.up();
    await tb?.close();
  });

  it('keeps signing while Vault is down for up to max_vault_outage, then 503; back after Vault returns and a refresh succeeds', async () => {
    // A successful refresh now: the outage is measured from here.
    await tb.broker.testing.keys.tick();
    expect((await exchange(tb, clock.now())).status).toBe(200);

    await vault.down();
    try {
      await expect(tb.broker.testing.keys.tick()).rejects.toMatchObject({ code: 'ERR_BACKEND_UNAVAILABLE' });
      expect((await exchange(tb, clock.now())).status).toBe(200);
      clock.advance(60); // exactly the bound: still signing
      await expect(tb.broker.testing.keys.tick()).rejects.toMatchObject({ code: 'ERR_BACKEND_UNAVAILABLE' });
      const atBound = await exchange(tb, clock.now());
      expect(atBound.status).toBe(200);
      await jwtVerify(atBound.body.access_token as string, createLocalJWKSet(await jwks(tb)), { issuer: tb.url, audience: CRM_API, currentDate: new Date(clock.now()) });

      clock.advance(0.001); // one millisecond past it
      expectUnavailable(await exchange(tb, clock.now()));
      const denied = (await events(tb, 'exchange.denied')).at(-1);
      expect(denied).toMatchObject({ reason: 'ERR_SIGNING_UNAVAILABLE' });
      // the keys stay published: tokens already out keep verifying
      expect((await jwks(tb)).keys.length).toBeGreaterThanOrEqual(2);
    } finally {
      await vault.up();
    }
    // Vault is back but nothing has re-read the keyring yet: still refused (fail closed).
    expectUnavailable(await exchange(tb, clock.now()));
    await tb.broker.testing.keys.tick();
    const back = await exchange(tb, clock.now());
    expect(back.status).toBe(200);
    await jwtVerify(back.body.access_token as string, createLocalJWKSet(await jwks(tb)), { issuer: tb.url, audience: CRM_API, currentDate: new Date(clock.now()) });
  });
});

describe('vault-kv through the broker: two replicas on one keyring', () => {
  const keys = { backend: 'vault-kv', vault_kv: { mount: 'secret', path: 'leash/e2e-shared' } };
  let a: TestBroker;
  let b: TestBroker;
  beforeAll(async () => {
    a = await startTestBroker({ cluster, patch: vaultKeys(keys) });
    // Replicas behind one name share the issuer.
    b = await startTestBroker({ cluster, patch: vaultKeys(keys, (cfg) => (cfg.settings.issuer = a.url)) });
  });
  afterAll(async () => {
    await vault.up();
    await b?.close();
    await a?.close();
  });

  async function introspectAtB(token: string): Promise<Record<string, unknown>> {
    const res = await fetch(`${b.url}/introspect`, {
      method: 'POST',
      headers: { authorization: basic('crm-api', CRM_RS_SECRET), 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ token }),
    });
    expect(res.status).toBe(200);
    return (await res.json()) as Record<string, unknown>;
  }

  it('publish the same JWKS; a forced rotation at A reaches B at its refresh, and A\'s new key verifies at B', async () => {
    const startA = await jwks(a);
    expect(kids(startA)).toHaveLength(2);
    expect(await jwks(b)).toEqual(startA);
    const signerBefore = a.broker.testing.keys.current().kid;
    expect(b.broker.testing.keys.current().kid).toBe(signerBefore);

    const rotated = await rotate(a);
    expect(rotated.status).toBe(200);
    const newCurrent = a.broker.testing.keys.current().kid;
    expect(newCurrent).not.toBe(signerBefore);
    const afterA = await jwks(a);
    expect(kids(afterA)).toHaveLength(3); // new current, retired old current, fresh next

    // B has not re-read the keyring: it lacks A's fresh next key and still signs with the old one.
    expect(kids(await jwks(b))).toEqual(kids(startA));
    expect(b.broker.testing.keys.current().kid).toBe(signerBefore);

    const fromA = await exchange(a);
    expect(fromA.status).toBe(200);
    const tokenA = fromA.body.access_token as string;
    expect(decodeProtectedHeader(tokenA).kid).toBe(newCurrent);

    await b.broker.testing.keys.tick();
    expect(await jwks(b)).toEqual(afterA);
    expect(b.broker.testing.keys.current().kid).toBe(newCurrent);

    // A's token verifies with B's JWKS and is active at B.
    await jwtVerify(tokenA, createLocalJWKSet(await jwks(b)), { issuer: a.url, audience: CRM_API });
    const info = await introspectAtB(tokenA);
    expect(info).toMatchObject({ active: true, iss: a.url, aud: CRM_API, jti: expect.any(String), plugin: 'crm-reader' });

    // And B now signs with the new current key, which A verifies.
    const fromB = await exchange(b);
    expect(fromB.status).toBe(200);
    expect(decodeProtectedHeader(fromB.body.access_token as string).kid).toBe(newCurrent);
    await jwtVerify(fromB.body.access_token as string, createLocalJWKSet(await jwks(a)), { issuer: a.url, audience: CRM_API });
  });

  it('a rotation while Vault is down answers 503 and leaves key.rotation_failed in the audit chain', async () => {
    const before = kids(await jwks(a));
    await vault.down();
    let res;
    try {
      res = await rotate(a);
    } finally {
      await vault.up();
    }
    expect(res.status).toBe(503);
    expect(res.json.error).toBe('temporarily_unavailable');
    expect(res.text).not.toMatch(VAULT_TEXT);
    const failed = await events(a, 'key.rotation_failed');
    expect(failed).toEqual(expect.arrayContaining([expect.objectContaining({ operation: 'rotate', actor: 'apikey:ops', error: 'ERR_BACKEND_UNAVAILABLE' })]));
    expect(JSON.stringify(failed)).not.toMatch(/ECONNREFUSED|127\.0\.0\.1/);
    expect(kids(await jwks(a))).toEqual(before);
    // B saw nothing change either
    await b.broker.testing.keys.tick();
    expect(kids(await jwks(b))).toEqual(before);
  });
});

describe('vault-kv through the broker: the refresh ticker carries a rotation to the other replica', () => {
  const keys = { backend: 'vault-kv', vault_kv: { mount: 'secret', path: 'leash/e2e-ticker' } };
  let a: TestBroker;
  let b: TestBroker;
  beforeAll(async () => {
    a = await startTestBroker({ cluster, patch: vaultKeys(keys) });
    // B re-reads the keyring by itself every 200 ms.
    b = await startTestBroker({ cluster, patch: vaultKeys({ ...keys, refresh_interval_ms: 200 }, (cfg) => (cfg.settings.issuer = a.url)) });
  });
  afterAll(async () => {
    await b?.close();
    await a?.close();
  });

  it('without any call into B: B publishes A\'s new key set and signs with A\'s new current key', async () => {
    expect(await jwks(b)).toEqual(await jwks(a));
    expect((await rotate(a)).status).toBe(200);
    const newCurrent = a.broker.testing.keys.current().kid;
    const afterA = kids(await jwks(a));
    await waitFor(async () => JSON.stringify(kids(await jwks(b))) === JSON.stringify(afterA), 10000);
    const fromB = await exchange(b);
    expect(fromB.status).toBe(200);
    expect(decodeProtectedHeader(fromB.body.access_token as string).kid).toBe(newCurrent);
  });
});
