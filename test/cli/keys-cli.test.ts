import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { runKeysCli } from '../../src/cli/keys.js';
import { OPS_KEY, ORCHESTRATOR_KEY, startTestBroker, type TestBroker } from '../support/broker.js';

const run = promisify(execFile);
const SECURITY_ONLY_KEY = 'test-security-only-key-0123456789';
const sha = (s: string) => createHash('sha256').update(s).digest('hex');

/** `leash keys ...` in-process (real HTTP to the broker), with stdout, stderr and env captured. */
async function keys(argv: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await runKeysCli(argv, { out: (s) => void (out += s), err: (s) => void (err += s), env });
  return { code, out, err };
}

describe('leash keys (CLI against a live broker)', () => {
  let tb: TestBroker;
  let opsKeyFile: string;
  beforeAll(async () => {
    tb = await startTestBroker({ patch: (cfg) => cfg.admin.api_keys.push({ id: 'sec-only', sha256: sha(SECURITY_ONLY_KEY), roles: ['security'] }) });
    opsKeyFile = join(tb.dir, 'ops.key');
    await writeFile(opsKeyFile, `${OPS_KEY}\n`, { mode: 0o600 });
  });
  afterAll(async () => tb.close());

  it('`leash keys list` as a process prints a table of the keys, with the key from LEASH_ADMIN_KEY', async () => {
    const { stdout } = await run(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'keys', 'list', '--url', tb.url], {
      env: { ...process.env, LEASH_ADMIN_KEY: OPS_KEY },
      timeout: 60000,
    });
    const lines = stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^KID\s+STATE\s+ALG\s+AGE\s+CREATED\s+SIGNS FROM\s+ACTIVATED\s+RETIRED\s+REMOVE AT$/);
    const kids = tb.broker.testing.keys.list();
    expect(lines).toHaveLength(1 + kids.length);
    for (const k of kids) expect(lines.some((l) => l.startsWith(k.kid) && l.includes(k.state) && l.includes('ES256'))).toBe(true);
  });

  it('`--json` prints the API answer; --key-file works; the key never appears in the output', async () => {
    const r = await keys(['list', '--url', tb.url, '--key-file', opsKeyFile, '--json']);
    expect(r.code).toBe(0);
    const body = JSON.parse(r.out) as { backend: string; keys: { kid: string; state: string }[] };
    expect(body.backend).toBe('local');
    expect(body.keys.map((k) => k.kid).sort()).toEqual(
      tb.broker.testing.keys
        .list()
        .map((k) => k.kid)
        .sort(),
    );
    expect(r.out + r.err).not.toContain(OPS_KEY);
  });

  it("a rotation refused by the prepublish rule exits 1 with the broker's reason", async () => {
    const r = await keys(['rotate', '--url', tb.url, '--reason', 'routine'], { LEASH_ADMIN_KEY: OPS_KEY });
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/^leash keys rotate: 409 conflict \(not_ready\): .*prepublish/);
    expect(r.out).toBe('');
  });

  it('rotate --force prints the transitions and the new key list', async () => {
    const before = tb.broker.testing.keys.list();
    const next = before.find((k) => k.state === 'next')!.kid;
    const current = before.find((k) => k.state === 'current')!.kid;
    const r = await keys(['rotate', '--force', '--reason', 'drill', '--url', tb.url], { LEASH_ADMIN_KEY: OPS_KEY });
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(r.out).toContain(`promoted ${next}  next -> current`);
    expect(r.out).toContain(`retired  ${current}  current -> retired`);
    expect(r.out).toMatch(/created {2}\S+ {2}\(new\) -> next/);
    expect(tb.broker.testing.keys.list().find((k) => k.kid === current)?.state).toBe('retired');
  });

  it('retire and revoke by kid; revoke needs the security role and a reason', async () => {
    const next = tb.broker.testing.keys.list().find((k) => k.state === 'next')!.kid;
    const denied = await keys(['revoke', next, '--reason', 'leaked', '--url', tb.url], { LEASH_ADMIN_KEY: ORCHESTRATOR_KEY });
    expect(denied.code).toBe(1);
    expect(denied.err).toContain('403 insufficient_scope');

    const retired = tb.broker.testing.keys.list().find((k) => k.state === 'retired')!.kid;
    const revoked = await keys(['revoke', retired, '--reason', 'backup tape lost', '--url', tb.url, '--json'], { LEASH_ADMIN_KEY: SECURITY_ONLY_KEY });
    expect(revoked.code).toBe(0);
    expect(JSON.parse(revoked.out).transitions).toEqual([{ action: 'revoked', kid: retired, from: 'retired', to: 'removed' }]);
    expect(tb.broker.testing.keys.jwks().keys.map((k) => k.kid)).not.toContain(retired);

    const r = await keys(['retire', next, '--url', tb.url], { LEASH_ADMIN_KEY: OPS_KEY });
    expect(r.code).toBe(0);
    expect(r.out).toContain(`removed  ${next}  next -> removed`);
  });

  it.each([
    ['no verb', [], /usage: leash keys/],
    ['unknown verb', ['spin'], /unknown verb 'spin'/],
    ['retire without kid', ['retire'], /needs a <kid>/],
    ['revoke without reason', ['revoke', 'abc'], /needs --reason/],
    ['no credential', ['list'], /LEASH_ADMIN_KEY or pass --key-file/],
    ['a credential flag on the command line', ['list', '--key', OPS_KEY], /unknown option --key/],
    ['force on retire', ['retire', 'abc', '--force'], /--force applies to rotate only/],
    ['no url', ['list', '--key-file', '/nonexistent'], /--url/],
  ])('usage error (%s) exits 2 without calling the broker', async (_n, argv, message) => {
    const withUrl = (argv as string[]).includes('--key-file') || (argv as string[]).length === 0 ? (argv as string[]) : [...(argv as string[]), '--url', tb.url];
    const r = await keys(withUrl);
    expect(r.code).toBe(2);
    expect(r.err + r.out).toMatch(message as RegExp);
  });

  it('an unreachable broker exits 1 with a clear message', async () => {
    const r = await keys(['list', '--url', 'http://127.0.0.1:1'], { LEASH_ADMIN_KEY: OPS_KEY });
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/cannot reach http:\/\/127\.0\.0\.1:1/);
  });
});
