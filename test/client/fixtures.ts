import express from 'express';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { verifyDpopProof } from '../../src/dpop/verify-proof.js';
import { isLeashError } from '../../src/errors/leash-error.js';
import type { KeyManager } from '../../src/keys/key-manager.js';
import { signJwt } from '../../src/keys/jws.js';
import { createLocalKeyManager } from '../../src/keys/local/index.js';
import type { ReplayCache } from '../../src/store/store.js';
import type { Clock } from '../../src/time/clock.js';

export async function listen(app: express.Express): Promise<{ url: string; close: () => Promise<void> }> {
  const server: Server = await new Promise((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections();
        server.close((err) => (err ? reject(err) : resolve()));
      }),
  };
}

export async function tempKeys(clock: Clock, algorithm: 'ES256' | 'EdDSA' = 'ES256'): Promise<{ keys: KeyManager; cleanup: () => void }> {
  const dir = mkdtempSync(join(tmpdir(), 'leash-client-keys-'));
  const keys = createLocalKeyManager({ dir, algorithm, clock });
  await keys.init();
  return { keys, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export class MemoryReplay implements ReplayCache {
  private readonly seen = new Set<string>();
  async remember(key: string): Promise<boolean> {
    if (this.seen.has(key)) return false;
    this.seen.add(key);
    return true;
  }
}

/** What the test token endpoint saw and how it should answer. */
export interface IssuerState {
  discoveryRequests: number;
  tokenRequests: number;
  forms: Array<Record<string, string>>;
  expiresIn: number | undefined;
  /** subject_token values refused with invalid_grant. */
  refuse: Set<string>;
  /** Ask for a DPoP nonce (RFC 9449 §8) until the proof carries this one. */
  nonce: string | undefined;
  /** Delay before answering the token request (ms), to overlap concurrent calls. */
  delayMs: number;
  /** Issuer announced by discovery; defaults to the real one. */
  announcedIssuer: string | undefined;
}

export interface TestIssuer {
  readonly url: string;
  readonly state: IssuerState;
  close(): Promise<void>;
}

/**
 * A small real token endpoint: OIDC discovery, JWKS, and an RFC 8693 token exchange that
 * checks the form it receives and answers an at+jwt signed by a local key.
 */
export async function startIssuer(deps: { keys: KeyManager; clock: Clock }): Promise<TestIssuer> {
  const app = express();
  const state: IssuerState = {
    discoveryRequests: 0,
    tokenRequests: 0,
    forms: [],
    expiresIn: 300,
    refuse: new Set(),
    nonce: undefined,
    delayMs: 0,
    announcedIssuer: undefined,
  };
  const replay = new MemoryReplay();
  let issuer = '';

  app.get('/.well-known/openid-configuration', (_req, res) => {
    state.discoveryRequests++;
    res.json({ issuer: state.announcedIssuer ?? issuer, token_endpoint: `${issuer}/token`, jwks_uri: `${issuer}/jwks` });
  });
  app.get('/jwks', (_req, res) => {
    res.json(deps.keys.jwks());
  });
  app.post('/token', express.urlencoded({ extended: false }), async (req, res) => {
    state.tokenRequests++;
    const form = req.body as Record<string, string>;
    state.forms.push({ ...form });
    if (state.delayMs > 0) await new Promise((r) => setTimeout(r, state.delayMs));
    const fail = (error: string, description: string, status = 400) => res.status(status).json({ error, error_description: description });
    if (form.grant_type !== 'urn:ietf:params:oauth:grant-type:token-exchange') return fail('unsupported_grant_type', 'token exchange only');
    if (form.subject_token_type !== 'urn:ietf:params:oauth:token-type:jwt') return fail('invalid_request', 'subject_token_type');
    if (!form.client_id || !form.subject_token || !form.task) return fail('invalid_request', 'missing parameter');
    if (state.refuse.has(form.subject_token)) return fail('invalid_grant', 'the attestation is not trusted');
    const audience = form.resource ?? form.audience;
    if (!audience) return fail('invalid_target', 'no audience');
    let jkt: string | undefined;
    const dpop = req.headers.dpop;
    if (dpop !== undefined) {
      if (state.nonce !== undefined) {
        const payload = JSON.parse(Buffer.from(String(dpop).split('.')[1] ?? '', 'base64url').toString());
        if (payload.nonce !== state.nonce) {
          res.set('DPoP-Nonce', state.nonce);
          return fail('use_dpop_nonce', 'send the server nonce');
        }
      }
      try {
        ({ jkt } = await verifyDpopProof({
          proof: dpop,
          method: req.method,
          url: `${issuer}/token`,
          now: deps.clock.now(),
          maxAgeSeconds: 60,
          clockSkewSeconds: 5,
          algorithms: ['ES256', 'EdDSA'],
          replay,
        }));
      } catch (err) {
        return fail('invalid_dpop_proof', isLeashError(err) ? err.description : 'bad proof');
      }
    }
    const iat = Math.floor(deps.clock.now() / 1000);
    const ttl = form.expires_in ? Math.min(Number(form.expires_in), 600) : (state.expiresIn ?? 300);
    const token = await signJwt(
      deps.keys.current(),
      { typ: 'at+jwt' },
      {
        iss: issuer,
        sub: form.client_id,
        aud: audience,
        iat,
        exp: iat + ttl,
        jti: randomBytes(8).toString('hex'),
        scope: form.scope ?? 'default',
        plugin: form.client_id,
        task: form.task,
        ...(jkt ? { cnf: { jkt } } : {}),
      },
    );
    res.set('cache-control', 'no-store').json({
      access_token: token,
      issued_token_type: 'urn:ietf:params:oauth:token-type:access_token',
      token_type: jkt ? 'DPoP' : 'Bearer',
      ...(state.expiresIn !== undefined || form.expires_in ? { expires_in: ttl } : {}),
      ...(form.scope ? { scope: form.scope } : {}),
    });
  });

  const srv = await listen(app);
  issuer = srv.url;
  return { url: srv.url, state, close: srv.close };
}
