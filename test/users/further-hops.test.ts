import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { SignJWT, decodeJwt, exportJWK, generateKeyPair, type CryptoKey, type JWK } from 'jose';
import { EXCHANGE, JWT_TYPE, OPS_KEY, startTestBroker, type TestBroker } from '../support/broker.js';
import { basic, sha256hex } from '../http/introspect-support.js';
import { createLeashVerifier } from '../../src/client/verifier.js';
import { createRevocationFollower, type RevocationFollower } from '../../src/client/revocation-follower.js';

/**
 * Further hops from a person's token (issue 15 §3): plugin A got a token for Alice (sub =
 * Alice, act = A); plugin B presents it as subject_token with its own attestation as
 * actor_token, then C presents B's. `sub` stays the person, `act` nests, and the existing
 * delegation rules hold: delegate_to, no cycle, depth, one task, scopes narrowed by every
 * plugin of the chain (no escalation), the upstream token's lifetime, the cascade by
 * chain_jti. Real HTTP, real jose, real SQLite.
 */

const IDP = 'https://login.example.com';
const MAIL = 'https://mail.example.com';
const NOTES = 'https://notes.example.com';
const CAL = 'https://calendar.example.com';
const ACCESS = 'urn:ietf:params:oauth:token-type:access_token';
const SECRET = 'mail-rs-secret-0123456789';
const ALICE = `${IDP}#alice`;

let tb: TestBroker;
let idpKey: CryptoKey;
let idpJwk: JWK;
let task: string;
let follower: RevocationFollower;
/** What a resource server runs: the SDK verifier with the revocation feed (it reads chain_jti). */
const sdkVerify = (token: string) =>
  createLeashVerifier({ issuer: tb.config.settings.issuer, audience: MAIL, revocations: follower }).verify({ authorization: `Bearer ${token}`, method: 'GET', url: `${MAIL}/inbox` });

const forPerson = { providers: ['corp'] };
const agent = (id: string, grants: unknown[], delegateTo: string[] = []) => ({
  id,
  owner: 'team-assist@example.com',
  risk: 'medium',
  delegate_to: delegateTo,
  bindings: [{ issuer: 'test-cluster', subject: `system:serviceaccount:agents:${id}` }],
  grants,
});

async function alice(expSeconds = 600): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ sub: 'alice', groups: ['support'] })
    .setProtectedHeader({ alg: 'ES256', kid: 'idp-1' })
    .setIssuer(IDP)
    .setAudience('leash')
    .setIssuedAt(now)
    .setExpirationTime(now + expSeconds)
    .sign(idpKey);
}

/** `plugin` exchanges `subject` (a person's token or a Leash token) with its own attestation as actor_token. */
async function hop(plugin: string, subject: string, extra: Record<string, string> = {}) {
  return tb.exchange({
    grant_type: EXCHANGE,
    subject_token: subject,
    subject_token_type: ACCESS,
    actor_token: await tb.cluster.saToken({ ns: 'agents', sa: plugin }),
    actor_token_type: JWT_TYPE,
    resource: MAIL,
    task,
    ...extra,
  });
}

async function introspect(token: string): Promise<Record<string, unknown>> {
  const res = await fetch(`${tb.url}/introspect`, {
    method: 'POST',
    headers: { authorization: basic('mail', SECRET), 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ token }).toString(),
  });
  return (await res.json()) as Record<string, unknown>;
}

