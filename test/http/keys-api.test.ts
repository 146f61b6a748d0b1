import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createHash } from 'node:crypto';
import { decodeProtectedHeader } from 'jose';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openStore } from '../../src/store/open-store.js';
import { systemClock } from '../../src/time/clock.js';
import { CRM_API, EXCHANGE, JWT_TYPE, loadedFrom, OPS_KEY, ORCHESTRATOR_KEY, startTestBroker, testConfigInput, type TestBroker } from '../support/broker.js';
import { TestCluster } from '../support/cluster.js';
import { startVaultContract, type VaultContract } from '../support/vault-contract.js';

const OPS_ONLY_KEY = 'test-ops-only-key-0123456789';
const SECURITY_ONLY_KEY = 'test-security-only-key-0123456789';
const sha = (s: string) => createHash('sha256').update(s).digest('hex');

interface KeyView {
  kid: string;
  alg: string;
  state: 'next' | 'current' | 'retired';
  backend: string;
  created_at: string;
  activated_at: string | null;
  retired_at: string | null;
  remove_at: string | null;
  signs_from: string | null;
  age_seconds: number;
}

function withRoleKeys(cfg: Record<string, any>): void {
  cfg.admin.api_keys.push({ id: 'ops-only', sha256: sha(OPS_ONLY_KEY), roles: ['ops'] }, { id: 'sec-only', sha256: sha(SECURITY_ONLY_KEY), roles: ['security'] });
}

