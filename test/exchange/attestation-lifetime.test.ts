import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { decodeJwt } from 'jose';
import { delegate, harness, rootToken, type Harness } from '../delegation/chain-harness.js';
import { CRM_API, EXCHANGE, JWT_TYPE } from '../support/broker.js';

/**
 * A credential never outlives the attestation it was exchanged for: its lifetime is capped
 * at the attestation's `exp` (the actor_token's, in a delegation), like a delegated token
 * is capped by its upstream. A grant opts out only with `outlive_attestation: true`.
 */

const CI_API = 'https://ci.example.com';

describe('token lifetime and the attestation exp', () => {
  let h: Harness;
  const nowS = () => Math.floor(h.clock.now() / 1000);

  beforeAll(async () => {
    h = await harness((cfg) => {
      cfg.plugins.push({
        id: 'ci-runner',
        owner: 'team-ci@example.com',
        risk: 'low',
        bindings: [{ issuer: 'test-cluster', subject: 'system:serviceaccount:plugins:ci-runner' }],
        grants: [
          { audience: CI_API, scopes: ['ci:read'], kind: 'jwt', effect: 'read', max_ttl: 300, task_required: false, outlive_attestation: true },
          { audience: CRM_API, scopes: ['contacts:read'], kind: 'jwt', effect: 'read', max_ttl: 300, task_required: false },
        ],
      });
    });
  });
  afterAll(async () => h.tb.close());

  /** An attestation of `sa` that expires `left` seconds from now. */
  const attestation = (sa: string, left: number) => h.tb.cluster.saToken({ sa, nowSeconds: nowS(), claims: { exp: nowS() + left } });

  const exchange = async (sa: string, left: number, resource: string, extra: Record<string, string> = {}) =>
    h.tb.exchange({ grant_type: EXCHANGE, client_id: sa, subject_token: await attestation(sa, left), subject_token_type: JWT_TYPE, resource, ...extra });

  /** The latest exchange decision in the audit trail (other events, e.g. the sweeper's, skipped). */
  const lastEvent = async () => {
    const all = (await h.tb.broker.testing.store.read(1, 1_000_000)).filter((e) => e.type.startsWith('exchange.'));
    return all[all.length - 1]!;
  };

  it('an attestation with 90 s left gets a token for 90 s, not the grant max of 300 s', async () => {
    const res = await exchange('crm-reader', 90, CRM_API, { task: h.task });
    expect(res.status).toBe(200);
    expect(res.body.expires_in).toBe(90);
    const claims = decodeJwt(res.body.access_token as string);
    expect(claims.exp).toBe(nowS() + 90);
    expect(await lastEvent()).toMatchObject({ type: 'exchange.issued', event: { ttl: 90 } });
  });

  it('an attestation that outlives the grant max changes nothing', async () => {
    const res = await exchange('crm-reader', 3600, CRM_API, { task: h.task });
    expect(res.body.expires_in).toBe(300);
  });

  it('an explicit expires_in above the attestation rest is capped too, not refused', async () => {
    const res = await exchange('crm-reader', 45, CRM_API, { task: h.task, expires_in: '200' });
    expect(res.status).toBe(200);
    expect(res.body.expires_in).toBe(45);
  });

  it('an attestation accepted only by the clock skew gets nothing: invalid_request, ERR_ATTESTATION_EXPIRED', async () => {
    const res = await exchange('crm-reader', -5, CRM_API, { task: h.task });
    expect({ status: res.status, error: res.body.error }).toEqual({ status: 400, error: 'invalid_request' });
    expect(res.body.access_token).toBeUndefined();
    expect(String(res.body.error_description)).toMatch(/\(ERR_ATTESTATION_EXPIRED\)$/);
    expect(await lastEvent()).toMatchObject({ type: 'exchange.denied', event: { reason: 'ERR_ATTESTATION_EXPIRED' } });
  });

  it('a grant with outlive_attestation keeps its own max, even under a skew-accepted attestation', async () => {
    const short = await exchange('ci-runner', 90, CI_API);
    expect(short.status).toBe(200);
    expect(short.body.expires_in).toBe(300);
    const skewed = await exchange('ci-runner', -5, CI_API);
    expect(skewed.status).toBe(200);
    expect(skewed.body.expires_in).toBe(300);
    // The opt-out is per grant: the same plugin's other grant is capped.
    const capped = await exchange('ci-runner', 90, CRM_API);
    expect(capped.body.expires_in).toBe(90);
  });

  it("in a delegation, the actor_token (the delegate's attestation) caps the token as well as the upstream", async () => {
    const upstream = await rootToken(h, 'crm-reader', CRM_API);
    const res = await delegate(h, 'summarizer', upstream, CRM_API, { actor_token: await attestation('summarizer', 60) });
    expect(res.status).toBe(200);
    expect(res.body.expires_in).toBe(60);
    expect(decodeJwt(res.body.access_token as string).exp).toBe(nowS() + 60);
    // The upstream's own cap still applies when it is the shorter one.
    h.clock.advance(250);
    const late = await delegate(h, 'summarizer', upstream, CRM_API, { actor_token: await attestation('summarizer', 600) });
    expect(late.status).toBe(200);
    expect(late.body.expires_in).toBeLessThanOrEqual(50);
    expect(late.body.expires_in).toBeGreaterThan(0);
  });
});
