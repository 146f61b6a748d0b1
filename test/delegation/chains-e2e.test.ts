import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { SignJWT, createRemoteJWKSet, decodeJwt, decodeProtectedHeader, generateKeyPair, jwtVerify } from 'jose';
import { createDpopKey } from '../../src/client/index.js';
import { CRM_API, EXCHANGE, JWT_TYPE, OPS_KEY, ORCHESTRATOR_KEY, TICKETS_API } from '../support/broker.js';
import { ACCESS_TYPE, ALL, HR_API, NOTES_API, delegate, expectDenied, harness, lastEvent, rootToken, sa, type Harness } from './chain-harness.js';

/**
 * Delegation chains end to end: real broker over loopback HTTP, real SQLite, real
 * Kubernetes-style attestations, real ES256 tokens. Plugin B presents plugin A's Leash
 * token as subject_token and its own attestation as actor_token (RFC 8693 §2.1).
 */

describe('delegation chains over HTTP', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await harness();
  });
  afterAll(async () => h.tb.close());

  it('two hops: B gets a token with sub = root, act = B, plugin = B, scopes within both grants and the upstream token', async () => {
    const a = await rootToken(h, 'crm-reader', CRM_API, { scope: 'contacts:read contacts:search' });
    const aClaims = decodeJwt(a);
    const res = await delegate(h, 'summarizer', a, CRM_API, { scope: 'contacts:search' });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ issued_token_type: ACCESS_TYPE, token_type: 'Bearer', scope: 'contacts:search' });
    const token = res.body.access_token as string;
    const { payload } = await jwtVerify(token, createRemoteJWKSet(new URL(`${h.tb.url}/jwks`)), { issuer: h.tb.url, audience: CRM_API, typ: 'at+jwt' });
    expect(payload).toMatchObject({
      sub: 'crm-reader',
      act: { sub: 'summarizer' },
      plugin: 'summarizer',
      client_id: 'summarizer',
      chain_effects: ['read'],
      aud: CRM_API,
      scope: 'contacts:search',
      task: h.task,
    });
    expect((payload.act as Record<string, unknown>).act).toBeUndefined();
    expect(payload.exp!).toBeLessThanOrEqual(aClaims.exp!);

    const { type, event } = await lastEvent(h);
    expect(type).toBe('exchange.issued');
    expect(event).toMatchObject({ plugin: 'summarizer', chain: ['crm-reader', 'summarizer'], upstream_jti: aClaims.jti, jti: payload.jti, task: h.task });
    expect((event.reasons as string[]).join('\n')).toContain('crm-reader → summarizer');
    // Tokens are named by jti and digest only.
    expect(JSON.stringify(event)).not.toContain(a.split('.')[2]);
  });

  it("two hops with no scope named: B's default scope, within the chain", async () => {
    const a = await rootToken(h, 'crm-reader', CRM_API, { scope: 'contacts:read contacts:search' });
    const res = await delegate(h, 'summarizer', a, CRM_API);
    expect(res.status).toBe(200);
    expect(res.body.scope).toBe('contacts:read');
  });

  it('three hops A → B → C: act nests newest outermost, the audit event has the full chain', async () => {
    const a = await rootToken(h, 'crm-reader', CRM_API, { scope: 'contacts:read contacts:search' });
    const b = (await delegate(h, 'summarizer', a, CRM_API, { scope: 'contacts:read contacts:search' })).body.access_token as string;
    const res = await delegate(h, 'notifier', b, CRM_API, { scope: 'contacts:search' });
    expect(res.status).toBe(200);
    const claims = decodeJwt(res.body.access_token as string);
    expect(claims).toMatchObject({ sub: 'crm-reader', act: { sub: 'notifier', act: { sub: 'summarizer' } }, plugin: 'notifier', client_id: 'notifier', scope: 'contacts:search' });
    expect(claims.exp!).toBeLessThanOrEqual(decodeJwt(b).exp!);
    const { event } = await lastEvent(h);
    expect(event.chain).toEqual(['crm-reader', 'summarizer', 'notifier']);
    expect(event.upstream_jti).toBe(decodeJwt(b).jti);
  });

  it('delegation to a plugin the upstream does not list is refused', async () => {
    const a = await rootToken(h, 'crm-reader', CRM_API);
    const res = await delegate(h, 'ticket-writer', a, TICKETS_API, {}, 'ticket-writer-1');
    const event = await expectDenied(h, res, 'invalid_request', 'ERR_DELEGATION_NOT_ALLOWED');
    expect(event.chain).toEqual(['crm-reader']);
    expect(event.detail).toMatchObject({ target: 'ticket-writer' });
    // The same target may still not be reached by skipping a hop: crm-reader does not list notifier.
    await expectDenied(h, await delegate(h, 'notifier', a, CRM_API), 'invalid_request', 'ERR_DELEGATION_NOT_ALLOWED');
  });

  it('a cycle (A → B → A) is refused', async () => {
    const a = await rootToken(h, 'crm-reader', CRM_API);
    const b = (await delegate(h, 'summarizer', a, CRM_API)).body.access_token as string;
    await expectDenied(h, await delegate(h, 'crm-reader', b, CRM_API), 'invalid_request', 'ERR_DELEGATION_CYCLE');
  });

  it('scope escalation at hop 2: a scope only B holds, and a scope the upstream token does not hold', async () => {
    const a = await rootToken(h, 'crm-reader', CRM_API, { scope: 'contacts:read' });
    const onlyB = await expectDenied(h, await delegate(h, 'summarizer', a, CRM_API, { scope: 'contacts:delete' }), 'invalid_scope', 'ERR_DELEGATION_SCOPE_ESCALATION');
    expect(onlyB.detail).toMatchObject({ outside: ['contacts:delete'] });
    // Both grants hold contacts:search, but A's token for this very API was narrowed to contacts:read.
    const res = await delegate(h, 'summarizer', a, CRM_API, { scope: 'contacts:search' });
    await expectDenied(h, res, 'invalid_scope', 'ERR_DELEGATION_SCOPE_ESCALATION');
    expect(res.body.error_description).toContain('contacts:search');
    // A holds contacts:export, B does not: B's own grant refuses it.
    await expectDenied(h, await delegate(h, 'summarizer', a, CRM_API, { scope: 'contacts:export' }), 'invalid_scope', 'ERR_SCOPE_NOT_GRANTED');
  });

  it("an audience not in B's grants is refused, and so is one B holds but the root does not", async () => {
    const a = await rootToken(h, 'crm-reader', CRM_API);
    await expectDenied(h, await delegate(h, 'summarizer', a, TICKETS_API), 'invalid_target', 'ERR_AUDIENCE_NOT_GRANTED');
    await expectDenied(h, await delegate(h, 'summarizer', a, NOTES_API), 'invalid_target', 'ERR_DELEGATION_AUDIENCE_ESCALATION');
  });

  it('a cross-task chain is refused', async () => {
    const a = await rootToken(h, 'crm-reader', CRM_API);
    const other = await h.tb.openTask({ plugins: ALL });
    await expectDenied(h, await delegate(h, 'summarizer', a, CRM_API, { task: other }), 'invalid_request', 'ERR_DELEGATION_TASK_MISMATCH');
    // Naming the same task explicitly is fine.
    expect((await delegate(h, 'summarizer', a, CRM_API, { task: h.task })).status).toBe(200);
  });

  it("a forged upstream token (foreign ES256 key under the broker's kid) is refused", async () => {
    const a = await rootToken(h, 'crm-reader', CRM_API, { scope: 'contacts:read contacts:search' });
    const header = decodeProtectedHeader(a);
    const { privateKey } = await generateKeyPair('ES256');
    const forged = await new SignJWT({ ...decodeJwt(a), scope: 'contacts:read contacts:search contacts:export' })
      .setProtectedHeader({ alg: 'ES256', kid: header.kid!, typ: 'at+jwt' })
      .sign(privateKey);
    await expectDenied(h, await delegate(h, 'summarizer', forged, CRM_API), 'invalid_request', 'ERR_UPSTREAM_TOKEN_INVALID');
    // An attestation where the Leash token belongs is not an upstream token either.
    await expectDenied(h, await delegate(h, 'summarizer', await sa(h, 'crm-reader'), CRM_API), 'invalid_request', 'ERR_UPSTREAM_TOKEN_INVALID');
    await expectDenied(h, await delegate(h, 'summarizer', 'not-a-jwt', CRM_API), 'invalid_request', 'ERR_UPSTREAM_TOKEN_INVALID');
  });

  it("the actor must be the client: another plugin's attestation as actor_token is refused", async () => {
    const a = await rootToken(h, 'crm-reader', CRM_API);
    await expectDenied(h, await delegate(h, 'summarizer', a, CRM_API, {}, 'notifier'), 'unauthorized_client', 'ERR_CLIENT_PLUGIN_MISMATCH');
  });

  it('actor_token_type other than jwt is refused as invalid_request', async () => {
    const a = await rootToken(h, 'crm-reader', CRM_API);
    const res = await delegate(h, 'summarizer', a, CRM_API, { actor_token_type: 'urn:ietf:params:oauth:token-type:saml2' });
    await expectDenied(h, res, 'invalid_request', 'ERR_ACTOR_TOKEN_TYPE_UNSUPPORTED');
  });

  it('a revoked upstream token is refused (POST /admin/revocations)', async () => {
    const a = await rootToken(h, 'crm-reader', CRM_API);
    expect((await delegate(h, 'summarizer', a, CRM_API)).status).toBe(200);
    const rev = await fetch(`${h.tb.url}/admin/revocations`, {
      method: 'POST',
      headers: { authorization: `Bearer ${OPS_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ scope: 'token', id: decodeJwt(a).jti, reason: 'test: leaked upstream token' }),
    });
    expect(rev.status).toBe(201);
    const event = await expectDenied(h, await delegate(h, 'summarizer', a, CRM_API), 'invalid_request', 'ERR_UPSTREAM_TOKEN_REVOKED');
    expect(event.upstream_jti).toBeUndefined(); // refused before the chain was read: the jti is in detail
    expect(event.detail).toMatchObject({ upstream_jti: decodeJwt(a).jti });
  });

  it('ending the task revokes the upstream token, so no chain continues from it', async () => {
    const task = await h.tb.openTask({ plugins: ALL });
    const res0 = await h.tb.exchange({ grant_type: EXCHANGE, client_id: 'crm-reader', subject_token: await sa(h, 'crm-reader'), subject_token_type: JWT_TYPE, resource: CRM_API, task });
    const a = res0.body.access_token as string;
    expect((await delegate(h, 'summarizer', a, CRM_API)).status).toBe(200);
    const end = await fetch(`${h.tb.url}/tasks/${task}`, { method: 'DELETE', headers: { authorization: `Bearer ${ORCHESTRATOR_KEY}` } });
    expect(end.status).toBeLessThan(300);
    await expectDenied(h, await delegate(h, 'summarizer', a, CRM_API), 'invalid_request', 'ERR_UPSTREAM_TOKEN_REVOKED');
  });

  it("a DPoP-bound upstream token may be presented as subject_token; the issued token is B's own", async () => {
    const dpop = await createDpopKey('ES256', { clock: h.clock });
    const res0 = await h.tb.exchange(
      { grant_type: EXCHANGE, client_id: 'crm-reader', subject_token: await sa(h, 'crm-reader'), subject_token_type: JWT_TYPE, resource: CRM_API, task: h.task },
      { dpop: await dpop.proof({ method: 'POST', url: `${h.tb.url}/token` }) },
    );
    expect(res0.status).toBe(200);
    const a = res0.body.access_token as string;
    expect(decodeJwt(a).cnf).toBeDefined();
    const res = await delegate(h, 'summarizer', a, CRM_API);
    expect(res.status).toBe(200);
    expect(decodeJwt(res.body.access_token as string).cnf).toBeUndefined();
  });

  it('a sensitive read upstream may not drive a plugin that can exfiltrate (toxic combination, deny)', async () => {
    const hr = await rootToken(h, 'hr-reader', HR_API);
    // mailer asks only for its harmless HR read grant: the capability to exfiltrate is what counts.
    const event = await expectDenied(h, await delegate(h, 'mailer', hr, HR_API), 'invalid_request', 'ERR_DELEGATION_TOXIC');
    expect(event.detail).toMatchObject({ rule: { upstream: 'read-sensitive', downstream: 'exfiltrate', action: 'deny' }, chain: ['hr-reader', 'mailer'] });
    expect(event.chain).toEqual(['hr-reader']);
  });

  it("revoking the chain's root plugin stops the chain from growing from tokens issued before it", async () => {
    const a = await rootToken(h, 'crm-reader', CRM_API, { scope: 'contacts:read contacts:search' });
    const b = (await delegate(h, 'summarizer', a, CRM_API)).body.access_token as string;
    const rev = await fetch(`${h.tb.url}/admin/revocations`, {
      method: 'POST',
      headers: { authorization: `Bearer ${OPS_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ scope: 'plugin', id: 'crm-reader', reason: 'test: compromised root plugin' }),
    });
    expect(rev.status).toBe(201);
    // b belongs to summarizer, which nobody revoked; its root did.
    const event = await expectDenied(h, await delegate(h, 'notifier', b, CRM_API), 'invalid_request', 'ERR_UPSTREAM_TOKEN_REVOKED');
    expect(event.detail).toMatchObject({ revoked_plugin: 'crm-reader' });
    h.clock.advance(2); // tokens issued from now on are after the revocation
  });

  // Last: moves the clock.
  it('the issued token never outlives the upstream token, and an expired upstream is refused', async () => {
    const a = await rootToken(h, 'crm-reader', CRM_API, { expires_in: '60' });
    h.clock.advance(20);
    const res = await delegate(h, 'summarizer', a, CRM_API);
    expect(res.status).toBe(200);
    expect(res.body.expires_in).toBeLessThanOrEqual(40);
    expect(decodeJwt(res.body.access_token as string).exp).toBeLessThanOrEqual(decodeJwt(a).exp!);
    h.clock.advance(41 + h.tb.config.settings.tokens.clock_skew);
    await expectDenied(h, await delegate(h, 'summarizer', a, CRM_API), 'invalid_request', 'ERR_UPSTREAM_TOKEN_INVALID');
  });
});

