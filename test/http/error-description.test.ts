import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { connect } from 'node:net';
import { MAX_ERROR_DESCRIPTION, safeErrorDescription, withSafeErrorDescription } from '../../src/client/error-description.js';
import { createDpopKey } from '../../src/client/index.js';
import { CRM_API, EXCHANGE, JWT_TYPE, ORCHESTRATOR_KEY, startTestBroker, type TestBroker } from '../support/broker.js';

/**
 * RFC 6749 §5.2: error_description may only hold %x20-21 / %x23-5B / %x5D-7E. Request
 * values that Leash or oidc-provider echo into a description (an audience, a DPoP `alg`,
 * a parameter name, a JSON field name, the Origin header) carry one character of every
 * forbidden class; every character of every description that comes back is checked.
 */

const ALLOWED = /^[\x20\x21\x23-\x5B\x5D-\x7E]*$/;

/** One of each class outside the set: C0 controls, quote, backslash, DEL, C1/Latin-1, BMP, astral, a lone surrogate. */
const FORBIDDEN: Record<string, string> = {
  nul: '\u0000',
  tab: '\t',
  lf: '\n',
  cr: '\r',
  esc: '\u001b',
  quote: '"',
  backslash: '\\',
  del: '\u007f',
  nel: '\u0085',
  latin1: 'é',
  'line separator': '\u2028',
  'right-to-left override': '\u202e',
  emoji: '😀',
  'lone surrogate': '\ud800',
};
const ALL_FORBIDDEN = Object.values(FORBIDDEN).join('');

function expectSafe(description: unknown): string {
  expect(typeof description).toBe('string');
  const text = description as string;
  for (const ch of text) {
    const code = ch.codePointAt(0)!;
    // Every character, one by one, so a failure names the offender.
    expect({ ch: code.toString(16), ok: ALLOWED.test(ch) }).toEqual({ ch: code.toString(16), ok: true });
  }
  return text;
}

describe('safeErrorDescription', () => {
  it.each(Object.entries(FORBIDDEN))('percent-encodes %s as its UTF-8 bytes', (_name, ch) => {
    const out = safeErrorDescription(`a${ch}b`);
    expect(out).toMatch(ALLOWED);
    const bytes = [...Buffer.from(ch, 'utf8')].map((b) => `%${b.toString(16).toUpperCase().padStart(2, '0')}`).join('');
    expect(out).toBe(`a${bytes}b`);
  });

  it('leaves allowed text alone, is idempotent, and never cuts inside an escape', () => {
    const printable = Array.from({ length: 0x7f - 0x20 }, (_, i) => String.fromCharCode(0x20 + i))
      .filter((c) => c !== '"' && c !== '\\')
      .join('');
    expect(safeErrorDescription(printable)).toBe(printable);
    const once = safeErrorDescription(`x${ALL_FORBIDDEN}y`);
    expect(safeErrorDescription(once)).toBe(once);
    for (let pad = 0; pad < 4; pad++) {
      const long = safeErrorDescription(`${'a'.repeat(MAX_ERROR_DESCRIPTION - 4 + pad)}${'\n'.repeat(10)}`);
      expect(long.length).toBeLessThanOrEqual(MAX_ERROR_DESCRIPTION);
      expect(long.endsWith('...')).toBe(true);
      expect(long.slice(0, -3)).toMatch(/^a*(%0A)*$/);
    }
  });

  it('withSafeErrorDescription rewrites only error bodies', () => {
    const meta = { issuer: 'x' };
    expect(withSafeErrorDescription(meta)).toBe(meta);
    expect(withSafeErrorDescription({ error: 'invalid_request', error_description: 'origin "x" not allowed' })).toEqual({ error: 'invalid_request', error_description: 'origin %22x%22 not allowed' });
    expect(withSafeErrorDescription('text')).toBe('text');
  });
});

