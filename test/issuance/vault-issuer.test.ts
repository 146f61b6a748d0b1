import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import type { GrantConfig, VaultGrantConfig } from '../../src/config/schema.js';
import { LeashError } from '../../src/errors/leash-error.js';
import type { CredentialIssuer, IssueRequest } from '../../src/issuance/credential-issuer.js';
import { TOKEN_TYPE_VAULT_SECRET } from '../../src/formats/token-types.js';
import { createLeaseReporter } from '../../src/issuance/vault/lease-reporter.js';
import type { LeaseReporter, LeaseRevocationDeps } from '../../src/issuance/vault/lease-revocation.js';
import { LeaseSweeper } from '../../src/issuance/vault/lease-sweeper.js';
import { createVaultIssuer, type VaultSecretBody } from '../../src/issuance/vault/vault-issuer.js';
import { createVaultRevoker } from '../../src/issuance/vault/vault-revoker.js';
import { createMetrics, type Metrics } from '../../src/metrics/metrics.js';
import type { CompiledGrant, CompiledPlugin } from '../../src/policy/types.js';
import type { IssuedToken, Task } from '../../src/store/records.js';
import { openSqliteStore, type SqliteStore } from '../../src/store/sqlite/sqlite-store.js';
import { ManualClock } from '../../src/time/clock.js';
import { createVaultClient } from '../../src/vault/node-vault-client.js';
import type { VaultClient } from '../../src/vault/vault-client.js';
import { openRedisStore } from '../../src/store/redis/redis-store.js';
import { redisAvailable, startRedis } from '../support/redis.js';
import { startVaultContract, type VaultContract } from '../support/vault-contract.js';

/**
 * The vault issuer, revoker and lease sweeper against the Vault contract server, through the
 * real node-vault client and a real SQLite store. Vault's clock is the test's ManualClock,
 * so leases expire in Vault only when the test says so.
 */

const AUDIENCE = 'vault:crm-db';
const TASK_ID = 'tsk_VmF1bHRUYXNrSWQwMDAx';
const clock = new ManualClock();
let vault: VaultContract;
let client: VaultClient;
let store: SqliteStore;
let metrics: Metrics;
let events: { type: string; event: Record<string, unknown> }[];
let logs: { msg: string; fields: Record<string, unknown> | undefined }[];

beforeAll(async () => {
  vault = await startVaultContract({ now: () => clock.now(), leaseTtl: 3600, roles: { database: ['crm-readonly'], pki: ['plugins'] } });
  client = createVaultClient({ address: vault.url, timeoutMs: 2000, token: () => vault.rootToken });
});

afterAll(async () => {
  await vault.close();
});

beforeEach(async () => {
  await vault.up();
  vault.unseal();
  store = openSqliteStore({ path: ':memory:', clock });
  metrics = createMetrics({ activeTasks: async () => 0, signingKeys: () => [] }, { defaultMetrics: false });
  events = [];
  logs = [];
});

afterEach(async () => {
  await store.close().catch(() => undefined);
});

function reporter(): LeaseReporter {
  return createLeaseReporter({
    // The audit sink records what would be appended to the chain.
    audit: { record: async (type, event) => void events.push({ type, event }) },
    metrics,
    log: (msg, fields) => void logs.push({ msg, fields }),
  });
}

function deps(over: Partial<LeaseRevocationDeps> = {}): LeaseRevocationDeps & { log: (msg: string, fields?: Record<string, unknown>) => void } {
  return { vault: () => client, leases: store, clock, report: reporter(), log: (msg, fields) => void logs.push({ msg, fields }), ...over };
}

