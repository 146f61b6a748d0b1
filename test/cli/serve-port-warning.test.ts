import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { portIssuerMismatch } from '../../src/cli/commands.js';
import { freePort, testConfigInput } from '../support/broker.js';
import { TestCluster } from '../support/cluster.js';

/**
 * `leash serve --port N` moves the listener, not the issuer the config advertises: when the
 * issuer names the port the config listens on, a different --port is warned about on
 * stderr (a log line) before anything starts. Behind a proxy (the issuer on another port
 * than settings.listen.port) there is nothing to warn about.
 */

describe('portIssuerMismatch', () => {
  const settings = (issuer: string, port: number) => ({ issuer, listen: { host: '127.0.0.1', port } }) as Parameters<typeof portIssuerMismatch>[0];
  it.each([
    ['no --port', 'http://127.0.0.1:8080', 8080, undefined, false],
    ['--port equal to the issuer port', 'http://127.0.0.1:8080', 8080, 8080, false],
    ['--port moving away from the advertised port', 'http://127.0.0.1:8080', 8080, 9000, true],
    ['--port 0 (any free port)', 'http://127.0.0.1:8080', 8080, 0, true],
    ['https on its default port, listened on directly', 'https://leash.internal', 443, 8443, true],
    ['an issuer behind a proxy (another port than listen.port)', 'https://leash.example.com', 8080, 9000, false],
  ] as const)('%s', (_name, issuer, listenPort, port, warns) => {
    const message = portIssuerMismatch(settings(issuer, listenPort), port);
    expect(message !== undefined).toBe(warns);
    if (message) expect(message).toContain(`--port ${port} disagrees with the issuer the config advertises (${issuer}`);
  });
});

describe('leash serve --port against the issuer', () => {
  let dir: string;
  let cluster: TestCluster;
  let squatter: Server;
  let taken: number;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'leash-port-warning-'));
    cluster = await TestCluster.create();
    // The run ends at the bind: the warning comes first, then the port in use stops the start (exit 1, nothing created).
    squatter = createServer();
    await new Promise<void>((r) => squatter.listen(0, '127.0.0.1', () => r()));
    taken = (squatter.address() as { port: number }).port;
  });
  afterAll(async () => {
    await new Promise((r) => squatter.close(r));
    await rm(dir, { recursive: true, force: true });
  });

  async function serve(name: string, issuerPort: number, port: number): Promise<{ code: number | null; lines: Array<{ level: string; msg: string; port?: number; issuer?: string }> }> {
    const input = testConfigInput({ issuer: `http://127.0.0.1:${issuerPort}`, dir: join(dir, name), cluster }) as Record<string, any>;
    input.settings.listen.port = issuerPort;
    input.settings.management.listen.port = await freePort();
    const path = join(dir, `${name}.json`);
    await writeFile(path, JSON.stringify(input));
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'serve', '--config', path, '--port', String(port)], { stdio: ['ignore', 'ignore', 'pipe'] });
    const timer = setTimeout(() => child.kill('SIGKILL'), 30000);
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const code = await new Promise<number | null>((r) => child.once('close', (c) => r(c)));
    clearTimeout(timer);
    return {
      code,
      lines: stderr
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => JSON.parse(l) as { level: string; msg: string }),
    };
  }

  it('warns on stderr, as a log line, when --port disagrees with the port the issuer names', async () => {
    const advertised = await freePort();
    const r = await serve('disagree', advertised, taken);
    expect(r.code).toBe(1);
    const warnings = r.lines.filter((l) => l.level === 'warn');
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({ port: taken, issuer: `http://127.0.0.1:${advertised}` });
    expect(warnings[0]!.msg).toContain(`--port ${taken} disagrees with the issuer the config advertises (http://127.0.0.1:${advertised}, port ${advertised})`);
    expect(r.lines.at(-1)).toMatchObject({ level: 'fatal' });
  }, 40000);

  it('says nothing when they agree', async () => {
    const r = await serve('agree', taken, taken);
    expect(r.code).toBe(1);
    expect(r.lines.map((l) => l.level)).toEqual(['fatal']);
  }, 40000);
});
