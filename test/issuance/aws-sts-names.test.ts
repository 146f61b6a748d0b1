import { describe, it, expect } from '@jest/globals';
import { checkSessionPolicy, SESSION_POLICY_MAX_CHARS, sessionPolicy } from '../../src/formats/aws-session-policy.js';
import { roleSessionName, sessionDuration, sourceIdentity, tagValue } from '../../src/issuance/aws-sts/names.js';
import { classifyStsError } from '../../src/issuance/aws-sts/sts-errors.js';
import { stsBackoffDelay as backoffDelay } from '../../src/issuance/aws-sts/aws-sts-issuer.js';
import { createAwsStsRevoker, type UnrevokableSessions } from '../../src/issuance/aws-sts/aws-sts-revoker.js';
import type { IssuedToken } from '../../src/store/records.js';
import { ManualClock } from '../../src/time/clock.js';

const AWS_NAME = /^[\w+=,.@-]{2,64}$/;

describe('sessionPolicy', () => {
  it('is one compact Allow statement over the grant, in config order', () => {
    expect(sessionPolicy({ actions: ['s3:GetObject', 's3:ListBucket'], resources: ['arn:aws:s3:::reports', 'arn:aws:s3:::reports/*'] })).toBe(
      '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:GetObject","s3:ListBucket"],"Resource":["arn:aws:s3:::reports","arn:aws:s3:::reports/*"]}]}',
    );
  });

  it('is deterministic: the same grant gives the same string', () => {
    const grant = { actions: ['dynamodb:GetItem'], resources: ['arn:aws:dynamodb:us-east-1:123456789012:table/t'] };
    expect(sessionPolicy(grant)).toBe(sessionPolicy({ ...grant }));
  });

  it('refuses an empty grant as a programming error; the load-time check leaves that to the schema', () => {
    expect(() => sessionPolicy({ actions: [], resources: ['*'] })).toThrow(TypeError);
    expect(checkSessionPolicy({ actions: [], resources: ['*'] })).toBeUndefined();
  });

  it('checkSessionPolicy accepts a policy at the limit and reports one over it with its size', () => {
    const base = sessionPolicy({ actions: ['s3:GetObject'], resources: ['arn:aws:s3:::b/'] }).length;
    const fill = (n: number) => ({ actions: ['s3:GetObject'], resources: [`arn:aws:s3:::b/${'x'.repeat(n)}`] });
    const atLimit = fill(SESSION_POLICY_MAX_CHARS - base);
    expect(sessionPolicy(atLimit).length).toBe(SESSION_POLICY_MAX_CHARS);
    expect(checkSessionPolicy(atLimit)).toBeUndefined();
    const problem = checkSessionPolicy(fill(SESSION_POLICY_MAX_CHARS - base + 1));
    expect(problem).toContain(`${SESSION_POLICY_MAX_CHARS + 1} characters`);
    expect(problem).toContain('2048');
  });
});

describe('roleSessionName and sourceIdentity', () => {
  it('is leash.<plugin>.<task tail>', () => {
    expect(roleSessionName('crm-reader', 'tsk_AbCdEfGhIjKlMnOpQrStUv')).toBe('leash.crm-reader.KlMnOpQrStUv');
    expect(roleSessionName('crm-reader', undefined)).toBe('leash.crm-reader.none');
  });

  it('keeps two tasks of one plugin apart', () => {
    expect(roleSessionName('p', 'tsk_aaaaaaaaaaaaaaaa1111')).not.toBe(roleSessionName('p', 'tsk_aaaaaaaaaaaaaaaa2222'));
  });

  it('stays within AWS charset and 64 characters for a long plugin and odd task characters', () => {
    const long = `plugin-${'x'.repeat(56)}`; // 63, the longest plugin id
    const name = roleSessionName(long, 'task with spaces/and#hash');
    expect(name).toMatch(AWS_NAME);
    expect(name.length).toBe(64);
    expect(name.startsWith('leash.plugin-xxx')).toBe(true);
    // The tail is the task id's last 12 characters, sanitised; the plugin gives way.
    expect(name).toBe(`leash.${long.slice(0, 45)}.ces_and_hash`);
  });

  it('sourceIdentity is the plugin, and at least two characters', () => {
    expect(sourceIdentity('crm-reader')).toBe('crm-reader');
    expect(sourceIdentity('a')).toBe('leash.a');
    expect(sourceIdentity('a')).toMatch(AWS_NAME);
    expect(sourceIdentity(`p${'y'.repeat(62)}`)).toMatch(AWS_NAME);
  });

  it('tag values keep AWS tag characters only', () => {
    expect(tagValue('tsk_Ab-9')).toBe('tsk_Ab-9');
    expect(tagValue('a#b*c')).toBe('a_b_c');
    expect(tagValue('v'.repeat(300)).length).toBe(256);
  });
});

