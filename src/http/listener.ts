import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import cluster from 'node:cluster';
import { createServer as createNetServer, type AddressInfo, type Server as NetServer, type Socket } from 'node:net';
import type { SecureContextOptions } from 'node:tls';
import type { Settings } from '../config/schema.js';
import type { TlsServerOptions } from '../mtls/tls-material.js';
import type { NodeHandler } from './app.js';

/** Seconds a client is told to wait (`Retry-After`) while Leash starts or stops. */
const RETRY_AFTER_SECONDS = 2;

/** A port Leash could not bind: one line naming the address and the reason. */
export class ListenError extends Error {
  constructor(
    readonly address: string,
    readonly role: string,
    readonly code: string,
  ) {
    super(
      `cannot listen on ${address} (${role}): ${code === 'EADDRINUSE' ? 'address already in use' : code === 'EACCES' ? 'permission denied' : code === 'EADDRNOTAVAIL' ? 'address not available on this machine' : 'bind failed'} (${code})`,
    );
    this.name = 'ListenError';
  }
}

const hostPort = (host: string, port: number) => `${host.includes(':') ? `[${host}]` : host}:${port}`;

function refuse(res: ServerResponse, description: string): void {
  const body = JSON.stringify({ error: 'temporarily_unavailable', error_description: description });
  res.writeHead(503, {
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': Buffer.byteLength(body),
    'Cache-Control': 'no-store',
    'Retry-After': String(RETRY_AFTER_SECONDS),
    'X-Content-Type-Options': 'nosniff',
    Connection: 'close',
  });
  res.end(body);
}

/**
 * One bound HTTP port. It is bound before the broker is built (so a port in use stops
 * the start before anything is created or recorded) and answers 503 with `Retry-After`
 * until a handler is attached. `drain` is the graceful half of a shutdown: stop
 * accepting, let the requests in flight finish, refuse anything more on an open
 * connection, and cut what is left when the grace runs out.
 */
export class HttpListener {
  readonly url: string;
  readonly #server: Server;
  /** More sockets on the same port (`SO_REUSEPORT`): their connections are handed to `#server`. */
  readonly #extra: readonly NetServer[];
  readonly #inFlight = new Set<ServerResponse>();
  readonly #sockets = new Set<Socket>();
  #handler: NodeHandler | undefined;
  #draining = false;
  #closed: Promise<void> | undefined;

