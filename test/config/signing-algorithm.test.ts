import { describe, expect, it, beforeAll, afterAll } from '@jest/globals';
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { ConfigError } from '../../src/config/config-error.js';
import { loadConfigFile } from '../../src/config/load.js';
import { watchConfig, type ConfigWatchResult } from '../../src/config/watch.js';
import { patched } from './fixtures.js';

/**
 * AWS web identity federation verifies RSA and ECDSA signatures only (STS API reference,
 * AssumeRoleWithWebIdentity): EdDSA keys with a web-identity `aws-sts` grant are refused
 * by `leash validate`, at load and on reload, with the path of the grant.
 */

const AWS = { role_arn: 'arn:aws:iam::123456789012:role/r', actions: ['s3:GetObject'], resources: ['*'] };
const config = (algorithm: 'EdDSA' | 'ES256', mode?: 'assume-role') =>
  stringify(
    patched((c) => {
      c.settings = { keys: { algorithm } };
      Object.assign(c.plugins[0].grants[0], { kind: 'aws-sts', aws: { ...AWS, ...(mode ? { mode } : {}) } });
    }),
  );
const PATH = '/plugins/0/grants/0/aws/mode';

describe('EdDSA signing keys and AWS web identity', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'leash-alg-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('load refuses it with the grant path; ES256, or assume-role, load', async () => {
    const file = join(dir, 'eddsa.yaml');
    await writeFile(file, config('EdDSA'));
    const err = await loadConfigFile(file).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).problems).toEqual([{ path: PATH, message: expect.stringContaining("settings.keys.algorithm is 'EdDSA'") }]);
    await writeFile(file, config('ES256'));
    await expect(loadConfigFile(file)).resolves.toBeDefined();
    await writeFile(file, config('EdDSA', 'assume-role'));
    await expect(loadConfigFile(file)).resolves.toBeDefined();
  });

  it('a reload (the config watcher) delivers the same refusal, so the running policy stays', async () => {
    const file = join(dir, 'watched.yaml');
    await writeFile(file, config('ES256'));
    const results: ConfigWatchResult[] = [];
    const delivered = new Promise<void>((resolve) => {
      const watcher = watchConfig(
        file,
        (r) => {
          results.push(r);
          watcher.close();
          resolve();
        },
        { debounceMs: 20 },
      );
    });
    await writeFile(file, config('EdDSA'));
    await delivered;
    const r = results[0]!;
    expect(r.ok).toBe(false);
    expect(!r.ok && (r.error as ConfigError).problems.map((p) => p.path)).toEqual([PATH]);
  });

  it('`leash validate` exits 1 and names the grant', async () => {
    const file = join(dir, 'cli.yaml');
    await writeFile(file, config('EdDSA'));
    const run = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'validate', file], { encoding: 'utf8', timeout: 60000 });
    expect(run.status).toBe(1);
    expect(run.stderr).toContain(PATH);
    expect(run.stderr).toContain('AWS STS accepts only with RSA or ECDSA signatures');
  }, 60000);
});
