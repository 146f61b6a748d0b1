import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { SignJWT, exportJWK, generateKeyPair, type CryptoKey } from 'jose';
import { CRM_API, EXCHANGE, JWT_TYPE, loadedFrom, startTestBroker, testConfigInput, type TestBroker } from '../support/broker.js';

const sa = (tb: TestBroker, name = 'crm-reader') => tb.cluster.saToken({ sa: name });

describe('policy reload', () => {
  let tb: TestBroker;
  beforeAll(async () => {
    tb = await startTestBroker();
  });
  afterAll(async () => tb.close());

  const newPluginInput = () => {
    const input = testConfigInput({ issuer: tb.url, dir: tb.dir, cluster: tb.cluster }) as Record<string, any>;
    input.plugins.push({
      id: 'newcomer',
      owner: 'team-new@example.com',
      risk: 'low',
      bindings: [{ issuer: 'test-cluster', subject: 'system:serviceaccount:plugins:newcomer' }],
      grants: [{ audience: 'https://new.example.com', scopes: ['new:read'], kind: 'jwt', effect: 'read', task_required: false }],
    });
    return input;
  };

  it('a good policy is swapped in: a new plugin can exchange right away', async () => {
    const params = { grant_type: EXCHANGE, client_id: 'newcomer', subject_token: await sa(tb, 'newcomer'), subject_token_type: JWT_TYPE, resource: 'https://new.example.com' };
    expect((await tb.exchange(params)).status).toBe(401); // unknown client before the reload
    const result = await tb.broker.reload(loadedFrom(newPluginInput(), tb.dir));
    expect(result.ok).toBe(true);
    const after = await tb.exchange({ ...params, subject_token: await sa(tb, 'newcomer') });
    expect(after.status).toBe(200);
  });

  it('a policy that does not compile keeps the running one and says why', async () => {
    const bad = newPluginInput();
    // two plugins bound to the same workload: a configuration error
    bad.plugins.push({ ...bad.plugins[0], id: 'impostor' });
    const before = tb.broker.config;
    const result = await tb.broker.reload(loadedFrom(bad, tb.dir));
    expect(result.ok).toBe(false);
    expect(tb.broker.config).toBe(before);
    const events = await tb.broker.testing.store.read(1, 100000);
    const failed = events.filter((e) => e.type === 'policy.reload_failed');
    expect(failed.length).toBe(1);
    expect(String(failed[0]!.event.error)).toContain('impostor');
    const metrics = await (await fetch(`${tb.managementUrl}/metrics`)).text();
    expect(metrics).toMatch(/leash_policy_reloads_total\{result="rejected"\} 1/);
  });

  it('settings that need a restart are refused on reload', async () => {
    const input = newPluginInput();
    input.settings.store.path = `${tb.dir}/other.db`;
    const result = await tb.broker.reload(loadedFrom(input, tb.dir));
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.error.message).toContain('store');
  });

  it('records key.created when the first start generated the signing key and its prepublished successor', async () => {
    const events = await tb.broker.testing.store.read(1, 100000);
    const created = events.filter((e) => e.type === 'key.created').map((e) => e.event.kid as string);
    expect(created).toContain(tb.broker.testing.keys.current().kid);
    expect(created.sort()).toEqual(
      tb.broker.testing.keys
        .list()
        .map((k) => k.kid)
        .sort(),
    );
    expect(created).toHaveLength(2);
  });
});

describe('fail closed', () => {
  it('with the store gone, an exchange gets 503 temporarily_unavailable and no token', async () => {
    const tb = await startTestBroker();
    try {
      const task = await tb.openTask();
      await tb.broker.testing.store.close();
      const res = await tb.exchange({ grant_type: EXCHANGE, client_id: 'crm-reader', subject_token: await sa(tb), subject_token_type: JWT_TYPE, resource: CRM_API, task });
      expect(res.status).toBe(503);
      expect(res.body.error).toBe('temporarily_unavailable');
      expect(res.body.access_token).toBeUndefined();
      const ready = await fetch(`${tb.managementUrl}/readyz`);
      expect(ready.status).toBe(503);
    } finally {
      await tb.close().catch(() => undefined);
    }
  });
});

describe('admin bearer JWTs from a configured issuer', () => {
  let tb: TestBroker;
  let key: CryptoKey;
  const ADMIN_ISS = 'https://idp.example.com';
  beforeAll(async () => {
    const pair = await generateKeyPair('ES256');
    key = pair.privateKey;
    const jwk = { ...(await exportJWK(pair.publicKey)), kid: 'idp-1', alg: 'ES256' };
    tb = await startTestBroker({
      patch: (cfg) => {
        cfg.admin.issuers = [{ issuer: ADMIN_ISS, audience: 'leash-admin', jwks: { inline: { keys: [jwk] } }, algorithms: ['ES256'] }];
      },
    });
  });
  afterAll(async () => tb.close());

  const adminToken = (claims: Record<string, unknown>, aud = 'leash-admin') =>
    new SignJWT(claims).setProtectedHeader({ alg: 'ES256', kid: 'idp-1' }).setIssuer(ADMIN_ISS).setAudience(aud).setSubject('orchestrator-svc').setIssuedAt().setExpirationTime('5m').sign(key);
  const open = async (token: string) =>
    fetch(`${tb.url}/tasks`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify({ plugins: ['crm-reader'] }) });

  it('a token with the orchestrator role opens a task, named as the actor', async () => {
    const res = await open(await adminToken({ roles: ['orchestrator'] }));
    expect(res.status).toBe(201);
    expect(((await res.json()) as Record<string, unknown>).created_by).toBe(`jwt:${ADMIN_ISS}#orchestrator-svc`);
  });

  it('space-separated roles work too', async () => {
    expect((await open(await adminToken({ roles: 'ops orchestrator' }))).status).toBe(201);
  });

  it.each([
    ['without the role', async () => adminToken({ roles: ['ops'] }), 403],
    ['for another audience', async () => adminToken({ roles: ['orchestrator'] }, 'other'), 401],
    [
      'signed by another key',
      async () => {
        const other = await generateKeyPair('ES256');
        return new SignJWT({ roles: ['orchestrator'] })
          .setProtectedHeader({ alg: 'ES256', kid: 'idp-1' })
          .setIssuer(ADMIN_ISS)
          .setAudience('leash-admin')
          .setExpirationTime('5m')
          .sign(other.privateKey);
      },
      401,
    ],
    [
      'from an unknown issuer',
      async () =>
        new SignJWT({ roles: ['orchestrator'] }).setProtectedHeader({ alg: 'ES256', kid: 'idp-1' }).setIssuer('https://evil.example').setAudience('leash-admin').setExpirationTime('5m').sign(key),
      401,
    ],
  ])('is refused %s', async (_n, make, status) => {
    expect((await open(await make())).status).toBe(status);
  });
});
