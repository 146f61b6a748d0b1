import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { request as httpRequest } from 'node:http';
import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';
import * as oidc from 'openid-client';
import { createDpopKey } from '../../src/client/index.js';
import { CRM_API, EXCHANGE, JWT_TYPE, TICKETS_API, startTestBroker, type TestBroker } from '../support/broker.js';

describe('token exchange over HTTP', () => {
  let tb: TestBroker;
  let task: string;

  beforeAll(async () => {
    tb = await startTestBroker();
    task = await tb.openTask({ plugins: ['crm-reader'], ttl_seconds: 600 });
  });
  afterAll(async () => tb.close());

  const params = (subject: string, extra: Record<string, string> = {}) => ({
    grant_type: EXCHANGE,
    client_id: 'crm-reader',
    subject_token: subject,
    subject_token_type: JWT_TYPE,
    resource: CRM_API,
    task,
    ...extra,
  });

  it('issues an RFC 9068 at+jwt bound to one audience and the task, verifiable with the JWKS', async () => {
    const sa = await tb.cluster.saToken();
    const res = await tb.exchange(params(sa));
    expect(res.status).toBe(200);
    expect(res.headers.get('cache-control')).toContain('no-store');
    expect(res.body).toMatchObject({
      issued_token_type: 'urn:ietf:params:oauth:token-type:access_token',
      token_type: 'Bearer',
      expires_in: 300,
      scope: 'contacts:read',
    });
    const token = res.body.access_token as string;
    expect(decodeProtectedHeader(token).typ).toBe('at+jwt');
    const { payload } = await jwtVerify(token, createRemoteJWKSet(new URL(`${tb.url}/jwks`)), { issuer: tb.url, audience: CRM_API, typ: 'at+jwt' });
    expect(payload).toMatchObject({
      sub: 'crm-reader',
      client_id: 'crm-reader',
      plugin: 'crm-reader',
      task,
      scope: 'contacts:read',
      workload: { issuer: 'test-cluster', sub: 'system:serviceaccount:plugins:crm-reader' },
    });
    expect(payload.exp! - payload.iat!).toBe(300);
    expect(payload.nbf).toBe(payload.iat);
    expect(typeof payload.jti).toBe('string');
    // the issued-token index has it, by id only
    const record = await tb.broker.testing.store.getIssued(payload.jti!);
    expect(record).toMatchObject({ plugin: 'crm-reader', task, audience: CRM_API, kind: 'jwt' });
  });

  it('a requested subset of scopes and a shorter TTL are honoured; audience works like resource', async () => {
    const { resource: _resource, ...rest } = params(await tb.cluster.saToken(), { scope: 'contacts:search contacts:read', expires_in: '60' });
    const res = await tb.exchange({ ...rest, audience: CRM_API });
    expect(res.status).toBe(200);
    expect(res.body.scope).toBe('contacts:search contacts:read');
    expect(res.body.expires_in).toBe(60);
  });

  it('the TTL never outlives the task', async () => {
    const shortTask = await tb.openTask({ plugins: ['crm-reader'], ttl_seconds: 42 });
    const res = await tb.exchange(params(await tb.cluster.saToken(), { task: shortTask }));
    expect(res.status).toBe(200);
    expect(res.body.expires_in).toBeLessThanOrEqual(42);
    expect(res.body.expires_in).toBeGreaterThanOrEqual(40);
  });

  it('an ended task gets no more tokens', async () => {
    const t = await tb.openTask({ plugins: ['crm-reader'] });
    const sa = await tb.cluster.saToken();
    expect((await tb.exchange(params(sa, { task: t }))).status).toBe(200);
    const del = await fetch(`${tb.url}/tasks/${t}`, { method: 'DELETE', headers: { authorization: 'Bearer test-orchestrator-key-0123456789' } });
    expect(del.status).toBe(200);
    expect(((await del.json()) as { state: string }).state).toBe('ended');
    const again = await tb.exchange(params(sa, { task: t }));
    expect({ status: again.status, error: again.body.error }).toEqual({ status: 400, error: 'invalid_grant' });
  });

  it('DPoP: a proof binds the token (cnf.jkt, token_type DPoP)', async () => {
    const ticketTask = await tb.openTask({ plugins: ['ticket-writer'] });
    const key = await createDpopKey('ES256');
    const res = await tb.exchange(
      { ...params(await tb.cluster.saToken({ sa: 'ticket-writer-7' }), { resource: TICKETS_API, task: ticketTask }), client_id: 'ticket-writer' },
      { dpop: await key.proof({ method: 'POST', url: `${tb.url}/token` }) },
    );
    expect(res.status).toBe(200);
    expect(res.body.token_type).toBe('DPoP');
    const { payload } = await jwtVerify(res.body.access_token as string, createRemoteJWKSet(new URL(`${tb.url}/jwks`)), { audience: TICKETS_API });
    expect(payload.cnf).toEqual({ jkt: key.jkt });
    expect(payload.sub).toBe('ticket-writer');
  });

  it('each exchange leaves exactly one audit event, with a digest and never the token', async () => {
    const before = (await tb.broker.testing.store.read(1, 100000)).length;
    const sa = await tb.cluster.saToken();
    await tb.exchange(params(sa));
    await tb.exchange(params(sa, { scope: 'contacts:delete' }));
    const events = (await tb.broker.testing.store.read(1, 100000)).slice(before);
    expect(events.map((e) => e.type)).toEqual(['exchange.issued', 'exchange.denied']);
    expect(events[1]!.event).toMatchObject({ decision: 'denied', reason: 'ERR_SCOPE_NOT_GRANTED', plugin: 'crm-reader' });
    const text = JSON.stringify(events);
    expect(text).not.toContain(sa);
    expect(text).not.toContain(sa.split('.')[2]);
    expect(events[0]!.event.subject_token_sha256).toEqual(expect.any(String));
  });

  it('metrics count exchanges by outcome, reason and plugin, and attestation failures by issuer and reason', async () => {
    await tb.exchange(params(await tb.cluster.saToken({ claims: { aud: ['not-leash'] } })));
    // A client_id the caller chose never becomes a label value: no plugin was resolved, so both count under "-".
    await tb.exchange({ ...params(await tb.cluster.saToken({ claims: { aud: ['not-leash'] } })), client_id: 'ticket-writer' });
    const text = await (await fetch(`${tb.managementUrl}/metrics`)).text();
    expect(text).toMatch(/leash_attestation_failures_total\{issuer="test-cluster",reason="ERR_ATTESTATION_AUDIENCE"\} 2/);
    expect(text).toMatch(/leash_exchanges_total\{outcome="issued",reason="OK",plugin="crm-reader"\} \d+/);
    expect(text).toMatch(/leash_exchanges_total\{outcome="denied",reason="ERR_SCOPE_NOT_GRANTED",plugin="crm-reader"\} \d+/);
    expect(text).toMatch(/leash_exchanges_total\{outcome="denied",reason="ERR_ATTESTATION_AUDIENCE",plugin="-"\} 2/);
    expect(text).toMatch(/leash_tokens_issued_total\{kind="jwt",plugin="crm-reader"\} \d+/);
    expect(text).toMatch(/leash_active_tasks \d+/);
    expect(text).toContain('leash_exchange_duration_seconds_bucket');
  });

  it('publishes OIDC discovery and RFC 8414 metadata that point at the token endpoint and JWKS', async () => {
    for (const path of ['/.well-known/openid-configuration', '/.well-known/oauth-authorization-server']) {
      const res = await fetch(`${tb.url}${path}`);
      expect(res.status).toBe(200);
      const meta = (await res.json()) as Record<string, unknown>;
      expect(meta.issuer).toBe(tb.url);
      expect(meta.token_endpoint).toBe(`${tb.url}/token`);
      expect(meta.jwks_uri).toBe(`${tb.url}/jwks`);
      expect(meta.grant_types_supported).toContain(EXCHANGE);
    }
    const jwks = (await (await fetch(`${tb.url}/jwks`)).json()) as { keys: Array<Record<string, unknown>> };
    expect(jwks.keys.length).toBeGreaterThan(0);
    for (const k of jwks.keys) expect(k.d).toBeUndefined();
  });

  it('discovery URLs always come from settings.issuer, whatever Host or X-Forwarded-* the request says', async () => {
    // What a TLS-terminating ingress sends, and what a client poisoning a cache would send.
    const headerSets = [
      { host: 'leash.example.com', 'x-forwarded-proto': 'https' },
      { host: 'evil.example', 'x-forwarded-host': 'evil.example', 'x-forwarded-proto': 'http', 'x-forwarded-port': '444' },
    ];
    for (const headers of headerSets) {
      const meta = await new Promise<Record<string, unknown>>((resolve, reject) => {
        const target = new URL(`${tb.url}/.well-known/openid-configuration`);
        const req = httpRequest({ host: target.hostname, port: target.port, path: target.pathname, headers }, (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => (body += c));
          res.on('end', () => resolve(JSON.parse(body) as Record<string, unknown>));
        });
        req.on('error', reject);
        req.end();
      });
      expect(meta.issuer).toBe(tb.url);
      expect(meta.token_endpoint).toBe(`${tb.url}/token`);
      expect(meta.jwks_uri).toBe(`${tb.url}/jwks`);
    }
  });

  it('an unmodified openid-client discovers Leash and performs the token exchange', async () => {
    const config = await oidc.discovery(new URL(tb.url), 'crm-reader', undefined, oidc.None(), { execute: [oidc.allowInsecureRequests] });
    const response = await oidc.genericGrantRequest(config, EXCHANGE, {
      subject_token: await tb.cluster.saToken(),
      subject_token_type: JWT_TYPE,
      resource: CRM_API,
      task,
    });
    expect(response.token_type.toLowerCase()).toBe('bearer');
    expect(response.expires_in).toBe(300);
    const { payload } = await jwtVerify(response.access_token, createRemoteJWKSet(new URL(config.serverMetadata().jwks_uri!)), { audience: CRM_API });
    expect(payload.task).toBe(task);
    // and a refusal surfaces as openid-client's ResponseBodyError with the OAuth error
    await expect(
      oidc.genericGrantRequest(config, EXCHANGE, { subject_token: await tb.cluster.saToken(), subject_token_type: JWT_TYPE, resource: CRM_API, task, scope: 'contacts:delete' }),
    ).rejects.toMatchObject({ error: 'invalid_scope' });
  });
});
