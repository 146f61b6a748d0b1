import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { decodeJwt } from 'jose';
import { LeashPluginClient } from '../../src/client/index.js';
import { ManualClock } from '../../src/time/clock.js';
import { EXCHANGE, JWT_TYPE, startTestBroker, type TestBroker } from '../support/broker.js';
import { AWS_ROLE_KEY, AWS_SERVER_ID, CLOUD_API, CloudIssuers } from '../support/cloud-issuers.js';

/**
 * GitLab CI, Google Cloud, Microsoft Entra and AWS workloads exchange their own platform
 * identity for a Leash token, over real HTTP end to end: JWKS and discovery from a
 * metadata server, GetCallerIdentity replayed to the STS contract server, CEL conditions
 * on the grants.
 */

const AWS_TYPE = 'urn:leash:params:oauth:token-type:aws-sigv4-get-caller-identity';

let clock: ManualClock;
let cloud: CloudIssuers;
let tb: TestBroker;

beforeAll(async () => {
  clock = new ManualClock(Date.now());
  cloud = await CloudIssuers.start(() => clock.now());
  tb = await startTestBroker({ broker: { clock }, patch: (cfg) => cloud.patch(cfg) });
});
afterAll(async () => {
  await tb.close();
  await cloud.close();
});

const exchange = (clientId: string, subjectToken: string, extra: Record<string, string> = {}) =>
  tb.exchange({ grant_type: EXCHANGE, client_id: clientId, subject_token: subjectToken, subject_token_type: JWT_TYPE, resource: CLOUD_API, scope: 'deploy:read', ...extra });

describe('cloud and CI workload identities', () => {
  it.each([
    ['gitlab-deployer', () => cloud.gitlab()],
    ['gcp-deployer', () => cloud.gcp()],
    ['azure-deployer', () => cloud.azure()],
  ])('%s gets a token for its own platform identity', async (plugin, make) => {
    const res = await exchange(plugin, await make());
    expect(res.status).toBe(200);
    expect(decodeJwt(res.body.access_token as string)).toMatchObject({ sub: plugin, aud: CLOUD_API, scope: 'deploy:read' });
  });

  it('aws-deployer gets a token for a signed GetCallerIdentity request', async () => {
    const res = await exchange('aws-deployer', await cloud.aws(), { subject_token_type: AWS_TYPE });
    expect(res.status).toBe(200);
    expect(decodeJwt(res.body.access_token as string)).toMatchObject({ sub: 'aws-deployer', aud: CLOUD_API });
    expect(cloud.sts.calls.at(-1)).toMatchObject({ action: 'GetCallerIdentity', status: 200, signedBy: AWS_ROLE_KEY.accessKeyId });
  });

  it('the plugin SDK on AWS: signs with the AWS SDK for each exchange and gets tokens', async () => {
    const client = new LeashPluginClient({
      issuer: tb.url,
      clientId: 'aws-deployer',
      attestation: { aws: { serverId: AWS_SERVER_ID, endpoint: cloud.sts.url, credentials: AWS_ROLE_KEY } },
      clock,
    });
    const task = await tb.openTask({ plugins: ['aws-deployer'] });
    const before = cloud.sts.calls.length;
    const token = await client.getToken({ audience: CLOUD_API, scope: ['deploy:status'], task });
    expect(decodeJwt(token.accessToken)).toMatchObject({ sub: 'aws-deployer', scope: 'deploy:status' });
    expect(cloud.sts.calls.length).toBe(before + 1);
  });

  it('the audit event names the workload by its platform identity, and the attestation by digest only', async () => {
    const before = (await tb.broker.testing.store.read(1, 100000)).length;
    const token = await cloud.aws();
    const res = await exchange('aws-deployer', token, { subject_token_type: AWS_TYPE });
    expect(res.status).toBe(200);
    const events = (await tb.broker.testing.store.read(1, 100000)).slice(before);
    expect(events.map((e) => e.type)).toEqual(['exchange.issued']);
    expect(events[0]!.event).toMatchObject({
      plugin: 'aws-deployer',
      workload: { issuer: 'aws', subject: 'arn:aws:sts::210987654321:assumed-role/crm-reader/i-0e2e' },
      subject_token_sha256: expect.any(String),
    });
    const text = JSON.stringify(events);
    expect(text).not.toContain(token);
    expect(text).not.toContain(AWS_ROLE_KEY.sessionToken);
  });
});

describe('CEL conditions over HTTP', () => {
  it('a false expression is refused (invalid_request, ERR_CONDITION_FAILED), naming it', async () => {
    const res = await exchange('gitlab-deployer', await cloud.gitlab({ pipeline_source: 'merge_request_event' }));
    expect(res.status).toBe(400);
    expect(res.body.error).toBe('invalid_request');
    expect(res.body.error_description).toMatch(/\(ERR_CONDITION_FAILED\)$/);
    expect(res.body.error_description).toContain("expression 'workload.claims.pipeline_source in ['push', 'schedule'] && request.scopes.all(s, s.startsWith('deploy:'))' is false");
  });

  it('a claim the expression needs is absent: has() makes it false, denied', async () => {
    const res = await exchange('gcp-deployer', await cloud.gcp({ google: undefined }));
    expect(res.status).toBe(400);
    expect(res.body.error).toBe('invalid_request');
    expect(res.body.error_description).toContain("expression 'has(workload.claims.zone) && workload.claims.zone.startsWith('europe-')' is false");
  });

  it('the same role name in another AWS account does not bind (account pinned)', async () => {
    const { AWS_FOREIGN_KEY } = await import('../support/cloud-issuers.js');
    const res = await exchange('aws-deployer', await cloud.aws({ credentials: AWS_FOREIGN_KEY }), { subject_token_type: AWS_TYPE });
    expect(res.status).toBe(400);
    expect(res.body.error).toBe('invalid_request');
    expect(res.body.error_description).toMatch(/\(ERR_WORKLOAD_UNBOUND\)$/);
  });
});