beforeAll(async () => {
  const pair = await generateKeyPair('ES256');
  idpKey = pair.privateKey;
  idpJwk = { ...(await exportJWK(pair.publicKey)), kid: 'idp-1', alg: 'ES256' };
  tb = await startTestBroker({
    patch: (cfg) => {
      cfg.user_identity_providers = [{ name: 'corp', issuer: IDP, audience: 'leash', jwks: { inline: { keys: [idpJwk] } } }];
      cfg.resource_servers = [{ id: 'mail', audiences: [MAIL], client_secret_sha256: sha256hex(SECRET) }];
      cfg.plugins.push(
        agent(
          'assistant',
          [
            { audience: MAIL, scopes: ['mail:read', 'mail:send'], default_scopes: ['mail:read', 'mail:send'], effect: 'read', approval: 'none', max_ttl: 300, users: forPerson },
            { audience: NOTES, scopes: ['notes:read'], effect: 'read', max_ttl: 300, users: forPerson },
            { audience: CAL, scopes: ['cal:read'], effect: 'read', max_ttl: 300, users: forPerson },
          ],
          ['mail-helper'],
        ),
        agent(
          'mail-helper',
          [
            // mail:delete is mail-helper's, not the root's: no chain from assistant reaches it.
            { audience: MAIL, scopes: ['mail:read', 'mail:send', 'mail:delete'], default_scopes: ['mail:send'], effect: 'read', approval: 'none', max_ttl: 300, users: forPerson },
            // Groups are not carried down a chain: a grant that requires them refuses a further hop.
            { audience: NOTES, scopes: ['notes:read'], effect: 'read', max_ttl: 300, users: { providers: ['corp'], groups: ['support'] } },
            // A grant without users refuses: the hop still acts for the person.
            { audience: CAL, scopes: ['cal:read'], effect: 'read', max_ttl: 300 },
          ],
          ['archiver'],
        ),
        agent('archiver', [{ audience: MAIL, scopes: ['mail:read', 'mail:send'], default_scopes: ['mail:read'], effect: 'read', approval: 'none', max_ttl: 300, users: forPerson }], ['assistant']),
      );
    },
  });
  task = await tb.openTask({ plugins: ['assistant', 'mail-helper', 'archiver'] });
  follower = createRevocationFollower({ issuer: tb.url, clientId: 'mail', clientSecret: SECRET });
  await follower.ready();
});

afterAll(async () => {
  follower?.close();
  await tb?.close();
});

