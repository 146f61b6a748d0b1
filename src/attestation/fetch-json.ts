import { LeashError } from '../errors/leash-error.js';

/** The fetch signature Leash uses for issuer metadata and JWKS (the global one by default). */
export type FetchLike = (url: string, init: { method: 'GET'; headers: Headers; redirect: 'manual'; signal: AbortSignal }) => Promise<Response>;

/** A JWKS or discovery document is a few KiB; anything far larger is refused unread. */
export const MAX_METADATA_BYTES = 256 * 1024;

/**
 * GET a JSON document from an issuer with a deadline and a size cap; redirects are not
 * followed. Every failure is ERR_ATTESTATION_KEYS_UNAVAILABLE (the caller can do nothing
 * about it: `temporarily_unavailable`); `detail` says why for the logs.
 */
export async function fetchJson(url: string, opts: { signal: AbortSignal; fetch?: FetchLike | undefined; headers?: Headers; what: string }): Promise<unknown> {
  const unavailable = (reason: string, cause?: unknown) =>
    new LeashError('ERR_ATTESTATION_KEYS_UNAVAILABLE', `the issuer's ${opts.what} could not be fetched; try again later`, { url, reason }, { cause });
  const headers = opts.headers ?? new Headers({ accept: 'application/json' });
  let response: Response;
  try {
    response = await (opts.fetch ?? (fetch as FetchLike))(url, { method: 'GET', headers, redirect: 'manual', signal: opts.signal });
  } catch (cause) {
    throw unavailable(opts.signal.aborted ? 'timeout' : 'network', cause);
  }
  if (response.status !== 200) {
    await response.body?.cancel().catch(() => undefined);
    throw unavailable(`http_${response.status}`);
  }
  const declared = Number(response.headers.get('content-length') ?? '0');
  if (declared > MAX_METADATA_BYTES) {
    await response.body?.cancel().catch(() => undefined);
    throw unavailable('too_large');
  }
  let text: string;
  try {
    text = await readBounded(response, MAX_METADATA_BYTES);
  } catch (cause) {
    throw unavailable(opts.signal.aborted ? 'timeout' : cause instanceof RangeError ? 'too_large' : 'network', cause);
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (cause) {
    throw unavailable('not_json', cause);
  }
}

async function readBounded(response: Response, limit: number): Promise<string> {
  if (!response.body) return '';
  const reader = response.body.getReader() as ReadableStreamDefaultReader<Uint8Array>;
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > limit) {
      await reader.cancel().catch(() => undefined);
      throw new RangeError('response too large');
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** Plain-http issuer metadata is only acceptable on the loopback interface (tests, local dev). */
export function isLoopbackHttp(url: URL): boolean {
  return url.protocol === 'http:' && (url.hostname === '127.0.0.1' || url.hostname === 'localhost' || url.hostname === '[::1]');
}
