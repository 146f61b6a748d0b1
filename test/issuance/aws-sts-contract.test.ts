import { describe, it, expect, beforeAll, afterAll } from '@jest/globals';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { AssumeRoleCommand, AssumeRoleWithWebIdentityCommand, type STSClient } from '@aws-sdk/client-sts';
import { exportJWK, generateKeyPair, SignJWT, type JWK } from 'jose';
import { createStsClient } from '../../src/issuance/aws-sts/sts-client.js';
import { StsContractServer, TEST_ACCESS_KEY_ID, TEST_SECRET_ACCESS_KEY } from '../support/sts-contract.js';

/** The contract server must refuse what AWS refuses, or the issuer tests prove nothing. */

const ROLE = 'arn:aws:iam::123456789012:role/contract-role';
let jwksServer: Server;
let issuer: string;
let privateKey: Awaited<ReturnType<typeof generateKeyPair>>['privateKey'];
let sts: StsContractServer;
let signed: STSClient;
let unsigned: STSClient;
let clockOffsetMs = 0;

beforeAll(async () => {
  const pair = await generateKeyPair('ES256');
  privateKey = pair.privateKey;
  const jwk: JWK = { ...(await exportJWK(pair.publicKey)), kid: 'k1', alg: 'ES256', use: 'sig' };
  jwksServer = createServer((_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [jwk] })));
  await new Promise<void>((resolve) => jwksServer.listen(0, '127.0.0.1', resolve));
  issuer = `http://127.0.0.1:${(jwksServer.address() as AddressInfo).port}`;
  sts = await StsContractServer.start({
    oidc: { issuer, jwksUrl: `${issuer}/jwks`, audiences: ['sts.amazonaws.com'] },
    now: () => Date.now() + clockOffsetMs,
    trust: (call) => call.claims?.sub !== 'untrusted-plugin',
  });
  signed = createStsClient({ region: 'us-east-1', endpoint: sts.url, mode: 'assume-role', credentials: { accessKeyId: TEST_ACCESS_KEY_ID, secretAccessKey: TEST_SECRET_ACCESS_KEY } });
  unsigned = createStsClient({ region: 'us-east-1', endpoint: sts.url, mode: 'web-identity' });
});

afterAll(async () => {
  await sts.close();
  jwksServer.closeAllConnections();
  await new Promise<void>((resolve) => jwksServer.close(() => resolve()));
});

const token = (claims: Record<string, unknown> = {}, ttl = 300) =>
  new SignJWT({ sub: 'plugin-a', ...claims })
    .setProtectedHeader({ alg: 'ES256', kid: 'k1', typ: 'JWT' })
    .setIssuer(issuer)
    .setAudience('sts.amazonaws.com')
    .setIssuedAt()
    .setExpirationTime(`${ttl}s`)
    .sign(privateKey);

async function awsErrorOf(p: Promise<unknown>): Promise<{ name: string; status: number | undefined }> {
  const err = (await p.then(
    () => undefined,
    (e: unknown) => e,
  )) as { name?: string; $metadata?: { httpStatusCode?: number } } | undefined;
  expect(err).toBeDefined();
  return { name: String(err!.name), status: err!.$metadata?.httpStatusCode };
}

