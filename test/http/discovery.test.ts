import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { generateKeyPairSync, randomUUID, type KeyObject } from 'node:crypto';
import { SignJWT, decodeJwt, decodeProtectedHeader, exportJWK, generateKeyPair, type JWK } from 'jose';
import { CLIENT_ASSERTION_TYPE } from '../../src/http/oauth/client-auth.js';
import { CRM_API, EXCHANGE, JWT_TYPE, TICKETS_API, startTestBroker, type TestBroker } from '../support/broker.js';
import { rawRequest } from '../support/http.js';
import { CRM_RS_SECRET, basic, postForm, sha256hex, ticketsKey, withResourceServers } from './introspect-support.js';

const DPOP_ALGORITHMS = ['ES256', 'EdDSA', 'Ed25519', 'RS256', 'PS256'];
/** A resource server with one key per family, so every advertised assertion algorithm can be tried for real. */
const ALGS_API = 'https://algs.example.com';

type Doc = Record<string, unknown>;

describe('discovery: every member of both documents is something that works', () => {
  let tb: TestBroker;
  let doc: Doc;
  let task: string;
  /** Signing key per JWS algorithm of the algs-api resource server. */
  const assertionKeys = new Map<string, { key: KeyObject; kid: string }>();

  beforeAll(async () => {
    // node:crypto keys are not bound to one JWS algorithm (WebCrypto's are): one RSA key serves RS* and PS*.
    const jwks: JWK[] = [];
    const family = (kid: string, pair: { publicKey: KeyObject; privateKey: KeyObject }, algs: readonly string[]) => {
      jwks.push({ ...(pair.publicKey.export({ format: 'jwk' }) as JWK), kid });
      for (const alg of algs) assertionKeys.set(alg, { key: pair.privateKey, kid });
    };
    family('rsa', generateKeyPairSync('rsa', { modulusLength: 2048 }), ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512']);
    family('p256', generateKeyPairSync('ec', { namedCurve: 'P-256' }), ['ES256']);
    family('p384', generateKeyPairSync('ec', { namedCurve: 'P-384' }), ['ES384']);
    family('p521', generateKeyPairSync('ec', { namedCurve: 'P-521' }), ['ES512']);
    family('ed', generateKeyPairSync('ed25519'), ['EdDSA', 'Ed25519']);
    tb = await startTestBroker({
      patch: withResourceServers(await ticketsKey(), (cfg) => {
        cfg.settings.dpop = { algorithms: DPOP_ALGORITHMS };
        cfg.resource_servers.push({ id: 'algs-api', audiences: [ALGS_API], jwks: { inline: { keys: jwks } } });
      }),
    });
    task = await tb.openTask({ plugins: ['crm-reader', 'ticket-writer'] });
    doc = (await rawRequest(tb.url, { method: 'GET', path: '/.well-known/openid-configuration' })).json!;
  });
  afterAll(async () => tb.close());

  const nowS = () => Math.floor(Date.now() / 1000);
  const crmToken = async () => {
    const res = await tb.exchange({ grant_type: EXCHANGE, client_id: 'crm-reader', subject_token: await tb.cluster.saToken(), subject_token_type: JWT_TYPE, resource: CRM_API, task });
    expect(res.status).toBe(200);
    return res.body.access_token as string;
  };
  const assertion = (alg: string, aud: string) => {
    const { key, kid } = assertionKeys.get(alg)!;
    return new SignJWT({ jti: randomUUID() })
      .setProtectedHeader({ alg, kid })
      .setIssuer('algs-api')
      .setSubject('algs-api')
      .setAudience(aud)
      .setIssuedAt()
      .setExpirationTime(nowS() + 60)
      .sign(key);
  };
  /** Authenticates as a resource server with `method` at `url`; answers the HTTP status. */
  const authenticated = async (url: string, method: string, token: string): Promise<number> => {
    switch (method) {
      case 'client_secret_basic':
        return (await postForm(url, { token }, { authorization: basic('crm-api', CRM_RS_SECRET) })).status;
      case 'client_secret_post':
        return (await postForm(url, { token, client_id: 'crm-api', client_secret: CRM_RS_SECRET })).status;
      case 'private_key_jwt':
        return (await postForm(url, { token, client_assertion_type: CLIENT_ASSERTION_TYPE, client_assertion: await assertion('ES256', url) })).status;
      case 'none':
        return (await postForm(url, { token, client_id: 'crm-reader' })).status;
      default:
        throw new Error(`no check for auth method ${method}`);
    }
  };

  /** One check per member: what the document says is tried against the running broker. */
  const CHECKS: Record<string, (value: unknown) => Promise<void>> = {
    authorization_details_types_supported: async (v) => {
      expect(v).toEqual(['leash_task', 'leash_mcp_tool_call']);
      // leash_task names the task instead of the `task` parameter; a type not listed is refused (RFC 9396 §5).
      const base = { grant_type: EXCHANGE, client_id: 'crm-reader', subject_token: await tb.cluster.saToken(), subject_token_type: JWT_TYPE, resource: CRM_API };
      const byDetail = await tb.exchange({ ...base, authorization_details: JSON.stringify([{ type: 'leash_task', task }]) });
      expect(byDetail.status).toBe(200);
      expect(decodeJwt(byDetail.body.access_token as string).task).toBe(task);
      const unknown = await tb.exchange({ ...base, task, authorization_details: JSON.stringify([{ type: 'payment_initiation' }]) });
      expect(unknown.status).toBe(400);
      expect(unknown.body.error).toBe('invalid_authorization_details');
      // leash_mcp_tool_call is accepted by the parser and refused by a grant that lists no tools.
      const call = { type: 'leash_mcp_tool_call', tool: 'search', arguments_sha256: 'A'.repeat(43) };
      const noTools = await tb.exchange({ ...base, task, authorization_details: JSON.stringify([call]) });
      expect(noTools.body.error).toBe('invalid_authorization_details');
      expect(String(noTools.body.error_description)).toContain('ERR_TOOL_NOT_GRANTED');
    },
    issuer: async (v) => {
      expect(v).toBe(tb.url);
      expect(decodeJwt(await crmToken()).iss).toBe(v);
    },
    token_endpoint: async (v) => {
      expect(v).toBe(`${tb.url}/token`);
      const res = await postForm(v as string, { grant_type: EXCHANGE, client_id: 'crm-reader', subject_token: await tb.cluster.saToken(), subject_token_type: JWT_TYPE, resource: CRM_API, task });
      expect(res.status).toBe(200);
    },
    jwks_uri: async (v) => {
      const res = await fetch(v as string);
      expect(res.status).toBe(200);
      const set = (await res.json()) as { keys: JWK[] };
      expect(set.keys.map((k) => k.kid)).toContain(decodeProtectedHeader(await crmToken()).kid);
    },
    grant_types_supported: async (v) => {
      expect(v).toEqual([EXCHANGE]);
      for (const other of [
        'authorization_code',
        'client_credentials',
        'refresh_token',
        'password',
        'urn:ietf:params:oauth:grant-type:device_code',
        'urn:openid:params:grant-type:ciba',
        'urn:ietf:params:oauth:grant-type:jwt-bearer',
      ]) {
        const res = await postForm(`${tb.url}/token`, { grant_type: other, client_id: 'crm-reader' });
        expect(`${other}: ${res.status} ${String(res.body.error)}`).toBe(`${other}: 400 unsupported_grant_type`);
      }
    },
    token_endpoint_auth_methods_supported: async (v) => {
      // private_key_jwt at the token endpoint: test/exchange/must-deny.test.ts (keyed plugins).
      expect(v).toEqual(['none', 'private_key_jwt']);
      // `none` is what every exchange above used; a client secret is not a way in.
      const res = await postForm(
        `${tb.url}/token`,
        { grant_type: EXCHANGE, subject_token: await tb.cluster.saToken(), subject_token_type: JWT_TYPE, resource: CRM_API, task },
        { authorization: basic('crm-reader', 'secret') },
      );
      expect(res.status).toBeGreaterThanOrEqual(400);
      expect(res.status).toBeLessThan(500);
      expect(res.body.access_token).toBeUndefined();
    },
    token_endpoint_auth_signing_alg_values_supported: async (v) => {
      expect(v).toEqual(['ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519', 'PS256', 'PS384', 'PS512', 'RS256', 'RS384', 'RS512']);
      expect(v).not.toContain('none');
      expect(v).not.toContain('HS256');
    },
    response_types_supported: async (v) => {
      // No authorization endpoint, so no response type.
      expect(v).toEqual([]);
      for (const method of ['GET', 'POST']) expect((await rawRequest(tb.url, { method, path: '/auth?response_type=code&client_id=crm-reader' })).status).toBe(404);
    },
    subject_types_supported: async (v) => {
      expect(v).toEqual(['public']);
      expect(decodeJwt(await crmToken()).sub).toBe('crm-reader');
    },
    id_token_signing_alg_values_supported: async (v) => {
      const set = (await (await fetch(`${tb.url}/jwks`)).json()) as { keys: JWK[] };
      expect(v).toEqual([...new Set(set.keys.map((k) => k.alg))]);
      expect(v).toContain(decodeProtectedHeader(await crmToken()).alg);
    },
    dpop_signing_alg_values_supported: async (v) => {
      expect(v).toEqual(DPOP_ALGORITHMS);
      for (const alg of v as string[]) {
        const { publicKey, privateKey } = await generateKeyPair(alg, { extractable: true });
        const proof = await new SignJWT({ jti: randomUUID(), htm: 'POST', htu: `${tb.url}/token`, iat: nowS() })
          .setProtectedHeader({ typ: 'dpop+jwt', alg, jwk: await exportJWK(publicKey) })
          .sign(privateKey);
        const res = await tb.exchange(
          { grant_type: EXCHANGE, client_id: 'ticket-writer', subject_token: await tb.cluster.saToken({ sa: 'ticket-writer-7' }), subject_token_type: JWT_TYPE, resource: TICKETS_API, task },
          { dpop: proof },
        );
        expect(`${alg}: ${res.status} ${String(res.body.token_type)}`).toBe(`${alg}: 200 DPoP`);
      }
    },
    introspection_endpoint: async (v) => {
      expect(v).toBe(`${tb.url}/introspect`);
      const res = await postForm(v as string, { token: await crmToken() }, { authorization: basic('crm-api', CRM_RS_SECRET) });
      expect(res.body.active).toBe(true);
    },
    introspection_endpoint_auth_methods_supported: async (v) => {
      expect(v).toEqual(['client_secret_basic', 'client_secret_post', 'private_key_jwt']);
      for (const method of v as string[]) expect(`${method}: ${await authenticated(`${tb.url}/introspect`, method, 'x')}`).toBe(`${method}: 200`);
      expect(await authenticated(`${tb.url}/introspect`, 'none', 'x')).toBe(401);
    },
    introspection_endpoint_auth_signing_alg_values_supported: async (v) => {
      for (const alg of v as string[]) {
        const res = await postForm(`${tb.url}/introspect`, { token: 'x', client_assertion_type: CLIENT_ASSERTION_TYPE, client_assertion: await assertion(alg, `${tb.url}/introspect`) });
        expect(`${alg}: ${res.status}`).toBe(`${alg}: 200`);
      }
    },
    revocation_endpoint: async (v) => {
      expect(v).toBe(`${tb.url}/revoke`);
      const token = await crmToken();
      expect((await postForm(v as string, { token, client_id: 'crm-reader' })).status).toBe(200);
      expect((await postForm(`${tb.url}/introspect`, { token }, { authorization: basic('crm-api', CRM_RS_SECRET) })).body.active).toBe(false);
    },
    revocation_endpoint_auth_methods_supported: async (v) => {
      expect(v).toEqual(['none', 'client_secret_basic', 'client_secret_post', 'private_key_jwt']);
      for (const method of v as string[]) expect(`${method}: ${await authenticated(`${tb.url}/revoke`, method, 'x')}`).toBe(`${method}: 200`);
      // The same calls with a wrong secret are refused: 200 above means authenticated, not "anything goes".
      expect((await postForm(`${tb.url}/revoke`, { token: 'x' }, { authorization: basic('crm-api', 'wrong-secret-0123') })).status).toBe(401);
    },
    revocation_endpoint_auth_signing_alg_values_supported: async (v) => {
      for (const alg of v as string[]) {
        const res = await postForm(`${tb.url}/revoke`, { token: 'x', client_assertion_type: CLIENT_ASSERTION_TYPE, client_assertion: await assertion(alg, `${tb.url}/revoke`) });
        expect(`${alg}: ${res.status}`).toBe(`${alg}: 200`);
      }
    },
  };

  it('both well-known paths serve the same document', async () => {
    const other = await rawRequest(tb.url, { method: 'GET', path: '/.well-known/oauth-authorization-server' });
    expect(other.status).toBe(200);
    expect(other.headers['content-type']).toMatch(/^application\/json/);
    expect(other.json).toEqual(doc);
  });

  it('has exactly the members Leash can back, and nothing about endpoints it does not have', () => {
    expect(Object.keys(doc).sort()).toEqual(Object.keys(CHECKS).sort());
    const text = JSON.stringify(doc);
    for (const absent of [
      'authorization_endpoint',
      'end_session_endpoint',
      'pushed_authorization_request_endpoint',
      'userinfo_endpoint',
      'registration_endpoint',
      'response_modes_supported',
      'scopes_supported',
      'openid',
      'code_challenge_methods_supported',
      'claims_supported',
    ]) {
      expect(text).not.toContain(absent);
    }
  });

  it.each(Object.keys(CHECKS))('%s says what works', async (member) => {
    expect(doc).toHaveProperty([member]);
    await CHECKS[member]!(doc[member]);
  });

  it('the algorithm lists are not wider than what is accepted: an assertion with HS256 or none is refused', async () => {
    const hs = await new SignJWT({ jti: randomUUID() })
      .setProtectedHeader({ alg: 'HS256' })
      .setIssuer('algs-api')
      .setSubject('algs-api')
      .setAudience(`${tb.url}/introspect`)
      .setIssuedAt()
      .setExpirationTime(nowS() + 60)
      .sign(new TextEncoder().encode(sha256hex('k')));
    expect((await postForm(`${tb.url}/introspect`, { token: 'x', client_assertion_type: CLIENT_ASSERTION_TYPE, client_assertion: hs })).status).toBe(401);
    const [, payload] = hs.split('.');
    const none = `${Buffer.from(JSON.stringify({ alg: 'none' })).toString('base64url')}.${payload}.`;
    expect((await postForm(`${tb.url}/introspect`, { token: 'x', client_assertion_type: CLIENT_ASSERTION_TYPE, client_assertion: none })).status).toBe(401);
    for (const alg of ['HS256', 'none']) expect(doc.introspection_endpoint_auth_signing_alg_values_supported).not.toContain(alg);
  });
});
