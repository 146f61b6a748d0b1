import { describe, it, expect } from '@jest/globals';
import { createHash, createHmac, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { calculateJwkThumbprint, type JWK } from 'jose';
import { verifyDpopProof, type VerifyDpopProofOptions } from '../../src/dpop/verify-proof.js';
import { LeashError } from '../../src/errors/leash-error.js';
import type { ReplayCache } from '../../src/store/store.js';
import { createDpopKey } from '../../src/client/dpop-key.js';
import { ManualClock } from '../../src/time/clock.js';

/** A tiny replay cache for these tests (the real one is the store's). */
class MemoryReplay implements ReplayCache {
  readonly seen = new Map<string, number>();
  async remember(key: string, expiresAt: number): Promise<boolean> {
    if (this.seen.has(key)) return false;
    this.seen.set(key, expiresAt);
    return true;
  }
}

const NOW = Date.UTC(2026, 10, 25, 12, 0, 0);
const IAT = NOW / 1000;
const URL_ = 'https://leash.example.com/token';
const enc = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');

interface Signer {
  alg: string;
  jwk: JWK;
  privateJwk: JWK;
  key: KeyObject;
}
function signer(alg: 'ES256' | 'EdDSA'): Signer {
  const { privateKey, publicKey } = alg === 'ES256' ? generateKeyPairSync('ec', { namedCurve: 'P-256' }) : generateKeyPairSync('ed25519');
  return { alg, key: privateKey, jwk: publicKey.export({ format: 'jwk' }) as JWK, privateJwk: privateKey.export({ format: 'jwk' }) as JWK };
}
const es = signer('ES256');
const ed = signer('EdDSA');

function proofWith(s: Signer, opts: { header?: Record<string, unknown>; payload?: Record<string, unknown>; drop?: string[]; hmac?: boolean } = {}): string {
  const header: Record<string, unknown> = { typ: 'dpop+jwt', alg: s.alg, jwk: s.jwk, ...opts.header };
  const payload: Record<string, unknown> = { jti: `j-${Math.random()}`, htm: 'POST', htu: URL_, iat: IAT, ...opts.payload };
  for (const d of opts.drop ?? []) {
    delete header[d];
    delete payload[d];
  }
  const input = `${enc(header)}.${enc(payload)}`;
  const data = Buffer.from(input);
  const sig = opts.hmac ? createHmac('sha256', 'secret').update(data).digest() : s.alg === 'ES256' ? sign('sha256', data, { key: s.key, dsaEncoding: 'ieee-p1363' }) : sign(null, data, s.key);
  return `${input}.${sig.toString('base64url')}`;
}

function opts(proof: VerifyDpopProofOptions['proof'], extra: Partial<VerifyDpopProofOptions> = {}): VerifyDpopProofOptions {
  return {
    proof,
    method: 'POST',
    url: URL_,
    now: NOW,
    maxAgeSeconds: 60,
    clockSkewSeconds: 5,
    algorithms: ['ES256', 'EdDSA'],
    replay: new MemoryReplay(),
    ...extra,
  };
}

async function failure(p: Promise<unknown>): Promise<LeashError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(LeashError);
    return err as LeashError;
  }
  throw new Error('expected the proof to be refused');
}

const TOKEN = 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJwIn0.c2ln';
const ATH = createHash('sha256').update(TOKEN).digest('base64url');

describe('verifyDpopProof: accepted proofs', () => {
  it.each([es, ed])('accepts a good $alg proof and returns the RFC 7638 thumbprint', async (s) => {
    const { jkt } = await verifyDpopProof(opts(proofWith(s)));
    expect(jkt).toBe(await calculateJwkThumbprint(s.jwk, 'sha256'));
  });

  it('ignores the query and fragment of the request URL', async () => {
    await expect(verifyDpopProof(opts(proofWith(es), { url: `${URL_}?a=1&b=2#frag` }))).resolves.toHaveProperty('jkt');
  });

  it('normalises scheme and host case and the default port in htu', async () => {
    const p = proofWith(es, { payload: { htu: 'HTTPS://Leash.EXAMPLE.com:443/token?x=y' } });
    await expect(verifyDpopProof(opts(p))).resolves.toHaveProperty('jkt');
  });

  it('accepts iat inside the skew in the future and at the edge of max age', async () => {
    await expect(verifyDpopProof(opts(proofWith(es, { payload: { iat: IAT + 5 } })))).resolves.toHaveProperty('jkt');
    await expect(verifyDpopProof(opts(proofWith(es, { payload: { iat: IAT - 60 } })))).resolves.toHaveProperty('jkt');
  });

  it('accepts a matching ath, and a proof made by the client SDK', async () => {
    await expect(verifyDpopProof(opts(proofWith(es, { payload: { ath: ATH } }), { accessToken: TOKEN }))).resolves.toHaveProperty('jkt');
    const key = await createDpopKey('EdDSA', { clock: new ManualClock(NOW) });
    const p = await key.proof({ method: 'GET', url: 'https://api.example.com/x?q=1', accessToken: TOKEN });
    await expect(verifyDpopProof(opts(p, { method: 'GET', url: 'https://api.example.com/x', accessToken: TOKEN }))).resolves.toEqual({ jkt: key.jkt });
  });

  it('remembers dpop:<jkt>:<jti> until iat + max age + skew (ms)', async () => {
    const replay = new MemoryReplay();
    const { jkt } = await verifyDpopProof(opts(proofWith(es, { payload: { jti: 'abc' } }), { replay }));
    expect([...replay.seen]).toEqual([[`dpop:${jkt}:abc`, (IAT + 60 + 5) * 1000]]);
  });
});

