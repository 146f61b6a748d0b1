import { randomUUID } from 'node:crypto';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { createLocalJWKSet, jwtVerify } from 'jose';
import { CLUSTER_ISSUER, type TestCluster } from './cluster.js';
import { testTls } from './x509.js';

/*
 * A contract server for the Kubernetes TokenReview API (`authentication.k8s.io/v1`), as the
 * API reference describes it: `POST /apis/authentication.k8s.io/v1/tokenreviews` with a
 * TokenReview whose `spec` holds `token` and optional `audiences`; the answer (201) echoes
 * the object with `status`: `authenticated`, `user` (username, uid, groups, extra with the
 * bound pod), `audiences` (the intersection of the token's and the requested ones, or the
 * API server's own when none were requested) and `error` when not authenticated. The
 * caller authenticates with a bearer token and needs permission to create tokenreviews;
 * otherwise a `Status` object with 401 or 403. It verifies service-account tokens the way
 * the API server does: the signature against the cluster's keys, `iss`, time, audiences,
 * and that the service account and the bound pod still exist with the uids in the token.
 * Served over HTTPS with its own CA.
 */

export interface TokenReviewContractOptions {
  readonly cluster: TestCluster;
  /** The API server's own audiences (used when a review names none). */
  readonly apiAudiences?: readonly string[];
  /** The API server's time (ms), for token expiry; default the wall clock. */
  readonly now?: () => number;
}

interface Call {
  readonly authorization: string | undefined;
  readonly body: unknown;
}

const PATH = '/apis/authentication.k8s.io/v1/tokenreviews';

function status(res: ServerResponse, code: number, reason: string, message: string): void {
  res.writeHead(code, { 'content-type': 'application/json' }).end(JSON.stringify({ kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code }));
}

export class TokenReviewContract {
  readonly ca: string;
  /** Every accepted TokenReview call (authenticated caller, well-formed body). */
  readonly calls: Call[] = [];
  /** Caller tokens that may create tokenreviews (`system:auth-delegator`). */
  readonly authorized = new Set<string>();
  /** Caller tokens that authenticate but lack the permission. */
  readonly forbidden = new Set<string>();
  /** When set, every call answers this status (an API server in trouble). */
  failWith: number | undefined;
  readonly #pods = new Map<string, string>();
  readonly #serviceAccounts = new Map<string, string>();
  readonly #opts: TokenReviewContractOptions;
  readonly #tls: { ca: string; cert: string; key: string };
  #server: Server | undefined;
  #port = 0;

  private constructor(opts: TokenReviewContractOptions) {
    this.#opts = opts;
    this.#tls = testTls();
    this.ca = this.#tls.ca;
  }

  static async start(opts: TokenReviewContractOptions): Promise<TokenReviewContract> {
    const c = new TokenReviewContract(opts);
    await c.up();
    return c;
  }

  get url(): string {
    return `https://127.0.0.1:${this.#port}`;
  }

  /** Starts serving (again, on the same port after `down`). */
  async up(): Promise<void> {
    const server = createServer({ cert: this.#tls.cert, key: this.#tls.key }, (req, res) => void this.#handle(req, res));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.#port, '127.0.0.1', () => resolve());
    });
    this.#port = (server.address() as AddressInfo).port;
    this.#server = server;
  }

  /** Stops serving: connections are refused (the API server is down). */
  async down(): Promise<void> {
    const s = this.#server;
    this.#server = undefined;
    if (!s) return;
    s.closeAllConnections();
    await new Promise<void>((r) => s.close(() => r()));
  }

  addServiceAccount(namespace: string, name: string, uid: string = randomUUID()): string {
    this.#serviceAccounts.set(`${namespace}/${name}`, uid);
    return uid;
  }
  addPod(namespace: string, name: string, uid: string = randomUUID()): string {
    this.#pods.set(`${namespace}/${name}`, uid);
    return uid;
  }
  deletePod(namespace: string, name: string): void {
    this.#pods.delete(`${namespace}/${name}`);
  }
  serviceAccountUid(namespace: string, name: string): string | undefined {
    return this.#serviceAccounts.get(`${namespace}/${name}`);
  }
  deleteServiceAccount(namespace: string, name: string): void {
    this.#serviceAccounts.delete(`${namespace}/${name}`);
  }