describe('every error description on the wire keeps to RFC 6749 §5.2', () => {
  let tb: TestBroker;
  let task: string;

  beforeAll(async () => {
    tb = await startTestBroker();
    task = await tb.openTask({ plugins: ['crm-reader'] });
  });
  afterAll(async () => tb.close());

  const exchangeParams = async (extra: Record<string, string>) => ({
    grant_type: EXCHANGE,
    client_id: 'crm-reader',
    subject_token: await tb.cluster.saToken(),
    subject_token_type: JWT_TYPE,
    task,
    ...extra,
  });

  it.each(Object.entries(FORBIDDEN))('token endpoint, audience with %s (Leash policy echo)', async (_name, ch) => {
    const res = await tb.exchange(await exchangeParams({ audience: `https://evil.example/${ch}x` }));
    expect({ status: res.status, error: res.body.error }).toEqual({ status: 400, error: 'invalid_target' });
    const text = expectSafe(res.body.error_description);
    // The value was echoed, encoded: the check above is not vacuous.
    expect(text).toContain(safeErrorDescription(`https://evil.example/${ch}x`));
  });

  it('token endpoint, an audience with every class at once', async () => {
    const res = await tb.exchange(await exchangeParams({ audience: `a${ALL_FORBIDDEN}` }));
    expect(res.status).toBe(400);
    expectSafe(res.body.error_description);
  });

  it('token endpoint, scope with every class (refused by the protocol layer)', async () => {
    const res = await tb.exchange(await exchangeParams({ resource: CRM_API, scope: `contacts:read ${ALL_FORBIDDEN}` }));
    expect(res.status).toBe(400);
    expectSafe(res.body.error_description);
  });

  it('token endpoint, a DPoP proof whose alg carries every class', async () => {
    const key = await createDpopKey('ES256');
    const genuine = await key.proof({ method: 'POST', url: `${tb.url}/token` });
    const [, payload, signature] = genuine.split('.');
    const header = Buffer.from(JSON.stringify({ typ: 'dpop+jwt', alg: `X${ALL_FORBIDDEN}`, jwk: key.publicJwk })).toString('base64url');
    const res = await tb.exchange(await exchangeParams({ resource: CRM_API }), { dpop: `${header}.${payload}.${signature}` });
    expect({ status: res.status, error: res.body.error }).toEqual({ status: 400, error: 'invalid_dpop_proof' });
    expect(expectSafe(res.body.error_description)).toContain(safeErrorDescription(`X${ALL_FORBIDDEN}`));
  });

  it('introspection, a repeated parameter whose name carries every class', async () => {
    const name = encodeURIComponent(`p${ALL_FORBIDDEN.replace('\ud800', '')}`);
    const res = await fetch(`${tb.url}/introspect`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: `${name}=1&${name}=2&token=x`,
    });
    expect(res.status).toBe(400);
    const body = (await res.json()) as Record<string, unknown>;
    expect(expectSafe(body.error_description)).toContain('%0A');
  });

  it('admin API, a JSON field name carrying every class', async () => {
    const res = await fetch(`${tb.url}/tasks`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ORCHESTRATOR_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ plugins: ['crm-reader'], [`f${ALL_FORBIDDEN}`]: 1 }),
    });
    expect(res.status).toBe(400);
    const body = (await res.json()) as Record<string, unknown>;
    expect(body.error).toBe('invalid_request');
    expect(expectSafe(body.error_description)).toContain('%22');
  });

  it('oidc-provider, an Origin header with a tab, quote, backslash and Latin-1 bytes (raw on the socket)', async () => {
    const form = new URLSearchParams(await exchangeParams({ resource: CRM_API })).toString();
    const origin = Buffer.concat([Buffer.from('https://a\t"\\'), Buffer.from([0xe9, 0x85, 0xff]), Buffer.from('.example')]);
    const { host, port } = new URL(tb.url);
    const raw = await new Promise<Buffer>((resolve, reject) => {
      const socket = connect(Number(port), host.split(':')[0]!);
      const chunks: Buffer[] = [];
      socket.on('data', (c: Buffer) => chunks.push(c));
      socket.on('end', () => resolve(Buffer.concat(chunks)));
      socket.on('error', reject);
      socket.write(
        Buffer.concat([
          Buffer.from(`POST /token HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: ${form.length}\r\nOrigin: `),
          origin,
          Buffer.from(`\r\n\r\n${form}`),
        ]),
      );
    });
    const text = raw.toString('latin1');
    const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1]);
    const json = JSON.parse(raw.subarray(raw.indexOf('\r\n\r\n') + 4).toString('utf8')) as Record<string, unknown>;
    // Refused, whatever the reason, and the description is clean to the last character.
    expect(status).toBeGreaterThanOrEqual(400);
    expect(status).toBeLessThan(500);
    expect(json.access_token).toBeUndefined();
    expectSafe(json.error_description);
  });
});
