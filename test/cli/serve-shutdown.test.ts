import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { get } from 'node:http';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openStore } from '../../src/store/open-store.js';
import { systemClock } from '../../src/time/clock.js';
import { EXCHANGE, JWT_TYPE, ORCHESTRATOR_KEY, freePort, testConfigInput } from '../support/broker.js';
import { TestCluster } from '../support/cluster.js';
import { spawnServe } from '../support/serve.js';
import { StsContractServer } from '../support/sts-contract.js';
import { waitFor } from '../support/wait.js';

/**
 * `leash serve` on SIGTERM, as Kubernetes stops a pod: it stops accepting, lets the
 * requests in flight finish (their audit events included) within settings.shutdown_grace,
 * refuses anything more cleanly, and only then closes its stores and exits 0.
 */

const ROLE = 'arn:aws:iam::123456789012:role/leash-reports-reader';
const AWS_AUDIENCE = 'aws:reports';

interface Served {
  readonly child: ChildProcess;
  readonly url: string;
  readonly managementUrl: string;
  readonly port: number;
  readonly dbPath: string;
  stderr(): string;
  stdout(): string;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>;
}

let dir: string;
let cluster: TestCluster;
const children: ChildProcess[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'leash-shutdown-'));
  cluster = await TestCluster.create();
});

afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await rm(dir, { recursive: true, force: true });
});

async function serve(name: string, patch: (input: Record<string, any>) => void = () => undefined): Promise<Served> {
  const port = await freePort();
  const managementPort = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const input = testConfigInput({ issuer: url, dir: join(dir, name), cluster }) as Record<string, any>;
  input.settings.listen.port = port;
  input.settings.management.listen.port = managementPort;
  patch(input);
  const path = join(dir, `${name}.json`);
  await writeFile(path, JSON.stringify(input));
  const child = spawnServe(path, undefined, undefined, { stdout: true });
  children.push(child);
  let stderr = '';
  let stdout = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal, at: performance.now() })));
  const managementUrl = `http://127.0.0.1:${managementPort}`;
  await waitFor(async () => (await fetch(`${managementUrl}/readyz`)).ok, 30000);
  return { child, url, managementUrl, port, dbPath: input.settings.store.path as string, stderr: () => stderr, stdout: () => stdout, exited };
}

/** A raw connection to the public port with part of a request written: the server sees a request arriving. */
async function partialRequest(port: number): Promise<{ socket: Socket; response: Promise<string> }> {
  const socket = connect(port, '127.0.0.1');
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  socket.on('error', () => undefined);
  let data = '';
  socket.on('data', (d: Buffer) => (data += d.toString('latin1')));
  const response = new Promise<string>((resolve) => {
    socket.once('close', () => resolve(data));
    socket.once('error', () => resolve(data));
  });
  socket.write('GET /jwks HTTP/1.1\r\nHost: 127.0.0.1\r\n');
  return { socket, response };
}