describe('sessionDuration', () => {
  it.each([
    [300, 3600, 900],
    [900, 3600, 900],
    [1800, 3600, 1800],
    [5000, 3600, 3600],
    [5000, 43200, 5000],
  ])('ttl %i with role max %i -> %i', (ttl, max, expected) => {
    expect(sessionDuration(ttl, max)).toBe(expected);
  });

  it('refuses nonsense as a programming error', () => {
    expect(() => sessionDuration(0, 3600)).toThrow(TypeError);
    expect(() => sessionDuration(300, 600)).toThrow(TypeError);
    expect(() => sessionDuration(1.5, 3600)).toThrow(TypeError);
  });
});

describe('classifyStsError', () => {
  const sdk = (name: string, status: number) => Object.assign(new Error('AWS text with arn:aws:iam::123456789012:role/secret-role'), { name, $metadata: { httpStatusCode: status } });
  it.each([
    ['Throttling', 400, 'retryable'],
    ['ThrottlingException', 400, 'retryable'],
    ['RequestLimitExceeded', 400, 'retryable'],
    ['ServiceUnavailable', 503, 'retryable'],
    ['InternalFailure', 500, 'retryable'],
    ['IDPCommunicationErrorException', 400, 'retryable'],
    ['SomethingNew', 502, 'retryable'],
    ['AccessDenied', 403, 'refused'],
    ['InvalidIdentityTokenException', 400, 'refused'],
    ['IDPRejectedClaimException', 403, 'refused'],
    ['ExpiredTokenException', 400, 'refused'],
    ['RegionDisabledException', 403, 'refused'],
    ['MalformedPolicyDocumentException', 400, 'target-invalid'],
    ['PackedPolicyTooLargeException', 400, 'target-invalid'],
    ['ValidationError', 400, 'target-invalid'],
    ['NoSuchEntity', 404, 'target-invalid'],
    ['SignatureDoesNotMatch', 403, 'unavailable'],
    ['SomethingNew', 400, 'unavailable'],
  ])('%s (%i) is %s', (name, status, cls) => {
    expect(classifyStsError(sdk(name, status)).class).toBe(cls);
  });

  it('names the code without the SDK suffix, and network errors by errno', () => {
    expect(classifyStsError(sdk('PackedPolicyTooLargeException', 400)).code).toBe('PackedPolicyTooLarge');
    expect(classifyStsError(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' }))).toEqual({ class: 'retryable', code: 'ECONNREFUSED', status: undefined });
    expect(classifyStsError(Object.assign(new Error('x'), { name: 'TimeoutError' })).class).toBe('retryable');
    // The SDK's wrapper for a socket error from another realm keeps only the text.
    const wrapped = Object.assign(new Error('AWS SDK error wrapper for Error: getaddrinfo EAI_AGAIN sts.example'), { $metadata: {} });
    expect(classifyStsError(wrapped)).toEqual({ class: 'retryable', code: 'EAI_AGAIN', status: undefined });
    expect(classifyStsError(new Error('AWS SDK error wrapper for Error: EWHATEVER')).class).toBe('unavailable');
  });
});

describe('backoffDelay', () => {
  it('grows exponentially with jitter in [ceiling/2, ceiling], capped at 2 s', () => {
    expect(backoffDelay(1, () => 0)).toBe(50);
    expect(backoffDelay(1, () => 0.999999)).toBe(100);
    expect(backoffDelay(3, () => 0)).toBe(200);
    expect(backoffDelay(3, () => 0.999999)).toBe(400);
    expect(backoffDelay(12, () => 0.999999)).toBe(2000);
  });
});

describe('createAwsStsRevoker', () => {
  const token = (jti: string, expiresAt: number): IssuedToken => ({
    jti,
    plugin: 'p',
    task: 't',
    audience: 'aws',
    scopes: [],
    kind: 'aws-sts',
    kid: undefined,
    issuedAt: 0,
    expiresAt,
    jkt: undefined,
  });

  it('says plainly which sessions stay valid and until when', async () => {
    const clock = new ManualClock(Date.UTC(2026, 10, 25, 12, 0, 0));
    const logged: UnrevokableSessions[] = [];
    const revoker = createAwsStsRevoker({ clock, log: (_msg, fields) => logged.push(fields) });
    expect(revoker.kind).toBe('aws-sts');
    const later = clock.now() + 900_000;
    await revoker.revokeIssued([token('aws:ASIAONE', later), token('aws:ASIAOLD', clock.now() - 1), token('aws:ASIATWO', later + 1000)], { actor: 'apikey:ops', reason: 'task ended' });
    expect(logged).toHaveLength(1);
    expect(logged[0]!.count).toBe(2);
    expect(logged[0]!.sessions.map((s) => s.jti)).toEqual(['aws:ASIAONE', 'aws:ASIATWO']);
    expect(logged[0]!.valid_until).toBe(new Date(later + 1000).toISOString());
    expect(logged[0]!.actor).toBe('apikey:ops');
  });

  it('stays quiet when nothing is still valid', async () => {
    const logged: unknown[] = [];
    const clock = new ManualClock();
    await createAwsStsRevoker({ clock, log: (_m, f) => logged.push(f) }).revokeIssued([token('aws:X', clock.now())], { actor: 'a', reason: 'r' });
    expect(logged).toHaveLength(0);
  });
});
