import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createHash } from 'node:crypto';
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify, type JSONWebKeySet } from 'jose';
import { ManualClock } from '../../src/time/clock.js';
import { CRM_API, EXCHANGE, JWT_TYPE, OPS_KEY, startTestBroker, type TestBroker } from '../support/broker.js';
import { waitFor } from '../support/wait.js';

const CRM_RS_SECRET = 'crm-api-secret-0123456789';
const sha = (s: string) => createHash('sha256').update(s, 'utf8').digest('hex');
const CLIENTS = 6;
const ROTATIONS = 5;

interface Issued {
  readonly token: string;
  readonly kid: string;
  readonly exp: number;
}

/**
 * Routine rotation must be invisible to clients and resource servers: exchanges run from
 * several concurrent clients while keys rotate through the admin API, and every token is
 * checked against the JWKS a resource server would fetch right then. An emergency revoke is
 * the opposite on purpose: the key's tokens die at once.
 */
describe('key rotation under load (local backend, prepublish 0)', () => {
  let tb: TestBroker;
  const clock = new ManualClock(Date.now());
  const issued: Issued[] = [];
  const nowS = () => Math.floor(clock.now() / 1000);

  beforeAll(async () => {
    tb = await startTestBroker({
      broker: { clock },
      patch: (cfg) => {
        // prepublish 0: each rotation may promote at once (next was published by the previous one).
        cfg.settings.keys = { ...cfg.settings.keys, prepublish: 0, max_published: 10, refresh_interval_ms: 200 };
        cfg.resource_servers = [{ id: 'crm-api', audiences: [CRM_API], client_secret_sha256: sha(CRM_RS_SECRET) }];
      },
    });
  });
  afterAll(async () => tb.close());

  const admin = async (path: string, key: string, body: unknown) => {
    const res = await fetch(`${tb.url}${path}`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
    return { status: res.status, json: (await res.json()) as Record<string, any> };
  };
  const jwks = async () => (await (await fetch(`${tb.url}/jwks`)).json()) as JSONWebKeySet;
  const verify = async (token: string, set: JSONWebKeySet) =>
    jwtVerify(token, createLocalJWKSet(set), { issuer: tb.url, audience: CRM_API, typ: 'at+jwt', currentDate: new Date(clock.now()) });
  const introspect = async (token: string) => {
    const res = await fetch(`${tb.url}/introspect`, {
      method: 'POST',
      headers: { authorization: `Basic ${Buffer.from(`crm-api:${CRM_RS_SECRET}`).toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ token }),
    });
    expect(res.status).toBe(200);
    return ((await res.json()) as { active: boolean }).active;
  };

  it(`serves ${CLIENTS} concurrent clients with zero failures through ${ROTATIONS} rotations; every token verifies against the JWKS fetched right after it`, async () => {
    const task = await tb.openTask({ plugins: ['crm-reader'], ttl_seconds: 7200 });
    let stop = false;
    const failures: string[] = [];
    const client = async (n: number) => {
      while (!stop) {
        const res = await tb.exchange({
          grant_type: EXCHANGE,
          client_id: 'crm-reader',
          subject_token: await tb.cluster.saToken({ nowSeconds: nowS() }),
          subject_token_type: JWT_TYPE,
          resource: CRM_API,
          task,
        });
        if (res.status !== 200) {
          failures.push(`client ${n}: exchange ${res.status} ${JSON.stringify(res.body)}`);
          continue;
        }
        const token = res.body.access_token as string;
        // What a resource server does on a token with a kid it may not know: fetch the JWKS now.
        const set = await jwks();
        try {
          const { payload } = await verify(token, set);
          issued.push({ token, kid: decodeProtectedHeader(token).kid as string, exp: payload.exp as number });
        } catch (err) {
          failures.push(`client ${n}: token with kid ${decodeProtectedHeader(token).kid} did not verify against the JWKS fetched after it: ${(err as Error).message}`);
        }
      }
    };
    const running = Array.from({ length: CLIENTS }, (_, i) => client(i));
    const signers: string[] = [];
    try {
      await waitFor(async () => issued.length >= 20, 20000);
      for (let r = 0; r < ROTATIONS; r++) {
        const before = issued.length;
        signers.push(tb.broker.testing.keys.current().kid);
        const res = await admin('/admin/keys/rotate', OPS_KEY, { reason: `routine rotation ${r + 1}` });
        expect(res.status).toBe(200);
        // Let the load run on the new key before the next rotation.
        await waitFor(async () => issued.length >= before + 20, 20000);
      }
      signers.push(tb.broker.testing.keys.current().kid);
    } finally {
      stop = true;
      await Promise.all(running);
    }
    expect(failures).toEqual([]);
    // Every key that was current signed tokens under load (the rotations really happened mid-stream).
    const usedKids = new Set(issued.map((i) => i.kid));
    expect(signers).toHaveLength(ROTATIONS + 1);
    expect(new Set(signers).size).toBe(ROTATIONS + 1);
    for (const kid of signers) expect(usedKids.has(kid)).toBe(true);
    // Rotations were audited and counted as api rotations.
    const events = await tb.broker.testing.store.read(1, 100000);
    expect(events.filter((e) => e.type === 'key.promoted' && (e.event as { cause?: string }).cause === 'api')).toHaveLength(ROTATIONS);
    expect(await (await fetch(`${tb.managementUrl}/metrics`)).text()).toMatch(new RegExp(`leash_key_rotations_total\\{cause="api"\\} ${ROTATIONS}\\b`));
  }, 120000);

  it('tokens of retired keys stay valid (JWKS and introspection) after the rotations', async () => {
    const set = await jwks();
    const retired = new Set(tb.broker.testing.keys.list().filter((k) => k.state === 'retired').map((k) => k.kid));
    expect(retired.size).toBe(ROTATIONS);
    const sample = [...retired].map((kid) => issued.find((i) => i.kid === kid)!);
    for (const t of sample) {
      await expect(verify(t.token, set)).resolves.toBeDefined();
      expect(await introspect(t.token)).toBe(true);
    }
  });

  it('emergency revoke of the current key: its tokens are inactive at /introspect and the kid is gone from /jwks; other tokens live on', async () => {
    const victim = tb.broker.testing.keys.current().kid;
    const victimTokens = issued.filter((i) => i.kid === victim).slice(0, 10);
    const others = issued.filter((i) => i.kid !== victim).slice(-5);
    expect(victimTokens.length).toBeGreaterThan(0);
    for (const t of victimTokens.slice(0, 2)) expect(await introspect(t.token)).toBe(true);

    const res = await admin(`/admin/keys/${victim}/revoke`, OPS_KEY, { reason: 'key material exposed in a crash dump' });
    expect(res.status).toBe(200);

    const set = await jwks();
    expect(set.keys.map((k) => k.kid)).not.toContain(victim);
    for (const t of victimTokens) {
      expect(await introspect(t.token)).toBe(false);
      await expect(verify(t.token, set)).rejects.toThrow();
    }
    for (const t of others) expect(await introspect(t.token)).toBe(true);
    // The next exchange is signed by the promoted key, which verifiers already had.
    const task = await tb.openTask({ plugins: ['crm-reader'] });
    const after = await tb.exchange({ grant_type: EXCHANGE, client_id: 'crm-reader', subject_token: await tb.cluster.saToken({ nowSeconds: nowS() }), subject_token_type: JWT_TYPE, resource: CRM_API, task });
    expect(after.status).toBe(200);
    const newKid = decodeProtectedHeader(after.body.access_token as string).kid;
    expect(newKid).not.toBe(victim);
    expect(set.keys.map((k) => k.kid)).toContain(newKid);
  });

  it('a retired key stays in the JWKS while its tokens live, and leaves at remove_at (scheduled, audited)', async () => {
    const info = tb.broker.testing.keys.list().filter((k) => k.state === 'retired').sort((a, b) => (a.removeAt ?? 0) - (b.removeAt ?? 0))[0]!;
    const itsTokens = issued.filter((i) => i.kid === info.kid);
    expect(itsTokens.length).toBeGreaterThan(0);
    const lastExp = Math.max(...itsTokens.map((t) => t.exp));
    // The invariant behind remove_at: every token the key signed has expired before it leaves.
    expect(lastExp * 1000).toBeLessThan(info.removeAt!);

    // One second before its last token expires: still published, the token still verifies.
    clock.set(lastExp * 1000 - 1000);
    await new Promise((r) => setTimeout(r, 500)); // a few key refreshes on the moved clock
    const latest = itsTokens.find((t) => t.exp === lastExp)!;
    await expect(verify(latest.token, await jwks())).resolves.toBeDefined();

    // Past remove_at the refresh takes it out of the JWKS.
    clock.set(info.removeAt! + 1000);
    await waitFor(async () => !(await jwks()).keys.some((k) => k.kid === info.kid), 5000);
    const removed = (await tb.broker.testing.store.read(1, 100000)).filter((e) => e.type === 'key.removed' && (e.event as { kid?: string }).kid === info.kid);
    expect(removed).toHaveLength(1);
    expect(removed[0]!.event).toMatchObject({ cause: 'schedule', actor: 'system:schedule', from: 'retired' });
  });
});
