import { describe, it, expect, afterAll } from '@jest/globals';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';
import { CRM_API, EXCHANGE, JWT_TYPE, startTestBroker, type TestBroker } from '../support/broker.js';

/**
 * Which common verifier libraries accept Leash's tokens, per signing algorithm, run for
 * real against a broker's /jwks (docs/keys.md lists the results). jose verifies ES256 and
 * EdDSA; jsonwebtoken with jwks-rsa verifies ES256, but jsonwebtoken 9 has no EdDSA at all: jwks-rsa 4
 * hands it the Ed25519 key and it refuses the key type.
 */

async function brokerWith(algorithm: 'ES256' | 'EdDSA'): Promise<{ tb: TestBroker; token: string }> {
  const tb = await startTestBroker({ patch: (cfg) => (cfg.settings.keys.algorithm = algorithm) });
  const task = await tb.openTask();
  const res = await tb.exchange({
    grant_type: EXCHANGE,
    client_id: 'crm-reader',
    subject_token: await tb.cluster.saToken({ sa: 'crm-reader' }),
    subject_token_type: JWT_TYPE,
    audience: CRM_API,
    task,
  });
  if (res.status !== 200) throw new Error(`exchange: ${res.status} ${JSON.stringify(res.body)}`);
  return { tb, token: res.body.access_token as string };
}

async function viaJose(tb: TestBroker, token: string): Promise<string> {
  const { payload } = await jwtVerify(token, createRemoteJWKSet(new URL(`${tb.url}/jwks`)), { issuer: tb.url, audience: CRM_API, typ: 'at+jwt' });
  return payload.sub as string;
}

/**
 * The usual Express/Node pattern (jwks-rsa fetches the key by kid, jsonwebtoken verifies), in
 * its own plain-Node process: jwks-rsa 4 require()s the ESM jose, which jest's loader cannot.
 */
async function viaJsonwebtoken(tb: TestBroker, token: string): Promise<string> {
  const { stdout } = await promisify(execFile)(process.execPath, ['test/support/jsonwebtoken-verify.cjs', `${tb.url}/jwks`, token, tb.url, CRM_API], { timeout: 20_000 });
  const out = JSON.parse(stdout) as { ok: boolean; sub?: string; error?: string };
  if (!out.ok) throw new Error(out.error);
  return out.sub as string;
}

describe('verifier libraries against Leash tokens', () => {
  const brokers: TestBroker[] = [];
  afterAll(async () => {
    for (const tb of brokers) await tb.close();
  });

  it('ES256 (the default): jose and jsonwebtoken + jwks-rsa both verify', async () => {
    const { tb, token } = await brokerWith('ES256');
    brokers.push(tb);
    expect(decodeProtectedHeader(token).alg).toBe('ES256');
    expect(await viaJose(tb, token)).toBe('crm-reader');
    expect(await viaJsonwebtoken(tb, token)).toBe('crm-reader');
  });

  it('EdDSA: jose verifies; jsonwebtoken refuses the Ed25519 key (\'Unknown key type "ed25519"\')', async () => {
    const { tb, token } = await brokerWith('EdDSA');
    brokers.push(tb);
    expect(decodeProtectedHeader(token).alg).toBe('EdDSA');
    expect(await viaJose(tb, token)).toBe('crm-reader');
    await expect(viaJsonwebtoken(tb, token)).rejects.toThrow(/Unknown key type "ed25519"/);
  });
});
