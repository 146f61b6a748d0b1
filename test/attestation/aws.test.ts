import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createAwsAttestor } from '../../src/attestation/aws/aws-attestor.js';
import { TOKEN_TYPE_AWS_SIGV4 } from '../../src/attestation/aws/signed-request.js';
import { createAttestation, tokenDigest } from '../../src/attestation/registry.js';
import { awsAttestation } from '../../src/client/index.js';
import type { TrustedIssuerConfig } from '../../src/config/schema.js';
import { epochSeconds, ManualClock } from '../../src/time/clock.js';
import { decodeAwsRequest, encodeAwsRequest, signCallerIdentity, type SignOptions } from '../support/aws-sign.js';
import { StsContractServer } from '../support/sts-contract.js';
import { codeOf, type IssuerFields } from './fixtures.js';

/**
 * The `aws` kind over real HTTP: requests signed by the AWS SDK (the STS client for the
 * plugin SDK helper, @smithy/signature-v4 for hand-made variants), replayed by Leash to
 * the STS contract server, which verifies SigV4 with real HMACs and answers who signed.
 */

const ROLE_KEY = { accessKeyId: 'ASIALEASHTESTROLE001', secretAccessKey: 'role/secret/0123456789abcdefghijklmnopq', sessionToken: 'FwoGZXIvYXdzEleash-session-token-0123456789' };
const USER_KEY = { accessKeyId: 'AKIALEASHTESTUSER001', secretAccessKey: 'user/secret/0123456789abcdefghijklmnopq' };
const EXPIRED_KEY = { accessKeyId: 'ASIALEASHTESTEXPIRED', secretAccessKey: 'expired/secret/0123456789abcdefghijkl', sessionToken: 'expired-session-token' };
const ROLE_ARN = 'arn:aws:sts::210987654321:assumed-role/crm-reader/i-0abc123';
const SERVER_ID = 'leash.example.com';

const clock = new ManualClock(Date.now());
let sts: StsContractServer;
let stranger: { server: Server; url: string; hits: number };
let redirector: { server: Server; url: string; hits: number };

async function listen(handler: (hit: () => void) => Parameters<typeof createServer>[1]): Promise<{ server: Server; url: string; hits: number }> {
  const box = { server: undefined as unknown as Server, url: '', hits: 0 };
  box.server = createServer(handler(() => box.hits++));
  await new Promise<void>((r) => box.server.listen(0, '127.0.0.1', r));
  box.url = `http://127.0.0.1:${(box.server.address() as AddressInfo).port}`;
  return box;
}

beforeAll(async () => {
  sts = await StsContractServer.start({
    now: () => clock.now(),
    principals: {
      [ROLE_KEY.accessKeyId]: { secret: ROLE_KEY.secretAccessKey, sessionToken: ROLE_KEY.sessionToken, arn: ROLE_ARN, userId: 'AROALEASHROLEID00001:i-0abc123' },
      [USER_KEY.accessKeyId]: { secret: USER_KEY.secretAccessKey, arn: 'arn:aws:iam::210987654321:user/ci/deployer', userId: 'AIDALEASHUSERID00001' },
      [EXPIRED_KEY.accessKeyId]: { secret: EXPIRED_KEY.secretAccessKey, sessionToken: EXPIRED_KEY.sessionToken, arn: ROLE_ARN, userId: 'AROALEASHROLEID00001:old', expired: true },
    },
  });
  stranger = await listen((hit) => (_req, res) => {
    hit();
    res
      .writeHead(200, { 'content-type': 'text/xml' })
      .end(
        '<GetCallerIdentityResponse><GetCallerIdentityResult><Arn>arn:aws:iam::999999999999:root</Arn><UserId>999999999999</UserId><Account>999999999999</Account></GetCallerIdentityResult></GetCallerIdentityResponse>',
      );
  });
  redirector = await listen((hit) => (_req, res) => {
    hit();
    res.writeHead(307, { location: stranger.url }).end();
  });
});

afterAll(async () => {
  await sts.close();
  for (const s of [stranger, redirector]) {
    s.server.closeAllConnections();
    await new Promise<void>((r) => s.server.close(() => r()));
  }
});