function request(opts: { vault?: Partial<VaultGrantConfig>; ttl?: number; task?: string | null } = {}): IssueRequest {
  const vaultGrant: VaultGrantConfig = { path: 'database/creds/crm-readonly', method: 'read', params: {}, ...opts.vault };
  const config: GrantConfig = {
    audience: AUDIENCE,
    scopes: ['db:read'],
    kind: 'vault',
    effect: 'read',
    max_ttl: 300,
    task_required: true,
    outlive_attestation: false,
    dpop: 'optional',
    approval: 'none',
    conditions: [],
    vault: vaultGrant,
  };
  const grant: CompiledGrant = {
    index: 0,
    audience: AUDIENCE,
    scopes: new Set(['db:read']),
    defaultScopes: ['db:read'],
    kind: 'vault',
    effect: 'read',
    maxTtl: 300,
    taskRequired: true,
    dpopRequired: false,
    approval: 'none',
    failedConditions: () => [],
    exceptions: [],
    config,
  };
  const plugin: CompiledPlugin = {
    id: 'crm-reader',
    owner: 'team-crm@example.com',
    risk: 'low',
    disabled: false,
    grants: [grant],
    config: { id: 'crm-reader', owner: 'team-crm@example.com', risk: 'low', disabled: false, bindings: [{ issuer: 'c', subject: 's' }], grants: [config] } as CompiledPlugin['config'],
  };
  const now = clock.now();
  const task: Task | undefined =
    opts.task === null
      ? undefined
      : {
          id: opts.task ?? TASK_ID,
          plugins: ['crm-reader'],
          attributes: {},
          createdAt: now,
          expiresAt: now + 3_600_000,
          createdBy: 'apikey:orchestrator',
          state: 'active',
          endedAt: undefined,
          endedBy: undefined,
        };
  return {
    plugin,
    grant,
    identity: { issuer: 'c', subject: 's', claims: {} } as unknown as IssueRequest['identity'],
    task,
    audience: AUDIENCE,
    scopes: ['db:read'],
    ttl: opts.ttl ?? 300,
    jkt: undefined,
    now,
  };
}

