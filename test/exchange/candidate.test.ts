import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeJwt } from 'jose';
import { compilePolicy } from '../../src/policy/compile.js';
import { LeashError } from '../../src/errors/leash-error.js';
import { createCandidateRunner } from '../../src/exchange/candidate.js';
import { CRM_API, EXCHANGE, JWT_TYPE, loadedFrom, startTestBroker, type TestBroker } from '../support/broker.js';
import { EKU_CLIENT_AUTH, issueCertificate, type IssuedCert } from '../support/x509.js';

/**
 * `serve --candidate`: a real broker over HTTP with a live policy and a candidate. The live
 * policy is enforced on every answer; where the candidate decides otherwise the broker
 * records `policy.candidate_diff` and counts it.
 */

type Json = Record<string, any>;

describe('candidate policy over HTTP', () => {
  let tb: TestBroker;
  let crmTask: string;
  let devTask: string;
  let digest: string;
  beforeAll(async () => {
    let candidateInput: Json | undefined;
    tb = await startTestBroker({
      patch: (cfg) => {
        candidateInput = JSON.parse(JSON.stringify(cfg)) as Json;
        // Two changes: crm-reader loses contacts:export; the deploy grant moves from prod to dev.
        candidateInput.plugins[0].grants[0].scopes = ['contacts:read', 'contacts:search'];
        candidateInput.plugins[2].grants[0].conditions = [{ attr: 'task.env', equals: 'dev' }];
        // And one credential per task for crm-reader (the live policy has no quota).
        candidateInput.plugins[0].quotas = { tokens_per_task: 1 };
      },
      broker: {
        get candidate() {
          // Read by Broker.create after `patch` ran.
          const loaded = loadedFrom(candidateInput, '/tmp');
          digest = loaded.digest;
          return loaded;
        },
      },
    });
    crmTask = await tb.openTask({ plugins: ['crm-reader'] });
    devTask = await tb.openTask({ plugins: ['prod-only'], attributes: { env: 'dev' } });
  });
  afterAll(async () => tb.close());

  const metric = async (pattern: RegExp): Promise<number> => {
    const text = await (await fetch(`${tb.managementUrl}/metrics`)).text();
    return Number(pattern.exec(text)?.[1] ?? 0);
  };
  const params = async (sa: string, extra: Record<string, string>) => ({ grant_type: EXCHANGE, subject_token: await tb.cluster.saToken({ sa }), subject_token_type: JWT_TYPE, ...extra });
  const diffs = async () => tb.broker.testing.auditEvents('policy.candidate_diff');

  it('enforces the live policy and records where the candidate decides otherwise, both ways', async () => {
    // Same decision: no diff.
    const same = await tb.exchange(await params('crm-reader', { resource: CRM_API, task: crmTask, scope: 'contacts:read' }));
    expect(same.status).toBe(200);
    // Live issues, the candidate would refuse: the token is still issued.
    const exportTask = await tb.openTask({ plugins: ['crm-reader'] });
    const narrowed = await tb.exchange(await params('crm-reader', { resource: CRM_API, task: exportTask, scope: 'contacts:export' }));
    expect(narrowed.status).toBe(200);
    expect(typeof narrowed.body.access_token).toBe('string');
    // Live refuses, the candidate would issue: still refused.
    const widened = await tb.exchange(await params('prod-only', { resource: 'https://deploy.example.com', task: devTask }));
    expect({ status: widened.status, error: widened.body.error }).toEqual({ status: 400, error: 'invalid_request' });
    // Refused before any policy (a bad token): nothing to compare.
    expect((await tb.exchange(await params('crm-reader', { resource: CRM_API, task: crmTask, subject_token: 'not-a-jwt' }))).status).toBe(400);
    await tb.broker.testing.candidateIdle();

    const events = (await diffs()).map((e) => e.event as Json);
    expect(events).toHaveLength(2);
    expect(events[0]).toMatchObject({
      candidate_digest: digest,
      live: { decision: 'issue', reason: 'OK', plugin: 'crm-reader' },
      candidate: { decision: 'deny', reason: 'ERR_SCOPE_NOT_GRANTED', step: 'policy', plugin: 'crm-reader' },
      task: exportTask,
      audience: CRM_API,
      scopes: ['contacts:export'],
      workload: { issuer: 'test-cluster', subject: 'system:serviceaccount:plugins:crm-reader' },
    });
    expect(events[1]).toMatchObject({
      live: { decision: 'deny', reason: 'ERR_CONDITION_FAILED', step: 'policy' },
      candidate: { decision: 'issue', reason: 'OK' },
      task: devTask,
    });
    expect(await metric(/^leash_policy_candidate_diff_total\{live="issue",candidate="deny"\} (\d+)$/m)).toBe(1);
    expect(await metric(/^leash_policy_candidate_diff_total\{live="deny",candidate="issue"\} (\d+)$/m)).toBe(1);
    expect(await metric(/^leash_policy_candidate_evaluations_total\{result="same"\} (\d+)$/m)).toBeGreaterThanOrEqual(1);
    expect(await metric(/^leash_policy_candidate_evaluations_total\{result="different"\} (\d+)$/m)).toBe(2);
    expect(await metric(/^leash_policy_candidate_evaluations_total\{result="skipped"\} (\d+)$/m)).toBeGreaterThanOrEqual(1);
  });

  it('judges the request as the store stood before it: the credential just issued does not count against a candidate quota', async () => {
    // The candidate allows crm-reader one credential per task: the first of a task passes it, the second does not.
    const task = await tb.openTask({ plugins: ['crm-reader'] });
    const before = (await diffs()).length;
    expect((await tb.exchange(await params('crm-reader', { resource: CRM_API, task, scope: 'contacts:read' }))).status).toBe(200);
    await tb.broker.testing.candidateIdle();
    expect((await diffs()).length).toBe(before);
    expect((await tb.exchange(await params('crm-reader', { resource: CRM_API, task, scope: 'contacts:read' }))).status).toBe(200);
    await tb.broker.testing.candidateIdle();
    expect((await diffs()).slice(before).map((e) => e.event as Json)).toEqual([
      expect.objectContaining({ live: expect.objectContaining({ decision: 'issue' }), candidate: expect.objectContaining({ decision: 'deny', reason: 'ERR_QUOTA_EXCEEDED', step: 'quotas' }) }),
    ]);
  });

  it('a failing candidate evaluation is counted and logged, never thrown, and runs after observe returns', async () => {
    const lines: string[] = [];
    const runner = createCandidateRunner({
      policy: compilePolicy(tb.broker.config),
      digest: 'x',
      exchange: () => {
        throw new Error('candidate wiring broke');
      },
      replayView: tb.broker.testing.store,
      audit: tb.broker.audit,
      metrics: tb.broker.metrics,
      log: (msg, fields) => lines.push(`${msg} ${JSON.stringify(fields)}`),
    });
    const errors = () => metric(/^leash_policy_candidate_evaluations_total\{result="error"\} (\d+)$/m);
    const before = await errors();
    const identity = { issuer: 'test-cluster', kind: 'kubernetes' as const, subject: 's', attributes: {}, issuedAt: 0, expiresAt: 1, tokenDigest: 'd' };
    const request = { clientId: undefined, audience: CRM_API, scopes: undefined, ttl: undefined, taskId: undefined, conditionParams: {} } as never;
    expect(() =>
      runner.observe({
        rt: {} as never,
        input: {} as never,
        trace: { at: 'policy', request, identity },
        result: { ok: false, error: new LeashError('ERR_SCOPE_NOT_GRANTED', 'x') },
        now: Date.now(),
      }),
    ).not.toThrow();
    // Nothing ran yet: the evaluation waits for the live request's I/O to go first.
    expect(lines).toEqual([]);
    await runner.idle();
    expect(await errors()).toBe(before + 1);
    expect(lines).toEqual([expect.stringContaining('candidate policy evaluation failed; the live decision stands')]);
    expect(lines[0]).toContain('candidate wiring broke');
  });
});

