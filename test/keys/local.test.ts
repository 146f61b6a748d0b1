import { describe, it, expect, afterAll } from '@jest/globals';
import { mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createKeyManager } from '../../src/keys/create-key-manager.js';
import { ManualClock } from '../../src/time/clock.js';
import { describeKeyManager, describeRotation, keysSettings, MAX_TOKEN_LIFE_MS } from './describe-key-manager.js';

const roots: string[] = [];
afterAll(() => {
  for (const d of roots) rmSync(d, { recursive: true, force: true });
});

function localFixture(algorithm: 'ES256' | 'EdDSA') {
  const dir = join(mkdtempSync(join(tmpdir(), 'leash-rot-')), 'keys');
  roots.push(dir);
  const clock = new ManualClock();
  const settings = keysSettings({ dir, algorithm });
  return { dir, clock, replica: () => createKeyManager(settings, { clock, maxTokenLifeMs: () => MAX_TOKEN_LIFE_MS }) };
}

describeKeyManager('createKeyManager local', () => ({ manager: localFixture('ES256').replica() }));
describeRotation('local ES256', async () => localFixture('ES256'));
describeRotation('local EdDSA', async () => localFixture('EdDSA'));

describe('local backend files', () => {
  it('deletes a removed key\'s file, keeps every file 0600 and leaves no temp files', async () => {
    const f = localFixture('ES256');
    const km = f.replica();
    await km.init();
    const a = km.current().kid;
    await km.revoke(a, { actor: 'test' });
    const files = readdirSync(f.dir).sort();
    expect(files).toEqual([...km.list().map((k) => `${k.kid}.jwk.json`), 'keyring.json'].sort());
    expect(files).not.toContain(`${a}.jwk.json`);
    for (const file of files) expect(statSync(join(f.dir, file)).mode & 0o777).toBe(0o600);
    await km.close();
  });

  it('a keys.dir that cannot be a folder is a startup error naming the setting', async () => {
    const root = mkdtempSync(join(tmpdir(), 'leash-rot-'));
    roots.push(root);
    const file = join(root, 'not-a-folder');
    writeFileSync(file, 'x');
    const km = createKeyManager(keysSettings({ dir: join(file, 'keys') }), { clock: new ManualClock(), maxTokenLifeMs: () => MAX_TOKEN_LIFE_MS });
    await expect(km.init()).rejects.toThrow(/settings\.keys\.dir '.*not-a-folder\/keys' cannot be created as a folder \(ENOTDIR\)/);
  });
});
