import { describe, it, expect, afterAll } from '@jest/globals';
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { calculateJwkThumbprint, createLocalJWKSet, jwtVerify } from 'jose';
import { createLocalKeyManager, LocalKeyError } from '../../src/keys/local/index.js';
import { signJwt } from '../../src/keys/jws.js';
import { ManualClock } from '../../src/time/clock.js';
import { describeKeyManager } from './describe-key-manager.js';

const roots: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'leash-keys-'));
  roots.push(d);
  return d;
}
afterAll(() => {
  for (const d of roots) rmSync(d, { recursive: true, force: true });
});

const clock = new ManualClock();
const mode = (p: string): number => statSync(p).mode & 0o777;

describeKeyManager('local ES256', () => ({
  manager: createLocalKeyManager({ dir: join(tempDir(), 'keys'), algorithm: 'ES256', clock }),
}));
describeKeyManager('local EdDSA', () => ({
  manager: createLocalKeyManager({ dir: join(tempDir(), 'keys'), algorithm: 'EdDSA', clock }),
}));

async function expectLocalKeyError(p: Promise<unknown>, ...fragments: string[]): Promise<LocalKeyError> {
  let caught: unknown;
  try {
    await p;
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(LocalKeyError);
  for (const f of fragments) expect((caught as Error).message).toContain(f);
  return caught as LocalKeyError;
}

describe('local key manager: first and second start', () => {
  it.each(['ES256', 'EdDSA'] as const)('%s: generates on first start, loads the same kid on the second', async (algorithm) => {
    const dir = join(tempDir(), 'nested', 'keys');
    const first = createLocalKeyManager({ dir, algorithm, clock });
    await first.init();
    const key = first.current();
    expect(key.alg).toBe(algorithm);
    expect(key.kid).toBe(await calculateJwkThumbprint(key.publicJwk, 'sha256'));

    const keyring = JSON.parse(readFileSync(join(dir, 'keyring.json'), 'utf8'));
    const at = new Date(clock.now()).toISOString();
    const next = keyring.keys[1]?.kid as string;
    expect(next).not.toBe(key.kid);
    // The first start creates the signing key and a prepublished successor.
    expect(keyring).toEqual({
      version: 1,
      keys: [
        { kid: key.kid, alg: algorithm, state: 'current', created_at: at, activated_at: at },
        { kid: next, alg: algorithm, state: 'next', created_at: at },
      ],
    });
    expect(first.list()).toEqual([
      { kid: key.kid, alg: algorithm, state: 'current', createdAt: clock.now(), activatedAt: clock.now(), retiredAt: undefined, removeAt: undefined, signsFrom: undefined, backend: 'local' },
      { kid: next, alg: algorithm, state: 'next', createdAt: clock.now(), activatedAt: undefined, retiredAt: undefined, removeAt: undefined, signsFrom: clock.now() + 3_600_000, backend: 'local' },
    ]);

    const second = createLocalKeyManager({ dir, algorithm, clock });
    await second.init();
    expect(second.current().kid).toBe(key.kid);
    // A token signed before the restart verifies against the JWKS published after it.
    const token = await signJwt(key, { typ: 'at+jwt' }, { sub: 'p' });
    await expect(jwtVerify(token, createLocalJWKSet(second.jwks()), { typ: 'at+jwt' })).resolves.toBeDefined();
    expect(readdirSync(dir).sort()).toEqual([`${key.kid}.jwk.json`, `${next}.jwk.json`, 'keyring.json'].sort());
  });

  it('keeps an existing key when the configured algorithm changes (algorithm is for new keys)', async () => {
    const dir = tempDir();
    const a = createLocalKeyManager({ dir, algorithm: 'ES256', clock });
    await a.init();
    const b = createLocalKeyManager({ dir, algorithm: 'EdDSA', clock });
    await b.init();
    expect(b.current().kid).toBe(a.current().kid);
    expect(b.current().alg).toBe('ES256');
  });

  it('creates the folder 0700 and key files 0600 whatever the umask', async () => {
    const dir = join(tempDir(), 'keys');
    const old = process.umask(0);
    try {
      const km = createLocalKeyManager({ dir, algorithm: 'ES256', clock });
      await km.init();
      expect(mode(dir)).toBe(0o700);
      expect(mode(join(dir, `${km.current().kid}.jwk.json`))).toBe(0o600);
      expect(mode(join(dir, 'keyring.json'))).toBe(0o600);
      expect(readdirSync(dir).some((f) => f.endsWith('.tmp'))).toBe(false);
    } finally {
      process.umask(old);
    }
  });

  it('stores the private key with its kid and alg, and publishes only the public half', async () => {
    const dir = tempDir();
    const km = createLocalKeyManager({ dir, algorithm: 'EdDSA', clock });
    await km.init();
    const kid = km.current().kid;
    const stored = JSON.parse(readFileSync(join(dir, `${kid}.jwk.json`), 'utf8'));
    expect(stored).toMatchObject({ kty: 'OKP', crv: 'Ed25519', kid, alg: 'EdDSA' });
    expect(typeof stored.d).toBe('string');
    expect(km.jwks().keys).toContainEqual({ kty: 'OKP', crv: 'Ed25519', x: stored.x, kid, alg: 'EdDSA', use: 'sig' });
    expect(km.jwks().keys).toHaveLength(2);
  });

  it('returns 64-byte raw r||s ES256 signatures', async () => {
    const km = createLocalKeyManager({ dir: tempDir(), algorithm: 'ES256', clock });
    await km.init();
    const sig = await km.current().sign(Buffer.from('a.b', 'ascii'));
    expect(sig.length).toBe(64);
  });
});

describe('local key manager: refuses unsafe or inconsistent key folders', () => {
  async function initialised(algorithm: 'ES256' | 'EdDSA' = 'ES256') {
    const dir = tempDir();
    const km = createLocalKeyManager({ dir, algorithm, clock });
    await km.init();
    const kid = km.current().kid;
    return { dir, kid, file: join(dir, `${kid}.jwk.json`) };
  }

  it.each([0o644, 0o640, 0o604, 0o660])('refuses a key file with mode %o and says how to fix it', async (bad) => {
    const { dir, file } = await initialised();
    chmodSync(file, bad);
    const err = await expectLocalKeyError(
      createLocalKeyManager({ dir, algorithm: 'ES256', clock }).init(),
      file,
      `chmod 600 '${file}'`,
      'too open',
    );
    expect(err.file).toBe(file);
  });

  it('accepts a read-only 0400 key file (a Kubernetes Secret with defaultMode 0400)', async () => {
    const { dir, file, kid } = await initialised();
    chmodSync(file, 0o400);
    const km = createLocalKeyManager({ dir, algorithm: 'ES256', clock });
    await km.init();
    expect(km.current().kid).toBe(kid);
  });

  it('refuses a keyring naming a key file that is missing', async () => {
    const { dir, file } = await initialised();
    rmSync(file);
    await expectLocalKeyError(createLocalKeyManager({ dir, algorithm: 'ES256', clock }).init(), 'does not exist');
  });

  it('refuses a key file whose key does not match its kid (swapped file)', async () => {
    const a = await initialised();
    const b = await initialised();
    writeFileSync(a.file, readFileSync(b.file), { mode: 0o600 });
    await expectLocalKeyError(createLocalKeyManager({ dir: a.dir, algorithm: 'ES256', clock }).init(), 'thumbprint', b.kid);
  });

  it('refuses a key file holding a public key only', async () => {
    const { dir, file } = await initialised();
    const jwk = JSON.parse(readFileSync(file, 'utf8'));
    delete jwk.d;
    writeFileSync(file, JSON.stringify(jwk), { mode: 0o600 });
    await expectLocalKeyError(createLocalKeyManager({ dir, algorithm: 'ES256', clock }).init(), "no 'd' member");
  });

  it('refuses a key whose type does not fit the keyring alg', async () => {
    const { dir, kid } = await initialised('ES256');
    const ring = JSON.parse(readFileSync(join(dir, 'keyring.json'), 'utf8'));
    ring.keys[0].alg = 'EdDSA';
    writeFileSync(join(dir, 'keyring.json'), JSON.stringify(ring));
    await expectLocalKeyError(createLocalKeyManager({ dir, algorithm: 'ES256', clock }).init(), kid, 'EdDSA');
  });

  it('lists every keyring problem at once', async () => {
    const { dir } = await initialised();
    writeFileSync(
      join(dir, 'keyring.json'),
      JSON.stringify({ keys: [{ kid: '../../etc/passwd', alg: 'RS256', state: 'active', created_at: 'yesterday', extra: 1 }] }),
    );
    await expectLocalKeyError(
      createLocalKeyManager({ dir, algorithm: 'ES256', clock }).init(),
      'keys[0].kid',
      'keys[0].alg',
      'keys[0].state',
      'keys[0].created_at',
      "unknown member 'extra'",
    );
  });

  it('refuses a keyring without exactly one current key', async () => {
    const { dir } = await initialised();
    const ring = JSON.parse(readFileSync(join(dir, 'keyring.json'), 'utf8'));
    ring.keys[0].state = 'retired';
    writeFileSync(join(dir, 'keyring.json'), JSON.stringify(ring));
    await expectLocalKeyError(createLocalKeyManager({ dir, algorithm: 'ES256', clock }).init(), "exactly one key must be in state 'current' (found 0)");
  });

  it('refuses a keyring that is not JSON', async () => {
    const { dir } = await initialised();
    writeFileSync(join(dir, 'keyring.json'), '{ not json');
    await expectLocalKeyError(createLocalKeyManager({ dir, algorithm: 'ES256', clock }).init(), 'not valid JSON');
  });

  it('does not generate over an existing keyring it could not load', async () => {
    const { dir, file } = await initialised();
    chmodSync(file, 0o644);
    await expect(createLocalKeyManager({ dir, algorithm: 'ES256', clock }).init()).rejects.toBeInstanceOf(LocalKeyError);
    expect(readdirSync(dir)).toHaveLength(3);
    expect(existsSync(file)).toBe(true);
  });
});

describe('local key manager: keyrings written before rotation existed', () => {
  it('loads a keyring without version or activation times, keeps its key signing and adds a next key', async () => {
    const dir = tempDir();
    const km = createLocalKeyManager({ dir, algorithm: 'ES256', clock });
    await km.init();
    const kid = km.current().kid;
    const next = km.list().find((k) => k.state === 'next')?.kid as string;
    await km.close();
    // Rewrite the folder as the old backend left it: one current key, no version, no next.
    rmSync(join(dir, `${next}.jwk.json`));
    const createdAt = new Date(clock.now() - 86_400_000).toISOString();
    writeFileSync(join(dir, 'keyring.json'), JSON.stringify({ keys: [{ kid, alg: 'ES256', state: 'current', created_at: createdAt }] }), { mode: 0o600 });

    const upgraded = createLocalKeyManager({ dir, algorithm: 'ES256', clock });
    await upgraded.init();
    expect(upgraded.current().kid).toBe(kid);
    const list = upgraded.list();
    expect(list.find((k) => k.kid === kid)).toMatchObject({ state: 'current', activatedAt: Date.parse(createdAt) });
    expect(list.filter((k) => k.state === 'next')).toHaveLength(1);
    const ring = JSON.parse(readFileSync(join(dir, 'keyring.json'), 'utf8'));
    expect(ring.version).toBe(2);
    expect(ring.keys).toHaveLength(2);
    await upgraded.close();
  });

  it('refuses a keyring with two next keys or a bad version', async () => {
    const dir = tempDir();
    const km = createLocalKeyManager({ dir, algorithm: 'ES256', clock });
    await km.init();
    const ring = JSON.parse(readFileSync(join(dir, 'keyring.json'), 'utf8'));
    writeFileSync(join(dir, 'keyring.json'), JSON.stringify({ ...ring, version: 0, keys: [...ring.keys, { ...ring.keys[1], kid: 'A'.repeat(43) }] }));
    await expectLocalKeyError(createLocalKeyManager({ dir, algorithm: 'ES256', clock }).init(), 'version: must be a positive integer');
    writeFileSync(join(dir, 'keyring.json'), JSON.stringify({ ...ring, keys: [...ring.keys, { ...ring.keys[1], kid: 'A'.repeat(43) }] }));
    await expectLocalKeyError(createLocalKeyManager({ dir, algorithm: 'ES256', clock }).init(), "at most one key may be in state 'next' (found 2)");
  });
});
