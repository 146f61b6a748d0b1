import { describe, it, expect, beforeAll, afterAll } from '@jest/globals';
import { createPublicKey, verify as cryptoVerify } from 'node:crypto';
import { inspect } from 'node:util';
import { compactVerify, importJWK, importSPKI } from 'jose';
import { VaultError, type VaultClient } from '../../src/vault/vault-client.js';

/**
 * The VaultClient behaviour every Vault must show, run against the contract server
 * (vault-client.test.ts) and, when configured, a real Vault (real-vault.test.ts).
 */
export interface VaultFixture {
  /** A client whose token may do everything on the test mounts. */
  readonly client: VaultClient;
  /** A client whose token has only the default policy (no KV, no Transit). */
  readonly denied: VaultClient;
  /** Tokens in play, so tests can check no error message carries one. */
  readonly tokens: readonly string[];
  readonly kvMount: string;
  readonly transitMount: string;
  /** Unique per run: a real Vault keeps state between runs. */
  readonly prefix: string;
  close(): Promise<void>;
}

export async function rejection(p: Promise<unknown>): Promise<VaultError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof VaultError) return err;
    throw new Error(`expected a VaultError, got ${inspect(err)}`, { cause: err });
  }
  throw new Error('expected a rejection');
}

export function expectNoSecret(err: unknown, secrets: readonly string[]): void {
  const text = `${String(err)} ${inspect(err, { depth: 8 })} ${JSON.stringify(err)}`;
  for (const s of secrets) expect(text.includes(s)).toBe(false);
}

const enc = new TextEncoder();
const b64url = (s: string | Uint8Array) => Buffer.from(s).toString('base64url');

/** A compact JWS whose signature came from Vault: header.payload.signature. */
async function vaultJws(
  client: VaultClient,
  mount: string,
  key: string,
  version: number,
  type: 'ecdsa-p256' | 'ed25519',
  payload: object,
): Promise<{ jws: string; input: Uint8Array; signature: Uint8Array }> {
  const header = b64url(JSON.stringify({ alg: type === 'ed25519' ? 'EdDSA' : 'ES256', kid: `${key}-v${version}` }));
  const input = enc.encode(`${header}.${b64url(JSON.stringify(payload))}`);
  const signature = await client.transitSign(mount, key, version, input, type);
  return { jws: `${Buffer.from(input).toString()}.${b64url(signature)}`, input, signature };
}

