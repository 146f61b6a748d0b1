import { afterAll, describe, expect, it } from '@jest/globals';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CRM_API, EXCHANGE, JWT_TYPE, ORCHESTRATOR_KEY, freePort, testConfigInput } from '../support/broker.js';
import { TestCluster } from '../support/cluster.js';
import { waitFor } from '../support/wait.js';
import { spawnServe } from '../support/serve.js';

/** `leash serve` picks up policy edits by itself, and keeps running on a bad edit. */
describe('leash serve reloads its policy', () => {
  const dirs: string[] = [];
  afterAll(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  it('on a file change and on SIGHUP; a bad file keeps the running policy', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'leash-reload-'));
    dirs.push(dir);
    const cluster = await TestCluster.create();
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const input = testConfigInput({ issuer: url, dir, cluster }) as Record<string, any>;
    input.settings.listen.port = port;
    const managementPort = await freePort();
    input.settings.management.listen.port = managementPort;
    const path = join(dir, 'leash.json');
    await writeFile(path, JSON.stringify(input));
    const child = spawnServe(path);
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const exchange = async () =>
      fetch(`${url}/token`, {
        method: 'POST',
        body: new URLSearchParams({
          grant_type: EXCHANGE,
          client_id: 'newcomer',
          subject_token: await cluster.saToken({ sa: 'newcomer' }),
          subject_token_type: JWT_TYPE,
          resource: 'https://new.example.com',
        }),
      });
    try {
      await waitFor(async () => (await fetch(`http://127.0.0.1:${managementPort}/healthz`)).ok);
      expect((await exchange()).status).toBe(401); // not a client yet

      input.plugins.push({
        id: 'newcomer',
        owner: 'team-new@example.com',
        risk: 'low',
        bindings: [{ issuer: 'test-cluster', subject: 'system:serviceaccount:plugins:newcomer' }],
        grants: [{ audience: 'https://new.example.com', scopes: ['new:read'], kind: 'jwt', effect: 'read', task_required: false }],
      });
      await writeFile(path, JSON.stringify(input));
      await waitFor(async () => (await exchange()).status === 200);

      // a broken edit: rejected, and the running policy keeps serving
      await writeFile(path, JSON.stringify({ ...input, plugins: [...input.plugins, { id: 'broken' }] }));
      await waitFor(async () => stderr.includes('policy reload rejected'));
      expect((await exchange()).status).toBe(200);

      // SIGHUP re-reads the file (still broken: still rejected, still serving)
      const before = stderr.split('policy reload rejected').length;
      await writeFile(path, JSON.stringify({ ...input, plugins: [...input.plugins, { id: 'broken-again' }] }));
      child.kill('SIGHUP');
      await waitFor(async () => stderr.split('policy reload rejected').length > before);
      expect((await exchange()).status).toBe(200);
    } finally {
      child.kill('SIGKILL');
    }
  }, 60000);

  it('SIGHUP re-reads the JWKS file a trusted issuer names: an unchanged policy with a rotated cluster key takes effect; so does a file event', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'leash-reload-jwks-'));
    dirs.push(dir);
    const [before, rotated, again] = [await TestCluster.create(), await TestCluster.create(), await TestCluster.create()];
    const port = await freePort();
    const managementPort = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const input = testConfigInput({ issuer: url, dir, cluster: before }) as Record<string, any>;
    input.settings.listen.port = port;
    input.settings.management.listen.port = managementPort;
    input.settings.audit.stdout = true;
    input.trusted_issuers[0].jwks = { file: 'cluster.jwks.json' };
    const jwksFile = join(dir, 'cluster.jwks.json');
    await writeFile(jwksFile, JSON.stringify(before.jwks()));
    const path = join(dir, 'leash.json');
    await writeFile(path, JSON.stringify(input));
    const child = spawnServe(path, undefined, undefined, { stdout: true });
    let stderr = '';
    let stdout = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    let task = '';
    // 200: the attestation verified against the JWKS in force; 400 invalid_grant: it did not.
    const attests = async (cluster: TestCluster) =>
      (
        await fetch(`${url}/token`, {
          method: 'POST',
          body: new URLSearchParams({ grant_type: EXCHANGE, client_id: 'crm-reader', subject_token: await cluster.saToken(), subject_token_type: JWT_TYPE, resource: CRM_API, task }),
        })
      ).status === 200;
    const policyEvents = () =>
      stdout
        .split('\n')
        .filter((l) => l.includes('"type":"policy.loaded"'))
        .map((l) => JSON.parse(l) as Record<string, unknown>);
    try {
      await waitFor(async () => (await fetch(`http://127.0.0.1:${managementPort}/healthz`)).ok);
      const opened = await fetch(`${url}/tasks`, {
        method: 'POST',
        headers: { authorization: `Bearer ${ORCHESTRATOR_KEY}`, 'content-type': 'application/json' },
        body: JSON.stringify({ plugins: ['crm-reader'] }),
      });
      task = ((await opened.json()) as { id: string }).id;
      expect(await attests(before)).toBe(true);
      expect(await attests(rotated)).toBe(false);

      // The policy file is untouched; only the JWKS it names changes. A debounced file event
      // may see it first: either way the new key must be in force, and SIGHUP must not be a no-op.
      await writeFile(jwksFile, JSON.stringify(rotated.jwks()));
      child.kill('SIGHUP');
      await waitFor(async () => attests(rotated), 10000);
      expect(await attests(before)).toBe(false);
      const reloaded = policyEvents();
      expect(reloaded.length).toBe(2);
      expect(reloaded[1]!.digest).toBe(reloaded[0]!.digest); // same policy file
      expect(reloaded[1]!.files_digest).toMatch(/^[0-9a-f]{64}$/);
      expect(reloaded[1]!.files_digest).not.toBe(reloaded[0]!.files_digest);

      // Without a signal: the file watcher sees the JWKS file's folder.
      await writeFile(jwksFile, JSON.stringify(again.jwks()));
      await waitFor(async () => attests(again), 10000);
      expect(stderr).not.toContain('policy reload rejected');
    } finally {
      child.kill('SIGKILL');
    }
  }, 60000);
});
