import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { spawn, spawnSync, type ChildProcess, type SpawnSyncReturns } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { CRM_API, ORCHESTRATOR_KEY, freePort, testConfigInput } from '../support/broker.js';
import { TestCluster } from '../support/cluster.js';
import { waitFor } from '../support/wait.js';

/**
 * The two npm packages as a user gets them: `npm pack` (which builds them through
 * `prepare`), installed from the tarballs into an empty project, then the README's code
 * and `leash --version` run from there, against the broker from the tarball.
 */

const ROOT = process.cwd();
const require = createRequire(import.meta.url);
// Node 24 first on PATH, so the installed `leash` bin (#!/usr/bin/env node) runs on it.
const ENV = { ...process.env, PATH: `${dirname(process.execPath)}${delimiter}${process.env.PATH ?? ''}`, npm_config_audit: 'false', npm_config_fund: 'false', npm_config_update_notifier: 'false' };

interface Packed {
  readonly name: string;
  readonly version: string;
  readonly filename: string;
  readonly size: number;
  readonly unpackedSize: number;
  readonly entryCount: number;
  readonly files: ReadonlyArray<{ readonly path: string }>;
}

function run(cmd: string, args: readonly string[], cwd: string, opts: { timeout?: number; env?: Record<string, string> } = {}): SpawnSyncReturns<string> {
  const r = spawnSync(cmd, args, { cwd, env: { ...ENV, ...opts.env }, encoding: 'utf8', timeout: opts.timeout ?? 240_000, maxBuffer: 64 * 1024 * 1024 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} (in ${cwd}) exited ${r.status}${r.signal ? ` (${r.signal})` : ''}:\n${r.stdout}\n${r.stderr}`);
  return r;
}

function pack(args: readonly string[], dest: string): Packed {
  const out = run('npm', ['pack', '--json', '--pack-destination', dest, ...args], ROOT).stdout;
  // Script output may come first; the JSON array is the last thing printed.
  return (JSON.parse(out.slice(out.lastIndexOf('\n[') + 1)) as Packed[])[0]!;
}

async function newProject(dir: string): Promise<string> {
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', private: true, type: 'module' }));
  return dir;
}

/** `du -sb`: the bytes of every file under `dir`. */
function diskBytes(dir: string): number {
  return Number(run('du', ['-sb', dir], dir).stdout.split('\t')[0]);
}

/** The ```ts block under "## Using it from code" in a README. */
async function readmeCode(path: string): Promise<string> {
  const text = await readFile(path, 'utf8');
  const section = text.slice(text.indexOf('## Using it from code'));
  const match = /```ts\n([\s\S]*?)```/.exec(section);
  if (!match) throw new Error(`${path}: no ts block under "## Using it from code"`);
  return match[1]!;
}

describe('npm packages leash-broker and leash-client, installed from their tarballs', () => {
  let work: string;
  let broker: Packed;
  let client: Packed;
  let serve: ChildProcess | undefined;

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'leash-packages-'));
    broker = pack([], work);
    client = pack(['-w', 'leash-client'], work);
  }, 300_000);
  afterAll(async () => {
    if (serve && serve.exitCode === null) serve.kill('SIGKILL');
    await rm(work, { recursive: true, force: true });
  });

  it('leash-broker ships its compiled JavaScript and nothing else (no tests, sources, maps or declarations)', async () => {
    const root = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { name: string; version: string; bin: Record<string, string> };
    expect(broker).toMatchObject({ name: 'leash-broker', version: root.version });
    expect(root.bin).toEqual({ leash: 'dist/cli/main.js' });
    const paths = broker.files.map((f) => f.path);
    expect(paths).toContain('dist/cli/main.js');
    expect(paths).toContain('dist/broker.js');
    expect(paths.filter((p) => !(p === 'package.json' || p === 'README.md' || /^dist\/.+\.js$/.test(p)))).toEqual([]);
    expect(broker.entryCount).toBeLessThan(400);
  });

  it('leash-client ships JavaScript, declarations and its README, depends on jose only, and imports nothing of the broker', async () => {
    const manifest = JSON.parse(await readFile(join(ROOT, 'src/client/package.json'), 'utf8')) as { version: string; dependencies: Record<string, string> };
    expect(client).toMatchObject({ name: 'leash-client', version: broker.version });
    expect(manifest.version).toBe(broker.version);
    expect(Object.keys(manifest.dependencies)).toEqual(['jose']);
    const paths = client.files.map((f) => f.path);
    expect(paths).toEqual(expect.arrayContaining(['package.json', 'README.md', 'dist/index.js', 'dist/index.d.ts']));
    expect(paths.filter((p) => !(p === 'package.json' || p === 'README.md' || /^dist\/(mcp\/)?[a-z0-9-]+\.(js|d\.ts)$/.test(p)))).toEqual([]);
    // Every import of the built SDK is a sibling, jose, express types, a Node built-in, or an
    // optional peer (the AWS SDK, loaded by awsAttestation only); the MCP helpers (the
    // `leash-client/mcp` entry) may also import the core and the MCP SDK.
    const dist = join(ROOT, 'src/client/dist');
    const allowed: Array<[string, RegExp]> = [
      ['', /^(\.\/[a-z0-9-]+\.js|jose|express|node:[a-z_/]+|@aws-sdk\/client-sts)$/],
      ['mcp', /^(\.\.?\/[a-z0-9-]+\.js|jose|express|node:[a-z_/]+|@modelcontextprotocol\/sdk\/[a-z0-9/.-]+\.js)$/],
    ];
    for (const [folder, pattern] of allowed) {
      for (const file of (await readdir(join(dist, folder))).filter((f) => f.endsWith('.js') || f.endsWith('.d.ts'))) {
        const text = await readFile(join(dist, folder, file), 'utf8');
        for (const [, spec] of text.matchAll(/(?:from|import)\s*\(?\s*'([^']+)'/g)) {
          expect([folder, file, spec]).toEqual([folder, file, expect.stringMatching(pattern)]);
        }
      }
    }
    // The core never loads the MCP helpers: a plugin without the MCP SDK imports leash-client.
    for (const file of (await readdir(dist)).filter((f) => f.endsWith('.js'))) expect([file, (await readFile(join(dist, file), 'utf8')).includes('./mcp/')]).toEqual([file, false]);
  });

  it('README code is the same in the repository README and in the leash-client package README', async () => {
    expect(await readmeCode(join(ROOT, 'src/client/README.md'))).toBe(await readmeCode(join(ROOT, 'README.md')));
  });

  it('leash-client alone installs jose and nothing else', async () => {
    const project = await newProject(join(work, 'sdk-only'));
    run('npm', ['install', '--prefer-offline', join(work, client.filename)], project);
    const top = (await readdir(join(project, 'node_modules'))).filter((n) => !n.startsWith('.'));
    expect(top.sort()).toEqual(['jose', 'leash-client']);
    // Measured when written: ~0.45 MB (the whole broker from its tarball: ~60 MB, 160 packages).
    expect(diskBytes(join(project, 'node_modules'))).toBeLessThan(2_000_000);
  }, 180_000);

  it("from both tarballs: `leash --version`, then the README's code against the installed broker", async () => {
    const project = await newProject(join(work, 'app'));
    run('npm', ['install', '--prefer-offline', join(work, broker.filename), join(work, client.filename), 'express@^5', '@types/express@^5', '@types/node@^24'], project);

    const version = run(join(project, 'node_modules/.bin/leash'), ['--version'], project);
    expect(version.stdout).toBe(`${broker.version}\n`);

    // The installed broker, on a policy with the README's plugin and audience.
    const cluster = await TestCluster.create();
    const [port, managementPort, rsPort] = [await freePort(), await freePort(), await freePort()];
    const leashUrl = `http://127.0.0.1:${port}`;
    const config = testConfigInput({ issuer: leashUrl, dir: join(project, 'state'), cluster }) as Record<string, any>;
    config.settings.listen.port = port;
    config.settings.management.listen.port = managementPort;
    await writeFile(join(project, 'leash.json'), JSON.stringify(config));
    let stderr = '';
    serve = spawn(join(project, 'node_modules/.bin/leash'), ['serve', '--config', 'leash.json'], { cwd: project, env: ENV, stdio: ['ignore', 'ignore', 'pipe'] });
    serve.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    await waitFor(async () => (await fetch(`http://127.0.0.1:${managementPort}/readyz`).catch(() => undefined))?.ok === true, 30_000).catch(() => {
      throw new Error(`the installed broker did not get ready:\n${stderr}`);
    });
    const opened = await fetch(`${leashUrl}/tasks`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ORCHESTRATOR_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ plugins: ['crm-reader'] }),
    });
    const task = ((await opened.json()) as { id: string }).id;
    const tokenFile = join(project, 'sa-token');
    await writeFile(tokenFile, await cluster.saToken());

    // The README's block with its placeholders pointed at this machine, inside a tiny API.
    const code = (await readmeCode(join(ROOT, 'README.md')))
      .replaceAll("'https://leash.internal'", 'process.env.LEASH_URL!')
      .replaceAll("'/var/run/secrets/tokens/leash'", 'process.env.TOKEN_FILE!')
      .replaceAll("'https://crm.example.com/api/contacts'", '`${process.env.RS_URL}/contacts`');
    expect(code).toContain("from 'leash-client'");
    expect(code).toContain(`'${CRM_API}'`);
    const program = [
      "import express, { type Request, type Response } from 'express';",
      'const app = express();',
      'const handler = (req: Request, res: Response) => void res.json({ plugin: req.leash?.plugin, task: req.leash?.task, scopes: req.leash?.scopes });',
      code,
      'const server = app.listen(Number(process.env.RS_PORT));',
      'const allowed = await fetch(`${process.env.RS_URL}/contacts`, { headers });',
      'const anonymous = await fetch(`${process.env.RS_URL}/contacts`);',
      'console.log(JSON.stringify({ allowed: { status: allowed.status, body: await allowed.json() }, anonymous: anonymous.status, scheme: headers.authorization?.split(" ")[0] }));',
      'server.close();',
    ].join('\n');
    await writeFile(join(project, 'readme.mts'), program);

    // It type-checks against the declarations the tarball installed...
    await writeFile(
      join(project, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: { target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, noEmit: true, types: ['node'], skipLibCheck: false },
        files: ['readme.mts'],
      }),
    );
    run(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', 'tsconfig.json'], project);

    // ...and runs (Node 24 strips the types).
    const result = run(process.execPath, ['readme.mts'], project, {
      timeout: 60_000,
      env: { LEASH_URL: leashUrl, TOKEN_FILE: tokenFile, RS_URL: `http://127.0.0.1:${rsPort}`, RS_PORT: String(rsPort), TASK_ID: task },
    });
    const out = JSON.parse(result.stdout.trim().split('\n').at(-1)!) as { allowed: { status: number; body: Record<string, unknown> }; anonymous: number; scheme: string };
    expect(out.allowed).toEqual({ status: 200, body: { plugin: 'crm-reader', task, scopes: ['contacts:read'] } });
    expect(out.anonymous).toBe(401);
    expect(out.scheme).toBe('DPoP');

    serve.kill('SIGTERM');
    await new Promise((resolve) => serve!.once('exit', resolve));
    // The broker's log stream said who it is.
    expect(stderr).toContain(`"version":"${broker.version}"`);
  }, 300_000);
});