function issuer(over: IssuerFields = {}): TrustedIssuerConfig {
  return {
    name: 'aws-prod',
    kind: 'aws',
    issuer: sts.url,
    audience: SERVER_ID,
    algorithms: ['RS256'],
    max_token_age: 900,
    clock_skew: 30,
    subject_claim: 'sub',
    claims: [],
    ...over,
  } as TrustedIssuerConfig;
}

const attestor = (over: IssuerFields = {}) => createAwsAttestor(issuer(over), { clock, baseDir: '/' });
const verify = (token: string, over: IssuerFields = {}) => attestor(over).verify(token, tokenDigest(token));

async function handMade(over: Partial<SignOptions> = {}, after?: (r: ReturnType<typeof decodeAwsRequest>) => void): Promise<string> {
  const r = await signCallerIdentity({ endpoint: sts.url, serverId: SERVER_ID, credentials: ROLE_KEY, date: new Date(clock.now()), ...over });
  after?.(r);
  return encodeAwsRequest(r);
}

describe('aws attestation: a signed GetCallerIdentity replayed to the configured STS', () => {
  it('the plugin SDK helper signs with the AWS SDK; Leash gets the caller from STS', async () => {
    const token = await awsAttestation({ serverId: SERVER_ID, endpoint: sts.url, credentials: ROLE_KEY, region: 'us-east-1' });
    const signedAt = epochSeconds(clock);
    const id = await verify(token);
    expect(id).toEqual({
      issuer: 'aws-prod',
      kind: 'aws',
      subject: ROLE_ARN,
      attributes: {
        arn: ROLE_ARN,
        account: '210987654321',
        partition: 'aws',
        user_id: 'AROALEASHROLEID00001:i-0abc123',
        principal_type: 'assumed-role',
        role: 'crm-reader',
        role_arn: 'arn:aws:iam::210987654321:role/crm-reader',
        role_id: 'AROALEASHROLEID00001',
        session_name: 'i-0abc123',
      },
      issuedAt: expect.any(Number),
      expiresAt: expect.any(Number),
      tokenDigest: tokenDigest(token),
    });
    expect(Math.abs(id.issuedAt! - signedAt)).toBeLessThanOrEqual(1);
    expect(id.expiresAt - id.issuedAt!).toBe(900);
    const call = sts.calls.at(-1)!;
    expect(call).toMatchObject({ action: 'GetCallerIdentity', status: 200, signedBy: ROLE_KEY.accessKeyId });
    // Only what was signed travels (plus Authorization): the SDK's unsigned user-agent does not.
    expect(call.headers['user-agent']).toBeUndefined();
    expect(call.headers['x-leash-server-id']).toBe(SERVER_ID);
  });

  it('an IAM user is a principal too', async () => {
    const id = await verify(await handMade({ credentials: USER_KEY }));
    expect(id.subject).toBe('arn:aws:iam::210987654321:user/ci/deployer');
    expect(id.attributes).toMatchObject({ principal_type: 'user', user_name: 'deployer', account: '210987654321' });
  });

  it('max_token_age shortens the identity (and how old a signature may be)', async () => {
    const id = await verify(await handMade(), { max_token_age: 120 });
    expect(id.expiresAt - id.issuedAt!).toBe(120);
    expect(await codeOf(verify(await handMade({ date: new Date(clock.now() - 200_000) }), { max_token_age: 120 }))).toBe('ERR_ATTESTATION_TOO_OLD');
  });

  it('routes by token type and server id among several aws issuers', async () => {
    const service = createAttestation([issuer({ name: 'aws-a', audience: 'leash-a' }), issuer({ name: 'aws-b', audience: ['leash-b', 'leash-b2'] })], { clock, baseDir: '/' });
    expect((await service.verify(await handMade({ serverId: 'leash-b2' }), TOKEN_TYPE_AWS_SIGV4)).issuer).toBe('aws-b');
    expect((await service.verify(await handMade({ serverId: 'leash-a' }), TOKEN_TYPE_AWS_SIGV4)).issuer).toBe('aws-a');
    expect(await codeOf(service.verify(await handMade({ serverId: 'leash-c' }), TOKEN_TYPE_AWS_SIGV4))).toBe('ERR_ATTESTATION_AUDIENCE');
    // Presented as a JWT, it is not one.
    expect(await codeOf(service.verify(await handMade({ serverId: 'leash-a' })))).toBe('ERR_ATTESTATION_MALFORMED');
    // Without an aws issuer, nothing accepts it.
    const jwtOnly = createAttestation([], { clock, baseDir: '/' });
    expect(await codeOf(jwtOnly.verify(await handMade(), TOKEN_TYPE_AWS_SIGV4))).toBe('ERR_ATTESTATION_ISSUER_UNKNOWN');
  });
});