describe('further hops from a token issued for a person', () => {
  let first: string;
  let second: string;

  it('hop 1: the plugin acting for Alice gets sub = Alice, act = itself, principal person', async () => {
    const res = await hop('assistant', await alice());
    expect(res.status).toBe(200);
    first = res.body.access_token as string;
    const claims = decodeJwt(first);
    expect(claims).toMatchObject({ sub: ALICE, act: { sub: 'assistant' }, plugin: 'assistant', principal: 'person', scope: 'mail:read mail:send' });
    expect(claims).not.toHaveProperty('chain_jti');
  });

  it('hop 2: another plugin presents it; sub stays Alice, act nests, chain_jti names the upstream token, scopes narrow', async () => {
    const res = await hop('mail-helper', first);
    expect(res.status).toBe(200);
    second = res.body.access_token as string;
    const claims = decodeJwt(second);
    expect(claims).toMatchObject({
      sub: ALICE,
      act: { sub: 'mail-helper', act: { sub: 'assistant' } },
      plugin: 'mail-helper',
      client_id: 'mail-helper',
      principal: 'person',
      chain_jti: [decodeJwt(first).jti],
      scope: 'mail:send',
      task,
    });
    // Never outlives the upstream token.
    expect(claims.exp!).toBeLessThanOrEqual(decodeJwt(first).exp!);
    // The audit names the person and the whole chain, never a token.
    const events = await tb.broker.testing.store.read(1, 1_000_000);
    const issued = events.filter((e) => e.type === 'exchange.issued').pop()?.event as Record<string, unknown>;
    expect(issued).toMatchObject({ plugin: 'mail-helper', on_behalf_of: ALICE, chain: ['assistant', 'mail-helper'], upstream_jti: decodeJwt(first).jti });
    // Resource servers see it active, with the person as sub (introspection and the SDK verifier).
    expect(await introspect(second)).toMatchObject({ active: true, sub: ALICE, plugin: 'mail-helper' });
    expect((await sdkVerify(second)).claims).toMatchObject({ sub: ALICE, principal: 'person', chain_jti: [decodeJwt(first).jti] });
  });

  it('hop 3: act nests again, chain_jti lists both upstream tokens root first', async () => {
    const res = await hop('archiver', second, { scope: 'mail:send' });
    expect(res.status).toBe(200);
    expect(decodeJwt(res.body.access_token as string)).toMatchObject({
      sub: ALICE,
      act: { sub: 'archiver', act: { sub: 'mail-helper', act: { sub: 'assistant' } } },
      chain_jti: [decodeJwt(first).jti, decodeJwt(second).jti],
      principal: 'person',
    });
  });

  it('no escalation: a scope the root plugin never held is refused', async () => {
    const res = await hop('mail-helper', first, { scope: 'mail:delete' });
    expect({ status: res.status, error: res.body.error }).toEqual({ status: 400, error: 'invalid_scope' });
    expect(String(res.body.error_description)).toMatch(/\(ERR_DELEGATION_SCOPE_ESCALATION\)$/);
  });

  it('the delegation rules hold: delegate_to, no cycle, depth', async () => {
    // archiver is not in assistant's delegate_to.
    expect(String((await hop('archiver', first)).body.error_description)).toMatch(/\(ERR_DELEGATION_NOT_ALLOWED\)$/);
    // archiver → assistant is allowed by delegate_to, but assistant already acts in the chain.
    const third = (await hop('archiver', second, { scope: 'mail:send' })).body.access_token as string;
    expect(typeof third).toBe('string');
    expect(String((await hop('assistant', third)).body.error_description)).toMatch(/\(ERR_DELEGATION_CYCLE\)$/);
  });

  it('the hop still acts for the person: a grant without users refuses, and groups are not carried down a chain', async () => {
    expect(String((await hop('mail-helper', first, { resource: CAL })).body.error_description)).toMatch(/\(ERR_USER_NOT_ALLOWED\)$/);
    expect(String((await hop('mail-helper', first, { resource: NOTES })).body.error_description)).toMatch(/\(ERR_USER_NOT_ALLOWED\)$/);
  });

  it('a person starts such a chain: the first plugin alone gets nothing from grants that require one', async () => {
    const own = await tb.exchange({
      grant_type: EXCHANGE,
      subject_token: await tb.cluster.saToken({ ns: 'agents', sa: 'assistant' }),
      subject_token_type: JWT_TYPE,
      resource: NOTES,
      task,
    });
    expect(String(own.body.error_description)).toMatch(/\(ERR_USER_REQUIRED\)$/);
  });

  it('revoking the first token revokes every token derived from it (chain_jti cascade)', async () => {
    const root = (await hop('assistant', await alice())).body.access_token as string;
    const derived = (await hop('mail-helper', root)).body.access_token as string;
    expect(await introspect(derived)).toMatchObject({ active: true });
    const revoked = await fetch(`${tb.url}/admin/revocations`, {
      method: 'POST',
      headers: { authorization: `Bearer ${OPS_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ scope: 'token', id: decodeJwt(root).jti, reason: 'test: cascade from a person-rooted token' }),
    });
    expect(revoked.status).toBe(201);
    expect(await introspect(derived)).toMatchObject({ active: false });
    // The SDK verifier too, once its feed has the revocation.
    let refused: unknown;
    for (let i = 0; i < 40 && refused === undefined; i++) {
      refused = await sdkVerify(derived).then(
        () => undefined,
        (e: unknown) => e,
      );
      if (refused === undefined) await new Promise((r) => setTimeout(r, 100));
    }
    expect(String(refused)).toMatch(/revoked/);
    expect(String((await hop('archiver', derived)).body.error_description)).toMatch(/\(ERR_UPSTREAM_TOKEN_REVOKED\)$/);
  });
});