function client(tb: TestBroker) {
  return async (method: string, path: string, key: string | null, body?: unknown): Promise<{ status: number; json: Record<string, any>; text: string; headers: Headers }> => {
    const res = await fetch(`${tb.url}${path}`, {
      method,
      headers: { ...(key ? { authorization: `Bearer ${key}` } : {}), ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    });
    const text = await res.text();
    return { status: res.status, json: text ? (JSON.parse(text) as Record<string, any>) : {}, text, headers: res.headers };
  };
}

async function events(tb: TestBroker, type: string): Promise<Record<string, unknown>[]> {
  return (await tb.broker.testing.store.read(1, 100000)).filter((e) => e.type === type).map((e) => e.event as Record<string, unknown>);
}

async function metricsText(tb: TestBroker): Promise<string> {
  return (await fetch(`${tb.managementUrl}/metrics`)).text();
}

async function jwksKids(tb: TestBroker): Promise<string[]> {
  return ((await (await fetch(`${tb.url}/jwks`)).json()) as { keys: { kid: string }[] }).keys.map((k) => k.kid).sort();
}

describe('admin key API (local backend, default 1 h prepublish)', () => {
  let tb: TestBroker;
  let call: ReturnType<typeof client>;
  beforeAll(async () => {
    tb = await startTestBroker({ patch: withRoleKeys });
    call = client(tb);
  });
  afterAll(async () => tb.close());

  it.each([
    ['get', '/admin/keys'],
    ['post', '/admin/keys/rotate'],
    ['post', '/admin/keys/somekid/retire'],
    ['post', '/admin/keys/somekid/revoke'],
  ])('%s %s: anonymous 401, orchestrator 403, both audited', async (method, path) => {
    const anon = await call(method.toUpperCase(), path, null, method === 'get' ? undefined : { reason: 'because' });
    expect(anon.status).toBe(401);
    expect(anon.json.error).toBe('invalid_token');
    expect(anon.headers.get('www-authenticate')).toContain('error="invalid_token"');
    const orch = await call(method.toUpperCase(), path, ORCHESTRATOR_KEY, method === 'get' ? undefined : { reason: 'because' });
    expect(orch.status).toBe(403);
    expect(orch.json.error).toBe('insufficient_scope');
    const route = `keys.${path === '/admin/keys' ? 'list' : path.split('/').pop()}`;
    const denied = (await events(tb, 'admin.denied')).filter((e) => e.route === route);
    expect(denied.map((e) => e.reason)).toEqual(expect.arrayContaining(['ERR_ADMIN_UNAUTHENTICATED', 'ERR_ADMIN_FORBIDDEN']));
    expect(denied.find((e) => e.reason === 'ERR_ADMIN_FORBIDDEN')?.actor).toBe('apikey:orchestrator');
  });

  it('lists the keys to ops and to security, with every documented field', async () => {
    for (const key of [OPS_ONLY_KEY, SECURITY_ONLY_KEY]) {
      const res = await call('GET', '/admin/keys', key);
      expect(res.status).toBe(200);
      expect(res.headers.get('cache-control')).toBe('no-store');
      expect(res.json.backend).toBe('local');
      const keys = res.json.keys as KeyView[];
      expect(keys.map((k) => k.state).sort()).toEqual(['current', 'next']);
      for (const k of keys) {
        expect(Object.keys(k).sort()).toEqual(['activated_at', 'age_seconds', 'alg', 'backend', 'created_at', 'kid', 'remove_at', 'retired_at', 'signs_from', 'state']);
        expect(k.alg).toBe('ES256');
        expect(Number.isInteger(k.age_seconds) && k.age_seconds >= 0).toBe(true);
      }
      const next = keys.find((k) => k.state === 'next')!;
      const current = keys.find((k) => k.state === 'current')!;
      // The next key may sign one prepublish interval (1 h by default) after it was created.
      expect(Date.parse(next.signs_from!) - Date.parse(next.created_at)).toBe(3600_000);
      expect(next.activated_at).toBeNull();
      expect(current.activated_at).not.toBeNull();
      expect(current.signs_from).toBeNull();
      expect(keys.map((k) => k.kid).sort()).toEqual(await jwksKids(tb));
    }
  });

  it('refuses a rotation before the next key has been published for the prepublish interval: 409 not_ready, audited and counted', async () => {
    const before = (await call('GET', '/admin/keys', OPS_KEY)).json.keys as KeyView[];
    const res = await call('POST', '/admin/keys/rotate', OPS_ONLY_KEY, { reason: 'routine' });
    expect(res.status).toBe(409);
    expect(res.json).toMatchObject({ error: 'conflict', conflict: 'not_ready' });
    expect(res.json.error_description).toMatch(/prepublish/);
    expect((await call('GET', '/admin/keys', OPS_KEY)).json.keys).toEqual(before.map((k) => ({ ...k, age_seconds: expect.any(Number) })));
    expect(await events(tb, 'key.rotation_failed')).toContainEqual(expect.objectContaining({ operation: 'rotate', error: 'not_ready', actor: 'apikey:ops-only' }));
    expect(await metricsText(tb)).toMatch(/leash_key_operation_failures_total\{operation="rotate"\} 1\b/);
  });

  it('security alone may not rotate or retire; ops alone may not revoke', async () => {
    expect((await call('POST', '/admin/keys/rotate', SECURITY_ONLY_KEY, {})).status).toBe(403);
    const kid = ((await call('GET', '/admin/keys', OPS_KEY)).json.keys as KeyView[])[0]!.kid;
    expect((await call('POST', `/admin/keys/${kid}/retire`, SECURITY_ONLY_KEY, {})).status).toBe(403);
    const res = await call('POST', `/admin/keys/${kid}/revoke`, OPS_ONLY_KEY, { reason: 'compromised' });
    expect(res.status).toBe(403);
    expect(res.json.error_description).toContain("'security'");
    expect(await jwksKids(tb)).toContain(kid);
  });

  it.each([
    ['force not boolean', { force: 'yes' }],
    ['reason too short', { reason: 'x' }],
    ['unknown field', { reason: 'routine', now: true }],
    ['array body', [1]],
  ])('rotate rejects %s with 400 invalid_request', async (_n, body) => {
    const res = await call('POST', '/admin/keys/rotate', OPS_KEY, body);
    expect(res.status).toBe(400);
    expect(res.json.error).toBe('invalid_request');
  });

  it('rotate rejects a non-JSON body and malformed JSON with 400', async () => {
    const form = await fetch(`${tb.url}/admin/keys/rotate`, {
      method: 'POST',
      headers: { authorization: `Bearer ${OPS_KEY}`, 'content-type': 'application/x-www-form-urlencoded' },
      body: 'force=true',
    });
    expect(form.status).toBe(400);
    expect((await call('POST', '/admin/keys/rotate', OPS_KEY, '{"force":')).status).toBe(400);
  });

  it('forced rotation promotes next, retires current, publishes a new next; audited per transition and counted', async () => {
    const before = (await call('GET', '/admin/keys', OPS_KEY)).json.keys as KeyView[];
    const oldCurrent = before.find((k) => k.state === 'current')!.kid;
    const oldNext = before.find((k) => k.state === 'next')!.kid;
    const res = await call('POST', '/admin/keys/rotate', OPS_ONLY_KEY, { reason: 'suspected leak of a backup', force: true });
    expect(res.status).toBe(200);
    expect(res.json.forced).toBe(true);
    const transitions = res.json.transitions as { action: string; kid: string; from: string | null; to: string }[];
    expect(transitions).toEqual(
      expect.arrayContaining([
        { action: 'promoted', kid: oldNext, from: 'next', to: 'current' },
        { action: 'retired', kid: oldCurrent, from: 'current', to: 'retired' },
        { action: 'created', kid: expect.any(String), from: null, to: 'next' },
      ]),
    );
    const keys = res.json.keys as KeyView[];
    const retired = keys.find((k) => k.kid === oldCurrent)!;
    expect(retired.state).toBe('retired');
    // It stays published at least as long as any token it signed can live.
    expect(Date.parse(retired.remove_at!) - Date.parse(retired.retired_at!)).toBeGreaterThanOrEqual(tb.config.settings.tokens.max_ttl * 1000);
    expect(keys.find((k) => k.kid === oldNext)!.state).toBe('current');
    expect(await jwksKids(tb)).toEqual(keys.map((k) => k.kid).sort());
    expect(await events(tb, 'key.promoted')).toContainEqual(expect.objectContaining({ kid: oldNext, cause: 'api', actor: 'apikey:ops-only', reason: 'suspected leak of a backup' }));
    expect(await events(tb, 'key.retired')).toContainEqual(expect.objectContaining({ kid: oldCurrent, cause: 'api' }));
    expect(await events(tb, 'key.created')).toContainEqual(expect.objectContaining({ kid: transitions.find((t) => t.action === 'created')!.kid, cause: 'api' }));
    const metrics = await metricsText(tb);
    expect(metrics).toMatch(/leash_key_rotations_total\{cause="api"\} 1\b/);
    expect(metrics).toContain(`leash_signing_key_age_seconds{kid="${oldCurrent}",state="retired"}`);
    expect(metrics).toMatch(/leash_signing_keys\{state="retired"\} 1\b/);
    // The new current key signs the next exchange.
    const task = await tb.openTask();
    const r = await tb.exchange({ grant_type: EXCHANGE, client_id: 'crm-reader', subject_token: await tb.cluster.saToken(), subject_token_type: JWT_TYPE, resource: CRM_API, task });
    expect(r.status).toBe(200);
    expect(decodeProtectedHeader(r.body.access_token as string).kid).toBe(oldNext);
  });

  it('retire of the current key promotes next at once; a retired key cannot be retired again (409)', async () => {
    const before = (await call('GET', '/admin/keys', OPS_KEY)).json.keys as KeyView[];
    const current = before.find((k) => k.state === 'current')!.kid;
    const next = before.find((k) => k.state === 'next')!.kid;
    const res = await call('POST', `/admin/keys/${current}/retire`, OPS_ONLY_KEY, { reason: 'moving to a new HSM' });
    expect(res.status).toBe(200);
    expect(res.json.kid).toBe(current);
    const keys = res.json.keys as KeyView[];
    expect(keys.find((k) => k.kid === current)!.state).toBe('retired');
    expect(keys.find((k) => k.kid === next)!.state).toBe('current');
    const again = await call('POST', `/admin/keys/${current}/retire`, OPS_ONLY_KEY, {});
    expect(again.status).toBe(409);
    expect(again.json).toMatchObject({ error: 'conflict', conflict: 'invalid_state' });
  });

  it('unknown and malformed kids are 404', async () => {
    for (const kid of ['AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA', 'bad%20kid', 'x'.repeat(200)]) {
      expect((await call('POST', `/admin/keys/${kid}/retire`, OPS_KEY, {})).status).toBe(404);
      expect((await call('POST', `/admin/keys/${kid}/revoke`, OPS_KEY, { reason: 'compromised' })).status).toBe(404);
    }
  });

  it('revoke needs a reason', async () => {
    const kid = ((await call('GET', '/admin/keys', OPS_KEY)).json.keys as KeyView[])[0]!.kid;
    for (const body of [{}, { reason: '' }, { reason: 7 }]) {
      const res = await call('POST', `/admin/keys/${kid}/revoke`, SECURITY_ONLY_KEY, body);
      expect(res.status).toBe(400);
      expect(res.json.error).toBe('invalid_request');
    }
    expect(await jwksKids(tb)).toContain(kid);
  });

  it('emergency revoke of the current key: withdrawn from the JWKS at once, its tokens revoked, next promoted, all audited', async () => {
    const task = await tb.openTask();
    const issued = await tb.exchange({ grant_type: EXCHANGE, client_id: 'crm-reader', subject_token: await tb.cluster.saToken(), subject_token_type: JWT_TYPE, resource: CRM_API, task });
    expect(issued.status).toBe(200);
    const kid = decodeProtectedHeader(issued.body.access_token as string).kid as string;
    const before = (await call('GET', '/admin/keys', OPS_KEY)).json.keys as KeyView[];
    expect(before.find((k) => k.kid === kid)!.state).toBe('current');
    const next = before.find((k) => k.state === 'next')!.kid;

    const res = await call('POST', `/admin/keys/${kid}/revoke`, SECURITY_ONLY_KEY, { reason: 'private key found in a public repository' });
    expect(res.status).toBe(200);
    expect(res.json.revocation.seq).toEqual(expect.any(Number));
    expect(res.json.transitions).toEqual(
      expect.arrayContaining([
        { action: 'revoked', kid, from: 'current', to: 'removed' },
        { action: 'promoted', kid: next, from: 'next', to: 'current' },
      ]),
    );
    expect(await jwksKids(tb)).not.toContain(kid);
    expect((res.json.keys as KeyView[]).find((k) => k.kid === next)!.state).toBe('current');
    // The token it signed no longer verifies, and the revocation list names the key.
    expect(tb.broker.revocation.isRevoked({ jti: 'x', plugin: 'crm-reader', task, kid, iat: Math.floor(Date.now() / 1000) })).toBe(true);
    const actor = 'apikey:sec-only';
    expect(await events(tb, 'key.revoked')).toContainEqual(expect.objectContaining({ kid, cause: 'emergency', actor, reason: 'private key found in a public repository' }));
    expect(await events(tb, 'token.revoked')).toContainEqual(expect.objectContaining({ scope: 'key', id: kid, actor }));
    expect(await events(tb, 'key.promoted')).toContainEqual(expect.objectContaining({ kid: next, cause: 'emergency' }));
    expect(await metricsText(tb)).toMatch(/leash_key_rotations_total\{cause="emergency"\} 1\b/);
    // Exchanges keep working on the promoted key.
    const after = await tb.exchange({ grant_type: EXCHANGE, client_id: 'crm-reader', subject_token: await tb.cluster.saToken(), subject_token_type: JWT_TYPE, resource: CRM_API, task });
    expect(after.status).toBe(200);
    expect(decodeProtectedHeader(after.body.access_token as string).kid).toBe(next);
  });
});

describe('admin key API: a full JWKS', () => {
  it('refuses a rotation with 409 jwks_full when max_published keys are out and no next exists', async () => {
    const tb = await startTestBroker({
      patch: (cfg) => {
        cfg.settings.keys.max_published = 2;
      },
    });
    try {
      const call = client(tb);
      // current + next fill the JWKS; forcing promotes next and retires current: no room for a new next.
      expect((await call('POST', '/admin/keys/rotate', OPS_KEY, { force: true })).status).toBe(200);
      const keys = (await call('GET', '/admin/keys', OPS_KEY)).json.keys as KeyView[];
      expect(keys.map((k) => k.state).sort()).toEqual(['current', 'retired']);
      const res = await call('POST', '/admin/keys/rotate', OPS_KEY, { force: true });
      expect(res.status).toBe(409);
      expect(res.json).toMatchObject({ error: 'conflict', conflict: 'jwks_full' });
      expect(res.json.error_description).toContain('max_published');
    } finally {
      await tb.close();
    }
  });
});

describe('admin key API: the audit store fails after the change was made', () => {
  it('answers 200 with the transitions and a warning (a 503 would invite a second rotation)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'leash-keys-audit-'));
    const settings = loadedFrom(testConfigInput({ issuer: 'http://127.0.0.1:1', dir, cluster: await TestCluster.create() }), dir).config.settings;
    const inner = await openStore(settings.store, systemClock);
    let auditDown = false;
    const store = new Proxy(inner, {
      get(target, prop) {
        if (prop === 'append' && auditDown) return () => Promise.reject(new Error('disk full'));
        const value = Reflect.get(target, prop, target) as unknown;
        return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
      },
    });
    const tb = await startTestBroker({ dir, broker: { store } });
    try {
      const next = tb.broker.testing.keys.list().find((k) => k.state === 'next')!.kid;
      auditDown = true;
      const res = await client(tb)('POST', '/admin/keys/rotate', OPS_KEY, { force: true });
      auditDown = false;
      expect(res.status).toBe(200);
      expect(res.json.warning).toMatch(/change was made.*audit trail could not record it/);
      expect(res.json.transitions).toContainEqual({ action: 'promoted', kid: next, from: 'next', to: 'current' });
      expect(tb.broker.testing.keys.current().kid).toBe(next);
      expect(res.text).not.toContain('disk full');
    } finally {
      await tb.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('admin key API: the key backend is down (vault-kv)', () => {
  let vault: VaultContract;
  let tb: TestBroker;
  const TOKEN_ENV = 'LEASH_KEYS_API_TEST_VAULT_TOKEN';
  beforeAll(async () => {
    vault = await startVaultContract();
    process.env[TOKEN_ENV] = vault.rootToken;
    tb = await startTestBroker({
      patch: (cfg) => {
        cfg.settings.vault = { address: vault.url, timeout_ms: 5000, auth: { method: 'token', token_env: TOKEN_ENV } };
        // Ticks would race the faults below; this test drives every keyring access itself.
        cfg.settings.keys = { ...cfg.settings.keys, backend: 'vault-kv', refresh_interval_ms: 600000, vault_kv: { mount: 'secret', path: 'leash/keys-api' } };
      },
    });
  });
  afterAll(async () => {
    await tb?.close();
    await vault.close();
    delete process.env[TOKEN_ENV];
  });

  it('answers 503 temporarily_unavailable without any Vault text, audits key.rotation_failed and counts it', async () => {
    const call = client(tb);
    const list = (await call('GET', '/admin/keys', OPS_KEY)).json;
    expect(list.backend).toBe('vault-kv');
    const kid = (list.keys as KeyView[]).find((k) => k.state === 'next')!.kid;

    vault.failNext(/keyring/, 500, 100);
    for (const [path, body] of [
      ['/admin/keys/rotate', { force: true }],
      [`/admin/keys/${kid}/retire`, {}],
    ] as const) {
      const res = await call('POST', path, OPS_KEY, body);
      expect(res.status).toBe(503);
      expect(res.json.error).toBe('temporarily_unavailable');
      expect(res.text).not.toMatch(/injected|fault|vault|secret\/|127\.0\.0\.1/i);
    }
    await vault.down();
    const res = await call('POST', `/admin/keys/${kid}/revoke`, OPS_KEY, { reason: 'drill' });
    await vault.up();
    expect(res.status).toBe(503);
    expect(res.text).not.toMatch(/ECONNREFUSED|vault|127\.0\.0\.1/i);

    const failed = await events(tb, 'key.rotation_failed');
    expect(failed).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ operation: 'rotate', error: 'ERR_BACKEND_UNAVAILABLE', actor: 'apikey:ops' }),
        expect.objectContaining({ operation: 'retire', kid, error: 'ERR_BACKEND_UNAVAILABLE' }),
        expect.objectContaining({ operation: 'revoke', kid, error: 'ERR_BACKEND_UNAVAILABLE' }),
      ]),
    );
    expect(JSON.stringify(failed)).not.toMatch(/injected|ECONNREFUSED/);
    const metrics = await metricsText(tb);
    for (const op of ['rotate', 'retire', 'revoke']) expect(metrics).toMatch(new RegExp(`leash_key_operation_failures_total\\{operation="${op}"\\} 1\\b`));
  });
});
