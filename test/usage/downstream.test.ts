import { afterEach, beforeEach, describe, expect, it } from '@jest/globals';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openSqliteStore, type SqliteStore } from '../../src/store/sqlite/sqlite-store.js';
import { ManualClock } from '../../src/time/clock.js';
import { linkingLeaseStore, linkingTokenIndex } from '../../src/usage/credential-links.js';
import { ingestCloudTrail, ingestVaultAudit } from '../../src/usage/downstream/ingest-downstream.js';
import { linkCandidates, type Candidate } from '../../src/usage/downstream/link.js';
import { parseCloudTrailRecord } from '../../src/usage/downstream/cloudtrail.js';
import { aTask, aToken } from '../store/describe-store.js';

const CLOUDTRAIL = 'test/fixtures/cloudtrail';
const VAULT = 'test/fixtures/vault/audit.log';
const TASK = 'tsk_fixtureTask0000000001';
const DAY = 86_400_000;

describe('downstream ingestion: CloudTrail and Vault audit fixtures linked to tasks and plugins', () => {
  let dir: string;
  let clock: ManualClock;
  let store: SqliteStore;
  const deps = () => ({ store, clock, knownPlugin: (id: string) => id === 's3-reader' || id === 'crm-db-reader', retentionMs: 30 * DAY });

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'leash-downstream-'));
    clock = new ManualClock(Date.UTC(2026, 10, 25, 13, 0, 0));
    store = openSqliteStore({ path: join(dir, 'leash.db'), clock });
    await store.createTask(aTask(clock, { id: TASK, plugins: ['s3-reader', 'crm-db-reader'], createdAt: Date.UTC(2026, 10, 25, 12, 0, 0) }));
  });
  afterEach(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('the broker records downstream names as it issues: AWS access key ids and Vault lease ids', async () => {
    const links = { store, retentionMs: () => 30 * DAY };
    const tokens = linkingTokenIndex(store, links);
    await tokens.recordIssued(aToken(clock, { jti: 'aws:ASIAS3READER00000001', kind: 'aws-sts', plugin: 's3-reader', task: TASK, jkt: undefined, kid: undefined }));
    await tokens.recordIssued(aToken(clock, { jti: 'plain-jwt', kind: 'jwt' }));
    expect(await store.getIssued('aws:ASIAS3READER00000001')).toBeDefined();
    const leases = linkingLeaseStore(store, links);
    await leases.recordLease({ jti: 'vault-1', leaseId: 'database/creds/crm-ro/2f6a614c4aa2', plugin: 'crm-db-reader', task: TASK, expiresAt: clock.now() + 3600_000, revokedAt: undefined });
    expect(await store.leasesForTokens(['vault-1'])).toHaveLength(1);
    expect(await store.resolveCredentialLinks('aws_access_key', ['ASIAS3READER00000001'])).toEqual([
      { kind: 'aws_access_key', id: 'ASIAS3READER00000001', jti: 'aws:ASIAS3READER00000001', plugin: 's3-reader', task: TASK },
    ]);
    expect(await store.resolveCredentialLinks('vault_lease', ['database/creds/crm-ro/2f6a614c4aa2'])).toEqual([expect.objectContaining({ jti: 'vault-1', plugin: 'crm-db-reader', task: TASK })]);
  });

  it('CloudTrail (a folder of .json.gz and .json files): linked by access key, session tag, session name and source identity; others left out', async () => {
    await store.linkCredentials([{ kind: 'aws_access_key', id: 'ASIAS3READER00000001', jti: 'aws:ASIAS3READER00000001', plugin: 's3-reader', task: TASK }], clock.now() + DAY);
    const r = await ingestCloudTrail(deps(), CLOUDTRAIL);
    expect(r).toEqual({ files: 2, records: 8, malformed: 0, linked: 7, unlinked: 1, stored: 7, byLink: { access_key: 4, session_tag: 1, session_name: 1, source_identity: 1 } });
    const events = await store.listTaskDownstream(TASK, 100);
    expect(events.map((e) => [e.action, e.outcome, e.link])).toEqual([
      ['sts:AssumeRoleWithWebIdentity', 'success', 'access_key'],
      ['s3:GetObject', 'success', 'access_key'],
      ['s3:GetObject', 'success', 'access_key'],
      ['s3:PutObject', 'failure', 'access_key'],
      ['sts:AssumeRole', 'success', 'session_tag'],
      ['s3:ListObjects', 'success', 'session_name'],
    ]);
    expect(events[1]).toMatchObject({
      id: 'cloudtrail:0a1b2c3d-0000-4000-8000-000000000002',
      plugin: 's3-reader',
      jti: 'aws:ASIAS3READER00000001',
      target: 'arn:aws:s3:::crm-exports/2026/11/contacts.csv',
      sourceAddress: '203.0.113.10',
      at: Date.parse('2026-11-25T12:00:09Z'),
    });
    expect(events[0]!.target).toBe('arn:aws:iam::111122223333:role/leash/s3-reader');
    // The plugin's view (review): what the role was used for, newest first; the source-identity-only call has no task.
    const ofPlugin = await store.listPluginDownstream('s3-reader', 0, 100);
    expect(ofPlugin).toHaveLength(7);
    expect(new Set(ofPlugin.filter((e) => e.outcome === 'success' && e.action.startsWith('s3:')).map((e) => e.action))).toEqual(new Set(['s3:GetObject', 's3:ListObjects']));
    expect(ofPlugin.find((e) => e.link === 'source_identity')).toMatchObject({ task: '', action: 's3:GetObject' });
    // Ingesting the same files again stores nothing new.
    expect((await ingestCloudTrail(deps(), CLOUDTRAIL)).stored).toBe(0);
  });

  it('a session-tag task that does not exist, a plugin the policy does not know, a record that is not one: not linked', async () => {
    const base = { eventID: 'e', eventTime: '2026-11-25T12:00:00Z', eventSource: 's3.amazonaws.com', eventName: 'GetObject' };
    expect(parseCloudTrailRecord({ ...base, eventTime: 'yesterday' })).toBeUndefined();
    expect(parseCloudTrailRecord('x')).toBeUndefined();
    const c = parseCloudTrailRecord({
      ...base,
      userIdentity: { type: 'AssumedRole', arn: 'arn:aws:sts::1:assumed-role/r/leash.unknown-plugin.abc', accessKeyId: 'ASIAX', sessionContext: { sourceIdentity: 'unknown-plugin' } },
      requestParameters: { tags: [{ key: 'leash:task', value: 'tsk_doesnotexist00000' }] },
    })!;
    const r = await linkCandidates({ store, knownPlugin: (id) => id === 's3-reader', keepUntil: clock.now() + DAY }, [c]);
    expect(r).toEqual({ events: [], unlinked: 1, byLink: {} });
  });

  it("Vault audit log: linked by lease id (Leash's read, someone else renewing the lease); a hashed lease id or a torn line is not", async () => {
    await store.linkCredentials([{ kind: 'vault_lease', id: 'database/creds/crm-ro/2f6a614c4aa2', jti: 'vault-1', plugin: 'crm-db-reader', task: TASK }], clock.now() + DAY);
    const r = await ingestVaultAudit(deps(), VAULT);
    expect(r).toEqual({ files: 1, records: 6, malformed: 1, linked: 2, unlinked: 2, stored: 2, byLink: { lease_id: 2 } });
    const events = await store.listTaskDownstream(TASK, 100);
    expect(events.map((e) => [e.action, e.principal, e.link, e.sourceAddress])).toEqual([
      ['read database/creds/crm-ro', 'approle-leash', 'lease_id', '10.0.4.12'],
      ['update sys/leases/renew', 'kubernetes-ci-runner', 'lease_id', '10.0.9.77'],
    ]);
    expect(events[0]).toMatchObject({ id: 'vault:5e2a9c1d-0001-4a7e-9b1c-000000000001', source: 'vault', jti: 'vault-1', plugin: 'crm-db-reader', outcome: 'success' });
  });

  it('a Vault token minted in a linked response links the requests made with it (by its accessor, hashed or not)', async () => {
    await store.linkCredentials([{ kind: 'vault_lease', id: 'lease-1', jti: 'vault-2', plugin: 'crm-db-reader', task: TASK }], clock.now() + DAY);
    const c = (id: string, at: number, over: Partial<Candidate>): Candidate => ({
      source: 'vault',
      id,
      at,
      action: 'read x',
      target: 'x',
      outcome: 'success',
      principal: 'p',
      sourceAddress: '',
      keys: [],
      ...over,
    });
    const r = await linkCandidates({ store, knownPlugin: () => true, keepUntil: clock.now() + DAY }, [
      c('vault:2', 2, { keys: [{ kind: 'vault_accessor', id: 'hmac-sha256:abcd' }] }),
      c('vault:1', 1, { keys: [{ kind: 'vault_lease', id: 'lease-1' }], provides: { kind: 'vault_accessor', id: 'hmac-sha256:abcd' } }),
      c('vault:3', 3, { keys: [{ kind: 'vault_accessor', id: 'hmac-sha256:ffff' }] }),
    ]);
    expect(r.events.map((e) => [e.id, e.link, e.jti])).toEqual([
      ['vault:1', 'lease_id', 'vault-2'],
      ['vault:2', 'accessor', 'vault-2'],
    ]);
    expect(r.unlinked).toBe(1);
    // Remembered for the next file.
    expect(await store.resolveCredentialLinks('vault_accessor', ['hmac-sha256:abcd'])).toEqual([expect.objectContaining({ jti: 'vault-2', task: TASK })]);
  });

  it('`leash ingest cloudtrail|vault-audit --config`: against the configured store, with a summary', async () => {
    await store.linkCredentials([{ kind: 'aws_access_key', id: 'ASIAS3READER00000001', jti: 'aws:ASIAS3READER00000001', plugin: 's3-reader', task: TASK }], clock.now() + DAY);
    const config = join(dir, 'leash.json');
    writeFileSync(
      config,
      JSON.stringify({
        version: 1,
        settings: { store: { path: join(dir, 'leash.db') }, keys: { dir: join(dir, 'keys') }, audit: { stdout: false } },
        trusted_issuers: [
          {
            name: 'k8s',
            kind: 'kubernetes',
            issuer: 'https://k8s.example',
            audience: 'leash',
            jwks: { inline: { keys: [{ kty: 'EC', crv: 'P-256', x: 'f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU', y: 'x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0', kid: 'k' }] } },
          },
        ],
        plugins: [
          {
            id: 's3-reader',
            owner: 'team',
            risk: 'low',
            bindings: [{ issuer: 'k8s', subject: 'system:serviceaccount:p:s3' }],
            grants: [{ audience: 'https://s3.example', scopes: ['read'], effect: 'read' }],
          },
        ],
      }),
    );
    const leash = (args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], { encoding: 'utf8', timeout: 60000 });
    const ct = leash(['ingest', 'cloudtrail', CLOUDTRAIL, '--config', config]);
    expect([ct.status, ct.stderr]).toEqual([0, '']);
    expect(ct.stdout).toMatch(/cloudtrail: 2 file\(s\), 8 records: 7 linked \(access_key 4, session_tag 1, session_name 1, source_identity 1\), 1 not Leash's, 0 malformed; 7 new events stored/);
    expect((await store.listTaskDownstream(TASK, 100)).length).toBe(6);
    const va = leash(['ingest', 'vault-audit', VAULT, '--config', config]);
    expect(va.status).toBe(0);
    expect(va.stdout).toMatch(/vault-audit: 1 file\(s\), 6 records: 0 linked, 4 not Leash's, 1 malformed/);
    expect(leash(['ingest', 'splunk', VAULT, '--config', config]).status).not.toBe(0);
  }, 90000);
});
