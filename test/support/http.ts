import { Agent, request, type IncomingHttpHeaders } from 'node:http';

export interface RawResponse {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly text: string;
  /** The body parsed as JSON, or undefined when it is not JSON. */
  readonly json: Record<string, unknown> | undefined;
}

export interface RawRequest {
  readonly method: string;
  readonly path: string;
  readonly headers?: Record<string, string>;
  readonly body?: string | Buffer;
  /** Send the body with `Transfer-Encoding: chunked` (no Content-Length), in pieces of this many bytes. */
  readonly chunkBytes?: number;
  readonly agent?: Agent;
}

/**
 * One HTTP request with node:http, so any method (TRACE, PROPFIND, ...) and chunked bodies
 * can be sent, which fetch does not allow.
 */
export function rawRequest(base: string, req: RawRequest): Promise<RawResponse> {
  const url = new URL(base);
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { ...req.headers };
    if (req.body !== undefined && req.chunkBytes === undefined) headers['content-length'] = String(Buffer.byteLength(req.body));
    if (req.chunkBytes !== undefined) headers['transfer-encoding'] = 'chunked';
    const r = request({ host: url.hostname, port: url.port, method: req.method, path: req.path, headers, agent: req.agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json: Record<string, unknown> | undefined;
        try {
          json = JSON.parse(text) as Record<string, unknown>;
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
      });
      res.on('error', reject);
    });
    // A server that refuses an oversize body may close before it has all of it.
    r.on('error', reject);
    if (req.body !== undefined) {
      const body = Buffer.from(req.body);
      const size = req.chunkBytes ?? body.length;
      for (let i = 0; i < body.length; i += size) r.write(body.subarray(i, i + size));
    }
    r.end();
  });
}
