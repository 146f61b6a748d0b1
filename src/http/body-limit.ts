import type { Request, RequestHandler, Response } from 'express';

/**
 * `settings.max_body_bytes` on the bytes actually read, whatever reads them later. A
 * declared Content-Length over the limit is refused before a byte is read; any other body
 * (chunked, or within its declared length) is read here, at most `limit` bytes, then put
 * back on the stream (`unshift`, before it has emitted `end`) so the route's own parser
 * (express's, or oidc-provider's for `/token`) reads it unchanged. Bodies are small (the
 * limit is at most 56 KiB; a `POST /usage` batch has its own, larger one), so holding one
 * briefly costs what the parser would anyway.
 */
export function bodyLimit(limit: (req: Request) => number, refuse: (res: Response, limit: number) => void): RequestHandler {
  return (req, res, next) => {
    const max = limit(req);
    const chunked = req.headers['transfer-encoding'] !== undefined;
    const declared = Number(req.headers['content-length'] ?? 0);
    // Nothing to read: no body, or an empty one already parsed (a read() now would end the stream).
    if ((!chunked && !(declared > 0)) || (req.complete && req.readableLength === 0)) return next();
    if (declared > max) {
      res.set('Connection', 'close');
      return refuse(res, max);
    }
    readBounded(req, max, (outcome) => {
      if (outcome === 'gone') return;
      if (outcome === 'too_large') {
        // The rest is never read: the connection closes once the refusal is sent.
        res.set('Connection', 'close');
        return refuse(res, max);
      }
      next();
    });
  };
}

function readBounded(req: Request, max: number, done: (outcome: 'ok' | 'too_large' | 'gone') => void): void {
  const chunks: Buffer[] = [];
  let received = 0;
  let settled = false;
  const finish = (outcome: 'ok' | 'too_large' | 'gone') => {
    if (settled) return;
    settled = true;
    req.off('readable', onReadable);
    req.off('error', onGone);
    req.off('close', onClose);
    // Back at the front of the stream, for the parser; `end` follows once it is read.
    if (outcome === 'ok' && received > 0) req.unshift(Buffer.concat(chunks, received));
    done(outcome);
  };
  const onReadable = () => {
    // Only read what is buffered: a read() on an empty, ended stream would schedule `end`.
    while (req.readableLength > 0) {
      const chunk = req.read() as Buffer | null;
      if (chunk === null) break;
      received += chunk.length;
      if (received > max) return finish('too_large');
      chunks.push(chunk);
    }
    if (req.complete) finish('ok');
  };
  const onGone = () => finish('gone');
  const onClose = () => {
    if (!req.complete) finish('gone');
  };
  req.on('readable', onReadable);
  req.on('error', onGone);
  req.on('close', onClose);
}
