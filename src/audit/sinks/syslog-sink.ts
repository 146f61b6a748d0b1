import { readFileSync } from 'node:fs';
import { isIP, connect as tcpConnect, type Socket } from 'node:net';
import { hostname as osHostname } from 'node:os';
import { connect as tlsConnect } from 'node:tls';
import type { SinkItem, SinkTransport } from './sink-runner.js';

export interface SyslogSinkOptions {
  readonly host: string;
  readonly port: number;
  /** RFC 5425 (TLS). Off: plain TCP (RFC 6587), for a local relay only. */
  readonly tls: boolean;
  /** PEM bundle that verifies the collector's certificate (default: the system CAs). */
  readonly caFile?: string | undefined;
  /** RFC 5424 facility number (default 10, security/authorization). */
  readonly facility: number;
  readonly appName: string;
  readonly hostname?: string;
  readonly timeoutMs: number;
}

/** RFC 5424 fields are printable US-ASCII without spaces, bounded; NILVALUE when empty. */
function field(v: string, max: number): string {
  const clean = v.replace(/[^\x21-\x7e]/g, '_').slice(0, max);
  return clean.length > 0 ? clean : '-';
}

/**
 * One RFC 5424 message: `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD MSG`, the
 * event type as MSGID, no structured data, the JSON document as a UTF-8 MSG (BOM first).
 */
export function syslogMessage(item: SinkItem, opts: { facility: number; appName: string; hostname: string; now: Date }): string {
  const pri = opts.facility * 8 + item.severity;
  return `<${pri}>1 ${opts.now.toISOString()} ${field(opts.hostname, 255)} ${field(opts.appName, 48)} ${process.pid} ${field(item.type, 32)} - \uFEFF${item.payload}`;
}

/** RFC 6587 §3.4.1 octet counting (also RFC 5425's framing over TLS): `MSG-LEN SP SYSLOG-MSG`. */
export function octetFrame(message: string): Buffer {
  const body = Buffer.from(message, 'utf8');
  return Buffer.concat([Buffer.from(`${body.length} `, 'ascii'), body]);
}

/**
 * Syslog over TCP or TLS, one persistent connection, reconnected on the next batch after
 * an error. TCP gives no application-level acknowledgement: a batch counts as delivered
 * once the kernel took it; a collector dying mid-batch can lose what it had not read.
 */
export function createSyslogSink(opts: SyslogSinkOptions): SinkTransport {
  let socket: Socket | undefined;
  const ca = opts.caFile ? readFileSync(opts.caFile) : undefined;
  const host = opts.hostname ?? osHostname();

  function open(): Promise<Socket> {
    return new Promise((resolve, reject) => {
      const onError = (err: Error) => reject(err);
      const s = opts.tls
        ? tlsConnect({ host: opts.host, port: opts.port, ...(isIP(opts.host) ? {} : { servername: opts.host }), ...(ca ? { ca } : {}) }, () => resolve(s))
        : tcpConnect({ host: opts.host, port: opts.port }, () => resolve(s));
      s.setTimeout(opts.timeoutMs, () => s.destroy(new Error('syslog connection timed out')));
      s.once('error', onError);
      s.once('close', () => {
        if (socket === s) socket = undefined;
      });
      // The collector never speaks; anything it sends is ignored.
      s.on('data', () => undefined);
    });
  }

  return {
    async send(items: readonly SinkItem[]): Promise<void> {
      if (!socket || socket.destroyed) {
        socket = await open();
        socket.on('error', () => socket?.destroy());
      }
      const s = socket;
      const now = new Date();
      const frames = Buffer.concat(items.map((i) => octetFrame(syslogMessage(i, { facility: opts.facility, appName: opts.appName, hostname: host, now }))));
      await new Promise<void>((resolve, reject) => {
        s.write(frames, (err) => (err ? reject(err) : resolve()));
      }).catch((err: unknown) => {
        s.destroy();
        throw err;
      });
    },
    async close() {
      socket?.end();
      socket?.destroy();
      socket = undefined;
    },
  };
}
