import type { ServerResponse } from 'node:http';

/**
 * A JSON answer to a POST that no cache may keep (RFC 6749 §5.1, RFC 7662 §2.2), written on
 * the bare node:http response: not through express's `res.json`, whose `send` hashes every
 * body (SHA-1) for an ETag that a `no-store` POST answer never uses. Node sets the length.
 */
export function sendNoStoreJson(res: ServerResponse, status: number, body: unknown): void {
  res.statusCode = status;
  res.setHeader('Cache-Control', 'no-store');
  res.setHeader('Pragma', 'no-cache');
  res.setHeader('Content-Type', 'application/json; charset=utf-8');
  res.end(JSON.stringify(body));
}
