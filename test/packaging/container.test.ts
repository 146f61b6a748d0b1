import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { spawn, spawnSync } from 'node:child_process';
import { chmod, chown, copyFile, cp, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';
import { parseConfig } from '../../src/config/load.js';
import { freePort } from '../support/broker.js';
import { waitFor } from '../support/wait.js';

/**
 * The container image without a Docker engine: the Dockerfile's runtime steps replayed in a
 * temporary root, and its ENTRYPOINT + CMD run there as uid 1000. What this proves and what
 * it does not:
 *  - proved: the final stage's user, entrypoint, command, ports, volume and file modes are
 *    the ones replayed here (read from the Dockerfile); the default config is valid, listens
 *    on 0.0.0.0 on both ports and keeps every writable path under the data volume; uid 1000
 *    starts the compiled broker with it, writes only below the volume (SQLite, keys with
 *    private files 0600), nothing below /etc/leash or /app, answers the probes and the JWKS,
 *    and stops on SIGTERM with exit 0; and with a writable path under the root-owned config
 *    folder instead, it refuses to start (what the old image did).
 *  - not proved: the image build itself (node:24-bookworm-slim, `npm ci`, `npm prune`; the
 *    production dependencies are copied from the repository's node_modules instead), absolute paths (the root is a
 *    temporary folder, so the config's /var/lib/leash is rewritten under it), and reaching
 *    the ports from outside a container network (only loopback is dialled here).
 */

const ROOT = process.cwd();
const UID = 1000;
const require = createRequire(import.meta.url);
const setpriv = spawnSync('setpriv', ['--version']).status === 0;
const RUN = process.getuid?.() === 0 && setpriv;
if (!RUN) process.stderr.write('[skip] container replay: needs root and setpriv (util-linux) to run as uid 1000\n');
if (!RUN && process.env.CI) throw new Error('container replay: CI needs root and setpriv (util-linux) to run the image steps as uid 1000');

interface Stage {
  readonly from: string;
  readonly lines: readonly string[];
}

function stages(dockerfile: string): Stage[] {
  const logical = dockerfile
    .replace(/\\\n\s*/g, ' ')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
  const out: Array<{ from: string; lines: string[] }> = [];
  for (const l of logical) {
    if (/^FROM /i.test(l)) out.push({ from: l, lines: [] });
    else out.at(-1)!.lines.push(l);
  }
  return out;
}

const instruction = (stage: Stage, name: string) => stage.lines.filter((l) => l.toUpperCase().startsWith(`${name} `)).map((l) => l.slice(name.length + 1).trim());

(RUN ? describe : describe.skip)('the container image, replayed as uid 1000 in a temporary root', () => {
  let root: string;
  let runtime: Stage;
  let entrypoint: string[];
  let cmd: string[];
  let nodeBin: string;

  beforeAll(async () => {
    const dockerfile = await readFile(join(ROOT, 'Dockerfile'), 'utf8');
    runtime = stages(dockerfile).at(-1)!;
    entrypoint = JSON.parse(instruction(runtime, 'ENTRYPOINT')[0]!) as string[];
    cmd = JSON.parse(instruction(runtime, 'CMD')[0]!) as string[];

    root = await mkdtemp(join(tmpdir(), 'leash-image-'));
    await chmod(root, 0o755);
    // The base image's runtime at its place: node as /usr/local/bin/node. The checkout's binary
    // would not do: uid 1000 may not traverse a CI clone, and the workers are forked from it.
    nodeBin = join(root, 'usr/local/bin/node');
    await mkdir(join(root, 'usr/local/bin'), { recursive: true });
    await copyFile(process.execPath, nodeBin);
    await chmod(nodeBin, 0o755);
    // Build stage: the compiled broker (`npm run build`'s tsc step), into the image's /app.
    const app = join(root, 'app');
    await mkdir(app, { recursive: true });
    const tsc = spawnSync(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', 'tsconfig.build.json', '--outDir', join(app, 'dist')], { cwd: ROOT, encoding: 'utf8' });
    if (tsc.status !== 0) throw new Error(`build failed:\n${tsc.stdout}${tsc.stderr}`);
    await copyFile(join(ROOT, 'package.json'), join(app, 'package.json'));
    // The image's pruned node_modules: the production dependencies, copied (a link into the
    // checkout would need uid 1000 to read the checkout, which a CI clone may not allow).
    await copyProductionModules(join(app, 'node_modules'));
    // Runtime stage: COPY config/container.yaml /etc/leash/leash.yaml; the data volume.
    await mkdir(join(root, 'etc/leash'), { recursive: true });
    await copyFile(join(ROOT, 'config/container.yaml'), join(root, 'etc/leash/leash.yaml'));
    await chmod(join(root, 'etc/leash/leash.yaml'), 0o644);
    await mkdir(join(root, 'var/lib/leash'), { recursive: true });
    await chown(join(root, 'var/lib/leash'), UID, UID);
    await chmod(join(root, 'var/lib/leash'), 0o700);
  }, 180_000);
  afterAll(async () => {
    if (root) await rm(root, { recursive: true, force: true });
  });

  it('the Dockerfile says what is replayed: user node (uid 1000), entrypoint, command, ports, volume, config, data folder', () => {
    expect(runtime.from).toMatch(/^FROM node:24-/);
    expect(instruction(runtime, 'USER')).toEqual(['node']);
    expect(entrypoint).toEqual(['node', '/app/dist/cli/main.js']);
    expect(cmd).toEqual(['serve', '--config', '/etc/leash/leash.yaml']);
    expect(instruction(runtime, 'EXPOSE')).toEqual(['8080 9090']);
    expect(instruction(runtime, 'VOLUME')).toEqual(['["/var/lib/leash"]']);
    expect(instruction(runtime, 'COPY')).toContain('config/container.yaml /etc/leash/leash.yaml');
    const run = instruction(runtime, 'RUN').join(' && ');
    expect(run).toContain('chown node:node /var/lib/leash');
    expect(run).toContain('chmod 0700 /var/lib/leash');
    // The node image's `node` user is uid 1000, what the chart's securityContext runs as.
    expect(spawnSync('getent', ['passwd', String(UID)]).status).toBe(0);
  });

  it('the image name the Dockerfile documents is the chart default, tagged with the release', async () => {
    const dockerfile = await readFile(join(ROOT, 'Dockerfile'), 'utf8');
    const values = parse(await readFile(join(ROOT, 'charts/leash/values.yaml'), 'utf8')) as { image: { repository: string } };
    const chart = parse(await readFile(join(ROOT, 'charts/leash/Chart.yaml'), 'utf8')) as { appVersion: string };
    const { version } = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { version: string };
    expect(values.image.repository).toBe('ghcr.io/leash-dev/leash');
    expect(dockerfile).toContain(`${values.image.repository}:<version>`);
    expect(dockerfile).toContain(`docker build -t ${values.image.repository}:${version} .`);
    expect(chart.appVersion).toBe(version);
  });

  it('the default config is valid, listens on every interface on both ports, and writes only under the volume', async () => {
    const config = parseConfig(parse(await readFile(join(ROOT, 'config/container.yaml'), 'utf8')), { baseDir: '/etc/leash' });
    expect(config.settings.listen).toEqual({ host: '0.0.0.0', port: 8080, accept_sockets: 8 });
    expect(config.settings.management.listen).toEqual({ host: '0.0.0.0', port: 9090 });
    expect(config.settings.store).toMatchObject({ kind: 'sqlite', path: '/var/lib/leash/leash.db' });
    expect(config.settings.keys).toMatchObject({ backend: 'local', dir: '/var/lib/leash/keys' });
    expect(config.plugins).toEqual([]);
  });

  /** ENTRYPOINT + CMD as uid 1000, with the image's absolute paths moved under the temporary root. */
  async function startAsNode(configFile: string): Promise<{ port: number; management: number; stderr: () => string; exited: Promise<number | null>; stop(): void }> {
    const [port, management] = [await freePort(), await freePort()];
    const args = [...entrypoint.slice(1), ...cmd].map((a) => (a.startsWith('/') ? join(root, a) : a));
    args[args.indexOf('--config') + 1] = configFile;
    // The config's ports are the image's (8080, 9090); free ones here, the host stays the config's.
    const child = spawn('setpriv', [`--reuid=${UID}`, `--regid=${UID}`, '--clear-groups', nodeBin, ...args, '--port', String(port), '--management-port', String(management)], {
      cwd: join(root, 'app'),
      env: { PATH: process.env.PATH ?? '', NODE_ENV: 'production', HOME: '/nonexistent' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    return { port, management, stderr: () => stderr, exited, stop: () => void child.kill('SIGTERM') };
  }

  async function rootedConfig(name: string, edit: (text: string) => string): Promise<string> {
    const text = edit((await readFile(join(root, 'etc/leash/leash.yaml'), 'utf8')).replaceAll('/var/lib/leash', join(root, 'var/lib/leash')));
    const file = join(root, 'etc/leash', name);
    await writeFile(file, text, { mode: 0o644 });
    return file;
  }

  it('uid 1000 starts it on the default config: probes and JWKS answer, 0.0.0.0 is bound, state lands under the volume only, SIGTERM exits 0', async () => {
    const file = await rootedConfig('leash.rooted.yaml', (t) => t);
    const before = { etc: await readdir(join(root, 'etc/leash')), app: await readdir(join(root, 'app')) };
    const leash = await startAsNode(file);
    try {
      await waitFor(async () => (await fetch(`http://127.0.0.1:${leash.management}/readyz`).catch(() => undefined))?.ok === true, 30_000).catch(() => {
        throw new Error(`did not get ready:\n${leash.stderr()}`);
      });
      expect((await fetch(`http://127.0.0.1:${leash.management}/healthz`)).status).toBe(200);
      const jwks = (await (await fetch(`http://127.0.0.1:${leash.port}/jwks`)).json()) as { keys: unknown[] };
      expect(jwks.keys.length).toBeGreaterThan(0);
      // Bound to every interface: the kernel's socket table says 0.0.0.0 for both ports.
      const listening = await listeningAddresses();
      expect(listening).toContain(`0.0.0.0:${leash.port}`);
      expect(listening).toContain(`0.0.0.0:${leash.management}`);
      const started = leash
        .stderr()
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(started.find((l) => typeof l.url === 'string')).toMatchObject({ url: `http://0.0.0.0:${leash.port}`, management_url: `http://0.0.0.0:${leash.management}` });
    } finally {
      leash.stop();
    }
    expect(await leash.exited).toBe(0);

    const data = join(root, 'var/lib/leash');
    const owned = async (p: string) => {
      const s = await stat(p);
      return { uid: s.uid, mode: (s.mode & 0o777).toString(8) };
    };
    expect((await readdir(data)).sort()).toEqual(expect.arrayContaining(['keys', 'leash.db']));
    expect((await owned(join(data, 'leash.db'))).uid).toBe(UID);
    const keys = await readdir(join(data, 'keys'));
    expect(keys.length).toBeGreaterThan(0);
    for (const k of keys) expect((await owned(join(data, 'keys', k))).uid).toBe(UID);
    // Private key files (and the keyring) are 0600.
    for (const k of keys.filter((f) => f.endsWith('.jwk.json'))) expect([k, (await owned(join(data, 'keys', k))).mode]).toEqual([k, '600']);
    expect(keys.filter((f) => f.endsWith('.jwk.json')).length).toBeGreaterThan(0);
    expect(await readdir(join(root, 'etc/leash'))).toEqual(before.etc);
    expect(await readdir(join(root, 'app'))).toEqual(before.app);
  }, 90_000);

  it('the check can fail: a writable path under the root-owned config folder stops the start, as the old image did', async () => {
    const file = await rootedConfig('leash.keys-in-etc.yaml', (t) => t.replace(`dir: ${join(root, 'var/lib/leash/keys')}`, `dir: ${join(root, 'etc/leash/keys')}`));
    const leash = await startAsNode(file);
    const code = await leash.exited;
    expect(code).toBe(1);
    const fatal = JSON.parse(leash.stderr().trim().split('\n').at(-1)!) as { level: string; error: string };
    expect(fatal.level).toBe('fatal');
    expect(fatal.error).toMatch(/EACCES|permission denied/);
    expect(fatal.error).toContain(join(root, 'etc/leash/keys'));
    await expect(stat(join(root, 'etc/leash/keys'))).rejects.toThrow();
  }, 60_000);

  it('`--version` through the entrypoint as uid 1000', () => {
    const r = spawnSync('setpriv', [`--reuid=${UID}`, `--regid=${UID}`, '--clear-groups', nodeBin, join(root, entrypoint[1]!), '--version'], {
      encoding: 'utf8',
      env: { PATH: process.env.PATH ?? '' },
    });
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^\d+\.\d+\.\d+\n$/);
  });
});

/** `host:port` of every IPv4 socket in LISTEN state (/proc/net/tcp: hex address, state 0A). */
async function listeningAddresses(): Promise<string[]> {
  const text = await readFile('/proc/net/tcp', 'utf8');
  return text
    .split('\n')
    .slice(1)
    .map((l) => l.trim().split(/\s+/))
    .filter((f) => f[3] === '0A')
    .map((f) => {
      const [hexIp, hexPort] = f[1]!.split(':') as [string, string];
      const ip = [3, 2, 1, 0].map((i) => parseInt(hexIp.slice(i * 2, i * 2 + 2), 16)).join('.');
      return `${ip}:${parseInt(hexPort, 16)}`;
    });
}

/** Copies what `npm ls --omit=dev` lists at the top of node_modules (the workspace's own links left out). */
async function copyProductionModules(target: string): Promise<void> {
  const ls = spawnSync('npm', ['ls', '--omit=dev', '--all', '--parseable'], { cwd: ROOT, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  const top = join(ROOT, 'node_modules') + '/';
  const packages = new Set(
    ls.stdout
      .split('\n')
      .filter((p) => p.startsWith(top) && !p.slice(top.length).includes('/node_modules/'))
      .map((p) => p.slice(top.length))
      .filter((name) => name !== '' && name !== 'leash-client'),
  );
  if (!packages.has('yaml')) throw new Error(`npm ls --omit=dev listed no production dependencies:\n${ls.stderr}`);
  for (const name of packages) await cp(join(top, name), join(target, name), { recursive: true, dereference: true });
}