  private constructor(server: Server, extra: readonly NetServer[], url: string, connectionEvent: 'connection' | 'secureConnection') {
    this.#server = server;
    this.#extra = extra;
    this.url = url;
    server.on(connectionEvent, (socket: Socket) => {
      this.#sockets.add(socket);
      socket.once('close', () => this.#sockets.delete(socket));
    });
  }

  /**
   * Binds `host:port` (0: a free port) or throws ListenError naming it; `role` is how the
   * error names the port. With `tls`, it speaks HTTPS (and asks for client certificates as
   * `tls` says). `acceptSockets` > 1 binds that many sockets to the port (see `acceptSocketCount`).
   */
  static async bind(host: string, port: number, role: string, tls?: TlsServerOptions, acceptSockets = 1): Promise<HttpListener> {
    let listener: HttpListener | undefined;
    const onRequest = (req: IncomingMessage, res: ServerResponse) => listener!.#dispatch(req, res);
    const server: Server = tls
      ? createHttpsServer({ ...tls.context, requestCert: tls.requestCert, rejectUnauthorized: tls.rejectUnauthorized, minVersion: tls.minVersion }, onRequest)
      : createServer(onRequest);
    // The handshake runs before any request: counting sockets must see the TLS ones too.
    const connectionEvent = tls ? 'secureConnection' : 'connection';
    server.keepAliveTimeout = 65_000;
    server.headersTimeout = 66_000;
    server.requestTimeout = 30_000;
    const sockets = acceptSocketCount(acceptSockets);
    const reusePort = sockets > 1;
    const listen = (s: NetServer, at: number, shared = reusePort) =>
      new Promise<void>((resolve, reject) => {
        s.once('error', (err: NodeJS.ErrnoException) => reject(new ListenError(hostPort(host, at), role, err.code ?? 'EUNKNOWN')));
        s.listen({ port: at, host, reusePort: shared }, () => resolve());
      });
    // A port with SO_REUSEPORT set is shared with any later socket of the same user that sets
    // it too: a second Leash started on this port by mistake would bind and silently take half
    // the connections. A plain bind first says whether anything listens there already.
    let at = port;
    if (reusePort) {
      const probe = createNetServer();
      await listen(probe, port, false);
      at = (probe.address() as AddressInfo).port;
      await new Promise((r) => probe.close(r));
    }
    await listen(server, at);
    const bound = (server.address() as AddressInfo).port;
    // The kernel spreads new connections over the sockets; each is accepted on its own turn
    // slot and handed to the one HTTP server (its connection handling, TLS, limits, drain).
    const extra: NetServer[] = [];
    try {
      for (let i = 1; i < sockets; i++) {
        const s = createNetServer({ noDelay: true }, (socket) => server.emit('connection', socket));
        extra.push(s);
        await listen(s, bound);
      }
    } catch (err) {
      await Promise.all([server, ...extra].map((s) => new Promise((r) => s.close(r))));
      throw err;
    }
    listener = new HttpListener(server, extra, `${tls ? 'https' : 'http'}://${hostPort(host, bound)}`, connectionEvent);
    return listener;
  }

  /** Connections open now (TLS: handshake done), whichever socket accepted them. */
  get connections(): number {
    return this.#sockets.size;
  }

  /** Listening sockets bound to the port (1 unless `SO_REUSEPORT` spreads it over more). */
  get acceptSockets(): number {
    return 1 + this.#extra.length;
  }

  /**
   * New connections get this certificate, key and client CAs (a reload re-read the files);
   * connections already open keep what they were set up with. A no-op on a plain HTTP port.
   */
  setSecureContext(context: SecureContextOptions): void {
    if ('setSecureContext' in this.#server) (this.#server as HttpsServer).setSecureContext(context);
  }

  /** Start handing requests to `handler` (replaces any earlier one). */
  serve(handler: NodeHandler): void {
    this.#handler = handler;
  }

  #dispatch(req: IncomingMessage, res: ServerResponse): void {
    // A request on a connection that was open before the drain began (keep-alive, pipelined).
    if (this.#draining) return refuse(res, 'the broker is shutting down; retry (another replica will answer)');
    if (!this.#handler) return refuse(res, 'the broker is starting; retry shortly');
    this.#inFlight.add(res);
    res.once('close', () => {
      this.#inFlight.delete(res);
      // An answer that had started before the drain left its connection open: close it once idle.
      if (this.#draining) setImmediate(() => this.#server.closeIdleConnections());
    });
    this.#handler(req, res);
  }

  /**
   * Stop accepting connections and wait until the requests in flight are answered (each
   * answer closes its connection), for at most `graceMs`; then cut every connection still
   * open. Resolves with what was cut: connections still open, and requests being
   * answered on them. `cutNow` aborts the wait.
   */
  async drain(graceMs: number, cutNow?: AbortSignal): Promise<{ connections: number; requests: number }> {
    this.#draining = true;
    // Answers not yet started close their connection, so keep-alive clients reconnect elsewhere.
    for (const res of this.#inFlight) if (!res.headersSent) res.setHeader('Connection', 'close');
    let done = false;
    const closed = this.#close().then(() => {
      done = true;
    });
    this.#server.closeIdleConnections();
    // Connections that never sent a byte are idle too (Node counts them as waiting for headers).
    for (const socket of this.#sockets) if (socket.bytesRead === 0) socket.destroy();
    let timer: NodeJS.Timeout | undefined;
    let onAbort: (() => void) | undefined;
    await Promise.race([
      closed,
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, graceMs);
        onAbort = resolve;
        cutNow?.addEventListener('abort', onAbort, { once: true });
        if (cutNow?.aborted) resolve();
      }),
    ]);
    clearTimeout(timer);
    if (onAbort) cutNow?.removeEventListener('abort', onAbort);
    let cut = { connections: 0, requests: 0 };
    if (!done) {
      const counts = await Promise.all([this.#server, ...this.#extra].map((s) => new Promise<number>((resolve) => s.getConnections((_e, n) => resolve(n ?? 0)))));
      const connections = counts.reduce((a, b) => a + b, 0);
      cut = { connections, requests: this.#inFlight.size };
      this.#server.closeAllConnections();
    }
    await closed;
    return cut;
  }

  /** Close at once: every connection is cut. */
  async close(): Promise<void> {
    this.#draining = true;
    const closed = this.#close();
    this.#server.closeAllConnections();
    await closed;
  }

  /** Every socket stops listening; resolves once each has no connection left (a server's close waits for its own). */
  #close(): Promise<void> {
    this.#closed ??= Promise.all([this.#server, ...this.#extra].map((s) => new Promise<void>((resolve) => s.close(() => resolve())))).then(() => undefined);
    return this.#closed;
  }
}

/**
 * How many sockets to bind to the public port. libuv 1.45+ (libuv/libuv#3696) accepts one
 * connection per listening socket per event-loop turn: while a turn carries tens of
 * milliseconds of exchanges, one socket admits a few dozen new clients a second and the rest
 * wait in the kernel's accept queue, unseen by admission control, until they give up. Several
 * `SO_REUSEPORT` sockets accept that many per turn. Linux only (elsewhere Node refuses the
 * option), and not in a `--workers` process: there the primary accepts, on an idle loop.
 */
export function acceptSocketCount(wanted: number, platform: NodeJS.Platform = process.platform, worker = cluster.isWorker): number {
  return platform === 'linux' && !worker ? Math.max(1, Math.floor(wanted)) : 1;
}

/** The broker's two ports: the public API and the management server (health, readiness, metrics). */
export interface BoundListeners {
  /** Absent in a process that serves only the usage port (a usage worker). */
  readonly public?: HttpListener | undefined;
  readonly management: HttpListener;
  /** `settings.usage.listen`: `POST /usage` and `/usage/budget` on a port of their own. */
  readonly usage?: HttpListener | undefined;
}

/**
 * Which ports a process serves. `all` (one process, or every worker when usage has no
 * workers of its own): public, management and, if configured, usage. `public`: a worker
 * beside dedicated usage workers. `usage`: a worker that serves only the usage port (and
 * management, so probes and scrapes reach it like any worker).
 */
export type ServedPorts = 'all' | 'public' | 'usage';

export interface ListenOverrides {
  readonly host?: string | undefined;
  readonly port?: number | undefined;
  readonly managementPort?: number | undefined;
  /** `tlsServerOptions(config)`: required when `settings.tls` is set. */
  readonly tls?: TlsServerOptions | undefined;
  /** Default `all`. */
  readonly serve?: ServedPorts | undefined;
}

/** Bind the ports of this process from the settings (command-line overrides win); nothing is left bound on failure. */
export async function bindListeners(settings: Settings, overrides: ListenOverrides = {}): Promise<BoundListeners> {
  // Never a silent downgrade to plain HTTP: the caller read the TLS files (tlsServerOptions).
  if (settings.tls && !overrides.tls) throw new TypeError('bindListeners: settings.tls is set; pass its files as overrides.tls (tlsServerOptions)');
  const serve = overrides.serve ?? 'all';
  const usageAt = settings.usage.listen;
  if (serve === 'usage' && !usageAt) throw new TypeError('bindListeners: a usage worker needs settings.usage.listen');
  const bound: HttpListener[] = [];
  try {
    const pub =
      serve === 'usage'
        ? undefined
        : await HttpListener.bind(overrides.host ?? settings.listen.host, overrides.port ?? settings.listen.port, 'public API, settings.listen', overrides.tls, settings.listen.accept_sockets);
    if (pub) bound.push(pub);
    const usage =
      usageAt && serve !== 'public' ? await HttpListener.bind(usageAt.host, usageAt.port, 'usage reports, settings.usage.listen', overrides.tls, settings.listen.accept_sockets) : undefined;
    if (usage) bound.push(usage);
    const management = await HttpListener.bind(settings.management.listen.host, overrides.managementPort ?? settings.management.listen.port, 'management, settings.management.listen');
    return { public: pub, management, usage };
  } catch (err) {
    await Promise.all(bound.map((l) => l.close()));
    throw err;
  }
}
