import { describe, it, expect, beforeAll, afterAll } from '@jest/globals';
import { SignJWT, decodeJwt, exportJWK, generateKeyPair, type CryptoKey, type JWK } from 'jose';
import { startTestBroker, loadedFrom, EXCHANGE, JWT_TYPE, type TestBroker } from '../support/broker.js';
import { basic, sha256hex } from '../http/introspect-support.js';
import { ConfigError } from '../../src/config/config-error.js';
import { compilePolicy } from '../../src/policy/compile.js';

const IDP = 'https://login.example.com';
const MAIL = 'https://mail.example.com';
const NOTES = 'https://notes.example.com';
const CAL = 'https://calendar.example.com';
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
const ID_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:id_token';
const SECRET = 'mail-rs-secret-0123456789';

let tb: TestBroker;
let bare: TestBroker;
let idpKey: CryptoKey;
let idpJwk: JWK;
let rogueKey: CryptoKey;
let task: string;

async function person(claims: Record<string, unknown> = {}, opts: { key?: CryptoKey; iss?: string; expSeconds?: number } = {}): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ sub: 'alice', groups: ['support', 'staff'], roles: 'agent-user', ...claims })
    .setProtectedHeader({ alg: 'ES256', kid: 'idp-1' })
    .setIssuer(opts.iss ?? IDP)
    .setAudience('leash')
    .setIssuedAt(now)
    .setExpirationTime(now + (opts.expSeconds ?? 600))
    .sign(opts.key ?? idpKey);
}

const plugin = {
  id: 'assistant',
  owner: 'team-assist@example.com',
  risk: 'medium',
  bindings: [{ issuer: 'test-cluster', subject: 'system:serviceaccount:agents:assistant' }],
  grants: [
    { audience: MAIL, scopes: ['mail:send'], effect: 'read', approval: 'none', max_ttl: 300, users: { providers: ['corp'], groups: ['support'], roles: ['agent-user'] } },
    { audience: NOTES, scopes: ['notes:read'], effect: 'read', max_ttl: 300 },
    { audience: CAL, scopes: ['cal:write'], effect: 'write', approval: 'human', max_ttl: 300, users: { providers: ['corp'], approver: 'person' } },
  ],
};

function patchFor(withIdp: boolean) {
  return (cfg: Record<string, any>) => {
    cfg.plugins.push(structuredClone(plugin));
    if (withIdp) cfg.user_identity_providers = [{ name: 'corp', issuer: IDP, audience: 'leash', jwks: { inline: { keys: [idpJwk] } } }];
    else cfg.plugins.at(-1).grants = [cfg.plugins.at(-1).grants[1]];
    cfg.settings.approvals = { poll_interval: 1 };
    cfg.resource_servers = [{ id: 'mail', audiences: [MAIL], client_secret_sha256: sha256hex(SECRET) }];
  };
}

beforeAll(async () => {
  const pair = await generateKeyPair('ES256');
  idpKey = pair.privateKey;
  idpJwk = { ...(await exportJWK(pair.publicKey)), kid: 'idp-1', alg: 'ES256' };
  rogueKey = (await generateKeyPair('ES256')).privateKey;
  tb = await startTestBroker({ patch: patchFor(true) });
  bare = await startTestBroker({ patch: patchFor(false), cluster: tb.cluster });
  task = await tb.openTask({ plugins: ['assistant'] });
});
afterAll(async () => {
  await tb?.close();
  await bare?.close();
});

async function onBehalf(b: TestBroker, subjectToken: string, extra: Record<string, string> = {}) {
  return b.exchange({
    grant_type: EXCHANGE,
    client_id: 'assistant',
    subject_token: subjectToken,
    subject_token_type: ACCESS_TOKEN_TYPE,
    actor_token: await b.cluster.saToken({ ns: 'agents', sa: 'assistant' }),
    actor_token_type: JWT_TYPE,
    resource: MAIL,
    task: b === tb ? task : await b.openTask({ plugins: ['assistant'] }),
    ...extra,
  });
}

