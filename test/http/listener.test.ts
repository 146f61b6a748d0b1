import { afterEach, describe, expect, it } from '@jest/globals';
import { request } from 'node:http';
import { connect, type Server as NetServer, type Socket } from 'node:net';
import { acceptSocketCount, HttpListener, ListenError } from '../../src/http/listener.js';

/**
 * The public port bound as several SO_REUSEPORT sockets (settings.listen.accept_sockets):
 * libuv accepts one connection per listening socket per event-loop turn, so a busy process
 * with one socket lets new clients in a few dozen a second.
 */

const open: HttpListener[] = [];
const bind = async (sockets: number, port = 0) => {
  const l = await HttpListener.bind('127.0.0.1', port, 'test', undefined, sockets);
  open.push(l);
  return l;
};
afterEach(async () => {
  await Promise.all(open.splice(0).map((l) => l.close()));
});

const portOf = (l: HttpListener) => Number(new URL(l.url).port);

function get(url: string, path = '/'): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(new URL(path, url), { agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

const busy = (ms: number) => {
  const t = performance.now();
  while (performance.now() - t < ms);
};

describe('acceptSocketCount', () => {
  it('as asked on Linux in a single process; 1 elsewhere and in a --workers process', () => {
    expect(acceptSocketCount(8, 'linux', false)).toBe(8);
    expect(acceptSocketCount(1, 'linux', false)).toBe(1);
    expect(acceptSocketCount(8, 'darwin', false)).toBe(1);
    expect(acceptSocketCount(8, 'win32', false)).toBe(1);
    expect(acceptSocketCount(8, 'linux', true)).toBe(1);
  });
});

describe.each([1, 4])('HttpListener with %i accept socket(s)', (sockets) => {
  it('serves every connection with the one handler, whichever socket accepted it', async () => {
    const l = await bind(sockets);
    expect(l.acceptSockets).toBe(process.platform === 'linux' ? sockets : 1);
    const servers = new Set<NetServer | null>();
    l.serve((req, res) => {
      // `_server`: the net.Server that accepted it (http sets `server` to itself on every connection).
      servers.add((req.socket as Socket & { _server: NetServer | null })._server);
      res.end(`hello ${req.url}`);
    });
    const answers = await Promise.all(Array.from({ length: 40 }, (_, i) => get(l.url, `/${i}`)));
    expect(answers.map((a) => a.status)).toEqual(Array(40).fill(200));
    expect(answers[7]!.body).toBe('hello /7');
    // The kernel spread 40 connections over the sockets (hash of the client port).
    if (process.platform === 'linux' && sockets > 1) expect(servers.size).toBeGreaterThan(1);
    else expect(servers.size).toBe(1);
  });

  it('close stops every socket listening', async () => {
    const l = await bind(sockets);
    l.serve((_req, res) => res.end('x'));
    await get(l.url);
    await l.close();
    const refused = await Promise.all(
      Array.from(
        { length: 16 },
        () =>
          new Promise<string>((resolve) =>
            connect(portOf(l), '127.0.0.1')
              .on('connect', function (this: Socket) {
                this.destroy();
                resolve('connected');
              })
              .on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? '')),
          ),
      ),
    );
    expect(new Set(refused)).toEqual(new Set(['ECONNREFUSED']));
  });

  it('drain waits for a request in flight on any socket, then resolves with nothing cut', async () => {
    const l = await bind(sockets);
    let finish: (() => void) | undefined;
    const started: Promise<void>[] = [];
    let arrived = 0;
    const allIn = new Promise<void>((r) =>
      l.serve((_req, res) => {
        started.push(new Promise<void>((done) => (finish = () => (res.end('late'), done()))));
        if (++arrived === 1) r();
      }),
    );
    const answer = get(l.url);
    await allIn;
    const drained = l.drain(5000);
    let resolved = false;
    void drained.then(() => (resolved = true));
    await new Promise((r) => setTimeout(r, 100));
    expect(resolved).toBe(false);
    finish!();
    expect((await answer).body).toBe('late');
    expect(await drained).toEqual({ connections: 0, requests: 0 });
  });
});

describe('binding the port', () => {
  it('a second listener on a port already served is refused (EADDRINUSE), though the first set SO_REUSEPORT', async () => {
    const first = await bind(4);
    const err = await HttpListener.bind('127.0.0.1', portOf(first), 'public API, settings.listen', undefined, 4).catch((e: unknown) => e);
    if (err instanceof HttpListener) open.push(err);
    expect(err).toBeInstanceOf(ListenError);
    expect((err as ListenError).code).toBe('EADDRINUSE');
    const single = await HttpListener.bind('127.0.0.1', portOf(first), 'public API, settings.listen', undefined, 1).catch((e: unknown) => e);
    expect((single as ListenError).code).toBe('EADDRINUSE');
  });

  it('on a busy event loop, N sockets accept up to N new connections a turn where one socket accepts one', async () => {
    if (process.platform !== 'linux') return;
    const accepted = async (sockets: number) => {
      const l = await bind(sockets);
      l.serve((_req, res) => res.end());
      // The kernel completes each handshake within connect(); from here on the loop is busy.
      const clients = Array.from({ length: 64 }, () => connect(portOf(l), '127.0.0.1').on('error', () => {}));
      const counted = new Promise<number>((resolve) => {
        let turns = 0;
        const before = l.connections;
        const turn = () => {
          busy(20);
          if (++turns < 4) setImmediate(turn);
          else resolve(l.connections - before);
        };
        setImmediate(turn);
      });
      const n = await counted;
      for (const c of clients) c.destroy();
      return n;
    };
    const one = await accepted(1);
    const eight = await accepted(8);
    expect(one).toBeLessThanOrEqual(4);
    expect(eight).toBeGreaterThan(2 * one);
  });
});
