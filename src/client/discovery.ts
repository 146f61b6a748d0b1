import { LeashExchangeError } from './errors.js';

/**
 * What every client of Leash's token endpoint shares: finding it through OIDC discovery,
 * and reading JSON answers defensively.
 */

/** The token endpoint named by `<issuer>/.well-known/openid-configuration`, which must name that issuer. */
export async function discoverTokenEndpoint(issuer: string, fetchFn: typeof fetch): Promise<string> {
  const url = `${issuer}/.well-known/openid-configuration`;
  let res: Response;
  try {
    res = await fetchFn(url, { headers: { accept: 'application/json' } });
  } catch (err) {
    throw new LeashExchangeError('network_error', `could not fetch ${url}`, 0, { cause: err });
  }
  const doc = await readJson(res);
  if (!res.ok || !doc) throw new LeashExchangeError('invalid_response', `discovery at ${url} answered HTTP ${res.status}`, res.status);
  // OIDC Discovery §4.3: the document must name the issuer we asked.
  if (typeof doc.issuer !== 'string' || doc.issuer.replace(/\/+$/, '') !== issuer) {
    throw new LeashExchangeError('invalid_response', `discovery at ${url} names issuer ${String(doc.issuer)}, not ${issuer}`, res.status);
  }
  if (typeof doc.token_endpoint !== 'string' || !isHttpUrl(doc.token_endpoint)) {
    throw new LeashExchangeError('invalid_response', `discovery at ${url} has no token_endpoint`, res.status);
  }
  return doc.token_endpoint;
}

export function isHttpUrl(value: string): boolean {
  try {
    const u = new URL(value);
    return u.protocol === 'https:' || u.protocol === 'http:';
  } catch {
    return false;
  }
}

export async function readJson(res: Response): Promise<Record<string, unknown> | undefined> {
  try {
    const v: unknown = await res.json();
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}