describe('agents acting for a person (trusted user identity provider)', () => {
  it("issues sub = the person (issuer-qualified), act = the plugin, never longer than the person's token", async () => {
    const res = await onBehalf(tb, await person({}, { expSeconds: 90 }));
    expect(res.status).toBe(200);
    const claims = decodeJwt(res.body.access_token as string);
    expect(claims).toMatchObject({ sub: `${IDP}#alice`, act: { sub: 'assistant' }, plugin: 'assistant', client_id: 'assistant', aud: MAIL, task });
    expect(claims).not.toHaveProperty('chain_jti');
    expect(res.body.expires_in as number).toBeLessThanOrEqual(90);
    // A resource server sees it active, with the person as sub.
    const intro = await fetch(`${tb.url}/introspect`, {
      method: 'POST',
      headers: { authorization: basic('mail', SECRET), 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ token: res.body.access_token as string }).toString(),
    });
    expect(await intro.json()).toMatchObject({ active: true, sub: `${IDP}#alice`, plugin: 'assistant' });
    // An ID token works as well.
    expect((await onBehalf(tb, await person(), { subject_token_type: ID_TOKEN_TYPE })).status).toBe(200);
  });

  const refused: Array<[string, () => Promise<string>, Record<string, string>, string]> = [
    ["a person outside the grant's groups", () => person({ groups: ['sales'] }), {}, 'ERR_USER_NOT_ALLOWED'],
    ["a person without the grant's role", () => person({ roles: [] }), {}, 'ERR_USER_NOT_ALLOWED'],
    ['a grant without users', () => person(), { resource: NOTES }, 'ERR_USER_NOT_ALLOWED'],
    ['an issuer that is not a trusted user identity provider', () => person({}, { iss: 'https://login.evil.test' }), {}, 'ERR_USER_TOKEN_UNTRUSTED'],
    ['a token signed by another key', () => person({}, { key: rogueKey }), {}, 'ERR_ATTESTATION_SIGNATURE'],
    ['an expired token', () => person({}, { expSeconds: -120 }), {}, 'ERR_ATTESTATION_EXPIRED'],
    ['a token without sub', () => person({ sub: undefined }), {}, 'ERR_ATTESTATION_CLAIM_MISSING'],
  ];
  it.each(refused)('refuses %s', async (_n, token, extra, code) => {
    const res = await onBehalf(tb, await token(), extra);
    expect(res.status).toBe(400);
    expect(res.body.error).toBe('invalid_request');
    expect(String(res.body.error_description)).toContain(code);
    expect(res.body).not.toHaveProperty('access_token');
  });

  it("a grant with users refuses a request on nobody's behalf", async () => {
    const res = await tb.exchange({
      grant_type: EXCHANGE,
      client_id: 'assistant',
      subject_token: await tb.cluster.saToken({ ns: 'agents', sa: 'assistant' }),
      subject_token_type: JWT_TYPE,
      resource: MAIL,
      task,
    });
    expect(res.body.error).toBe('invalid_request');
    expect(String(res.body.error_description)).toContain('ERR_USER_REQUIRED');
  });

  it("without a trusted user identity provider, a person's token is refused", async () => {
    const res = await onBehalf(bare, await person(), { resource: NOTES });
    expect(res.status).toBe(400);
    expect(String(res.body.error_description)).toContain('trusts no user identity provider');
    expect(String(res.body.error_description)).toContain('ERR_USER_TOKEN_UNTRUSTED');
  });

  it('a further hop from a token issued for a person follows delegate_to (test/users/further-hops.test.ts): a plugin not named there is refused', async () => {
    const forAlice = (await onBehalf(tb, await person())).body.access_token as string;
    const res = await tb.exchange({
      grant_type: EXCHANGE,
      client_id: 'assistant',
      subject_token: forAlice,
      subject_token_type: ACCESS_TOKEN_TYPE,
      actor_token: await tb.cluster.saToken({ ns: 'agents', sa: 'assistant' }),
      actor_token_type: JWT_TYPE,
      resource: NOTES,
      task,
    });
    expect(res.body.error).toBe('invalid_request');
    expect(String(res.body.error_description)).toContain('ERR_DELEGATION_NOT_ALLOWED');
  });

  it("asks the person the agent acts for: they see and decide their own approval with their own token, nobody else's", async () => {
    const ask = async (sub: string, extra: Record<string, string> = {}) => onBehalf(tb, await person({ sub }), { resource: CAL, ...extra });
    const pending = await ask('alice');
    expect(pending.body.error).toBe('authorization_pending');
    const id = pending.body.approval_id as string;
    const as = async (token: string, path = '', method = 'GET') =>
      fetch(`${tb.url}/admin/approvals${path}`, {
        method,
        headers: { authorization: `Bearer ${token}`, ...(method === 'POST' ? { 'content-type': 'application/json' } : {}) },
        ...(method === 'POST' ? { body: '{}' } : {}),
      });
    const alice = await person({ sub: 'alice' });
    const bob = await person({ sub: 'bob' });
    // Bob does not see Alice's approval (it reads as unknown), and nobody lists with a person's token.
    expect((await as(bob, `/${id}`)).status).toBe(404);
    expect((await as(bob, `/${id}/approve`, 'POST')).status).toBe(404);
    expect((await as(alice, '')).status).toBe(403);
    const view = (await (await as(alice, `/${id}`)).json()) as Record<string, unknown>;
    expect(view).toMatchObject({ id, state: 'pending', audience: CAL, on_behalf_of: `${IDP}#alice`, person_may_decide: true });
    expect((await as(alice, `/${id}/approve`, 'POST')).status).toBe(200);
    await new Promise((r) => setTimeout(r, 1100));
    // The approval is bound to Alice: Bob's request cannot redeem it.
    const stolen = await ask('bob', { approval_id: id });
    expect(String(stolen.body.error_description)).toContain('ERR_APPROVAL_MISMATCH');
    const issued = await ask('alice', { approval_id: id });
    expect(issued.status).toBe(200);
    expect(decodeJwt(issued.body.access_token as string)).toMatchObject({ sub: `${IDP}#alice`, approval: { id, approver: `person:${IDP}#alice` } });
  });

  it('config: separation of duties keeps a person from deciding a high-risk grant', () => {
    const base = structuredClone(tb.config) as unknown as Record<string, any>;
    const risky = base.plugins.find((p: { id: string }) => p.id === 'assistant');
    risky.risk = 'high';
    let err: unknown;
    try {
      compilePolicy(loadedFrom(base, tb.dir).config);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).problems.map((p) => p.path)).toContainEqual(expect.stringMatching(/\/grants\/2\/users\/approver$/));
  });

  it('config: a provider may not share an issuer with workloads or Leash; grants name configured providers (here: corp is gone)', () => {
    const base = structuredClone(tb.config) as unknown as Record<string, any>;
    const idp = { name: 'corp', issuer: IDP, audience: 'leash', jwks: { inline: { keys: [idpJwk] } } };
    const clash = {
      ...base,
      user_identity_providers: [
        { ...idp, name: 'other', issuer: base.trusted_issuers[0].issuer },
        { ...idp, name: 'self', issuer: base.settings.issuer },
      ],
    };
    let err: unknown;
    try {
      loadedFrom(clash, tb.dir);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).problems.map((p) => p.path)).toEqual(
      expect.arrayContaining(['/user_identity_providers/0/issuer', '/user_identity_providers/1/issuer', expect.stringMatching(/\/grants\/0\/users\/providers\/0$/)]),
    );
  });
});
