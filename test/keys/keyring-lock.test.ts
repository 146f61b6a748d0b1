import { afterAll, describe, expect, it } from '@jest/globals';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createKeyManager } from '../../src/keys/create-key-manager.js';
import { ManualClock } from '../../src/time/clock.js';
import { keysSettings, MAX_TOKEN_LIFE_MS } from './describe-key-manager.js';

/**
 * The local keyring's compare-and-set across processes (`serve --workers N`): a save takes
 * `keyring.json.lock` (O_EXCL), waits while another process holds it, clears a lock left
 * by a crashed holder, and leaves none behind.
 */

const roots: string[] = [];
afterAll(() => {
  for (const d of roots) rmSync(d, { recursive: true, force: true });
});

function fixture() {
  const dir = join(mkdtempSync(join(tmpdir(), 'leash-lock-')), 'keys');
  roots.push(dir);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const manager = createKeyManager(keysSettings({ dir, algorithm: 'ES256' }), { clock: new ManualClock(), maxTokenLifeMs: () => MAX_TOKEN_LIFE_MS });
  return { dir, lock: join(dir, 'keyring.json.lock'), manager };
}

const settled = async (p: Promise<unknown>, ms: number) => Promise.race([p.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), ms))]);

describe('local keyring lock', () => {
  it('a save waits while another process holds the lock, and completes once it is released', async () => {
    const f = fixture();
    writeFileSync(f.lock, '99999');
    const init = f.manager.init();
    expect(await settled(init, 300)).toBe(false);
    expect(existsSync(join(f.dir, 'keyring.json'))).toBe(false);
    rmSync(f.lock);
    await init;
    expect(f.manager.list().length).toBeGreaterThan(0);
    expect(existsSync(join(f.dir, 'keyring.json'))).toBe(true);
    expect(readdirSync(f.dir)).not.toContain('keyring.json.lock');
    await f.manager.close();
  });

  it('a lock older than 10 s (its holder crashed) is cleared', async () => {
    const f = fixture();
    writeFileSync(f.lock, '99999');
    const old = new Date(Date.now() - 60_000);
    utimesSync(f.lock, old, old);
    await f.manager.init();
    expect(existsSync(join(f.dir, 'keyring.json'))).toBe(true);
    expect(existsSync(f.lock)).toBe(false);
    await f.manager.close();
  });
});