export function describeVaultClient(name: string, factory: () => Promise<VaultFixture>): void {
  describe(`VaultClient against ${name}`, () => {
    let f: VaultFixture;
    beforeAll(async () => {
      f = await factory();
    });
    afterAll(async () => {
      await f?.close();
    });

    describe('KV v2', () => {
      it('reads nothing at an absent path', async () => {
        expect(await f.client.kvRead(f.kvMount, `${f.prefix}/absent`)).toBeUndefined();
      });

      it('writes versions with check-and-set and reads the newest', async () => {
        const path = `${f.prefix}/kv-cas`;
        expect(await f.client.kvWrite(f.kvMount, path, { a: 1 }, 0)).toBe(1);
        expect(await f.client.kvRead(f.kvMount, path)).toEqual({ data: { a: 1 }, version: 1 });
        expect(await f.client.kvWrite(f.kvMount, path, { a: 2, nested: { k: ['x'] } }, 1)).toBe(2);
        expect(await f.client.kvRead(f.kvMount, path)).toEqual({ data: { a: 2, nested: { k: ['x'] } }, version: 2 });
        expect(await f.client.kvWrite(f.kvMount, path, { a: 3 })).toBe(3);
      });

      it('refuses a stale check-and-set with cas_mismatch and keeps the stored version', async () => {
        const path = `${f.prefix}/kv-stale`;
        await f.client.kvWrite(f.kvMount, path, { v: 'one' }, 0);
        await f.client.kvWrite(f.kvMount, path, { v: 'two' }, 1);
        const stale = await rejection(f.client.kvWrite(f.kvMount, path, { v: 'lost' }, 1));
        expect(stale.reason).toBe('cas_mismatch');
        expect(stale.status).toBe(400);
        const exists = await rejection(f.client.kvWrite(f.kvMount, path, { v: 'lost' }, 0));
        expect(exists.reason).toBe('cas_mismatch');
        expect(await f.client.kvRead(f.kvMount, path)).toEqual({ data: { v: 'two' }, version: 2 });
      });

      it('destroys every version and the metadata; destroying again is fine', async () => {
        const path = `${f.prefix}/kv-destroy`;
        await f.client.kvWrite(f.kvMount, path, { secret: 's' });
        await f.client.kvWrite(f.kvMount, path, { secret: 't' });
        await f.client.kvDestroy(f.kvMount, path);
        expect(await f.client.kvRead(f.kvMount, path)).toBeUndefined();
        await f.client.kvDestroy(f.kvMount, path);
        // a fresh write starts again at version 1: the metadata went too
        expect(await f.client.kvWrite(f.kvMount, path, { secret: 'u' }, 0)).toBe(1);
      });

      it('refuses unsafe paths before calling Vault', async () => {
        for (const bad of ['../sys/seal', 'a//b', 'a?list=true', '', 'a/../../b']) {
          const err = await rejection(f.client.kvRead(f.kvMount, bad));
          expect(err.reason).toBe('invalid');
        }
        expect((await rejection(f.client.kvRead('../sys', 'x'))).reason).toBe('invalid');
      });
    });

    describe('Transit', () => {
      it('answers undefined for a key that does not exist', async () => {
        expect(await f.client.transitReadKey(f.transitMount, `${f.prefix}-none`.replace(/\//g, '-'))).toBeUndefined();
      });

      it('creates an ecdsa-p256 key and signs ES256 JWS that verify against the published PEM', async () => {
        const key = `${f.prefix}-es`.replace(/\//g, '-');
        await f.client.transitCreateKey(f.transitMount, key, 'ecdsa-p256');
        const read = await f.client.transitReadKey(f.transitMount, key);
        expect(read).toMatchObject({ name: key, type: 'ecdsa-p256', latestVersion: 1 });
        expect(read!.versions).toHaveLength(1);
        expect(read!.versions[0]!.publicKey).toMatch(/^-----BEGIN PUBLIC KEY-----/);
        expect(read!.versions[0]!.createdAt).toBeGreaterThan(Date.UTC(2020, 0, 1));

        const { jws, input, signature } = await vaultJws(f.client, f.transitMount, key, 1, 'ecdsa-p256', { sub: 'plugin', n: 1 });
        expect(signature).toHaveLength(64);
        const verified = await compactVerify(jws, await importSPKI(read!.versions[0]!.publicKey, 'ES256'));
        expect(JSON.parse(new TextDecoder().decode(verified.payload))).toEqual({ sub: 'plugin', n: 1 });
        // and with node:crypto directly, raw r||s
        const pub = createPublicKey(read!.versions[0]!.publicKey);
        expect(cryptoVerify('sha256', input, { key: pub, dsaEncoding: 'ieee-p1363' }, signature)).toBe(true);
        expect(cryptoVerify('sha256', enc.encode('other bytes'), { key: pub, dsaEncoding: 'ieee-p1363' }, signature)).toBe(false);
      });

      it('rotates: both versions are published, each version signs with its own key', async () => {
        const key = `${f.prefix}-rot`.replace(/\//g, '-');
        await f.client.transitCreateKey(f.transitMount, key, 'ecdsa-p256');
        await f.client.transitRotate(f.transitMount, key);
        const read = await f.client.transitReadKey(f.transitMount, key);
        expect(read!.latestVersion).toBe(2);
        expect(read!.versions.map((v) => v.version)).toEqual([1, 2]);
        expect(read!.versions[0]!.publicKey).not.toBe(read!.versions[1]!.publicKey);

        const v1 = await importSPKI(read!.versions[0]!.publicKey, 'ES256');
        const v2 = await importSPKI(read!.versions[1]!.publicKey, 'ES256');
        const old = await vaultJws(f.client, f.transitMount, key, 1, 'ecdsa-p256', { v: 1 });
        await expect(compactVerify(old.jws, v1)).resolves.toBeDefined();
        await expect(compactVerify(old.jws, v2)).rejects.toThrow();
        const cur = await vaultJws(f.client, f.transitMount, key, 2, 'ecdsa-p256', { v: 2 });
        await expect(compactVerify(cur.jws, v2)).resolves.toBeDefined();
        await expect(compactVerify(cur.jws, v1)).rejects.toThrow();
      });

      it('refuses to sign with a version that does not exist', async () => {
        const key = `${f.prefix}-ver`.replace(/\//g, '-');
        await f.client.transitCreateKey(f.transitMount, key, 'ecdsa-p256');
        const err = await rejection(f.client.transitSign(f.transitMount, key, 7, enc.encode('x'), 'ecdsa-p256'));
        expect(err.reason).toBe('invalid');
        expect(err.status).toBe(400);
      });

      it('creates an ed25519 key and signs EdDSA JWS that verify against the published raw key', async () => {
        const key = `${f.prefix}-ed`.replace(/\//g, '-');
        await f.client.transitCreateKey(f.transitMount, key, 'ed25519');
        const read = await f.client.transitReadKey(f.transitMount, key);
        expect(read).toMatchObject({ type: 'ed25519', latestVersion: 1 });
        const raw = Buffer.from(read!.versions[0]!.publicKey, 'base64');
        expect(raw).toHaveLength(32);
        const jwk = { kty: 'OKP', crv: 'Ed25519', x: raw.toString('base64url') };
        const { jws } = await vaultJws(f.client, f.transitMount, key, 1, 'ed25519', { sub: 'ed' });
        const verified = await compactVerify(jws, await importJWK(jwk, 'EdDSA'));
        expect(verified.protectedHeader.alg).toBe('EdDSA');
        const tampered = jws.replace(/\.[^.]+\./, `.${b64url(JSON.stringify({ sub: 'evil' }))}.`);
        await expect(compactVerify(tampered, await importJWK(jwk, 'EdDSA'))).rejects.toThrow();
      });
    });

    describe('token and permissions', () => {
      it('looks itself up without handing out the token', async () => {
        const info = await f.client.lookupSelf();
        expect(typeof info.ttl).toBe('number');
        expect(Array.isArray(info.policies)).toBe(true);
        expectNoSecret(info, f.tokens);
      });

      it('reports capabilities per path, and deny where the token has none', async () => {
        const kvPath = `${f.kvMount}/data/${f.prefix}/caps`;
        const signPath = `${f.transitMount}/sign/x`;
        const mine = await f.client.capabilities([kvPath, signPath]);
        expect(Object.keys(mine).sort()).toEqual([kvPath, signPath].sort());
        expect(mine[kvPath]!.length).toBeGreaterThan(0);
        expect(mine[kvPath]).not.toContain('deny');
        const theirs = await f.denied.capabilities([kvPath]);
        expect(theirs[kvPath]).toEqual(['deny']);
      });

      it('maps 403 to denied, and neither message nor error object carries a token', async () => {
        const err = await rejection(f.denied.kvRead(f.kvMount, `${f.prefix}/x`));
        expect(err.reason).toBe('denied');
        expect(err.status).toBe(403);
        expectNoSecret(err, f.tokens);
        const sign = await rejection(f.denied.transitSign(f.transitMount, 'any', 1, enc.encode('x'), 'ecdsa-p256'));
        expect(sign.reason).toBe('denied');
        expectNoSecret(sign, f.tokens);
      });
    });
  });
}
