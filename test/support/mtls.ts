import { Agent, request } from 'node:https';
import type { IncomingHttpHeaders } from 'node:http';
import type { TLSSocket } from 'node:tls';

export interface TlsResponse {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: Record<string, unknown>;
  /** The server certificate's SHA-256 fingerprint, as the client saw it. */
  readonly serverFingerprint: string | undefined;
  /** Whether this request reused a kept-alive connection. */
  readonly reused: boolean;
}

export interface TlsClient {
  /** PEM client certificate (and its chain) and key; omitted: no client certificate. */
  readonly cert?: string;
  readonly key?: string;
  /** CA the server certificate is verified against. */
  readonly ca: string;
  /** A keep-alive agent to reuse one connection across requests. */
  readonly agent?: Agent;
}

/** One HTTPS request over a real TLS connection, with a client certificate when given. */
export function tlsRequest(
  base: string,
  client: TlsClient,
  req: { method?: string; path: string; headers?: Record<string, string>; form?: Record<string, string | string[]>; json?: unknown },
): Promise<TlsResponse> {
  const url = new URL(base);
  let body: string | undefined;
  const headers: Record<string, string> = { ...req.headers };
  if (req.form) {
    const form = new URLSearchParams();
    for (const [k, v] of Object.entries(req.form)) for (const one of Array.isArray(v) ? v : [v]) form.append(k, one);
    body = form.toString();
    headers['content-type'] = 'application/x-www-form-urlencoded';
    headers['content-length'] = String(Buffer.byteLength(body));
  } else if (req.json !== undefined) {
    body = JSON.stringify(req.json);
    headers['content-type'] = 'application/json';
    headers['content-length'] = String(Buffer.byteLength(body));
  }
  return new Promise((resolve, reject) => {
    const r = request(
      {
        host: url.hostname,
        port: url.port,
        method: req.method ?? (body ? 'POST' : 'GET'),
        path: req.path,
        headers,
        ca: client.ca,
        ...(client.cert ? { cert: client.cert, key: client.key } : {}),
        agent: client.agent ?? false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json: Record<string, unknown>;
          try {
            json = JSON.parse(text) as Record<string, unknown>;
          } catch {
            json = { raw: text };
          }
          const socket = (res.socket ?? r.socket) as TLSSocket | null;
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: json,
            serverFingerprint: socket?.getPeerCertificate?.()?.fingerprint256,
            reused: (r as unknown as { reusedSocket: boolean }).reusedSocket,
          });
        });
      },
    );
    r.on('error', reject);
    r.end(body);
  });
}

/** A keep-alive agent that presents `cert`/`key` and trusts `ca` (one connection, reused). */
export function keepAliveAgent(client: { cert?: string; key?: string; ca: string }): Agent {
  return new Agent({ keepAlive: true, maxSockets: 1, ca: client.ca, ...(client.cert ? { cert: client.cert, key: client.key } : {}) });
}
