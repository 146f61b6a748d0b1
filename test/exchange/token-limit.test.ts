import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import { SignJWT, decodeJwt, decodeProtectedHeader, exportJWK, generateKeyPair, type CryptoKey, type JWK } from 'jose';
import { createLeashVerifier, LeashVerifyError } from '../../src/client/index.js';
import { MAX_TOKEN_LENGTH } from '../../src/client/token-limits.js';
import { signJwt } from '../../src/keys/jws.js';
import { CRM_API, EXCHANGE, JWT_TYPE, TICKETS_API, startTestBroker, type TestBroker } from '../support/broker.js';
import { CRM_RS_SECRET, assertionForm, basic, postForm, ticketsKey, withResourceServers } from '../http/introspect-support.js';

/**
 * MAX_TOKEN_LENGTH (src/client/token-limits.ts) is the one limit on a token's length at every
 * place one arrives: a token of exactly that length gets through the length check (and is
 * accepted when it is otherwise genuine), one character more is refused with the entry
 * point's own OAuth answer, before any parsing or crypto.
 */

const ACCESS_TYPE = 'urn:ietf:params:oauth:token-type:access_token';

/**
 * A signed token exactly `length` characters long. `sign` makes one with a claim padded by
 * `claimPad` and a header member padded by `headerPad`; base64url lengths skip every fourth
 * value, so both are varied until the total lands on `length`.
 */
async function exactly(length: number, sign: (claimPad: string, headerPad: string) => Promise<string>): Promise<string> {
  const base = (await sign('', '')).length;
  const start = Math.max(0, Math.floor(((length - base) * 3) / 4) - 6);
  for (let h = 0; h < 4; h++) {
    for (let n = start; n < start + 16; n++) {
      const token = await sign('x'.repeat(n), 'y'.repeat(h));
      if (token.length === length) return token;
    }
  }
  throw new Error(`no padding gives a ${length}-character token`);
}

