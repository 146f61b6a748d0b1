/**
 * The open-loop generator's HTTP/1.1 client: POSTs written straight to keep-alive sockets and
 * answers read off them, one request per connection at a time (no pipelining: each answer's
 * latency is its own). node:http's client costs ~130-160 µs of CPU per request on this
 * machine; at 3× Leash's capacity that is most of the core the server does not use, and a
 * generator that falls behind measures itself (its loop stalled for seconds in overload runs
 * of 2026-12-07). This one writes a prebuilt request and reads just the status line and the
 * body's length. It speaks only to the bench's own loopback servers.
 */
import { connect, type Socket } from 'node:net';

export interface RawAnswer {
  readonly status: number;
  /** The first request on its connection: its wait includes the kernel's accept queue (the server cannot see that part). */
  readonly fresh: boolean;
}

interface Conn {
  readonly socket: Socket;
  /** The answer this connection waits for, if any. */
  waiting: ((answer: RawAnswer | Error) => void) | undefined;
  buf: Buffer;
  closed: boolean;
  /** Requests answered on it so far. */
  answered: number;
}

const HEADER_END = Buffer.from('\r\n\r\n');
const CHUNKED_END = Buffer.from('\r\n0\r\n\r\n');

/** Bytes of a complete response at the start of `buf`, with its status, or undefined while incomplete. */
export function completeResponse(buf: Buffer): { length: number; status: number; close: boolean } | undefined {
  const headerEnd = buf.indexOf(HEADER_END);
  if (headerEnd < 0) return undefined;
  const head = buf.toString('latin1', 0, headerEnd).toLowerCase();
  const status = Number(head.slice(9, 12));
  const close = /\r\nconnection: *close/.test(head);
  const cl = /\r\ncontent-length: *(\d+)/.exec(head);
  if (cl) {
    const length = headerEnd + 4 + Number(cl[1]);
    return buf.length >= length ? { length, status, close } : undefined;
  }
  if (/\r\ntransfer-encoding: *chunked/.test(head)) {
    const end = buf.indexOf(CHUNKED_END, headerEnd);
    // A body of one empty chunk ends right after the headers.
    if (buf.subarray(headerEnd + 4, headerEnd + 9).toString('latin1') === '0\r\n\r\n') return { length: headerEnd + 9, status, close };
    return end < 0 ? undefined : { length: end + CHUNKED_END.length, status, close };
  }
  // No length: the body runs to the close (1xx, 204 and 304 have none; the bench's servers always send one).
  return status === 204 || status === 304 ? { length: headerEnd + 4, status, close } : undefined;
}

/** A pool of keep-alive connections to one loopback port: a request takes an idle one or opens a new one. */
export class RawClient {
  private readonly idle: Conn[] = [];
  private readonly all = new Set<Conn>();

  constructor(
    private readonly host: string,
    private readonly port: number,
  ) {}

  /** Prebuilt bytes of a form POST. */
  static formPost(path: string, host: string, body: string): Buffer {
    return Buffer.from(`POST ${path} HTTP/1.1\r\nHost: ${host}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`, 'utf8');
  }

  /** Sends `request`; `done` gets the answer or the error that ended the connection first. Returns a function that abandons it (closes the connection). */
  send(request: Buffer, done: (answer: RawAnswer | Error) => void): () => void {
    const conn = this.idle.pop() ?? this.open();
    conn.waiting = done;
    conn.socket.write(request);
    return () => {
      if (conn.waiting !== done) return;
      conn.waiting = undefined;
      this.drop(conn);
    };
  }

  close(): void {
    for (const conn of this.all) this.drop(conn);
  }

  private open(): Conn {
    const socket = connect({ host: this.host, port: this.port, noDelay: true });
    const conn: Conn = { socket, waiting: undefined, buf: Buffer.alloc(0), closed: false, answered: 0 };
    this.all.add(conn);
    socket.on('data', (chunk: Buffer) => {
      conn.buf = conn.buf.length === 0 ? chunk : Buffer.concat([conn.buf, chunk]);
      const r = completeResponse(conn.buf);
      if (!r) return;
      conn.buf = conn.buf.subarray(r.length);
      const done = conn.waiting;
      conn.waiting = undefined;
      const fresh = conn.answered++ === 0;
      if (r.close) this.drop(conn);
      else this.idle.push(conn);
      done?.({ status: r.status, fresh });
    });
    const ended = (err?: Error) => {
      const done = conn.waiting;
      conn.waiting = undefined;
      this.drop(conn);
      done?.(err ?? new Error('connection closed before the answer'));
    };
    socket.on('error', ended);
    socket.on('close', () => ended());
    return conn;
  }

  private drop(conn: Conn): void {
    if (conn.closed) return;
    conn.closed = true;
    this.all.delete(conn);
    const i = this.idle.indexOf(conn);
    if (i >= 0) this.idle.splice(i, 1);
    conn.socket.destroy();
  }
}
