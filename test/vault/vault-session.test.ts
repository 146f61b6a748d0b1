import { describe, it, expect, beforeEach, afterEach } from '@jest/globals';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import type { VaultSettingsConfig } from '../../src/config/schema.js';
import { ManualClock } from '../../src/time/clock.js';
import { checkCapabilities, openVaultSession, VaultStartupError, type RenewalScheduler, type VaultSession } from '../../src/vault/vault-session.js';
import { startVaultContract, type TokenSpec, type VaultContract, type VaultContractOptions } from '../support/vault-contract.js';
import { waitFor } from '../support/wait.js';

/** Timers fired by hand: the test moves the clock, then fires what is due. */
class ManualScheduler implements RenewalScheduler {
  readonly pending = new Set<{ fn: () => void; delayMs: number }>();
  set(fn: () => void, delayMs: number): unknown {
    const h = { fn, delayMs };
    this.pending.add(h);
    return h;
  }
  clear(handle: unknown): void {
    this.pending.delete(handle as { fn: () => void; delayMs: number });
  }
  /** The single pending delay (a session keeps at most one timer). */
  get delay(): number | undefined {
    expect(this.pending.size).toBeLessThanOrEqual(1);
    return [...this.pending][0]?.delayMs;
  }
  /** Advances the clock by the pending delay and fires it; resolves when the refresh is done. */
  async fire(clock: ManualClock, session: VaultSession): Promise<void> {
    const h = [...this.pending][0];
    if (!h) throw new Error('nothing scheduled');
    this.pending.delete(h);
    clock.advance(h.delayMs / 1000);
    h.fn();
    await session.refresh(); // joins the refresh the timer started
  }
}

const SECRET_ID = 'approle-secret-id-value-0123456789';
const SA_JWT_1 = 'eyJhbGciOiJSUzI1NiJ9.sa-token-one.sig';
const SA_JWT_2 = 'eyJhbGciOiJSUzI1NiJ9.sa-token-two.sig';

function settings(c: { url: string }, auth: Partial<VaultSettingsConfig['auth']> = {}): VaultSettingsConfig {
  return {
    address: c.url,
    timeout_ms: 1000,
    auth: { method: 'token', token_env: 'LEASH_VAULT_TOKEN', secret_id_env: 'LEASH_SECRET_ID', jwt_file: '/nonexistent', ...auth },
  };
}

async function startupError(p: Promise<unknown>): Promise<VaultStartupError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof VaultStartupError) return err;
    throw new Error(`expected a VaultStartupError, got ${inspect(err)}`, { cause: err });
  }
  throw new Error('expected a rejection');
}

