import { readFile } from 'node:fs/promises';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { TokenReviewConfig } from '../../config/schema.js';
import { LeashError } from '../../errors/leash-error.js';
import type { Clock } from '../../time/clock.js';

/** What the review must confirm about the token, from its verified claims. */
export interface ReviewExpectation {
  /** `system:serviceaccount:<namespace>:<name>`: the user the API server must name. */
  readonly subject: string;
  readonly serviceAccountUid: string;
  /** The bound pod's uid, when the token is bound to a pod. */
  readonly podUid: string | undefined;
  /** The token's `exp` (seconds): an answer is never reused past it. */
  readonly expiresAt: number;
}

/** Asks the cluster whether a token it issued is still valid; throws ERR_ATTESTATION_REVIEW_*. */
export interface TokenReviewer {
  review(token: string, digest: string, expect: ReviewExpectation): Promise<void>;
}

export interface TokenReviewerDeps {
  readonly clock: Clock;
  /** `spec.audiences`: the review's, or the issuer's audience(s). */
  readonly audiences: readonly string[];
  /** Answers remembered at once (oldest forgotten first). Default 10,000. */
  readonly maxEntries?: number;
}

const PATH = '/apis/authentication.k8s.io/v1/tokenreviews';
const MAX_BODY_BYTES = 64 * 1024;
const POD_UID = 'authentication.kubernetes.io/pod-uid';

const rejected = (reason: string, apiError?: string) =>
  new LeashError('ERR_ATTESTATION_REVIEW_REJECTED', 'the cluster does not accept this service-account token any more (TokenReview); present a fresh token of a running pod', {
    review: reason,
    ...(apiError ? { api_error: apiError } : {}),
  });

const unavailable = (reason: string, extra: Record<string, unknown> = {}) =>
  new LeashError('ERR_ATTESTATION_REVIEW_UNAVAILABLE', 'the Kubernetes API server cannot confirm the attestation right now; retry later', { review: reason, ...extra });

type Answer = { readonly until: number; readonly error: LeashError | undefined };

/**
 * Kubernetes TokenReview (`authentication.k8s.io/v1`): a projected service-account token
 * stays cryptographically valid until `exp` even after its pod is deleted; only the API
 * server knows. Each token is reviewed once per `cache_seconds` (the answer, accepted or
 * refused, is reused that long; concurrent reviews of one token share one call). Leash
 * authenticates with its own service-account token (re-read per call, as the kubelet
 * rotates it) and verifies the API server with `ca_file`. Anything short of a clear
 * answer (network, timeout, 5xx, a refused Leash credential, a malformed body) refuses:
 * fail closed, never cached.
 */