/**
 * A plugin named by its attestation alone that registered tls_client_auth authenticates with
 * its certificate in `decide` (after the plugin is resolved). The candidate's run is given
 * the client the live run authenticated there: the same policy decides the same, with no
 * certificate to read again.
 */
describe('candidate policy and certificate client authentication', () => {
  const DNS = 'cert-attested.plugins.example.com';
  let tb: TestBroker;
  let dir: string;
  let task: string;
  let cert: IssuedCert;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'leash-candidate-cert-'));
    const ca = issueCertificate({ name: 'Example client CA', ca: true });
    cert = issueCertificate({ name: 'cert-attested', issuer: ca, dns: [DNS], eku: [EKU_CLIENT_AUTH] });
    await writeFile(join(dir, 'ca.pem'), ca.pem);
    let candidateInput: Json | undefined;
    tb = await startTestBroker({
      dir,
      patch: (cfg) => {
        cfg.settings.client_certificate_header = { trusted_proxies: ['127.0.0.1', '::1'] };
        cfg.plugins.push({
          ...cfg.plugins[0],
          id: 'cert-attested',
          bindings: [{ issuer: 'test-cluster', subject: 'system:serviceaccount:plugins:cert-attested' }],
          client_auth: { method: 'tls_client_auth', tls_client_auth_san_dns: DNS, ca_file: join(dir, 'ca.pem'), attestation: 'required' },
        });
        // The same policy: every difference would be the candidate's run, not its policy.
        candidateInput = JSON.parse(JSON.stringify(cfg)) as Json;
      },
      broker: {
        get candidate() {
          return loadedFrom(candidateInput, dir);
        },
      },
    });
    task = await tb.openTask({ plugins: ['cert-attested'] });
  });
  afterAll(async () => {
    await tb.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('decides the same as the live run, which authenticated the certificate after resolving the plugin', async () => {
    const xfcc = { 'x-forwarded-client-cert': `Hash=00;Cert="${encodeURIComponent(cert.pem)}"` };
    const params = { grant_type: EXCHANGE, subject_token: await tb.cluster.saToken({ sa: 'cert-attested' }), subject_token_type: JWT_TYPE, resource: CRM_API, task, scope: 'contacts:read' };
    const issued = await tb.exchange(params, xfcc);
    expect(issued.status).toBe(200);
    expect(decodeJwt(issued.body.access_token as string)).toMatchObject({ plugin: 'cert-attested', cnf: { 'x5t#S256': createHash('sha256').update(cert.der).digest('base64url') } });
    // Without the certificate the live run refuses at the client authentication rule; so would the candidate.
    const refused = await tb.exchange(params);
    expect({ status: refused.status, error: refused.body.error }).toEqual({ status: 401, error: 'invalid_client' });
    await tb.broker.testing.candidateIdle();
    expect(await tb.broker.testing.auditEvents('policy.candidate_diff')).toEqual([]);
    const text = await (await fetch(`${tb.managementUrl}/metrics`)).text();
    expect(Number(/^leash_policy_candidate_evaluations_total\{result="same"\} (\d+)$/m.exec(text)?.[1])).toBe(2);
  });
});