describe('verifyDpopProof: refused proofs', () => {
  const cases: Array<[string, () => VerifyDpopProofOptions, string, string?]> = [
    ['no header at all', () => opts(undefined), 'no DPoP proof', 'ERR_DPOP_REQUIRED'],
    ['two DPoP headers (array)', () => opts([proofWith(es), proofWith(es)]), 'exactly one DPoP header'],
    ['a one-element array', () => opts([proofWith(es)]), 'exactly one DPoP header'],
    ['not a compact JWS', () => opts('abc.def'), 'compact JWS'],
    ['header not JSON', () => opts(`${Buffer.from('nope').toString('base64url')}.e30.c2ln`), 'header is not base64url-encoded JSON'],
    ['wrong typ', () => opts(proofWith(es, { header: { typ: 'JWT' } })), "'typ' must be 'dpop+jwt'"],
    ['missing typ', () => opts(proofWith(es, { drop: ['typ'] })), "'typ' must be 'dpop+jwt'"],
    ['alg none', () => opts(proofWith(es, { header: { alg: 'none' } })), 'must be asymmetric'],
    ['HS256', () => opts(proofWith(es, { header: { alg: 'HS256' }, hmac: true })), 'must be asymmetric'],
    ['alg not in the allowed list', () => opts(proofWith(es), { algorithms: ['EdDSA'] }), 'ES256 is not accepted'],
    ['private key in the header jwk', () => opts(proofWith(es, { header: { jwk: es.privateJwk } })), 'private key material'],
    ['symmetric jwk in the header', () => opts(proofWith(es, { header: { jwk: { kty: 'oct', k: 'c2VjcmV0' } } })), 'private key material'],
    ['no jwk', () => opts(proofWith(es, { drop: ['jwk'] })), "'jwk' must be a public JWK"],
    ['jwk of another key', () => opts(proofWith(es, { header: { jwk: signer('ES256').jwk } })), 'signature does not verify'],
    ['jwk that does not fit alg', () => opts(proofWith(ed, { header: { jwk: es.jwk } })), 'signature does not verify'],
    ['wrong htm', () => opts(proofWith(es, { payload: { htm: 'GET' } })), "'htm' must be the request method POST"],
    ['lower-case htm', () => opts(proofWith(es, { payload: { htm: 'post' } })), "'htm'"],
    ['wrong htu path', () => opts(proofWith(es, { payload: { htu: 'https://leash.example.com/other' } })), "'htu' must be the request URL"],
    ['wrong htu host', () => opts(proofWith(es, { payload: { htu: 'https://evil.example.com/token' } })), "'htu'"],
    ['htu over http for an https endpoint', () => opts(proofWith(es, { payload: { htu: 'http://leash.example.com/token' } })), "'htu'"],
    ['htu not a URL', () => opts(proofWith(es, { payload: { htu: 'token' } })), "'htu'"],
    ['old iat', () => opts(proofWith(es, { payload: { iat: IAT - 61 } })), 'older than 60s'],
    ['future iat', () => opts(proofWith(es, { payload: { iat: IAT + 6 } })), "'iat' is in the future"],
    ['iat as a string', () => opts(proofWith(es, { payload: { iat: String(IAT) } })), "'iat' is missing"],
    ['missing jti', () => opts(proofWith(es, { drop: ['jti'] })), "'jti' is missing"],
    ['jti too long', () => opts(proofWith(es, { payload: { jti: 'x'.repeat(257) } })), 'longer than 256'],
    ['wrong ath', () => opts(proofWith(es, { payload: { ath: ATH.replace(/^./, ATH[0] === 'A' ? 'B' : 'A') } }), { accessToken: TOKEN }), "'ath' does not match"],
    ['missing ath with an access token', () => opts(proofWith(es), { accessToken: TOKEN }), "'ath' is missing"],
    [
      'tampered payload',
      () => {
        const [h, , s] = proofWith(es).split('.');
        return opts(`${h}.${enc({ jti: 'x', htm: 'POST', htu: URL_, iat: IAT })}.${s}`);
      },
      'signature does not verify',
    ],
  ];

  it.each(cases)('%s', async (_name, make, fragment, code = 'ERR_DPOP_INVALID') => {
    const err = await failure(verifyDpopProof(make()));
    expect(err.code).toBe(code);
    expect(err.description).toContain(fragment);
  });

  it('refuses a replayed proof with ERR_DPOP_REPLAY', async () => {
    const replay = new MemoryReplay();
    const p = proofWith(es);
    await verifyDpopProof(opts(p, { replay }));
    const err = await failure(verifyDpopProof(opts(p, { replay })));
    expect(err.code).toBe('ERR_DPOP_REPLAY');
  });

  it('does not spend the jti of a proof that fails another check', async () => {
    const replay = new MemoryReplay();
    await failure(verifyDpopProof(opts(proofWith(es, { payload: { jti: 'same', htm: 'GET' } }), { replay })));
    expect(replay.seen.size).toBe(0);
    await expect(verifyDpopProof(opts(proofWith(es, { payload: { jti: 'same' } }), { replay }))).resolves.toHaveProperty('jkt');
  });

  it('treats a symmetric algorithm in the allowed list as a programming error', async () => {
    await expect(verifyDpopProof(opts(proofWith(es), { algorithms: ['ES256', 'HS256'] }))).rejects.toBeInstanceOf(TypeError);
  });

  it('never echoes the proof or the access token in the error', async () => {
    const p = proofWith(es, { payload: { ath: 'x' } });
    const err = await failure(verifyDpopProof(opts(p, { accessToken: TOKEN })));
    expect(err.message).not.toContain(TOKEN);
    expect(err.message).not.toContain(p.split('.')[1]);
  });
});
