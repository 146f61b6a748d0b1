import { afterAll, describe, expect, it } from '@jest/globals';
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, testConfigInput } from '../support/broker.js';
import { TestCluster } from '../support/cluster.js';
import { spawnServe } from '../support/serve.js';
import { waitFor } from '../support/wait.js';

/** `--guardrails FILE`: the baseline platform security owns, read at start and on every reload. */
describe('leash serve / validate --guardrails', () => {
  const dirs: string[] = [];
  afterAll(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  it('a guardrails file relaxes a default; a change to it alone is a reload', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'leash-guardrails-serve-'));
    dirs.push(dir);
    const cluster = await TestCluster.create();
    const [port, managementPort] = [await freePort(), await freePort()];
    const input = testConfigInput({ issuer: `http://127.0.0.1:${port}`, dir, cluster }) as Record<string, any>;
    input.settings.listen.port = port;
    input.settings.management.listen.port = managementPort;
    input.plugins.push({
      id: 'sender',
      owner: 'team-comms@example.com',
      risk: 'low',
      bindings: [{ issuer: 'test-cluster', subject: 'system:serviceaccount:plugins:sender' }],
      grants: [{ audience: 'https://mail.example.com', scopes: ['mail:send'], kind: 'jwt', effect: 'exfiltrate', approval: 'none', max_ttl: 120 }],
    });
    const policy = join(dir, 'leash.json');
    const guardrails = join(dir, 'guardrails.yaml');
    await writeFile(policy, JSON.stringify(input));
    await writeFile(guardrails, 'version: 1\nguardrails:\n  approval_for_effects: [admin]\n');

    const validate = (...extra: string[]) => spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'validate', policy, ...extra], { encoding: 'utf8', timeout: 60000 });
    const strict = validate();
    expect(strict.status).toBe(1);
    expect(strict.stderr).toContain('/plugins/3/grants/0/approval: [guardrail approval-for-effect]');
    expect(validate('--guardrails', guardrails).status).toBe(0);

    const child = spawnServe(policy, undefined, undefined, { args: ['--guardrails', guardrails] });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    try {
      await waitFor(async () => (await fetch(`http://127.0.0.1:${managementPort}/healthz`).catch(() => undefined))?.ok === true, 30000);
      // Only the guardrails file changes: the watcher sees it, the new baseline refuses the policy.
      await writeFile(guardrails, 'version: 1\nguardrails:\n  approval_for_effects: [exfiltrate, admin]\n');
      child.kill('SIGHUP');
      await waitFor(async () => stderr.includes('policy reload rejected'), 30000);
      expect(stderr).toContain('[guardrail approval-for-effect]');
      // The running policy keeps serving.
      expect((await fetch(`http://127.0.0.1:${managementPort}/healthz`)).ok).toBe(true);
    } finally {
      child.kill('SIGKILL');
    }
  }, 90000);
});
