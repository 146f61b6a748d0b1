import { describe, it, expect, beforeAll, afterAll } from '@jest/globals';
import { createLocalJWKSet, jwtVerify, decodeProtectedHeader } from 'jose';
import { SIGNING_ALGORITHMS } from '../../src/config/schema.js';
import { isLeashError } from '../../src/errors/leash-error.js';
import type { KeyManager } from '../../src/keys/key-manager.js';
import { signJwt } from '../../src/keys/jws.js';

export interface KeyManagerFixture {
  /** A manager whose init() has NOT been called yet. */
  readonly manager: KeyManager;
  readonly close?: () => Promise<void> | void;
}

const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'k', 'oth'];

/**
 * The contract every KeyManager backend meets (local files, Vault KV, Vault Transit), run
 * against each, as SPIRE's keymanagertest is: same tests, different factories.
 */
export function describeKeyManager(name: string, factory: () => Promise<KeyManagerFixture> | KeyManagerFixture): void {
  describe(`KeyManager contract: ${name}`, () => {
    let fixture: KeyManagerFixture;
    let km: KeyManager;

    beforeAll(async () => {
      fixture = await factory();
      km = fixture.manager;
    });
    afterAll(async () => {
      await fixture?.close?.();
    });

    it('refuses to sign before init with ERR_SIGNING_UNAVAILABLE', () => {
      let caught: unknown;
      try {
        km.current();
      } catch (err) {
        caught = err;
      }
      expect(isLeashError(caught) && caught.code).toBe('ERR_SIGNING_UNAVAILABLE');
    });

    it('has a current key after init, described by its public JWK', async () => {
      await km.init();
      expect(typeof km.backend).toBe('string');
      expect(km.backend.length).toBeGreaterThan(0);
      const key = km.current();
      expect(key.kid.length).toBeGreaterThan(0);
      expect(SIGNING_ALGORITHMS).toContain(key.alg);
      expect(key.publicJwk).toMatchObject({ kid: key.kid, alg: key.alg, use: 'sig' });
    });

    it('publishes the current key in the JWKS with public members only', () => {
      const { keys } = km.jwks();
      const kid = km.current().kid;
      expect(keys.map((k) => k.kid)).toContain(kid);
      expect(new Set(keys.map((k) => k.kid)).size).toBe(keys.length);
      for (const jwk of keys) {
        for (const m of PRIVATE_MEMBERS) expect(jwk).not.toHaveProperty(m);
        expect(jwk.use).toBe('sig');
        expect(typeof jwk.alg).toBe('string');
      }
    });

    it('lists every published key with its state and backend', () => {
      const list = km.list();
      const current = list.filter((k) => k.state === 'current');
      expect(current).toHaveLength(1);
      expect(current[0]?.kid).toBe(km.current().kid);
      for (const info of list) {
        expect(info.backend).toBe(km.backend);
        expect(Number.isFinite(info.createdAt)).toBe(true);
      }
      const listed = new Set(list.map((k) => k.kid));
      for (const jwk of km.jwks().keys) expect(listed.has(jwk.kid as string)).toBe(true);
    });

    it('signs at+jwt tokens that jose verifies against the JWKS', async () => {
      const key = km.current();
      const token = await signJwt(key, { typ: 'at+jwt' }, { iss: 'https://leash.test', sub: 'p1', aud: 'api', exp: 4102444800 });
      expect(decodeProtectedHeader(token)).toEqual({ alg: key.alg, kid: key.kid, typ: 'at+jwt' });
      const { payload, protectedHeader } = await jwtVerify(token, createLocalJWKSet(km.jwks()), {
        typ: 'at+jwt',
        issuer: 'https://leash.test',
        audience: 'api',
        algorithms: [key.alg],
      });
      expect(payload.sub).toBe('p1');
      expect(protectedHeader.kid).toBe(key.kid);
    });

    it('produces signatures that fail verification once the payload is altered', async () => {
      const token = await signJwt(km.current(), { typ: 'at+jwt' }, { sub: 'p1' });
      const [h, , s] = token.split('.');
      const forged = `${h}.${Buffer.from(JSON.stringify({ sub: 'admin' })).toString('base64url')}.${s}`;
      await expect(jwtVerify(forged, createLocalJWKSet(km.jwks()))).rejects.toMatchObject({
        code: 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED',
      });
    });
  });
}
