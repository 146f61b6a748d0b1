import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** `leash validate` as an operator runs it: which LEASH_* overrides applied, and no secret in its output. */

const POLICY = `version: 1
settings:
  issuer: \${PUBLIC_URL:-http://127.0.0.1:8080}
  tokens:
    max_ttl: 1h
trusted_issuers:
  - name: cluster
    kind: kubernetes
    issuer: https://k8s.example.com
    audience: leash
    jwks:
      uri: https://k8s.example.com/openid/v1/jwks
`;

describe('leash validate with the environment', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'leash-validate-env-'));
    await writeFile(join(dir, 'leash.yaml'), POLICY);
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const validate = (env: Record<string, string>) =>
    spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'validate', join(dir, 'leash.yaml')], { encoding: 'utf8', timeout: 60000, env: { ...process.env, ...env } });

  it('lists the overrides that applied, and refuses a bad one naming the variable but not its value', () => {
    const ok = validate({ LEASH_LISTEN_PORT: '9443', LEASH_STORE_URL: 'redis://:topsecret-pw@redis:6379', PUBLIC_URL: 'https://leash.example.com' });
    expect(ok.stderr).toBe('');
    expect(ok.status).toBe(0);
    expect(ok.stdout).toContain('valid (1 trusted issuers');
    expect(ok.stdout).toContain('  /settings/listen/port from LEASH_LISTEN_PORT\n  /settings/store/url from LEASH_STORE_URL\n');
    expect(ok.stdout).not.toContain('topsecret');

    const bad = validate({ LEASH_STORE_URL: 'http://:topsecret-pw@redis:6379', PUBLIC_URL: 'not a url' });
    expect(bad.status).toBe(1);
    expect(bad.stderr).toContain('/settings/store/url: must be a `redis://` or `rediss://` URL (from LEASH_STORE_URL)');
    expect(bad.stderr).toContain('/settings/issuer: must be an absolute URI');
    expect(bad.stderr).not.toContain('topsecret');
  });
});