describe('STS contract server', () => {
  it('answers AssumeRoleWithWebIdentity with documented credentials the SDK parses', async () => {
    const out = await unsigned.send(new AssumeRoleWithWebIdentityCommand({ RoleArn: ROLE, RoleSessionName: 'leash.a.b', WebIdentityToken: await token(), DurationSeconds: 900 }));
    expect(out.Credentials?.AccessKeyId).toMatch(/^ASIA[A-Z2-7]{16}$/);
    expect(Math.abs(out.Credentials!.Expiration!.getTime() - (Date.now() + 900_000))).toBeLessThan(5_000);
    expect(out.SubjectFromWebIdentityToken).toBe('plugin-a');
    expect(out.AssumedRoleUser?.Arn).toBe('arn:aws:sts::123456789012:assumed-role/contract-role/leash.a.b');
  });

  it.each([
    ['a session name with a space', { RoleSessionName: 'leash a' }, 'ValidationError'],
    ['a one-character session name', { RoleSessionName: 'a' }, 'ValidationError'],
    ['a duration under 900 s', { DurationSeconds: 600 }, 'ValidationError'],
    ['a duration over the role maximum', { DurationSeconds: 7200 }, 'ValidationError'],
    ['a policy that is not JSON', { Policy: '{not json' }, 'MalformedPolicyDocumentException'],
    ['a policy over 2048 characters', { Policy: JSON.stringify({ Version: '2012-10-17', Statement: [], x: 'y'.repeat(2100) }) }, 'ValidationError'],
  ])('refuses %s', async (_label, over, code) => {
    const e = await awsErrorOf(unsigned.send(new AssumeRoleWithWebIdentityCommand({ RoleArn: ROLE, RoleSessionName: 'leash.a.b', WebIdentityToken: await token(), ...over })));
    expect(e).toEqual({ name: code, status: 400 });
  });

  it('refuses an expired token as ExpiredTokenException and a foreign-signed one as InvalidIdentityToken', async () => {
    const t = await token({}, 60);
    clockOffsetMs = 120_000;
    try {
      expect((await awsErrorOf(unsigned.send(new AssumeRoleWithWebIdentityCommand({ RoleArn: ROLE, RoleSessionName: 'ab', WebIdentityToken: t })))).name).toBe('ExpiredTokenException');
    } finally {
      clockOffsetMs = 0;
    }
    const other = await generateKeyPair('ES256');
    const forged = await new SignJWT({ sub: 'plugin-a' })
      .setProtectedHeader({ alg: 'ES256', kid: 'k1' })
      .setIssuer(issuer)
      .setAudience('sts.amazonaws.com')
      .setIssuedAt()
      .setExpirationTime('5m')
      .sign(other.privateKey);
    expect((await awsErrorOf(unsigned.send(new AssumeRoleWithWebIdentityCommand({ RoleArn: ROLE, RoleSessionName: 'ab', WebIdentityToken: forged })))).name).toBe('InvalidIdentityTokenException');
  });

  it('refuses malformed session tags in the token, and applies the trust policy', async () => {
    const badTags = await token({ 'https://aws.amazon.com/tags': { principal_tags: { a: ['1', '2'] } } });
    expect((await awsErrorOf(unsigned.send(new AssumeRoleWithWebIdentityCommand({ RoleArn: ROLE, RoleSessionName: 'ab', WebIdentityToken: badTags })))).name).toBe('InvalidIdentityTokenException');
    const badTransitive = await token({ 'https://aws.amazon.com/tags': { principal_tags: { a: ['1'] }, transitive_tag_keys: ['b'] } });
    expect((await awsErrorOf(unsigned.send(new AssumeRoleWithWebIdentityCommand({ RoleArn: ROLE, RoleSessionName: 'ab', WebIdentityToken: badTransitive })))).name).toBe(
      'InvalidIdentityTokenException',
    );
    const untrusted = await token({ sub: 'untrusted-plugin' });
    expect(await awsErrorOf(unsigned.send(new AssumeRoleWithWebIdentityCommand({ RoleArn: ROLE, RoleSessionName: 'ab', WebIdentityToken: untrusted })))).toEqual({ name: 'AccessDenied', status: 403 });
  });

  it('refuses a web identity call that carries an Authorization header', async () => {
    const body = new URLSearchParams({ Action: 'AssumeRoleWithWebIdentity', Version: '2011-06-15', RoleArn: ROLE, RoleSessionName: 'ab', WebIdentityToken: await token() });
    const res = await fetch(sts.url, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: 'AWS4-HMAC-SHA256 Credential=x' }, body });
    expect(res.status).toBe(400);
    expect(await res.text()).toMatch(/<ErrorResponse xmlns="https:\/\/sts\.amazonaws\.com\/doc\/2011-06-15\/"><Error><Type>Sender<\/Type><Code>ValidationError<\/Code>/);
  });

  it('refuses an unsigned AssumeRole and a wrong Version', async () => {
    const res = await fetch(sts.url, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: `Action=AssumeRole&Version=2011-06-15&RoleArn=${encodeURIComponent(ROLE)}&RoleSessionName=ab`,
    });
    expect(res.status).toBe(403);
    expect(await res.text()).toContain('<Code>MissingAuthenticationToken</Code>');
    const v = await fetch(sts.url, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'Action=GetCallerIdentity&Version=2010-01-01' });
    expect(v.status).toBe(400);
  });

  it('validates AssumeRole source identity and tags', async () => {
    const base = { RoleArn: ROLE, RoleSessionName: 'ab' };
    expect((await awsErrorOf(signed.send(new AssumeRoleCommand({ ...base, SourceIdentity: 'has space' })))).name).toBe('ValidationError');
    expect((await awsErrorOf(signed.send(new AssumeRoleCommand({ ...base, SourceIdentity: 'aws:me' })))).name).toBe('ValidationError');
    expect((await awsErrorOf(signed.send(new AssumeRoleCommand({ ...base, Tags: [{ Key: 'k', Value: 'v' }], TransitiveTagKeys: ['other'] })))).name).toBe('InvalidParameterValue');
    const ok = await signed.send(new AssumeRoleCommand({ ...base, SourceIdentity: 'plugin-a', Tags: [{ Key: 'leash:plugin', Value: 'plugin-a' }], TransitiveTagKeys: ['leash:plugin'] }));
    expect(ok.SourceIdentity).toBe('plugin-a');
    expect(sts.calls[sts.calls.length - 1]!.tags).toEqual({ 'leash:plugin': 'plugin-a' });
  });
});