export function createTokenReviewer(cfg: TokenReviewConfig, deps: TokenReviewerDeps): TokenReviewer {
  const url = new URL(`${cfg.api_server}${PATH}`);
  const maxEntries = deps.maxEntries ?? 10_000;
  const answers = new Map<string, Answer>();
  const inflight = new Map<string, Promise<Answer>>();
  let ca: Promise<Buffer> | undefined;

  function caBundle(): Promise<Buffer> | undefined {
    if (cfg.ca_file === undefined) return undefined;
    ca ??= readFile(cfg.ca_file).catch((err: NodeJS.ErrnoException) => {
      ca = undefined; // read again next time
      throw unavailable('ca_file_unreadable', { code: err.code });
    });
    return ca;
  }

  async function credential(): Promise<string> {
    let text: string;
    try {
      text = (await readFile(cfg.token_file, 'utf8')).trim();
    } catch (err) {
      throw unavailable('token_file_unreadable', { code: (err as NodeJS.ErrnoException).code });
    }
    if (!/^[A-Za-z0-9._~+/=-]+$/.test(text)) throw unavailable('token_file_malformed');
    return text;
  }

  /** One POST; resolves with the status and parsed JSON body, or throws an unavailable error. */
  async function post(body: string): Promise<{ status: number; json: unknown }> {
    const [bearer, caPem] = await Promise.all([credential(), caBundle()]);
    const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
    return new Promise((resolve, reject) => {
      const req = send(url, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${bearer}`,
          'content-type': 'application/json',
          accept: 'application/json',
          'content-length': Buffer.byteLength(body),
        },
        ...(caPem ? { ca: caPem } : {}),
      });
      const timer = setTimeout(() => req.destroy(new Error('timeout')), cfg.timeout_ms);
      timer.unref();
      const fail = (err: Error) => {
        clearTimeout(timer);
        const reason = err.message === 'timeout' ? 'timeout' : 'unreachable';
        reject(unavailable(reason, { code: (err as NodeJS.ErrnoException).code }));
      };
      req.on('error', fail);
      req.on('response', (res: IncomingMessage) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > MAX_BODY_BYTES) req.destroy(new Error('answer too large'));
          else chunks.push(c);
        });
        res.on('error', fail);
        res.on('end', () => {
          clearTimeout(timer);
          let json: unknown;
          try {
            json = JSON.parse(Buffer.concat(chunks).toString('utf8'));
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode ?? 0, json });
        });
      });
      req.end(body);
    });
  }

  /** The API server's answer as Leash's decision: undefined (accepted) or the refusal. */
  function decide(status: number, json: unknown, expect: ReviewExpectation): LeashError | undefined {
    // 401/403: the API server refused Leash itself (its token, or the system:auth-delegator
    // role); the plugin's token was not judged, so this is an outage, not a verdict.
    if (status === 401 || status === 403) return unavailable('leash_credential_refused', { status, api_reason: statusReason(json) });
    if (status !== 200 && status !== 201) return unavailable('api_status', { status, api_reason: statusReason(json) });
    const review = json as { kind?: unknown; status?: unknown } | undefined;
    if (review?.kind !== 'TokenReview' || review.status === null || typeof review.status !== 'object') return unavailable('malformed_answer', { status });
    const st = review.status as { authenticated?: unknown; error?: unknown; user?: unknown; audiences?: unknown };
    if (st.authenticated !== true) return rejected('not_authenticated', typeof st.error === 'string' ? st.error.slice(0, 200) : undefined);
    const user = (st.user ?? {}) as { username?: unknown; uid?: unknown; extra?: unknown };
    if (user.username !== expect.subject) return rejected('user_mismatch');
    if (typeof user.uid === 'string' && user.uid !== expect.serviceAccountUid) return rejected('uid_mismatch');
    const podUids = (user.extra as Record<string, unknown> | undefined)?.[POD_UID];
    if (expect.podUid !== undefined && Array.isArray(podUids) && !podUids.includes(expect.podUid)) return rejected('pod_mismatch');
    // The API docs: a client that sets spec.audiences checks status.audiences, or it cannot
    // tell an audience-aware answer from one about the API server's own audience.
    const confirmed = Array.isArray(st.audiences) ? st.audiences : [];
    if (!deps.audiences.some((a) => confirmed.includes(a))) return rejected('audience_not_confirmed');
    return undefined;
  }

  async function ask(token: string, expect: ReviewExpectation): Promise<Answer> {
    const body = JSON.stringify({ apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token, audiences: deps.audiences } });
    const { status, json } = await post(body);
    const error = decide(status, json, expect);
    if (error?.code === 'ERR_ATTESTATION_REVIEW_UNAVAILABLE') throw error;
    const now = deps.clock.now();
    return { until: Math.min(now + cfg.cache_seconds * 1000, expect.expiresAt * 1000), error };
  }

  function remember(digest: string, answer: Answer): void {
    if (answer.until <= deps.clock.now()) return;
    answers.delete(digest);
    answers.set(digest, answer);
    while (answers.size > maxEntries) answers.delete(answers.keys().next().value as string);
  }

  return {
    async review(token, digest, expect) {
      const now = deps.clock.now();
      let answer = answers.get(digest);
      if (answer && answer.until <= now) {
        answers.delete(digest);
        answer = undefined;
      }
      if (!answer) {
        let pending = inflight.get(digest);
        if (!pending) {
          pending = ask(token, expect).finally(() => inflight.delete(digest));
          inflight.set(digest, pending);
        }
        answer = await pending;
        remember(digest, answer);
      }
      if (answer.error) throw answer.error;
    },
  };
}

/** `reason` of a Kubernetes `Status` error body (e.g. `Unauthorized`, `Forbidden`), for the audit detail. */
function statusReason(json: unknown): string | undefined {
  const reason = (json as { reason?: unknown } | undefined)?.reason;
  return typeof reason === 'string' ? reason.slice(0, 64) : undefined;
}
