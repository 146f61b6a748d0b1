import { describe, expect, it, beforeEach, afterEach } from '@jest/globals';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { ConfigError } from '../../src/config/config-error.js';
import { watchConfig, type ConfigWatchResult, type ConfigWatcher } from '../../src/config/watch.js';
import { loadConfigFile, parseConfig, referencedFiles } from '../../src/config/load.js';
import { patched } from './fixtures.js';

const sha = (s: string) => createHash('sha256').update(s).digest('hex');
const configText = (maxTtl: number) => stringify(patched((c) => (c.plugins[0].grants[0].max_ttl = maxTtl)));

/** Records deliveries; `next()` waits for the next one (fs events have no clock to step). */
function collector() {
  const results: ConfigWatchResult[] = [];
  const waiters: Array<(r: ConfigWatchResult) => void> = [];
  return {
    results,
    onChange: (r: ConfigWatchResult) => {
      results.push(r);
      waiters.shift()?.(r);
    },
    next(timeoutMs = 5000): Promise<ConfigWatchResult> {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('no config change delivered')), timeoutMs);
        waiters.push((r) => {
          clearTimeout(timer);
          resolve(r);
        });
      });
    },
  };
}

const quiet = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('watchConfig', () => {
  let dir: string;
  let file: string;
  let watcher: ConfigWatcher | undefined;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'leash-watch-'));
    file = join(dir, 'leash.yaml');
    await writeFile(file, configText(300));
  });
  afterEach(async () => {
    watcher?.close();
    watcher = undefined;
    await rm(dir, { recursive: true, force: true });
  });

  it('delivers a good change with the new config and the digest of the new bytes', async () => {
    const c = collector();
    watcher = watchConfig(file, c.onChange, { debounceMs: 20 });
    const next = c.next();
    const text = configText(120);
    await writeFile(file, text);
    const result = await next;
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.loaded.digest).toBe(sha(text));
    expect(result.loaded.path).toBe(file);
    expect(result.loaded.config.plugins[0]!.grants[0]!.max_ttl).toBe(120);
    expect(Object.isFrozen(result.loaded.config)).toBe(true);
  });

  it('reports a bad change as a ConfigError with paths, and then a fix as ok', async () => {
    const c = collector();
    watcher = watchConfig(file, c.onChange, { debounceMs: 20 });
    let next = c.next();
    await writeFile(file, configText(300).replace('risk: low', 'risk: low\nrisky: yes').replace('\nrisky: yes', '\n    risky: yes'));
    const bad = await next;
    expect(bad.ok).toBe(false);
    if (bad.ok) return;
    expect(bad.error).toBeInstanceOf(ConfigError);
    expect((bad.error as ConfigError).problems).toEqual([{ path: '/plugins/0/risky', message: expect.stringContaining("unknown key 'risky'") }]);

    next = c.next();
    await writeFile(file, configText(60));
    const fixed = await next;
    expect(fixed.ok && fixed.loaded.config.plugins[0]!.grants[0]!.max_ttl).toBe(60);
  });

  it('ignores a rewrite with the same bytes (same digest), then still sees a real change', async () => {
    const c = collector();
    watcher = watchConfig(file, c.onChange, { debounceMs: 20 });
    await writeFile(file, configText(300));
    await watcher.reload();
    await quiet(200); // well past the debounce: any delivery for the rewrite would have happened
    expect(c.results).toEqual([]);

    const next = c.next();
    await writeFile(file, configText(90));
    const result = await next;
    expect(result.ok && result.loaded.config.plugins[0]!.grants[0]!.max_ttl).toBe(90);
    expect(c.results).toHaveLength(1);
  });

  it('sees an editor-style save (write a temp file, rename it over the config)', async () => {
    const c = collector();
    watcher = watchConfig(file, c.onChange, { debounceMs: 50 });
    const next = c.next();
    const tmp = join(dir, '.leash.yaml.swp');
    await writeFile(tmp, configText(45));
    await rename(tmp, file);
    const result = await next;
    expect(result.ok && result.loaded.config.plugins[0]!.grants[0]!.max_ttl).toBe(45);
  });

  it('reloads on SIGHUP, deduplicated by digest', async () => {
    const c = collector();
    // A debounce far beyond the test's length: only SIGHUP can cause a delivery here.
    watcher = watchConfig(file, c.onChange, { debounceMs: 600_000 });
    await writeFile(file, configText(30));
    const next = c.next();
    process.emit('SIGHUP', 'SIGHUP');
    const result = await next;
    expect(result.ok && result.loaded.config.plugins[0]!.grants[0]!.max_ttl).toBe(30);

    process.emit('SIGHUP', 'SIGHUP');
    await watcher.reload();
    expect(c.results).toHaveLength(1);
  });

  it('compares against initialDigest when the caller gives the digest it is running', async () => {
    const c = collector();
    // The caller runs a different version than what is on disk now: the first check delivers.
    watcher = watchConfig(file, c.onChange, { debounceMs: 600_000, initialDigest: sha('an older version') });
    await watcher.reload();
    expect(c.results).toHaveLength(1);
    expect(c.results[0]!.ok).toBe(true);
  });

  it('reports a deleted file once, and the file coming back', async () => {
    const c = collector();
    watcher = watchConfig(file, c.onChange, { debounceMs: 600_000 });
    await rm(file);
    await watcher.reload();
    await watcher.reload();
    expect(c.results).toHaveLength(1);
    const gone = c.results[0]!;
    expect(!gone.ok && gone.error.message).toMatch(/cannot read config file .*ENOENT/);
    await writeFile(file, configText(300));
    await watcher.reload();
    expect(c.results).toHaveLength(2);
    expect(c.results[1]!.ok).toBe(true);
  });

  it('SIGHUP re-reads the files the config names: a changed JWKS file under an unchanged config is delivered, once', async () => {
    const jwks = join(dir, 'cluster.jwks.json'); // the fixture's jwks.file, next to the config
    await writeFile(jwks, JSON.stringify({ keys: [{ kty: 'EC', crv: 'P-256', x: 'a', y: 'b', kid: 'one' }] }));
    const c = collector();
    watcher = watchConfig(file, c.onChange, { debounceMs: 600_000 });
    await watcher.reload();
    expect(c.results).toEqual([]); // nothing changed since the watcher started

    await writeFile(jwks, JSON.stringify({ keys: [{ kty: 'EC', crv: 'P-256', x: 'c', y: 'd', kid: 'two' }] }));
    process.emit('SIGHUP', 'SIGHUP');
    await watcher.reload();
    expect(c.results).toHaveLength(1);
    const result = c.results[0]!;
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.loaded.digest).toBe(sha(configText(300))); // the config itself is the same
    expect(result.loaded.filesDigest).toMatch(/^[0-9a-f]{64}$/);

    await watcher.reload(); // nothing new since
    expect(c.results).toHaveLength(1);
    await rm(jwks); // gone is a change too (the broker then refuses the reload, naming the file)
    await watcher.reload();
    expect(c.results).toHaveLength(2);
  });

  it('watches the folder of a referenced file: a JWKS file written elsewhere is seen without SIGHUP', async () => {
    await mkdir(join(dir, 'issuers'));
    const jwks = join(dir, 'issuers', 'cluster.jwks.json');
    await writeFile(jwks, JSON.stringify({ keys: [{ kty: 'EC', kid: 'one' }] }));
    await writeFile(file, stringify(patched((cfg) => (cfg.trusted_issuers[0].jwks = { file: 'issuers/cluster.jwks.json' }))));
    const c = collector();
    watcher = watchConfig(file, c.onChange, { debounceMs: 20, initial: await loadConfigFile(file) });
    const next = c.next();
    await writeFile(jwks, JSON.stringify({ keys: [{ kty: 'EC', kid: 'two' }] }));
    const result = await next;
    expect(result.ok && result.loaded.config.trusted_issuers[0]!.jwks!.file).toBe(jwks);
    // Another file in that folder is not ours.
    await writeFile(join(dir, 'issuers', 'unrelated.json'), '{}');
    await quiet(200);
    expect(c.results).toHaveLength(1);
  });

  it('the files a config names: every jwks.file and the TokenReview CA; not the token files re-read per call', () => {
    const config = parseConfig(
      patched((cfg) => {
        cfg.trusted_issuers[0].token_review = { api_server: 'https://k8s.example.com', ca_file: 'ca.crt', token_file: 'sa-token' };
        cfg.admin = { issuers: [{ issuer: 'https://idp.example.com', audience: 'leash-admin', jwks: { file: 'idp.jwks.json' } }] };
        cfg.resource_servers = [{ id: 'crm-api', audiences: ['https://crm.example.com/api'], jwks: { file: 'rs/crm.jwks.json' } }];
      }),
      { baseDir: '/etc/leash' },
    );
    expect(referencedFiles(config, '/etc/leash')).toEqual(['/etc/leash/ca.crt', '/etc/leash/cluster.jwks.json', '/etc/leash/idp.jwks.json', '/etc/leash/rs/crm.jwks.json']);
  });

  it('with `initial`, the running config is the baseline', async () => {
    const running = await loadConfigFile(file);
    await writeFile(file, configText(77)); // changed after the broker loaded it, before the watch began
    const c = collector();
    watcher = watchConfig(file, c.onChange, { debounceMs: 600_000, initial: running });
    await watcher.reload();
    expect(c.results).toHaveLength(1);
    expect(c.results[0]!.ok && c.results[0]!.loaded.config.plugins[0]!.grants[0]!.max_ttl).toBe(77);
  });

  it('delivers nothing after close or abort, and stops listening for SIGHUP', async () => {
    const c = collector();
    const abort = new AbortController();
    const before = process.listenerCount('SIGHUP');
    watcher = watchConfig(file, c.onChange, { debounceMs: 10, signal: abort.signal });
    expect(process.listenerCount('SIGHUP')).toBe(before + 1);
    abort.abort();
    expect(process.listenerCount('SIGHUP')).toBe(before);
    await writeFile(file, configText(10));
    await watcher.reload();
    await quiet(100);
    expect(c.results).toEqual([]);
  });

  it('keeps watching when the callback throws (it becomes a process warning)', async () => {
    let calls = 0;
    watcher = watchConfig(
      file,
      () => {
        calls++;
        throw new Error('callback bug');
      },
      { debounceMs: 600_000 },
    );
    await writeFile(file, configText(20));
    await expect(watcher.reload()).resolves.toBeUndefined();
    await writeFile(file, configText(25));
    await watcher.reload();
    expect(calls).toBe(2);
  });

  it('rejects misuse with TypeError', () => {
    expect(() => watchConfig('', () => undefined)).toThrow(TypeError);
    expect(() => watchConfig(file, undefined as unknown as () => void)).toThrow(TypeError);
    expect(() => watchConfig(file, () => undefined, { debounceMs: -1 })).toThrow(TypeError);
  });
});
