import { afterAll, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TOKEN_TYPE_ACCESS_TOKEN, TOKEN_TYPE_VAULT_SECRET } from '../../src/formats/token-types.js';
import type { AuditRecord } from '../../src/store/records.js';
import { ManualClock } from '../../src/time/clock.js';
import { EXCHANGE, JWT_TYPE, OPS_KEY, ORCHESTRATOR_KEY, startTestBroker, type TestBroker } from '../support/broker.js';
import { TestCluster } from '../support/cluster.js';
import { startVaultContract, type ContractLease, type VaultContract } from '../support/vault-contract.js';

/**
 * End to end: a plugin exchanges its attestation for a Vault dynamic secret through the real
 * broker over HTTP; Leash talks to the Vault contract server through the real node-vault
 * client with its own session. The lease follows the task, the plugin and the grant's TTL.
 */

const DB_AUDIENCE = 'vault:crm-db';
const TOKEN_ENV = 'LEASH_VAULT_BROKER_TEST_TOKEN';

const clock = new ManualClock(Date.now());
let vault: VaultContract;
let cluster: TestCluster;
let dir: string;
let tb: TestBroker;
const logs: string[] = [];

function patch(cfg: Record<string, any>): void {
  cfg.settings.vault = { address: vault.url, timeout_ms: 5000, auth: { method: 'token', token_env: TOKEN_ENV } };
  // The sweeper is driven by hand below (ManualClock); its timer must not race the tests.
  cfg.settings.revocation = { ...(cfg.settings.revocation ?? {}), sweep_interval_ms: 60_000 };
  cfg.plugins.push({
    id: 'db-reader',
    owner: 'team-data@example.com',
    risk: 'medium',
    bindings: [{ issuer: 'test-cluster', subject: 'system:serviceaccount:plugins:db-reader' }],
    grants: [{ audience: DB_AUDIENCE, scopes: ['db:read'], kind: 'vault', effect: 'read', max_ttl: 300, vault: { path: 'database/creds/crm-readonly' } }],
  });
}

async function start(): Promise<TestBroker> {
  return startTestBroker({ dir, cluster, patch, broker: { clock, write: (line) => void logs.push(line) } });
}

beforeAll(async () => {
  vault = await startVaultContract({ now: () => clock.now(), roles: { database: ['crm-readonly'] } });
  process.env[TOKEN_ENV] = vault.rootToken;
  cluster = await TestCluster.create();
  dir = await mkdtemp(join(tmpdir(), 'leash-vault-broker-'));
  tb = await start();
});

afterAll(async () => {
  await tb?.close();
  await vault?.close();
  delete process.env[TOKEN_ENV];
  await rm(dir, { recursive: true, force: true });
});

beforeEach(async () => {
  await vault.up();
  vault.unseal();
});

async function openTask(): Promise<string> {
  return tb.openTask({ plugins: ['db-reader'], ttl_seconds: 900 });
}

async function exchange(task: string, extra: Record<string, string> = {}) {
  return tb.exchange({
    grant_type: EXCHANGE,
    client_id: 'db-reader',
    subject_token: await cluster.saToken({ sa: 'db-reader', nowSeconds: Math.floor(clock.now() / 1000) }),
    subject_token_type: JWT_TYPE,
    audience: DB_AUDIENCE,
    task,
    ...extra,
  });
}

/** The contract lease behind an issued secret (matched by the secret it handed out). */
function leaseOf(body: Record<string, unknown>): ContractLease {
  const data = (body.vault_secret as { data: Record<string, unknown> }).data;
  const lease = vault.leases().find((l) => l.data['password'] === data['password']);
  if (!lease) throw new Error('no contract lease handed out this secret');
  return lease;
}

async function auditChain(): Promise<AuditRecord[]> {
  return tb.broker.testing.store.read(0, 100_000);
}

async function eventsOf(type: string, jti: string): Promise<AuditRecord[]> {
  return (await auditChain()).filter((r) => r.type === type && r.event['jti'] === jti);
}