describe('aws attestation: refused', () => {
  const rows: Array<[string, () => Promise<string>, string]> = [
    ['signed for another Leash (server id)', () => handMade({ serverId: 'other-leash.example.com' }), 'ERR_ATTESTATION_AUDIENCE'],
    ['no server id header', () => handMade({ serverId: undefined }), 'ERR_ATTESTATION_CLAIM_INVALID'],
    ['server id header left out of the signature', () => handMade({ unsigned: ['x-leash-server-id'] }), 'ERR_ATTESTATION_CLAIM_INVALID'],
    [
      'server id changed after signing (STS refuses the signature)',
      () => handMade({ serverId: 'other-leash' }, (r) => (r.headers['x-leash-server-id'] = SERVER_ID)),
      'ERR_ATTESTATION_REVIEW_REJECTED',
    ],
    ['body changed after signing', () => handMade({}, (r) => (r.body = 'Version=2011-06-15&Action=GetCallerIdentity')), 'ERR_ATTESTATION_REVIEW_REJECTED'],
    ['another action (AssumeRole)', () => handMade({ body: 'Action=AssumeRole&Version=2011-06-15&RoleArn=arn:aws:iam::210987654321:role/admin&RoleSessionName=x' }), 'ERR_ATTESTATION_CLAIM_INVALID'],
    ['another action (GetSessionToken)', () => handMade({ body: 'Action=GetSessionToken&Version=2011-06-15' }), 'ERR_ATTESTATION_CLAIM_INVALID'],
    ['extra parameters', () => handMade({ body: 'Action=GetCallerIdentity&Version=2011-06-15&X=1' }), 'ERR_ATTESTATION_CLAIM_INVALID'],
    ['signed for another service', () => handMade({ service: 'iam' }), 'ERR_ATTESTATION_CLAIM_INVALID'],
    ['signed for another region', () => handMade({ region: 'eu-west-1' }), 'ERR_ATTESTATION_CLAIM_INVALID'],
    ['signed 16 minutes ago', () => handMade({ date: new Date(clock.now() - 16 * 60_000) }), 'ERR_ATTESTATION_TOO_OLD'],
    ['signed in the future', () => handMade({ date: new Date(clock.now() + 5 * 60_000) }), 'ERR_ATTESTATION_NOT_YET_VALID'],
    ['expired role session', () => handMade({ credentials: EXPIRED_KEY }), 'ERR_ATTESTATION_REVIEW_REJECTED'],
    ['unknown access key', () => handMade({ credentials: { accessKeyId: 'AKIANOBODYKNOWSTHIS', secretAccessKey: 'x'.repeat(40) } }), 'ERR_ATTESTATION_REVIEW_REJECTED'],
    ['wrong secret', () => handMade({ credentials: { ...USER_KEY, secretAccessKey: 'y'.repeat(40) } }), 'ERR_ATTESTATION_REVIEW_REJECTED'],
    ['session token missing', () => handMade({ credentials: { accessKeyId: ROLE_KEY.accessKeyId, secretAccessKey: ROLE_KEY.secretAccessKey } }), 'ERR_ATTESTATION_REVIEW_REJECTED'],
    ['no Authorization', () => handMade({}, (r) => delete r.headers.authorization), 'ERR_ATTESTATION_CLAIM_MISSING'],
    ['a signature that is not SigV4', () => handMade({}, (r) => (r.headers.authorization = 'AWS AKIA:abc')), 'ERR_ATTESTATION_CLAIM_INVALID'],
    ['a signed header it does not carry', () => handMade({}, (r) => delete r.headers['content-type']), 'ERR_ATTESTATION_MALFORMED'],
    ['method GET', () => handMade({}, (r) => (r.method = 'GET')), 'ERR_ATTESTATION_MALFORMED'],
    ['the same header twice, in two cases', () => handMade({}, (r) => (r.headers['X-Leash-Server-Id'] = SERVER_ID)), 'ERR_ATTESTATION_MALFORMED'],
    ['a header with a line break', () => handMade({ extraHeaders: { 'x-note': 'a' } }, (r) => (r.headers['x-note'] = 'a\r\nx-injected: 1')), 'ERR_ATTESTATION_MALFORMED'],
    ['unknown members', async () => encodeAwsRequest({ ...decodeAwsRequest(await handMade()), region: 'x' }), 'ERR_ATTESTATION_MALFORMED'],
    ['not base64url', async () => 'not base64url!', 'ERR_ATTESTATION_MALFORMED'],
    ['base64url of something else', async () => Buffer.from('[1,2]').toString('base64url'), 'ERR_ATTESTATION_MALFORMED'],
    ['huge', async () => encodeAwsRequest({ method: 'POST', url: sts.url, headers: { a: 'x'.repeat(9000) }, body: '' }), 'ERR_ATTESTATION_MALFORMED'],
  ];
  it.each(rows)('%s', async (_name, make, code) => {
    expect(await codeOf(verify(await make()))).toBe(code);
  });

  it('never sends the request where the token says: a foreign url is refused, and nothing reaches it', async () => {
    const before = stranger.hits;
    const signedForStranger = await signCallerIdentity({ endpoint: stranger.url, serverId: SERVER_ID, credentials: ROLE_KEY, date: new Date(clock.now()) });
    expect(await codeOf(verify(encodeAwsRequest(signedForStranger)))).toBe('ERR_ATTESTATION_CLAIM_INVALID');
    // Only the url changed: the Host still says STS, but the url is not the configured endpoint.
    expect(await codeOf(verify(await handMade({}, (r) => (r.url = `${stranger.url}/`))))).toBe('ERR_ATTESTATION_CLAIM_INVALID');
    // Only the Host changed: STS's url, a foreign Host.
    expect(await codeOf(verify(await handMade({}, (r) => (r.headers.host = new URL(stranger.url).host))))).toBe('ERR_ATTESTATION_CLAIM_INVALID');
    expect(stranger.hits).toBe(before);
  });

  it('STS down, slow to say yes, throttling or answering nonsense: temporarily unavailable (fail closed)', async () => {
    sts.failNext(1, 'Throttling', 400);
    expect(await codeOf(verify(await handMade()))).toBe('ERR_ATTESTATION_REVIEW_UNAVAILABLE');
    sts.failNext(1, 'ServiceUnavailable', 503);
    expect(await codeOf(verify(await handMade()))).toBe('ERR_ATTESTATION_REVIEW_UNAVAILABLE');
    const down = await listen(() => (_q, res) => res.destroy());
    const url = down.url;
    down.server.closeAllConnections();
    await new Promise<void>((r) => down.server.close(() => r()));
    expect(await codeOf(verify(await handMade({ endpoint: url }), { issuer: url }))).toBe('ERR_ATTESTATION_REVIEW_UNAVAILABLE');
  });

  it('an answer that is not GetCallerIdentity XML is no answer', async () => {
    const liar = await listen(
      () => (_q, res) =>
        res
          .writeHead(200, { 'content-type': 'text/xml' })
          .end(
            '<GetCallerIdentityResponse><GetCallerIdentityResult><Arn>arn:aws:iam::123456789012:user/a</Arn><Arn>arn:aws:iam::123456789012:user/b</Arn><UserId>AIDA</UserId><Account>123456789012</Account></GetCallerIdentityResult></GetCallerIdentityResponse>',
          ),
    );
    try {
      expect(await codeOf(verify(await handMade({ endpoint: liar.url }), { issuer: liar.url }))).toBe('ERR_ATTESTATION_REVIEW_UNAVAILABLE');
    } finally {
      liar.server.closeAllConnections();
      await new Promise<void>((r) => liar.server.close(() => r()));
    }
  });

  it('a redirect from the endpoint is not followed', async () => {
    const before = stranger.hits;
    expect(await codeOf(verify(await handMade({ endpoint: redirector.url }), { issuer: redirector.url }))).toBe('ERR_ATTESTATION_REVIEW_UNAVAILABLE');
    expect(redirector.hits).toBeGreaterThan(0);
    expect(stranger.hits).toBe(before);
  });
});
