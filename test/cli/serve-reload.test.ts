import { afterAll, describe, expect, it } from '@jest/globals';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EXCHANGE, JWT_TYPE, freePort, testConfigInput } from '../support/broker.js';
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
        body: new URLSearchParams({ grant_type: EXCHANGE, client_id: 'newcomer', subject_token: await cluster.saToken({ sa: 'newcomer' }), subject_token_type: JWT_TYPE, resource: 'https://new.example.com' }),
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
});