describe('delegation chains with a strict policy (max_depth 1, toxic → approval)', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await harness((cfg) => {
      cfg.settings.delegation = { max_depth: 1, toxic_combinations: [{ upstream: 'read-sensitive', downstream: 'exfiltrate', action: 'approval' }] };
    });
  });
  afterAll(async () => h.tb.close());

  it('one hop is within depth 1; a second hop is refused', async () => {
    const a = await rootToken(h, 'crm-reader', CRM_API, { scope: 'contacts:read contacts:search' });
    const b = await delegate(h, 'summarizer', a, CRM_API);
    expect(b.status).toBe(200);
    const event = await expectDenied(h, await delegate(h, 'notifier', b.body.access_token as string, CRM_API), 'invalid_request', 'ERR_DELEGATION_DEPTH');
    expect(event.detail).toMatchObject({ depth: 2, max_depth: 1 });
    expect(event.chain).toEqual(['crm-reader', 'summarizer']);
  });

  it('a toxic combination whose action is approval goes to the approval gate, not straight to a token', async () => {
    const hr = await rootToken(h, 'hr-reader', HR_API);
    const res = await delegate(h, 'mailer', hr, HR_API);
    expect(res.body.access_token).toBeUndefined();
    expect(res.status).toBe(400);
    const { event } = await lastEvent(h);
    expect(event.reason).toMatch(/^ERR_APPROVAL_/);
  });
});
