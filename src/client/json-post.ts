import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';

/** What the usage reporter reads of an answer. */
export interface PostAnswer {
  readonly status: number;
  /** `Retry-After` in seconds, when the answer gave a number. */
  readonly retryAfter?: number;
  /** The body as text (bounded). */
  readonly text: string;
}

/** Posts one JSON body and reads the answer; rejects on a network failure or the timeout. */
export type JsonPost = (url: string, headers: Record<string, string>, body: string, timeoutMs: number) => Promise<PostAnswer>;

/** Answers past this are cut: Leash's are a few hundred bytes. */
const MAX_ANSWER_BYTES = 64 * 1024;

function answer(status: number, retryAfter: string | null | undefined, text: string): PostAnswer {
  const seconds = Number(retryAfter);
  return { status, ...(retryAfter != null && Number.isFinite(seconds) ? { retryAfter: seconds } : {}), text };
}

/**
 * A JSON POST over node:http or node:https (`tls`) with a keep-alive agent of its own, or
 * the caller's. The reporter sends a batch every few tens of ms on a busy server: per
 * request, undici's `fetch` (Request/Response objects, web streams, AbortSignal) cost it
 * about three times the CPU this does (bench/usage.ts, D). Redirects are not followed (a
 * 3xx is just an answer).
 */
export function nodeJsonPost(opts: { readonly tls: boolean; readonly agent?: HttpAgent | undefined }): { post: JsonPost; close: () => void } {
  const agent = opts.agent ?? (opts.tls ? new HttpsAgent({ keepAlive: true, maxSockets: 2 }) : new HttpAgent({ keepAlive: true, maxSockets: 2 }));
  const send = opts.tls ? httpsRequest : httpRequest;
  const post: JsonPost = (url, headers, body, timeoutMs) =>
    new Promise<PostAnswer>((resolve, reject) => {
      const req = send(url, { method: 'POST', agent, headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) } }, (res: IncomingMessage) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size <= MAX_ANSWER_BYTES) chunks.push(c);
        });
        res.on('end', () => {
          clearTimeout(timer);
          resolve(answer(res.statusCode ?? 0, res.headers['retry-after'], Buffer.concat(chunks).toString('utf8')));
        });
        res.on('error', fail);
        res.on('close', () => {
          if (!res.complete) fail(new Error('the answer was cut off'));
        });
      });
      // One deadline for the whole exchange (connect, send, answer), as AbortSignal.timeout gave fetch.
      const timer = setTimeout(() => req.destroy(Object.assign(new Error(`no answer in ${timeoutMs} ms`), { name: 'TimeoutError' })), timeoutMs);
      function fail(err: Error) {
        clearTimeout(timer);
        reject(err);
      }
      req.on('error', fail);
      req.end(body);
    });
  return {
    post,
    // Only an agent made here: a caller's agent is the caller's to close.
    close: () => {
      if (!opts.agent) agent.destroy();
    },
  };
}

/** The same contract over a `fetch` function (tests, or a caller with a dispatcher of its own). */
export function fetchJsonPost(fetchFn: typeof fetch): JsonPost {
  return async (url, headers, body, timeoutMs) => {
    const res = await fetchFn(url, { method: 'POST', headers, body, signal: AbortSignal.timeout(timeoutMs), redirect: 'error' });
    return answer(res.status, res.headers.get('retry-after'), (await res.text()).slice(0, MAX_ANSWER_BYTES));
  };
}