describe(`the longest accepted token: MAX_TOKEN_LENGTH = ${MAX_TOKEN_LENGTH}`, () => {
  let tb: TestBroker;
  let tickets: { privateKey: CryptoKey; jwk: JWK };
  const nowS = () => Math.floor(Date.now() / 1000);

  beforeAll(async () => {
    tickets = await ticketsKey();
    tb = await startTestBroker({ patch: withResourceServers(tickets) });
  });
  afterAll(async () => {
    await tb.close();
  });

  const saToken = (sa: string, length: number) => exactly(length, (claimPad, headerPad) => tb.cluster.saToken({ sa, nowSeconds: nowS(), claims: { pad: claimPad }, header: { pad: headerPad } }));
  const exchangeAs = (subjectToken: string, extra: Record<string, string> = {}, headers: Record<string, string> = {}) =>
    tb.exchange({ grant_type: EXCHANGE, client_id: 'crm-reader', subject_token: subjectToken, subject_token_type: JWT_TYPE, resource: CRM_API, ...extra }, headers);

  async function crmToken(): Promise<string> {
    const task = await tb.openTask({ plugins: ['crm-reader'] });
    const res = await exchangeAs(await tb.cluster.saToken({ sa: 'crm-reader', nowSeconds: nowS() }), { task });
    if (res.status !== 200) throw new Error(`exchange failed: ${JSON.stringify(res.body)}`);
    return res.body.access_token as string;
  }

  /** A genuine Leash token re-signed by the broker's own key with padding: the same jti, so the broker knows it. */
  async function leashTokenOf(length: number): Promise<string> {
    const genuine = await crmToken();
    const header = decodeProtectedHeader(genuine);
    const claims = decodeJwt(genuine);
    return exactly(length, (claimPad, headerPad) => signJwt(tb.broker.testing.keys.current(), { typ: header.typ, pad: headerPad }, { ...claims, pad: claimPad }));
  }

  it('subject_token: at the limit it is exchanged; one more character is 400 invalid_request (ERR_ATTESTATION_MALFORMED)', async () => {
    const task = await tb.openTask({ plugins: ['crm-reader'] });
    const atLimit = await saToken('crm-reader', MAX_TOKEN_LENGTH);
    expect(atLimit).toHaveLength(MAX_TOKEN_LENGTH);
    const ok = await exchangeAs(atLimit, { task });
    expect(ok.status).toBe(200);
    expect(typeof ok.body.access_token).toBe('string');

    const over = await exchangeAs(await saToken('crm-reader', MAX_TOKEN_LENGTH + 1), { task });
    expect(over.status).toBe(400);
    expect(over.body.error).toBe('invalid_request');
    expect(over.body.error_description).toMatch(/ERR_ATTESTATION_MALFORMED/);
    expect(over.body.error_description).toMatch(/subject_token is too long/);
    expect(over.body.access_token).toBeUndefined();
  });

  it('actor_token: one more character than the limit is 400 invalid_request before the delegation is looked at', async () => {
    const upstream = await crmToken();
    const delegate = async (actor: string) =>
      tb.exchange({
        grant_type: EXCHANGE,
        client_id: 'ticket-writer',
        subject_token: upstream,
        subject_token_type: ACCESS_TYPE,
        actor_token: actor,
        actor_token_type: JWT_TYPE,
        resource: TICKETS_API,
      });
    const over = await delegate(await saToken('ticket-writer-1', MAX_TOKEN_LENGTH + 1));
    expect(over.status).toBe(400);
    expect(over.body.error).toBe('invalid_request');
    expect(over.body.error_description).toMatch(/ERR_ATTESTATION_MALFORMED/);
    expect(over.body.error_description).toMatch(/actor_token is too long/);
    expect(over.body.access_token).toBeUndefined();
    // At the limit the length is not what is judged (this policy lets nobody delegate to ticket-writer).
    const atLimit = await delegate(await saToken('ticket-writer-1', MAX_TOKEN_LENGTH));
    expect(atLimit.body.access_token).toBeUndefined();
    expect(atLimit.body.error_description).not.toMatch(/too long/);
  });

  it('DPoP proof at /token: at the limit the token is bound to its key; one more character is 400 invalid_dpop_proof', async () => {
    const pair = await generateKeyPair('ES256', { extractable: true });
    const jwk = await exportJWK(pair.publicKey);
    const proofOf = (length: number) =>
      exactly(length, (claimPad, headerPad) =>
        new SignJWT({ jti: randomUUID(), htm: 'POST', htu: `${tb.url}/token`, iat: nowS(), pad: claimPad })
          .setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk, pad: headerPad })
          .sign(pair.privateKey),
      );
    const task = await tb.openTask({ plugins: ['crm-reader'] });
    const subject = () => tb.cluster.saToken({ sa: 'crm-reader', nowSeconds: nowS() });
    const ok = await exchangeAs(await subject(), { task }, { dpop: await proofOf(MAX_TOKEN_LENGTH) });
    expect(ok.status).toBe(200);
    expect(ok.body.token_type).toBe('DPoP');

    const over = await exchangeAs(await subject(), { task }, { dpop: await proofOf(MAX_TOKEN_LENGTH + 1) });
    expect(over.status).toBe(400);
    expect(over.body.error).toBe('invalid_dpop_proof');
    expect(over.body.access_token).toBeUndefined();
  });

  it('introspection: at the limit a genuine token is active; one more character is {active: false}', async () => {
    const url = `${tb.url}/introspect`;
    const asCrm = (token: string) => postForm(url, { token }, { authorization: basic('crm-api', CRM_RS_SECRET) });
    const atLimit = await leashTokenOf(MAX_TOKEN_LENGTH);
    expect(atLimit).toHaveLength(MAX_TOKEN_LENGTH);
    const ok = await asCrm(atLimit);
    expect(ok.status).toBe(200);
    expect(ok.body.active).toBe(true);

    const over = await asCrm(await leashTokenOf(MAX_TOKEN_LENGTH + 1));
    expect(over.status).toBe(200);
    expect(over.body).toEqual({ active: false });
  });

  it('revocation: at the limit a genuine token is revoked; one more character is 200 with nothing revoked', async () => {
    const introspect = async (token: string) => (await postForm(`${tb.url}/introspect`, { token }, { authorization: basic('crm-api', CRM_RS_SECRET) })).body.active;
    const revoke = (token: string) => postForm(`${tb.url}/revoke`, { token, client_id: 'crm-reader' });
    // Each padded token carries the jti of a genuine one: revoking it revokes that token.
    const padded = async (length: number) => {
      const token = await leashTokenOf(length);
      return { token, jti: decodeJwt(token).jti };
    };
    const over = await padded(MAX_TOKEN_LENGTH + 1);
    expect((await revoke(over.token)).status).toBe(200);
    const atLimit = await padded(MAX_TOKEN_LENGTH);
    expect(await introspect(atLimit.token)).toBe(true);
    expect((await revoke(atLimit.token)).status).toBe(200);
    expect(await introspect(atLimit.token)).toBe(false);
    // The over-long one was not looked at: its jti is still live (shown through a token of legal length with that jti).
    const sameJti = await signJwt(tb.broker.testing.keys.current(), { typ: decodeProtectedHeader(over.token).typ }, { ...decodeJwt(over.token), pad: undefined });
    expect(await introspect(sameJti)).toBe(true);
  });

  it('client_assertion (private_key_jwt): at the limit the client is authenticated; one more character is 401 invalid_client', async () => {
    const url = `${tb.url}/introspect`;
    const assertionOf = (length: number) =>
      exactly(length, (claimPad, headerPad) =>
        new SignJWT({ jti: randomUUID(), pad: claimPad })
          .setProtectedHeader({ alg: 'ES256', kid: 'tickets-1', pad: headerPad })
          .setIssuer('tickets-api')
          .setSubject('tickets-api')
          .setAudience(url)
          .setIssuedAt(nowS())
          .setExpirationTime(nowS() + 60)
          .sign(tickets.privateKey),
      );
    const ok = await postForm(url, { token: 'not-a-token', ...assertionForm(await assertionOf(MAX_TOKEN_LENGTH)) });
    expect(ok.status).toBe(200);
    expect(ok.body).toEqual({ active: false });

    const over = await postForm(url, { token: 'not-a-token', ...assertionForm(await assertionOf(MAX_TOKEN_LENGTH + 1)) });
    expect(over.status).toBe(401);
    expect(over.body.error).toBe('invalid_client');
    expect(over.body.active).toBeUndefined();
  });

  it('the SDK verifier: at the limit a genuine token verifies; one more character is invalid_token (401) before any signature check', async () => {
    const verifier = createLeashVerifier({ issuer: tb.url, audience: CRM_API });
    const call = (token: string) => verifier.verify({ authorization: `Bearer ${token}`, method: 'GET', url: `${CRM_API}/contacts` });
    const principal = await call(await leashTokenOf(MAX_TOKEN_LENGTH));
    expect(principal.plugin).toBe('crm-reader');

    const over = await call(await leashTokenOf(MAX_TOKEN_LENGTH + 1)).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(over).toBeInstanceOf(LeashVerifyError);
    expect(over).toMatchObject({ error: 'invalid_token', status: 401, error_description: 'the token is too long to be a Leash token' });
  });
});
