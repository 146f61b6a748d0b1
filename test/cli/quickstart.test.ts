import { describe, expect, it } from '@jest/globals';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../support/broker.js';

const leash = (args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], { encoding: 'utf8', timeout: 60000 });

describe('the README quickstart and CLI', () => {
  it('`demo` starts on embedded defaults and shows an exchange verified by a resource server', async () => {
    const port = await freePort();
    const run = leash(['demo', '--port', String(port), '--management-port', String(await freePort()), '--no-serve']);
    expect(run.status).toBe(0);
    expect(run.stdout).toContain('POST /tasks -> 201');
    expect(run.stdout).toMatch(/token_type=Bearer scope="contacts:read" expires_in=(299|300)s/);
    expect(run.stdout).toContain('GET /contacts with the token -> 200');
    expect(run.stdout).toContain('refused, invalid_scope');
    // It ends with the security team's review of the policy and of what just happened.
    expect(run.stdout).toContain('7. The security team reviews the policy');
    expect(run.stdout).toMatch(/leash review: config\/demo\.yaml \(2 plugins, 2 grants, 1 exception\)/);
    expect(run.stdout).toMatch(/task-optional-write\s+config\/demo\.yaml:\d+/);
    // The call reported as use, and the task's timeline with the exchange, the refusal and the use.
    expect(run.stdout).toMatch(/reporter: \{"queued":0,"sent":2,"dropped":0,"rejected":0/);
    expect(run.stdout).toMatch(/crm-reader\s+exchange\s+issued jwt for https:\/\/crm\.example\.com\/api/);
    expect(run.stdout).toMatch(/crm-reader\s+denied\s+denied https:\/\/crm\.example\.com\/api \(contacts:delete\): ERR_SCOPE_NOT_GRANTED/);
    // Both calls as use: one line (×2), or two (×1 each) when they straddle a minute, the
    // timeline's unit of use (a CI run met one at 03:13:59.992 and 03:14:00.022).
    const uses = [...run.stdout.matchAll(/crm-reader\s+use\s+GET \/contacts ×(\d+)/g)].reduce((n, m) => n + Number(m[1]), 0);
    expect(uses).toBe(2);
    expect(run.stdout).toContain('first use of');
    // Node 24 (LTS) runs everything: no runtime warning from oidc-provider, the AWS SDK or Node.
    expect(run.stdout + run.stderr).not.toMatch(/Unsupported runtime|Warning|deprecat/i);
  }, 90000);

  it('runs on the current LTS line (Node 24), whatever node the machine has', () => {
    expect(Number(process.versions.node.split('.')[0])).toBeGreaterThanOrEqual(24);
  });

  it('`validate` accepts the demo policy and reports every problem of a bad one', () => {
    // The demo's exception is time-boxed like any other, and validate refuses an expired one:
    // validate a copy renewed to run from today, so this test is about the policy, not the calendar.
    const dir = mkdtempSync(join(tmpdir(), 'leash-quickstart-'));
    const day = (offset: number) => new Date(Date.now() + offset * 86_400_000).toISOString().slice(0, 10);
    const demo = readFileSync('config/demo.yaml', 'utf8')
      .replace(/created_at: "[^"]+"/, `created_at: "${day(-1)}"`)
      .replace(/expires_at: "[^"]+"/, `expires_at: "${day(60)}"`);
    writeFileSync(join(dir, 'demo.yaml'), demo);
    const ok = leash(['validate', join(dir, 'demo.yaml')]);
    expect(ok.stderr).toBe('');
    expect(ok.status).toBe(0);
    expect(ok.stdout).toContain('valid (1 trusted issuers, 2 plugins, 2 grants, 1 exception)');
    // Expired, the same exception covers nothing: validate names the guardrail the grant breaks.
    writeFileSync(join(dir, 'expired.yaml'), demo.replace(/created_at: "[^"]+"/, `created_at: "${day(-60)}"`).replace(/expires_at: "[^"]+"/, `expires_at: "${day(-1)}"`));
    const expired = leash(['validate', join(dir, 'expired.yaml')]);
    expect(expired.status).toBe(1);
    expect(expired.stderr).toMatch(/task_required: \[guardrail task-required\].*exception 'exc-ticket-writer-nightly' expired/);
    const bad = leash(['validate', 'test/cli/fixtures/bad-policy.yaml']);
    expect(bad.status).toBe(1);
    expect(bad.stderr).toContain('/plugins/0/grants/0/kind');
    expect(bad.stderr).toContain("unknown key 'colour'");
  }, 60000);

  it('`hash-api-key` prints the sha256 to configure', () => {
    const run = leash(['hash-api-key', 'demo-orchestrator-key']);
    expect(run.stdout.trim()).toBe('bf494294004acfe59ea62074213c8537f302ffc582d1105769bf8f4a3bdbdd54');
  }, 60000);
});
