import type { Response } from 'express';
import { toOAuthError } from '../../errors/oauth-error.js';
import { LeashError } from '../../errors/leash-error.js';
import { setRetryAfter } from '../retry-after.js';

/** Admin API errors: the RFC 6749 JSON shape, plus RFC 6750 `WWW-Authenticate` on 401/403 and `Retry-After` on 503. */
export function sendAdminError(res: Response, err: unknown): void {
  const { status, body } = toOAuthError(err);
  if (err instanceof LeashError && (status === 401 || status === 403)) {
    res.setHeader('WWW-Authenticate', `Bearer realm="leash-admin", error="${body.error}"`);
  }
  setRetryAfter(res, status);
  res.status(status).json(body);
}
