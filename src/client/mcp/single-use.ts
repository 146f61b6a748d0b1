import { readJson } from '../discovery.js';

/** One per-call credential as the single-use check sees it. */
export interface SpentCredential {
  readonly jti: string;
  /** ms since the epoch: the jti need not be remembered past it. */
  readonly expiresAt: number;
  /** The token itself, for a check that asks Leash (sent only to Leash's introspection endpoint). */
  readonly token: string;
}

/** Remembers spent per-call credentials: true the first time, false on a replay. Throws when it cannot tell. */
export interface SingleUseGuard {
  consume(credential: SpentCredential): Promise<boolean>;
}

export interface LeashSingleUseOptions {
  /** Leash's issuer URL: the endpoint is `<issuer>/introspect`. */
  readonly issuer: string;
  /** This MCP server's `resource_servers` id in Leash's config. */
  readonly clientId: string;
  /** Its client secret (client_secret_basic). */
  readonly clientSecret: string;
  readonly fetch?: typeof fetch;
}

/**
 * Single use across replicas: Leash's introspection endpoint with `single_use=consume`
 * (an RFC 7662 §2.1 extension parameter) records the jti in Leash's store (SQLite or
 * Redis, atomically) and answers `active: true` only the first time. One round trip per
 * tool call; a failure is thrown, so the helper refuses the call (fail closed).
 */
export function leashSingleUse(opts: LeashSingleUseOptions): SingleUseGuard {
  const endpoint = `${opts.issuer.replace(/\/+$/, '')}/introspect`;
  const fetchFn = opts.fetch ?? globalThis.fetch;
  const basic = `Basic ${Buffer.from(`${encodeURIComponent(opts.clientId)}:${encodeURIComponent(opts.clientSecret)}`).toString('base64')}`;
  return {
    async consume({ token }) {
      const res = await fetchFn(endpoint, {
        method: 'POST',
        headers: { authorization: basic, 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
        body: new URLSearchParams({ token, single_use: 'consume' }).toString(),
      });
      const body = await readJson(res);
      if (!res.ok || typeof body?.active !== 'boolean') throw new Error(`introspection answered HTTP ${res.status}${typeof body?.error === 'string' ? ` ${body.error}` : ''}`);
      return body.active;
    },
  };
}