  /** A projected token bound to a pod that exists here (the service account and pod are created if new). */
  async podToken(opts: { ns?: string; sa: string; pod: string; nowSeconds?: number; aud?: string[] }): Promise<string> {
    const ns = opts.ns ?? 'plugins';
    const saUid = this.#serviceAccounts.get(`${ns}/${opts.sa}`) ?? this.addServiceAccount(ns, opts.sa);
    const podUid = this.#pods.get(`${ns}/${opts.pod}`) ?? this.addPod(ns, opts.pod);
    return this.#opts.cluster.saToken({
      ns,
      sa: opts.sa,
      nowSeconds: opts.nowSeconds,
      claims: {
        ...(opts.aud ? { aud: opts.aud } : {}),
        'kubernetes.io': { namespace: ns, serviceaccount: { name: opts.sa, uid: saUid }, pod: { name: opts.pod, uid: podUid } },
      },
    });
  }

  async close(): Promise<void> {
    await this.down();
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    if (this.failWith !== undefined) return status(res, this.failWith, 'InternalError', 'Internal error occurred: etcdserver: request timed out');
    if (req.url !== PATH) return status(res, 404, 'NotFound', 'the server could not find the requested resource');
    if (req.method !== 'POST') return status(res, 405, 'MethodNotAllowed', `the server does not allow this method on the requested resource`);
    const bearer = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1];
    if (bearer === undefined || (!this.authorized.has(bearer) && !this.forbidden.has(bearer))) return status(res, 401, 'Unauthorized', 'Unauthorized');
    if (!this.authorized.has(bearer)) {
      return status(
        res,
        403,
        'Forbidden',
        'tokenreviews.authentication.k8s.io is forbidden: User "system:serviceaccount:leash:leash" cannot create resource "tokenreviews" in API group "authentication.k8s.io" at the cluster scope',
      );
    }
    if (!/^application\/json\b/.test(req.headers['content-type'] ?? '')) return status(res, 415, 'UnsupportedMediaType', 'the body of the request was in an unknown format');
    let body: { apiVersion?: unknown; kind?: unknown; spec?: { token?: unknown; audiences?: unknown } };
    try {
      body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as typeof body;
    } catch {
      return status(res, 400, 'BadRequest', 'the request body is not valid JSON');
    }
    if (body.apiVersion !== 'authentication.k8s.io/v1' || body.kind !== 'TokenReview') return status(res, 400, 'BadRequest', 'the object is not an authentication.k8s.io/v1 TokenReview');
    const spec = body.spec ?? {};
    if (typeof spec.token !== 'string' || spec.token === '') return status(res, 422, 'Invalid', 'TokenReview.authentication.k8s.io "" is invalid: spec.token: Required value');
    const requested = Array.isArray(spec.audiences) ? (spec.audiences as string[]) : [];
    this.calls.push({ authorization: req.headers.authorization, body });
    const result = await this.#review(spec.token, requested);
    res
      .writeHead(201, { 'content-type': 'application/json' })
      .end(JSON.stringify({ kind: 'TokenReview', apiVersion: 'authentication.k8s.io/v1', metadata: { creationTimestamp: null }, spec: body.spec, status: result }));
  }

  async #review(token: string, requested: readonly string[]): Promise<Record<string, unknown>> {
    const refuse = (why: string) => ({ authenticated: false, user: {}, error: `[invalid bearer token, ${why}]` });
    const want = requested.length > 0 ? requested : (this.#opts.apiAudiences ?? ['https://kubernetes.default.svc']);
    let payload: Record<string, any>;
    try {
      ({ payload } = await jwtVerify(token, createLocalJWKSet(this.#opts.cluster.jwks()), { issuer: CLUSTER_ISSUER, currentDate: new Date(this.#opts.now?.() ?? Date.now()) }));
    } catch (err) {
      return refuse((err as Error).message);
    }
    const aud: string[] = typeof payload.aud === 'string' ? [payload.aud] : (payload.aud ?? []);
    const audiences = want.filter((a) => aud.includes(a));
    if (audiences.length === 0) return refuse(`token audiences ${JSON.stringify(aud)} is invalid for the target audiences ${JSON.stringify(want)}`);
    const k8s = payload['kubernetes.io'] ?? {};
    const ns = String(k8s.namespace);
    const sa = k8s.serviceaccount ?? {};
    if (this.#serviceAccounts.get(`${ns}/${sa.name}`) !== sa.uid) return refuse('token has been invalidated');
    const extra: Record<string, string[]> = {};
    if (k8s.pod) {
      if (this.#pods.get(`${ns}/${k8s.pod.name}`) !== k8s.pod.uid) return refuse('token has been invalidated');
      extra['authentication.kubernetes.io/pod-name'] = [k8s.pod.name];
      extra['authentication.kubernetes.io/pod-uid'] = [k8s.pod.uid];
    }
    if (typeof payload.jti === 'string') extra['authentication.kubernetes.io/credential-id'] = [`JTI=${payload.jti}`];
    return {
      authenticated: true,
      user: {
        username: `system:serviceaccount:${ns}:${sa.name}`,
        uid: sa.uid,
        groups: ['system:serviceaccounts', `system:serviceaccounts:${ns}`, 'system:authenticated'],
        extra,
      },
      audiences,
    };
  }
}