async function refusal(issuer: CredentialIssuer, req: IssueRequest): Promise<LeashError> {
  const error = await issuer.issue(req).then(
    () => {
      throw new Error('expected a refusal');
    },
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(LeashError);
  return error as LeashError;
}

/** Nothing Vault said (its error text) is in what a client or the audit event sees. */
function expectNoVaultText(err: LeashError): void {
  const visible = JSON.stringify({ code: err.code, description: err.description, detail: err.detail });
  for (const text of ['permission denied', 'Vault is sealed', 'injected fault', 'unknown role', 'no handler', 'route entry', 'ECONNREFUSED']) expect(visible).not.toContain(text);
}

describe('vault issuer: a dynamic secret as an RFC 8693 answer', () => {
  it('answers the secret in vault_secret, an opaque handle as access_token, and records the lease first', async () => {
    const issuer = createVaultIssuer(deps());
    const { body, record } = await issuer.issue(request());
    const lease = vault.leases().at(-1)!;
    const secret = body.vault_secret as VaultSecretBody;
    expect(secret.data).toEqual(lease.data);
    expect(Object.keys(secret.data).sort()).toEqual(['password', 'username']);
    expect(secret).toEqual({ data: lease.data, lease_duration: 300, renewable: false });
    expect(body).toMatchObject({ issued_token_type: TOKEN_TYPE_VAULT_SECRET, token_type: 'N_A', expires_in: 300 });
    expect(body.access_token).toMatch(/^vault:[A-Za-z0-9_-]{22}$/);
    expect(body.access_token).toBe(record.jti);
    // the handle is not the secret, and Vault's lease id does not leave
    expect(JSON.stringify(body)).not.toContain(lease.leaseId);
    expect(lease.revokedAt).toBeUndefined();
    // the record holds no secret data
    expect(record).toEqual({
      jti: record.jti,
      plugin: 'crm-reader',
      task: TASK_ID,
      audience: AUDIENCE,
      scopes: ['db:read'],
      kind: 'vault',
      kid: undefined,
      issuedAt: clock.now(),
      expiresAt: clock.now() + 300_000,
      jkt: undefined,
    });
    expect(JSON.stringify(record)).not.toContain(String(lease.data['password']));
    expect(await store.leasesForTokens([record.jti])).toEqual([
      { jti: record.jti, leaseId: lease.leaseId, plugin: 'crm-reader', task: TASK_ID, expiresAt: clock.now() + 300_000, revokedAt: undefined },
    ]);
  });

  it("expires_in is the shorter of the TTL and Vault's lease_duration", async () => {
    const short = await startVaultContract({ now: () => clock.now(), leaseTtl: 60 });
    try {
      const issuer = createVaultIssuer(deps({ vault: () => createVaultClient({ address: short.url, timeoutMs: 2000, token: () => short.rootToken }) }));
      const { body, record } = await issuer.issue(request({ ttl: 300 }));
      expect(body.expires_in).toBe(60);
      expect((body.vault_secret as VaultSecretBody).lease_duration).toBe(60);
      expect(record.expiresAt).toBe(clock.now() + 60_000);
    } finally {
      await short.close();
    }
  });

  it('write: POSTs the params (PKI issue) and hands out the certificate and its private key', async () => {
    const issuer = createVaultIssuer(deps());
    const { body } = await issuer.issue(request({ vault: { path: 'pki/issue/plugins', method: 'write', params: { common_name: 'crm-reader.plugins.example.com' } } }));
    const data = (body.vault_secret as VaultSecretBody).data;
    expect(data['certificate']).toMatch(/^-----BEGIN CERTIFICATE-----/);
    expect(data['private_key']).toMatch(/^-----BEGIN EC PRIVATE KEY-----/);
    expect(vault.callsTo('pki/issue/plugins').at(-1)).toMatchObject({ method: 'POST', status: 200 });
  });

  it('a secret whose lease cannot be recorded is revoked at once and not handed out', async () => {
    const issuer = createVaultIssuer(deps());
    await store.close();
    const before = vault.leases().length;
    const err = await refusal(issuer, request());
    expect(err.code).toBe('ERR_BACKEND_UNAVAILABLE');
    const issued = vault.leases().slice(before);
    expect(issued).toHaveLength(1);
    expect(issued[0]!.revokedAt).toBe(clock.now());
  });

  it('a secret without a lease (nothing Leash could revoke) is refused', async () => {
    await client.kvWrite('secret', 'static', { password: 'static-secret' });
    const issuer = createVaultIssuer(deps());
    const err = await refusal(issuer, request({ vault: { path: 'secret/data/static' } }));
    expect(err.code).toBe('ERR_UPSTREAM_TARGET_INVALID');
    expect(err.detail).toEqual({ vault_reason: 'no_lease', vault_status: undefined });
    expect(JSON.stringify(err.detail)).not.toContain('static-secret');
  });
});

describe("vault issuer: Vault failures map to OAuth errors without Vault's text", () => {
  it('Vault unreachable -> ERR_UPSTREAM_UNAVAILABLE', async () => {
    await vault.down();
    const err = await refusal(createVaultIssuer(deps()), request());
    expect(err.code).toBe('ERR_UPSTREAM_UNAVAILABLE');
    expect(err.detail).toEqual({ vault_reason: 'unreachable', vault_status: undefined });
    expectNoVaultText(err);
  });

  it('Vault sealed (503) -> ERR_UPSTREAM_UNAVAILABLE', async () => {
    vault.seal();
    const err = await refusal(createVaultIssuer(deps()), request());
    expect(err.code).toBe('ERR_UPSTREAM_UNAVAILABLE');
    expect(err.detail).toEqual({ vault_reason: 'sealed', vault_status: 503 });
    expectNoVaultText(err);
  });

  it('Vault 500 -> ERR_UPSTREAM_UNAVAILABLE, no retry (issuing is not idempotent)', async () => {
    vault.failNext('database/creds/crm-readonly', 500);
    const before = vault.callsTo('database/creds/crm-readonly').length;
    const err = await refusal(createVaultIssuer(deps()), request());
    expect(err.code).toBe('ERR_UPSTREAM_UNAVAILABLE');
    expect(err.detail).toEqual({ vault_reason: 'server', vault_status: 500 });
    expect(vault.callsTo('database/creds/crm-readonly').length - before).toBe(1);
    expectNoVaultText(err);
  });

  it("Leash's token may not read the path (403) -> ERR_UPSTREAM_REFUSED", async () => {
    const thin = vault.createToken({ capabilities: { 'sys/leases/revoke': ['update'] } });
    const issuer = createVaultIssuer(deps({ vault: () => createVaultClient({ address: vault.url, timeoutMs: 2000, token: () => thin }) }));
    const err = await refusal(issuer, request());
    expect(err.code).toBe('ERR_UPSTREAM_REFUSED');
    expect(err.detail).toEqual({ vault_reason: 'denied', vault_status: 403 });
    expectNoVaultText(err);
  });

  it('an unknown role (400) or engine (404) -> ERR_UPSTREAM_TARGET_INVALID', async () => {
    const unknownRole = await refusal(createVaultIssuer(deps()), request({ vault: { path: 'database/creds/nosuch' } }));
    expect(unknownRole.code).toBe('ERR_UPSTREAM_TARGET_INVALID');
    expect(unknownRole.detail).toEqual({ vault_reason: 'invalid', vault_status: 400 });
    expectNoVaultText(unknownRole);
    const noEngine = await refusal(createVaultIssuer(deps()), request({ vault: { path: 'nosuch/creds/x' } }));
    expect(noEngine.code).toBe('ERR_UPSTREAM_TARGET_INVALID');
    expect(noEngine.detail).toEqual({ vault_reason: 'not_found', vault_status: 404 });
    expectNoVaultText(noEngine);
  });

  it('nothing is recorded when Vault refuses', async () => {
    vault.seal();
    const before = (await store.dueLeases(clock.now() + 86_400_000, 1000)).length;
    await refusal(createVaultIssuer(deps()), request());
    expect((await store.dueLeases(clock.now() + 86_400_000, 1000)).length).toBe(before);
  });
});

describe('vault revoker: revoking the credential revokes the lease', () => {
  async function issueOne(): Promise<IssuedToken> {
    const { record } = await createVaultIssuer(deps()).issue(request());
    await store.recordIssued(record);
    return record;
  }

  it('revokes each lease in Vault, marks it, reports it once', async () => {
    const a = await issueOne();
    const b = await issueOne();
    const revoker = createVaultRevoker(deps());
    await revoker.revokeIssued([a, b], { actor: 'apikey:orchestrator', reason: 'task ended' });
    const leases = vault.leases().slice(-2);
    expect(leases.every((l) => l.revokedAt === clock.now())).toBe(true);
    expect(await store.leasesForTokens([a.jti, b.jti])).toEqual([]);
    expect(events.map((e) => [e.type, e.event['jti'], e.event['cause']]).sort()).toEqual(
      [
        ['vault.lease_revoked', a.jti, 'revocation'],
        ['vault.lease_revoked', b.jti, 'revocation'],
      ].sort(),
    );
    expect(events[0]!.event).toMatchObject({ actor: 'apikey:orchestrator', reason: 'task ended', plugin: 'crm-reader', task: TASK_ID });
    // twice is a no-op: nothing unrevoked is left to report
    await revoker.revokeIssued([a, b], { actor: 'apikey:orchestrator', reason: 'task ended' });
    expect(events).toHaveLength(2);
    expect((await metrics.vaultLeasesRevoked.get()).values.find((v) => v.labels.cause === 'revocation')?.value).toBe(2);
  });

  it('ignores credentials of other kinds', async () => {
    const revoker = createVaultRevoker(deps());
    const jwt: IssuedToken = { jti: 'j1', plugin: 'crm-reader', task: TASK_ID, audience: 'x', scopes: ['a'], kind: 'jwt', kid: 'k', issuedAt: 0, expiresAt: 1, jkt: undefined };
    const calls = vault.calls.length;
    await revoker.revokeIssued([jwt], { actor: 'a', reason: 'r' });
    expect(vault.calls.length).toBe(calls);
  });

  it('Vault down: does not throw, leaves the lease due for the sweeper, reports the failure without Vault text', async () => {
    const a = await issueOne();
    await vault.down();
    await createVaultRevoker(deps()).revokeIssued([a], { actor: 'apikey:orchestrator', reason: 'task ended' });
    expect(await store.leasesForTokens([a.jti])).toHaveLength(1);
    expect(events.map((e) => e.type)).toEqual(['vault.lease_revoke_failed']);
    expect(events[0]!.event).toMatchObject({ jti: a.jti, vault_reason: 'unreachable', cause: 'revocation' });
    expect(logs.some((l) => /lease sweeper/.test(l.msg))).toBe(true);
    expect(JSON.stringify(logs)).not.toContain('ECONNREFUSED');
    // the sweeper revokes it once Vault is back and the TTL passed
    await vault.up();
    clock.advance(301);
    const sweeper = new LeaseSweeper({ ...deps(), intervalMs: 1000 });
    expect(await sweeper.sweep()).toBe(1);
    expect(vault.leases().find((l) => l.leaseId === (events[0]!.event['lease_id'] as string))?.revokedAt).toBe(clock.now());
  });

  it('a store failure does not throw either', async () => {
    const a = await issueOne();
    await store.close();
    await expect(createVaultRevoker(deps()).revokeIssued([a], { actor: 'a', reason: 'r' })).resolves.toBeUndefined();
    expect(logs.some((l) => /lease sweeper/.test(l.msg))).toBe(true);
  });
});

describe('lease sweeper: leases whose grant TTL passed', () => {
  it('revokes due leases only, with cause ttl', async () => {
    const issuer = createVaultIssuer(deps());
    const short = await issuer.issue(request({ ttl: 60 }));
    const long = await issuer.issue(request({ ttl: 300 }));
    const sweeper = new LeaseSweeper({ ...deps(), intervalMs: 1000 });
    expect(await sweeper.sweep()).toBe(0);
    clock.advance(60);
    expect(await sweeper.sweep()).toBe(1);
    expect(events.map((e) => [e.type, e.event['jti'], e.event['cause'], e.event['actor']])).toEqual([['vault.lease_revoked', short.record.jti, 'ttl', 'system:lease-sweeper']]);
    expect(await store.leasesForTokens([long.record.jti])).toHaveLength(1);
    clock.advance(240);
    expect(await sweeper.sweep()).toBe(1);
    expect(await store.leasesForTokens([short.record.jti, long.record.jti])).toEqual([]);
  });

  it('Vault down: the lease stays due, the failure is audited once and counted every time, then revoked when Vault is back', async () => {
    const { record } = await createVaultIssuer(deps()).issue(request({ ttl: 60 }));
    clock.advance(61);
    await vault.down();
    const sweeper = new LeaseSweeper({ ...deps(), intervalMs: 1000 });
    expect(await sweeper.sweep()).toBe(0);
    expect(await sweeper.sweep()).toBe(0);
    expect(events.map((e) => e.type)).toEqual(['vault.lease_revoke_failed']);
    expect((await metrics.vaultLeaseRevokeFailures.get()).values.find((v) => v.labels.reason === 'unreachable')?.value).toBe(2);
    await vault.up();
    expect(await sweeper.sweep()).toBe(1);
    expect(events.map((e) => e.type)).toEqual(['vault.lease_revoke_failed', 'vault.lease_revoked']);
    expect(await store.leasesForTokens([record.jti])).toEqual([]);
  });

  it('works through more than one batch', async () => {
    const issuer = createVaultIssuer(deps());
    for (let i = 0; i < 105; i++) await issuer.issue(request({ ttl: 60 }));
    clock.advance(60);
    expect(await new LeaseSweeper({ ...deps(), intervalMs: 1000 }).sweep()).toBe(105);
    expect(await store.dueLeases(clock.now(), 1000)).toEqual([]);
  });

  it('a lease Vault already forgot counts as revoked', async () => {
    const { record } = await createVaultIssuer(deps()).issue(request({ ttl: 60 }));
    const [lease] = await store.leasesForTokens([record.jti]);
    await client.revokeLease(lease!.leaseId);
    clock.advance(60);
    expect(await new LeaseSweeper({ ...deps(), intervalMs: 1000 }).sweep()).toBe(1);
  });
});

describe('the same lease lifecycle on the Redis store', () => {
  const run = redisAvailable('vault leases on Redis') ? it : it.skip;
  run(
    'issue records the lease, the revoker revokes it, the sweeper revokes a due one, each audited once',
    async () => {
      const redis = await startRedis();
      const rstore = await openRedisStore({ url: redis.url, keyPrefix: `vault-${process.pid}:`, clock });
      try {
        const d = deps({ leases: rstore });
        const issuer = createVaultIssuer(d);
        const a = await issuer.issue(request({ ttl: 300 }));
        const b = await issuer.issue(request({ ttl: 60 }));
        expect((await rstore.leasesForTokens([a.record.jti, b.record.jti])).map((l) => l.jti).sort()).toEqual([a.record.jti, b.record.jti].sort());
        await createVaultRevoker(d).revokeIssued([a.record], { actor: 'apikey:ops', reason: 'drill' });
        clock.advance(60);
        const sweeper = new LeaseSweeper({ ...d, intervalMs: 1000 });
        expect(await sweeper.sweep()).toBe(1);
        expect(await sweeper.sweep()).toBe(0);
        expect(await rstore.leasesForTokens([a.record.jti, b.record.jti])).toEqual([]);
        expect(events.map((e) => [e.event['jti'], e.event['cause']])).toEqual([
          [a.record.jti, 'revocation'],
          [b.record.jti, 'ttl'],
        ]);
        const byId = new Map(vault.leases().map((l) => [l.leaseId, l]));
        for (const e of events) expect(byId.get(e.event['lease_id'] as string)?.revokedAt).toBeDefined();
      } finally {
        await rstore.close();
        await redis.cleanup();
      }
    },
    20_000,
  );
});