/** A keep-alive connection that has had one answer and now waits for the next request. */
async function idleKeepAlive(port: number): Promise<{ closed: Promise<string> }> {
  const socket = connect(port, '127.0.0.1');
  socket.on('error', () => undefined);
  let data = '';
  let answered!: () => void;
  const first = new Promise<void>((r) => (answered = r));
  socket.on('data', (d: Buffer) => {
    data += d.toString('latin1');
    const end = data.indexOf('\r\n\r\n');
    const length = /\r\ncontent-length: (\d+)/i.exec(data);
    if (end !== -1 && length && data.length >= end + 4 + Number(length[1])) {
      expect(data).toMatch(/^HTTP\/1\.1 200 /);
      data = '';
      answered();
    }
  });
  const closed = new Promise<string>((resolve) => socket.once('close', () => resolve(data)));
  await new Promise((r) => socket.once('connect', r));
  socket.write('GET /jwks HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
  await first;
  return { closed };
}

/** One GET on a connection of its own (no pooled connection survives it): status code, or the error code. */
function getOnce(url: string): Promise<number | string> {
  return new Promise((resolve) => {
    get(url, { agent: false }, (res) => {
      res.resume();
      res.once('end', () => resolve(res.statusCode ?? 0));
    }).once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
  });
}

describe('leash serve: graceful shutdown on SIGTERM', () => {
  let sts: StsContractServer;
  beforeAll(async () => {
    sts = await StsContractServer.start({ roleMaxSession: 3600 });
  });
  afterAll(async () => sts?.close());

  it('an exchange in flight when SIGTERM arrives (a slow STS call) gets its credentials and its audit event; then exit 0', async () => {
    const s = await serve('in-flight', (input) => {
      input.settings.aws = { sts_endpoint: sts.url, max_attempts: 1 };
      input.plugins.push({
        id: 'reports-reader',
        owner: 'team-data@example.com',
        risk: 'medium',
        bindings: [{ issuer: 'test-cluster', subject: 'system:serviceaccount:plugins:reports-reader' }],
        grants: [
          { audience: AWS_AUDIENCE, scopes: ['s3:read'], kind: 'aws-sts', effect: 'read', max_ttl: 300, aws: { role_arn: ROLE, actions: ['s3:GetObject'], resources: ['arn:aws:s3:::reports/*'] } },
        ],
      });
    });
    sts.setOidc({ issuer: s.url, jwksUrl: `${s.url}/jwks`, audiences: ['sts.amazonaws.com'] });
    const opened = await fetch(`${s.url}/tasks`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ORCHESTRATOR_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ plugins: ['reports-reader'] }),
    });
    expect(opened.status).toBe(201);
    const task = ((await opened.json()) as { id: string }).id;

    const hold = sts.holdNext();
    const answer = fetch(`${s.url}/token`, {
      method: 'POST',
      body: new URLSearchParams({
        grant_type: EXCHANGE,
        client_id: 'reports-reader',
        subject_token: await cluster.saToken({ sa: 'reports-reader' }),
        subject_token_type: JWT_TYPE,
        audience: AWS_AUDIENCE,
        task,
      }),
    });
    const call = await hold.arrived; // the STS call is out; its answer is held
    const sigterm = performance.now();
    s.child.kill('SIGTERM');
    await waitFor(async () => s.stderr().includes('SIGTERM: draining'), 10000);
    // While it drains: not ready, still alive.
    expect((await fetch(`${s.managementUrl}/readyz`)).status).toBe(503);
    expect((await fetch(`${s.managementUrl}/healthz`)).status).toBe(200);

    hold.release();
    const res = await answer;
    expect(res.status).toBe(200);
    expect(res.headers.get('connection')).toBe('close');
    const body = (await res.json()) as { aws_credentials: { access_key_id: string } };
    expect(body.aws_credentials.access_key_id).toBe(call.issued!.accessKeyId);

    const exit = await s.exited;
    expect({ code: exit.code, signal: exit.signal }).toEqual({ code: 0, signal: null });
    expect(exit.at - sigterm).toBeLessThan(10_000); // settings.shutdown_grace (default 10 s)
    expect(s.stderr()).toContain('"msg":"stopped"');

    // The store was closed after the exchange recorded its decision: the event is there.
    const store = await openStore({ kind: 'sqlite', path: s.dbPath, url: 'redis://127.0.0.1:6379', key_prefix: 'leash:', allow_volatile: false }, systemClock);
    try {
      const issued = (await store.read(1, 100000)).filter((e) => e.type === 'exchange.issued' && e.event.plugin === 'reports-reader');
      expect(issued).toHaveLength(1);
      expect(issued[0]!.event.jti).toBe(`aws:${call.issued!.accessKeyId}`);
    } finally {
      await store.close();
    }
  }, 60000);

  it('after SIGTERM a new connection is refused and a request still arriving gets 503 with Retry-After; one never finished is cut at the grace, and the exit is 0', async () => {
    const GRACE = 2;
    const s = await serve('refused', (input) => {
      input.settings.shutdown_grace = GRACE;
    });
    // Connections open before the signal: two requests on their way, a keep-alive connection
    // idle after its first answer, and one that never sent anything.
    const finishing = await partialRequest(s.port);
    const stuck = await partialRequest(s.port);
    const idle = await idleKeepAlive(s.port);
    const unused = connect(s.port, '127.0.0.1');
    unused.on('error', () => undefined);
    const unusedClosed = new Promise<void>((resolve) => unused.once('close', () => resolve()));
    await new Promise((r) => unused.once('connect', r));
    // A full round trip after those bytes were written: the server has read them (loopback
    // delivers on write, and one event-loop turn handles every socket that was readable).
    expect(await getOnce(`${s.url}/jwks`)).toBe(200);

    const sigterm = performance.now();
    s.child.kill('SIGTERM');
    await waitFor(async () => s.stderr().includes('SIGTERM: draining'), 10000);

    // A new connection: refused by the OS (the port is no longer listening).
    expect(await getOnce(`${s.url}/jwks`)).toBe('ECONNREFUSED');
    // Idle connections are closed without an answer: the client reconnects (and is refused).
    expect(await idle.closed).toBe('');
    await unusedClosed;
    // A request that completes now, on a connection opened before: 503, Retry-After, Connection: close.
    finishing.socket.write('\r\n');
    const refused = await finishing.response;
    expect(refused).toMatch(/^HTTP\/1\.1 503 /);
    expect(refused).toMatch(/\r\nRetry-After: \d+\r\n/i);
    expect(refused).toMatch(/\r\nConnection: close\r\n/i);
    expect(refused).toContain('"error":"temporarily_unavailable"');

    // The one never completed holds the drain until the grace is over, then it is cut.
    expect(await stuck.response).toBe('');
    const exit = await s.exited;
    expect({ code: exit.code, signal: exit.signal }).toEqual({ code: 0, signal: null });
    const took = exit.at - sigterm;
    expect(took).toBeGreaterThanOrEqual(GRACE * 1000 - 50);
    expect(took).toBeLessThan(GRACE * 1000 + 5000);
    expect(s.stderr()).toContain('shutdown: connections still open were cut');
  }, 60000);

  it('a second SIGTERM cuts the drain short', async () => {
    const s = await serve('twice', (input) => {
      input.settings.shutdown_grace = 60;
    });
    const stuck = await partialRequest(s.port);
    expect(await getOnce(`${s.url}/jwks`)).toBe(200); // the server has read the partial request
    const sigterm = performance.now();
    s.child.kill('SIGTERM');
    await waitFor(async () => s.stderr().includes('SIGTERM: draining'), 10000);
    expect(s.stderr()).not.toContain('"msg":"stopped"'); // the request holds the drain
    s.child.kill('SIGTERM');
    expect(await stuck.response).toBe('');
    const exit = await s.exited;
    expect({ code: exit.code, signal: exit.signal }).toEqual({ code: 0, signal: null });
    expect(exit.at - sigterm).toBeLessThan(15_000);
    expect(s.stderr()).toContain('second signal: cutting requests in flight');
  }, 60000);
});
