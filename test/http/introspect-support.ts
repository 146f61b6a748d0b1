import { createHash, randomUUID } from 'node:crypto';
import { SignJWT, exportJWK, generateKeyPair, type CryptoKey, type JWK } from 'jose';
import { LeashError } from '../../src/errors/leash-error.js';
import { CLIENT_ASSERTION_TYPE } from '../../src/http/oauth/client-auth.js';
import type { Store } from '../../src/store/store.js';
import { CRM_API, TICKETS_API, type TestBroker } from '../support/broker.js';

export const CRM_RS_SECRET = 'crm-api-secret-0123456789';
export const sha256hex = (s: string) => createHash('sha256').update(s, 'utf8').digest('hex');
export const basic = (id: string, secret: string) => `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64')}`;

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
/** The broker's own endpoints: nothing stands in for them, so a route that is not wired fails the suite. */
export function endpointsFor(tb: TestBroker): { introspect: string; revoke: string } {
  return { introspect: `${tb.url}/introspect`, revoke: `${tb.url}/revoke` };
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
