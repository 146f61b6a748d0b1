import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createHash, randomUUID } from 'node:crypto';
import express from 'express';
import { SignJWT, exportJWK, generateKeyPair, type CryptoKey, type JWK } from 'jose';
import { createKeySource } from '../../src/attestation/key-source.js';
import { LeashError } from '../../src/errors/leash-error.js';
import { createAdminAuthenticator } from '../../src/http/admin/authenticate.js';
import { CLIENT_ASSERTION_TYPE, createResourceServerAuthenticator } from '../../src/http/oauth/client-auth.js';
import { introspectionRouter } from '../../src/http/oauth/introspection.js';
import { revocationRouter } from '../../src/http/oauth/revocation-endpoint.js';
import { verifyLeashToken } from '../../src/issuance/jwt/verify-leash-token.js';
import type { Store } from '../../src/store/store.js';
import { CRM_API, TICKETS_API, type TestBroker } from '../support/broker.js';

export const CRM_RS_SECRET = 'crm-api-secret-0123456789';
export const sha256hex = (s: string) => createHash('sha256').update(s, 'utf8').digest('hex');
export const basic = (id: string, secret: string) =>
  `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64')}`;

/** The tickets API authenticates with private_key_jwt; its key is made before the broker starts. */
export async function ticketsKey(): Promise<{ privateKey: CryptoKey; jwk: JWK }> {
  const pair = await generateKeyPair('ES256', { extractable: true });
  return { privateKey: pair.privateKey, jwk: { ...(await exportJWK(pair.publicKey)), kid: 'tickets-1', alg: 'ES256', use: 'sig' } };
}

/** `patch` for startTestBroker: two resource servers, one per client-auth family. */
export function withResourceServers(tickets: { jwk: JWK }, extra?: (cfg: Record<string, any>) => void) {
  return (cfg: Record<string, any>) => {
    cfg.resource_servers = [
      { id: 'crm-api', audiences: [CRM_API], client_secret_sha256: sha256hex(CRM_RS_SECRET) },
      { id: 'tickets-api', audiences: [TICKETS_API], jwks: { inline: { keys: [tickets.jwk] } } },
    ];
    extra?.(cfg);
  };
}

export async function clientAssertion(key: CryptoKey, aud: string, nowSeconds: number, clientId = 'tickets-api'): Promise<string> {
  return new SignJWT({ jti: randomUUID() })
    .setProtectedHeader({ alg: 'ES256', kid: 'tickets-1' })
    .setIssuer(clientId)
    .setSubject(clientId)
    .setAudience(aud)
    .setIssuedAt(nowSeconds)
    .setExpirationTime(nowSeconds + 60)
    .sign(key);
}

export const assertionForm = (assertion: string) => ({ client_assertion_type: CLIENT_ASSERTION_TYPE, client_assertion: assertion });

/**
 * A store whose pub/sub subscription can be cut, as when Redis drops the subscriber: the
 * revocation view can no longer prove it is fresh. Methods are bound to the real store
 * (it keeps private fields).
 */
export function cuttableStore(inner: Store): Store & { cut: boolean } {
  const state = { cut: false };
  return new Proxy(inner, {
    get(target, prop) {
      if (prop === 'cut') return state.cut;
      if (prop === 'subscribed') return () => !state.cut && target.subscribed();
      if (prop === 'revocationsSince' || prop === 'addRevocation') {
        return (...args: unknown[]) => {
          if (state.cut) return Promise.reject(new LeashError('ERR_BACKEND_UNAVAILABLE', 'store down (test)'));
          return (target[prop] as (...a: unknown[]) => unknown).apply(target, args);
        };
      }
      const value = Reflect.get(target, prop, target) as unknown;
      return typeof value === 'function' ? value.bind(target) : value;
    },
    set(target, prop, value) {
      if (prop === 'cut') {
        state.cut = Boolean(value);
        return true;
      }
      return Reflect.set(target, prop, value);
    },
  }) as Store & { cut: boolean };
}

/**
 * Where `/introspect` and `/revoke` are served for a test broker: the broker itself once
 * src/http/app.ts mounts the routers; until then, the same routers on their own loopback
 * server, built from the broker's real parts (keys, clock, store, revocation view, config).
 */
export async function endpointsFor(tb: TestBroker): Promise<{ url: string; wired: boolean; close(): Promise<void> }> {
  const probe = await fetch(`${tb.url}/introspect`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'x' });
  const text = await probe.text();
  if (probe.status === 400 && text.includes('application/x-www-form-urlencoded')) return { url: tb.url, wired: true, close: async () => undefined };

  const { broker } = tb;
  const settings = broker.config.settings;
  const verify = (token: string) => verifyLeashToken(token, { issuer: settings.issuer, keys: broker.keys, clock: broker.clock, clockSkewSeconds: settings.tokens.clock_skew });
  const rs = createResourceServerAuthenticator(broker.config.resource_servers, {
    issuer: settings.issuer,
    endpointUrls: [`${settings.issuer}/introspect`, `${settings.issuer}/revoke`],
    clock: broker.clock,
    replay: broker.store,
    baseDir: tb.dir,
  });
  const admin = createAdminAuthenticator(broker.config.admin, {
    clock: broker.clock,
    keyLookup: (cfg) => createKeySource(cfg.jwks, { issuer: cfg.issuer, baseDir: tb.dir }),
  });
  const app = express();
  app.use(introspectionRouter({ authenticator: () => rs, verify, revocation: broker.revocation }));
  app.use(revocationRouter({ authenticator: () => rs, admin: () => admin, verify, revocation: broker.revocation, audit: broker.audit }));
  const server: Server = createServer(app);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    wired: false,
    close: async () => {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}

export interface FormResponse {
  readonly status: number;
  readonly text: string;
  readonly body: Record<string, unknown>;
  readonly headers: Headers;
}

export async function postForm(url: string, form: Record<string, string | string[]>, headers: Record<string, string> = {}): Promise<FormResponse> {
  const body = new URLSearchParams();
  for (const [k, v] of Object.entries(form)) for (const one of Array.isArray(v) ? v : [v]) body.append(k, one);
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers }, body });
  const text = await res.text();
  let json: Record<string, unknown> | undefined;
  try {
    json = text ? (JSON.parse(text) as Record<string, unknown>) : undefined;
  } catch {
    json = undefined;
  }
  return { status: res.status, text, body: json ?? {}, headers: res.headers };
}
