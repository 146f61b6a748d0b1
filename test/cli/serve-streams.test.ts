import { afterAll, describe, expect, it } from '@jest/globals';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CRM_API, EXCHANGE, JWT_TYPE, ORCHESTRATOR_KEY, freePort, testConfigInput } from '../support/broker.js';
import { TestCluster } from '../support/cluster.js';
import { spawnServe } from '../support/serve.js';
import { waitFor } from '../support/wait.js';

/**
 * `leash serve` as an operator runs it: stdout carries only security events (the typed,
 * hash-chained stream), stderr only the operational log, one JSON object per line, whatever
 * happens in between (the token endpoint's protocol layer included).
 */
describe('leash serve: two streams, each one JSON object per line', () => {
  const dirs: string[] = [];
  afterAll(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  it('stdout: audit events only; stderr: log lines only; a request id ties an access line to its events', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'leash-streams-'));
    dirs.push(dir);
    const cluster = await TestCluster.create();
    const [port, managementPort] = [await freePort(), await freePort()];
    const url = `http://127.0.0.1:${port}`;
    const input = testConfigInput({ issuer: url, dir, cluster }) as Record<string, any>;
    input.settings.listen.port = port;
    input.settings.management.listen.port = managementPort;
    input.settings.audit.stdout = true;
    const path = join(dir, 'leash.json');
    await writeFile(path, JSON.stringify(input));
    const child = spawnServe(path, undefined, undefined, { stdout: true });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    try {
      await waitFor(async () => (await fetch(`http://127.0.0.1:${managementPort}/readyz`).catch(() => undefined))?.ok === true);
      const opened = await fetch(`${url}/tasks`, {
        method: 'POST',
        headers: { authorization: `Bearer ${ORCHESTRATOR_KEY}`, 'content-type': 'application/json' },
        body: JSON.stringify({ plugins: ['crm-reader'] }),
      });
      const task = ((await opened.json()) as { id: string }).id;
      const form = { grant_type: EXCHANGE, client_id: 'crm-reader', subject_token: await cluster.saToken(), subject_token_type: JWT_TYPE, resource: CRM_API, task };
      const ok = await fetch(`${url}/token`, { method: 'POST', headers: { 'x-request-id': 'streams-ok' }, body: new URLSearchParams(form) });
      expect(ok.status).toBe(200);
      // Refused by the protocol layer (oidc-provider) before the exchange runs, and by the exchange.
      const dup = new URLSearchParams(form);
      dup.append('task', task);
      for (const body of [
        dup,
        new URLSearchParams({ ...form, client_id: 'nobody' }),
        new URLSearchParams({ ...form, grant_type: 'password' }),
        new URLSearchParams({ ...form, scope: 'contacts:delete' }),
      ]) {
        expect((await fetch(`${url}/token`, { method: 'POST', body })).status).toBeGreaterThanOrEqual(400);
      }
      expect((await fetch(`${url}/token`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(form) })).status).toBe(400);
      await waitFor(async () => stdout.includes('"http_request_id":"streams-ok"') && stderr.includes('"request_id":"streams-ok"'), 5000);
      child.kill('SIGTERM');
      expect(await exited).toBe(0);

      const out = stdout.split('\n').filter((l) => l !== '');
      const err = stderr.split('\n').filter((l) => l !== '');
      expect(out.length).toBeGreaterThan(5);
      for (const l of out) {
        const e = JSON.parse(l) as Record<string, unknown>;
        expect([l.slice(0, 80), typeof e.seq, typeof e.type, typeof e.hash, e.level]).toEqual([l.slice(0, 80), 'number', 'string', 'string', undefined]);
      }
      expect(err.length).toBeGreaterThan(5);
      for (const l of err) {
        const e = JSON.parse(l) as Record<string, unknown>;
        expect([l.slice(0, 80), typeof e.level, typeof e.time, typeof e.msg, e.seq]).toEqual([l.slice(0, 80), 'string', 'string', 'string', undefined]);
      }
      const issued = out.map((l) => JSON.parse(l) as Record<string, unknown>).find((e) => e.http_request_id === 'streams-ok');
      expect(issued).toMatchObject({ type: 'exchange.issued', plugin: 'crm-reader' });
      const access = err.map((l) => JSON.parse(l) as Record<string, unknown>).find((e) => e.request_id === 'streams-ok');
      expect(access).toMatchObject({ level: 'info', msg: 'request', route: '/token', status: 200, plugin: 'crm-reader' });
      expect(stdout + stderr).not.toContain(form.subject_token);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  }, 60000);
});