describe('Vault session', () => {
  let clock: ManualClock;
  let scheduler: ManualScheduler;
  let c: VaultContract;
  let logs: { msg: string; fields: Record<string, unknown> | undefined }[];
  let sessions: VaultSession[];
  let dir: string;
  const log = (msg: string, fields?: Record<string, unknown>) => void logs.push({ msg, fields });

  async function contract(opts: VaultContractOptions = {}): Promise<VaultContract> {
    c = await startVaultContract({ now: () => clock.now(), ...opts });
    return c;
  }

  async function open(s: VaultSettingsConfig, env: Record<string, string> = {}): Promise<VaultSession> {
    const session = await openVaultSession(s, { clock, log, env, scheduler, backoff: { initialMs: 1000, maxMs: 8000 } });
    sessions.push(session);
    return session;
  }

  const approle = (token: TokenSpec = {}) => contract({ approle: { roleId: 'leash-role', secretId: SECRET_ID, token } });

  beforeEach(() => {
    clock = new ManualClock();
    scheduler = new ManualScheduler();
    logs = [];
    sessions = [];
    dir = mkdtempSync(join(tmpdir(), 'leash-vault-'));
  });
  afterEach(async () => {
    sessions.forEach((s) => s.close());
    await c?.close();
    rmSync(dir, { recursive: true, force: true });
    // nothing logged ever carries a credential
    const text = JSON.stringify(logs);
    for (const secret of [SECRET_ID, SA_JWT_1, SA_JWT_2, c?.rootToken ?? 'x']) expect(text.includes(secret)).toBe(false);
    expect(text).not.toMatch(/hvs\./);
  });

  describe('login', () => {
    it('token: uses the token from the named environment variable', async () => {
      await contract();
      const t = c.createToken({ ttl: 600 });
      const s = await open(settings(c), { LEASH_VAULT_TOKEN: t });
      await s.client.kvWrite('secret', 'a', { x: 1 });
      expect(s.status()).toMatchObject({ method: 'token', authenticated: true, renewable: true, logins: 1, expiresAt: clock.now() + 600_000 });
      expect(JSON.stringify(s.status())).not.toContain(t);
    });

    it('token: a root token that never expires schedules nothing', async () => {
      await contract();
      const s = await open(settings(c), { LEASH_VAULT_TOKEN: c.rootToken });
      expect(s.status()).toMatchObject({ expiresAt: undefined, nextAttemptAt: undefined });
      expect(scheduler.pending.size).toBe(0);
    });

    it('token: names the empty variable, a refused token, and an unreachable Vault', async () => {
      await contract();
      const empty = await startupError(open(settings(c), {}));
      expect(empty.message).toContain('LEASH_VAULT_TOKEN');
      expect(empty.message).toContain(c.url);

      const expired = c.createToken({ ttl: 10 });
      clock.advance(11);
      const refused = await startupError(open(settings(c), { LEASH_VAULT_TOKEN: expired }));
      expect(refused.message).toMatch(/refused the credentials/);
      expect(refused.message).toContain(c.url);
      expect(inspect(refused, { depth: 8 })).not.toContain(expired);

      await c.down();
      const down = await startupError(open(settings(c), { LEASH_VAULT_TOKEN: c.rootToken }));
      expect(down.message).toMatch(new RegExp(`Vault at ${c.url.replace(/[.]/g, '\\.')} is unreachable \\((ECONNREFUSED|ECONNRESET)\\)`)); // RESET: a pooled keep-alive socket
      expect(inspect(down, { depth: 8 })).not.toContain(c.rootToken);
    });

    it('a sealed Vault fails startup naming it', async () => {
      await contract();
      c.seal();
      expect((await startupError(open(settings(c), { LEASH_VAULT_TOKEN: c.rootToken }))).message).toMatch(/sealed/);
    });

    it('approle: logs in with role_id and the secret id from the environment', async () => {
      await approle({ ttl: 300, capabilities: { 'secret/data/*': ['create', 'read', 'update'] } });
      const s = await open(settings(c, { method: 'approle', role_id: 'leash-role' }), { LEASH_SECRET_ID: SECRET_ID });
      await s.client.kvWrite('secret', 'k', { v: 1 });
      expect(c.callsTo('auth/approle/login')).toEqual([expect.objectContaining({ method: 'POST', authenticated: false, status: 200 })]);
      expect(s.status()).toMatchObject({ method: 'approle', logins: 1, expiresAt: clock.now() + 300_000 });
    });

    it('approle: a wrong secret id, a missing one, a missing role_id are startup errors without the secret', async () => {
      await approle();
      const wrong = await startupError(open(settings(c, { method: 'approle', role_id: 'leash-role' }), { LEASH_SECRET_ID: 'nope-' + SECRET_ID }));
      expect(wrong.message).toMatch(/refused the login \(400 invalid role or secret ID\): approle login at auth\/approle\/login/);
      expect(inspect(wrong, { depth: 8 })).not.toContain(SECRET_ID);
      expect((await startupError(open(settings(c, { method: 'approle', role_id: 'leash-role' }), {}))).message).toContain('LEASH_SECRET_ID');
      expect((await startupError(open(settings(c, { method: 'approle' }), { LEASH_SECRET_ID: SECRET_ID }))).message).toContain('role_id');
    });

    it('approle: honours a custom mount', async () => {
      await contract({ approle: { mount: 'apps/approle', roleId: 'r', secretId: SECRET_ID } });
      await open(settings(c, { method: 'approle', role_id: 'r', mount: 'apps/approle' }), { LEASH_SECRET_ID: SECRET_ID });
      expect(c.callsTo('auth/apps/approle/login')).toHaveLength(1);
    });

    it('kubernetes: logs in with the role and the JWT read from the file, re-read at each login', async () => {
      const jwtFile = join(dir, 'token');
      writeFileSync(jwtFile, `${SA_JWT_1}\n`);
      const accepted = new Set([SA_JWT_1]);
      await contract({ kubernetes: { role: 'leash', jwt: (j) => accepted.has(j), token: { ttl: 60, renewable: false } } });
      const s = await open(settings(c, { method: 'kubernetes', role: 'leash', jwt_file: jwtFile }));
      expect(s.status()).toMatchObject({ method: 'kubernetes', logins: 1 });
      // the kubelet rotated the projected token; the old one is no longer accepted
      writeFileSync(jwtFile, SA_JWT_2);
      accepted.clear();
      accepted.add(SA_JWT_2);
      await scheduler.fire(clock, s); // not renewable: the slot is a fresh login
      expect(s.status()).toMatchObject({ logins: 2, consecutiveFailures: 0, authenticated: true });
      await s.client.lookupSelf();
    });

    it('kubernetes: a wrong role, a refused JWT and a missing file are startup errors', async () => {
      const jwtFile = join(dir, 'token');
      writeFileSync(jwtFile, SA_JWT_1);
      await contract({ kubernetes: { role: 'leash', jwt: SA_JWT_2 } });
      expect((await startupError(open(settings(c, { method: 'kubernetes', role: 'other', jwt_file: jwtFile })))).message).toMatch(/refused the login \(400 invalid role name/);
      const refused = await startupError(open(settings(c, { method: 'kubernetes', role: 'leash', jwt_file: jwtFile })));
      expect(refused.message).toMatch(/refused the credentials/);
      expect(inspect(refused, { depth: 8 })).not.toContain(SA_JWT_1);
      expect((await startupError(open(settings(c, { method: 'kubernetes', role: 'leash', jwt_file: join(dir, 'missing') })))).message).toMatch(
        /cannot read the service-account token file .*missing \(ENOENT\)/,
      );
    });
  });

  describe('renewal', () => {
    it('renews at 2/3 of the TTL, and the token lives on', async () => {
      await approle({ ttl: 60 });
      const s = await open(settings(c, { method: 'approle', role_id: 'leash-role' }), { LEASH_SECRET_ID: SECRET_ID });
      expect(scheduler.delay).toBe(40_000);
      for (let i = 1; i <= 3; i++) {
        await scheduler.fire(clock, s);
        expect(s.status()).toMatchObject({ renewals: i, logins: 1, authenticated: true, expiresAt: clock.now() + 60_000 });
        expect(scheduler.delay).toBe(40_000);
      }
      // 120 s after login the token still works: renewed, not replaced
      expect(c.callsTo('auth/token/renew-self')).toHaveLength(3);
      expect(c.callsTo('auth/approle/login')).toHaveLength(1);
      await s.client.kvWrite('secret', 'still', { ok: true });
    });

    it('a static token is renewed too', async () => {
      await contract();
      const t = c.createToken({ ttl: 30 });
      const s = await open(settings(c), { LEASH_VAULT_TOKEN: t });
      expect(scheduler.delay).toBe(20_000);
      await scheduler.fire(clock, s);
      expect(c.tokenTtl(t)).toBe(30);
      expect(s.status().renewals).toBe(1);
    });

    it('logs in again when renewal is refused (token revoked behind Leash)', async () => {
      await approle({ ttl: 60 });
      const s = await open(settings(c, { method: 'approle', role_id: 'leash-role' }), { LEASH_SECRET_ID: SECRET_ID });
      const first = c.callsTo('auth/approle/login').length;
      const before = (await s.client.lookupSelf()).ttl;
      expect(before).toBe(60);
      c.failNext('auth/token/renew-self', 403); // as Vault answers for a revoked token
      await scheduler.fire(clock, s);
      expect(s.status()).toMatchObject({ logins: 2, renewals: 0, consecutiveFailures: 0 });
      expect(c.callsTo('auth/approle/login').length).toBe(first + 1);
      await s.client.kvWrite('secret', 'after-relogin', { ok: true });
      expect(logs.some((l) => l.msg === 'vault: logged in again' && l.fields?.['why'] === 'renewal refused (denied)')).toBe(true);
    });

    it('logs in again before the max TTL ends a token', async () => {
      await approle({ ttl: 60, maxTtl: 100 });
      const s = await open(settings(c, { method: 'approle', role_id: 'leash-role' }), { LEASH_SECRET_ID: SECRET_ID });
      await scheduler.fire(clock, s); // t=40: renewed to 60 s (cap at t=100)
      expect(s.status()).toMatchObject({ renewals: 1, logins: 1, expiresAt: clock.now() + 60_000 });
      await scheduler.fire(clock, s); // t=80: capped to 20 s: plan a fresh login halfway
      expect(s.status()).toMatchObject({ renewals: 2, logins: 1, expiresAt: clock.now() + 20_000 });
      expect(scheduler.delay).toBe(10_000);
      await scheduler.fire(clock, s); // t=90: new login, full TTL
      expect(s.status()).toMatchObject({ renewals: 2, logins: 2, expiresAt: clock.now() + 60_000, authenticated: true });
      await s.client.lookupSelf();
    });

    it('backs off while Vault is down, recovers when it is back', async () => {
      await approle({ ttl: 60 });
      const s = await open(settings(c, { method: 'approle', role_id: 'leash-role' }), { LEASH_SECRET_ID: SECRET_ID });
      await c.down();
      await scheduler.fire(clock, s); // t=40
      expect(s.status()).toMatchObject({ consecutiveFailures: 1, lastFailure: 'unreachable', authenticated: true });
      expect(scheduler.delay).toBe(1000);
      await scheduler.fire(clock, s);
      expect(scheduler.delay).toBe(2000);
      await scheduler.fire(clock, s);
      expect(scheduler.delay).toBe(4000);
      expect(s.status().consecutiveFailures).toBe(3);
      await c.up();
      await scheduler.fire(clock, s);
      expect(s.status()).toMatchObject({ consecutiveFailures: 0, renewals: 1, logins: 1, lastFailure: undefined });
      expect(logs.filter((l) => l.msg === 'vault: token renewal failed; retrying')).toHaveLength(3);
    });

    it('an outage longer than the TTL ends in a fresh login once Vault is back', async () => {
      await approle({ ttl: 60 });
      const s = await open(settings(c, { method: 'approle', role_id: 'leash-role' }), { LEASH_SECRET_ID: SECRET_ID });
      c.seal();
      await scheduler.fire(clock, s); // t=40
      clock.advance(30); // t=70: the token expired during the outage
      expect(s.status().authenticated).toBe(false);
      c.unseal();
      await scheduler.fire(clock, s);
      expect(s.status()).toMatchObject({ authenticated: true, logins: 2, consecutiveFailures: 0 });
      await s.client.lookupSelf();
    });

    it('close() stops renewing', async () => {
      await approle({ ttl: 60 });
      const s = await open(settings(c, { method: 'approle', role_id: 'leash-role' }), { LEASH_SECRET_ID: SECRET_ID });
      expect(scheduler.pending.size).toBe(1);
      s.close();
      expect(scheduler.pending.size).toBe(0);
      await s.refresh();
      expect(c.callsTo('auth/token/renew-self')).toHaveLength(0);
    });

    it('with real timers, a short-lived token is renewed before it expires', async () => {
      c = await startVaultContract({ approle: { roleId: 'r', secretId: SECRET_ID, token: { ttl: 2 } } });
      const s = await openVaultSession(settings(c, { method: 'approle', role_id: 'r' }), { clock: { now: () => Date.now() }, log, env: { LEASH_SECRET_ID: SECRET_ID } });
      sessions.push(s);
      await waitFor(async () => s.status().renewals >= 1, 5000);
      expect(c.callsTo('auth/token/renew-self')[0]!.status).toBe(200);
      await s.client.lookupSelf();
    });
  });

  describe('checkCapabilities', () => {
    it('passes for a token with what is needed, and for root', async () => {
      await contract();
      const t = c.createToken({ capabilities: { 'transit/sign/leash*': ['update'], 'transit/keys/leash': ['read', 'create', 'update'] } });
      const s = await open(settings(c), { LEASH_VAULT_TOKEN: t });
      await checkCapabilities(s.client, [
        { path: 'transit/sign/leash/sha2-256', capabilities: ['update'] },
        { path: 'transit/keys/leash', capabilities: ['read', 'update'] },
      ]);
      const r = await open(settings(c), { LEASH_VAULT_TOKEN: c.rootToken });
      await checkCapabilities(r.client, [{ path: 'anything/at/all', capabilities: ['sudo', 'delete'] }]);
    });

    it('names each missing capability and its path', async () => {
      await contract();
      const t = c.createToken({ capabilities: { 'transit/keys/leash': ['read'], 'secret/data/leash/*': ['deny'] } });
      const s = await open(settings(c), { LEASH_VAULT_TOKEN: t });
      const err = await startupError(
        checkCapabilities(
          s.client,
          [
            { path: 'transit/keys/leash', capabilities: ['read', 'update'] },
            { path: 'transit/sign/leash/sha2-256', capabilities: ['update'] },
            { path: 'secret/data/leash/keys', capabilities: ['read'] },
          ],
          c.url,
        ),
      );
      expect(err.message).toBe(`Vault at ${c.url}: Leash's token lacks capabilities: 'update' on transit/keys/leash, 'update' on transit/sign/leash/sha2-256, 'read' on secret/data/leash/keys`);
    });

    it('a Vault that cannot answer is a startup error too', async () => {
      await contract();
      const s = await open(settings(c), { LEASH_VAULT_TOKEN: c.rootToken });
      c.failNext('sys/capabilities-self', 503);
      expect((await startupError(checkCapabilities(s.client, [{ path: 'x', capabilities: ['read'] }], c.url))).message).toMatch(/sealed.*capabilities/);
    });
  });
});