describe('vault grants through the broker', () => {
  it('exchanges an attestation for a dynamic secret: RFC 8693 body, lease live in Vault, audited without the secret', async () => {
    const task = await openTask();
    const res = await exchange(task, { requested_token_type: TOKEN_TYPE_VAULT_SECRET });
    expect(res.status).toBe(200);
    expect(res.headers.get('cache-control')).toContain('no-store');
    const body = res.body;
    const lease = leaseOf(body);
    expect(body).toEqual({
      access_token: expect.stringMatching(/^vault:[A-Za-z0-9_-]{22}$/),
      issued_token_type: TOKEN_TYPE_VAULT_SECRET,
      token_type: 'N_A',
      expires_in: 300,
      vault_secret: { data: lease.data, lease_duration: 300, renewable: false },
    });
    expect(lease.revokedAt).toBeUndefined();
    expect(lease.path).toBe('database/creds/crm-readonly');

    const jti = body.access_token as string;
    const [issued] = await eventsOf('exchange.issued', jti);
    expect(issued?.event).toMatchObject({ decision: 'issued', plugin: 'db-reader', task, audience: DB_AUDIENCE, kind: 'vault', jti });
    // nothing in the whole chain carries the password
    const password = String(lease.data['password']);
    expect(JSON.stringify(await auditChain())).not.toContain(password);
    expect(logs.join('')).not.toContain(password);
    expect(await tb.broker.testing.store.getIssued(jti)).toMatchObject({ kind: 'vault', plugin: 'db-reader', task });
    expect(JSON.stringify(await tb.broker.testing.store.getIssued(jti))).not.toContain(password);
  });

  it('refuses a requested_token_type of another kind', async () => {
    const task = await openTask();
    const before = vault.leases().length;
    const res = await exchange(task, { requested_token_type: TOKEN_TYPE_ACCESS_TOKEN });
    expect(res.status).toBe(400);
    expect(res.body.access_token).toBeUndefined();
    expect(vault.leases().length).toBe(before);
  });

  it('ending the task revokes the lease in Vault', async () => {
    const task = await openTask();
    const res = await exchange(task);
    expect(res.status).toBe(200);
    const lease = leaseOf(res.body);
    const end = await fetch(`${tb.url}/tasks/${task}`, { method: 'DELETE', headers: { authorization: `Bearer ${ORCHESTRATOR_KEY}` } });
    expect(end.status).toBe(200);
    expect(lease.revokedAt).toBe(clock.now());
    const [event] = await eventsOf('vault.lease_revoked', res.body.access_token as string);
    expect(event?.event).toMatchObject({ cause: 'revocation', reason: 'task ended', actor: 'apikey:orchestrator', lease_id: lease.leaseId, plugin: 'db-reader', task });
  });

  it('revoking the credential by jti (POST /admin/revocations) revokes its lease', async () => {
    const task = await openTask();
    const res = await exchange(task);
    const lease = leaseOf(res.body);
    const revoke = await fetch(`${tb.url}/admin/revocations`, {
      method: 'POST',
      headers: { authorization: `Bearer ${OPS_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ scope: 'token', id: res.body.access_token, reason: 'leaked in a log' }),
    });
    expect(revoke.status).toBe(201);
    expect(lease.revokedAt).toBe(clock.now());
    const [event] = await eventsOf('vault.lease_revoked', res.body.access_token as string);
    expect(event?.event).toMatchObject({ cause: 'revocation', actor: 'apikey:ops', reason: 'leaked in a log' });
  });

  it('Vault down when the task ends: the task still ends, the failure is audited, the sweeper revokes the lease at its TTL', async () => {
    const task = await openTask();
    const res = await exchange(task);
    const lease = leaseOf(res.body);
    const jti = res.body.access_token as string;
    await vault.down();
    const end = await fetch(`${tb.url}/tasks/${task}`, { method: 'DELETE', headers: { authorization: `Bearer ${ORCHESTRATOR_KEY}` } });
    expect(end.status).toBe(200);
    expect(lease.revokedAt).toBeUndefined();
    const [failed] = await eventsOf('vault.lease_revoke_failed', jti);
    expect(failed?.event).toMatchObject({ cause: 'revocation', vault_reason: 'unreachable' });
    await vault.up();
    clock.advance(300);
    await tb.broker.leaseSweeper!.sweep();
    expect(lease.revokedAt).toBe(clock.now());
    expect(await eventsOf('vault.lease_revoked', jti)).toHaveLength(1);
  });

  it('suspending the plugin revokes its leases', async () => {
    const task = await openTask();
    const res = await exchange(task);
    const lease = leaseOf(res.body);
    const admin = (action: string, reason: string) =>
      fetch(`${tb.url}/admin/plugins/db-reader/${action}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${OPS_KEY}`, 'content-type': 'application/json' },
        body: JSON.stringify({ reason }),
      });
    try {
      expect((await admin('suspend', 'drill')).status).toBe(200);
      expect(lease.revokedAt).toBe(clock.now());
      expect(await eventsOf('vault.lease_revoked', res.body.access_token as string)).toHaveLength(1);
      // while suspended, nothing is issued
      const before = vault.leases().length;
      expect((await exchange(task)).status).toBe(400);
      expect(vault.leases().length).toBe(before);
    } finally {
      // later tests need the plugin live
      expect((await admin('resume', 'drill over')).status).toBe(200);
    }
  });

  it('the lease sweeper revokes the lease once the grant TTL passed', async () => {
    const task = await openTask();
    const res = await exchange(task);
    const lease = leaseOf(res.body);
    clock.advance(299);
    await tb.broker.leaseSweeper!.sweep();
    expect(lease.revokedAt).toBeUndefined();
    clock.advance(1);
    await tb.broker.leaseSweeper!.sweep();
    expect(lease.revokedAt).toBe(clock.now());
    const [event] = await eventsOf('vault.lease_revoked', res.body.access_token as string);
    expect(event?.event).toMatchObject({ cause: 'ttl', actor: 'system:lease-sweeper' });
    const metric = (await tb.broker.metrics.vaultLeasesRevoked.get()).values.find((v) => v.labels.cause === 'ttl');
    expect(metric?.value).toBeGreaterThanOrEqual(1);
  });

  it('Vault down: 503 temporarily_unavailable, no token, no Vault text', async () => {
    const task = await openTask();
    await vault.down();
    const res = await exchange(task);
    expect(res.status).toBe(503);
    expect(res.body.error).toBe('temporarily_unavailable');
    expect(res.body.access_token).toBeUndefined();
    expect(res.body.vault_secret).toBeUndefined();
    expect(JSON.stringify(res.body)).not.toMatch(/ECONNREFUSED|127\.0\.0\.1|unreachable|sys\/|database\/creds/i);
    const denied = (await auditChain()).filter((r) => r.type === 'exchange.denied').at(-1);
    expect(denied?.event).toMatchObject({ reason: 'ERR_UPSTREAM_UNAVAILABLE', detail: { vault_reason: 'unreachable' } });
    expect(JSON.stringify(denied?.event)).not.toContain('ECONNREFUSED');
  });

  it('Vault sealed: 503 temporarily_unavailable without "sealed"', async () => {
    const task = await openTask();
    vault.seal();
    const res = await exchange(task);
    expect(res.status).toBe(503);
    expect(res.body.error).toBe('temporarily_unavailable');
    expect(JSON.stringify(res.body)).not.toMatch(/sealed/i);
  });

  it("Vault 403: invalid_target without Vault's text, no token", async () => {
    const task = await openTask();
    vault.failNext('database/creds/crm-readonly', 403);
    const res = await exchange(task);
    expect(res.status).toBe(400);
    expect(res.body.error).toBe('invalid_target');
    expect(res.body.access_token).toBeUndefined();
    expect(JSON.stringify(res.body)).not.toMatch(/permission denied/i);
  });

  it("Vault 400 (unknown role): invalid_target without Vault's text", async () => {
    const task = await openTask();
    vault.failNext('database/creds/crm-readonly', 400);
    const res = await exchange(task);
    expect(res.status).toBe(400);
    expect(res.body.error).toBe('invalid_target');
    expect(JSON.stringify(res.body)).not.toMatch(/injected|fault/i);
  });
});

describe('vault leases across a restart', () => {
  it('a lease that fell due while Leash was down is revoked at startup', async () => {
    const task = await openTask();
    const res = await exchange(task);
    expect(res.status).toBe(200);
    const lease = leaseOf(res.body);
    await tb.close({ keepDir: true });
    clock.advance(301);
    tb = await start();
    expect(lease.revokedAt).toBe(clock.now());
    const [event] = await eventsOf('vault.lease_revoked', res.body.access_token as string);
    expect(event?.event).toMatchObject({ cause: 'ttl' });
  });
});
