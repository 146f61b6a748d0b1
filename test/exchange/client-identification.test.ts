import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { request } from 'node:http';
import { decodeJwt } from 'jose';
import { ATTESTED_CLIENT_ID } from '../../src/http/oauth/token-client.js';
import { createDpopKey } from '../../src/client/index.js';
import { ACCESS_TYPE, harness, rootToken, type Harness } from '../delegation/chain-harness.js';
import { CRM_API, EXCHANGE, JWT_TYPE, TICKETS_API } from '../support/broker.js';

/**
 * RFC 8693 does not require client authentication, and a Leash attestation already names
 * exactly one plugin: a generic token-exchange client that sends no client_id must work.
 * A client_id that is sent must match; client credentials Leash cannot verify are refused.
 */

describe('token endpoint client identification', () => {
  let h: Harness;
  const nowS = () => Math.floor(h.clock.now() / 1000);
  const sa = (name: string, claims?: Record<string, unknown>) => h.tb.cluster.saToken({ sa: name, nowSeconds: nowS(), ...(claims ? { claims } : {}) });

  beforeAll(async () => {
    h = await harness();
  });
  afterAll(async () => h.tb.close());

  /** A plain RFC 8693 form POST, as curl or any generic client sends it: no client_id. */
  const anonymous = async (params: Record<string, string>, headers: Record<string, string> = {}) => h.tb.exchange({ grant_type: EXCHANGE, subject_token_type: JWT_TYPE, ...params }, headers);

  /** The latest exchange decision in the audit trail (other events, e.g. the sweeper's, skipped). */
  const lastEvent = async () => {
    const all = (await h.tb.broker.testing.store.read(1, 1_000_000)).filter((e) => e.type.startsWith('exchange.'));
    return all[all.length - 1]!;
  };

  it("no client_id: the attestation names the plugin, and the token is that plugin's", async () => {
    const res = await anonymous({ subject_token: await sa('crm-reader'), resource: CRM_API, task: h.task });
    expect(res.status).toBe(200);
    expect(decodeJwt(res.body.access_token as string)).toMatchObject({ sub: 'crm-reader', client_id: 'crm-reader', plugin: 'crm-reader', aud: CRM_API });
    const { type, event } = await lastEvent();
    expect(type).toBe('exchange.issued');
    expect(event.plugin).toBe('crm-reader');
    // The audit says what was sent: no client_id (never the reserved stand-in).
    expect(event.client_id).toBeUndefined();
  });

  it('no client_id works with DPoP too', async () => {
    const task = await h.tb.openTask({ plugins: ['ticket-writer'] });
    const key = await createDpopKey('ES256');
    const res = await anonymous({ subject_token: await sa('ticket-writer-3'), resource: TICKETS_API, task }, { dpop: await key.proof({ method: 'POST', url: `${h.tb.url}/token` }) });
    expect(res.status).toBe(200);
    expect(res.body.token_type).toBe('DPoP');
    expect(decodeJwt(res.body.access_token as string)).toMatchObject({ client_id: 'ticket-writer', cnf: { jkt: key.jkt } });
  });

  it('no client_id in a delegation: the actor_token names the plugin', async () => {
    const upstream = await rootToken(h, 'crm-reader', CRM_API);
    const res = await anonymous({ subject_token: upstream, subject_token_type: ACCESS_TYPE, actor_token: await sa('summarizer'), actor_token_type: JWT_TYPE, resource: CRM_API });
    expect(res.status).toBe(200);
    expect(decodeJwt(res.body.access_token as string)).toMatchObject({ sub: 'crm-reader', client_id: 'summarizer', act: { sub: 'summarizer' } });
  });

  it("no client_id and a bad or unbound attestation: the pipeline's precise error, audited", async () => {
    const expired = await anonymous({ subject_token: await sa('crm-reader', { exp: nowS() - 600 }), resource: CRM_API, task: h.task });
    expect({ status: expired.status, error: expired.body.error }).toEqual({ status: 400, error: 'invalid_request' });
    expect(String(expired.body.error_description)).toMatch(/\(ERR_ATTESTATION_EXPIRED\)$/);
    expect(await lastEvent()).toMatchObject({ type: 'exchange.denied', event: { reason: 'ERR_ATTESTATION_EXPIRED' } });
    const unbound = await anonymous({ subject_token: await sa('nobody-at-all'), resource: CRM_API, task: h.task });
    expect({ status: unbound.status, error: unbound.body.error }).toEqual({ status: 400, error: 'invalid_request' });
    expect(String(unbound.body.error_description)).toMatch(/\(ERR_WORKLOAD_UNBOUND\)$/);
    expect(unbound.body.access_token).toBeUndefined();
  });

  it('a client_id that is sent must be the plugin the attestation names', async () => {
    const res = await h.tb.exchange({ grant_type: EXCHANGE, client_id: 'summarizer', subject_token: await sa('crm-reader'), subject_token_type: JWT_TYPE, resource: CRM_API, task: h.task });
    expect({ status: res.status, error: res.body.error }).toEqual({ status: 400, error: 'unauthorized_client' });
    expect(res.body.access_token).toBeUndefined();
  });

  it('the reserved stand-in id, sent explicitly, is the same as sending none', async () => {
    const res = await h.tb.exchange({ grant_type: EXCHANGE, client_id: ATTESTED_CLIENT_ID, subject_token: await sa('crm-reader'), subject_token_type: JWT_TYPE, resource: CRM_API, task: h.task });
    expect(res.status).toBe(200);
    expect(decodeJwt(res.body.access_token as string).client_id).toBe('crm-reader');
  });

  it('a garbage client_assertion is refused (invalid_client), audited, and no token leaves', async () => {
    for (const extra of [{ client_id: 'crm-reader' }, {}] as Record<string, string>[]) {
      const res = await anonymous({
        ...extra,
        subject_token: await sa('crm-reader'),
        resource: CRM_API,
        task: h.task,
        client_assertion: 'garbage',
        client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
      });
      // Verified by the pipeline (private_key_jwt), not ignored: a credential that does not verify is invalid_client.
      expect({ status: res.status, error: res.body.error }).toEqual({ status: 401, error: 'invalid_client' });
      expect(res.body.access_token).toBeUndefined();
      expect(res.headers.get('cache-control')).toContain('no-store');
      const { type, event } = await lastEvent();
      expect(type).toBe('exchange.denied');
      expect(event.reason).toBe('ERR_CLIENT_AUTH_FAILED');
      expect(event.client_id).toBe(extra.client_id);
    }
  });

  it('HTTP Basic client credentials are refused by the protocol layer, with or without client_id in the body', async () => {
    const basic = { authorization: `Basic ${Buffer.from('crm-reader:secret').toString('base64')}` };
    for (const extra of [{ client_id: 'crm-reader' }, {}] as Record<string, string>[]) {
      const res = await anonymous({ ...extra, subject_token: await sa('crm-reader'), resource: CRM_API, task: h.task }, basic);
      expect({ status: res.status, error: res.body.error }).toEqual({ status: 401, error: 'invalid_client' });
      expect(res.body.access_token).toBeUndefined();
    }
  });

  it('a form in another charset, without client_id, is read as oidc-provider reads it', async () => {
    const form = new URLSearchParams({ grant_type: EXCHANGE, subject_token: await sa('crm-reader'), subject_token_type: JWT_TYPE, resource: CRM_API, task: h.task });
    const res = await fetch(`${h.tb.url}/token`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded; charset=ISO-8859-1' }, body: form.toString() });
    expect(res.status).toBe(200);
  });

  it('a chunked body (no Content-Length) larger than settings.max_body_bytes is 413, not read to the end', async () => {
    const limit = h.tb.config.settings.max_body_bytes;
    const status = await new Promise<number>((resolve, reject) => {
      const url = new URL(`${h.tb.url}/token`);
      const req = request(
        { host: url.hostname, port: url.port, path: url.pathname, method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', 'transfer-encoding': 'chunked' } },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        },
      );
      req.on('error', reject);
      req.write(`grant_type=${encodeURIComponent(EXCHANGE)}&pad=`);
      req.write('x'.repeat(limit + 10));
      req.end();
    });
    expect(status).toBe(413);
  });

  it('discovery says plugins are public clients, or authenticate with a registered key', async () => {
    const meta = (await (await fetch(`${h.tb.url}/.well-known/openid-configuration`)).json()) as Record<string, unknown>;
    expect(meta.token_endpoint_auth_methods_supported).toEqual(['none', 'private_key_jwt']);
  });
});
