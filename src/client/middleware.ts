import type { X509Certificate } from 'node:crypto';
import { TLSSocket } from 'node:tls';
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { safeErrorDescription } from './error-description.js';
import { LeashVerifyError } from './errors.js';
import type { LeashPrincipal, LeashVerifier } from './verifier.js';
import type { UsageRecordOutcome, UsageReporter } from './usage-reporter.js';

declare global {
  // eslint-disable-next-line @typescript-eslint/no-namespace
  namespace Express {
    interface Request {
      /** The verified Leash caller, set by `requireLeashToken`. */
      leash?: LeashPrincipal;
    }
  }
}

export interface RequireLeashTokenOptions {
  /** Scopes this route needs, on top of the verifier's. */
  readonly requiredScopes?: readonly string[];
  /**
   * The public base URL clients call (e.g. `https://api.example.com`), prefixed to
   * `req.originalUrl` to rebuild the URL a DPoP proof names. Set it behind a proxy or
   * load balancer; without it the URL is built from `req.protocol` and the Host header
   * (which honour express's `trust proxy` setting).
   */
  readonly publicUrl?: string;
  /**
   * The request's client certificate, for certificate-bound tokens (RFC 8705). Default: the
   * one presented on the TLS connection. Behind a TLS-terminating proxy, return the one the
   * proxy forwarded (and verified), after checking the request came from that proxy.
   */
  readonly clientCertificate?: (req: Request) => Uint8Array | string | X509Certificate | undefined;
  /**
   * Report every call, served or refused, to Leash (`createUsageReporter`): jti, plugin, task,
   * route template, status, duration, response size, DPoP key, the caller's address
   * (`req.ip`, which honours express's `trust proxy`) and the refusal, if any. Queued: the
   * request never waits on Leash.
   */
  readonly usage?: UsageReporter;
  /**
   * The route template to report. Default: the matched express route (`req.baseUrl` +
   * `req.route.path`, e.g. `/repos/:owner/:repo`), or `(unmatched)`: a raw path, with its
   * ids, is never reported.
   */
  readonly route?: (req: Request) => string;
  /**
   * `enforce`: before the handler runs, ask Leash whether the task's call budget allows one
   * more call (`POST /usage/budget`); past it the call is refused (429). Leash unreachable:
   * 503 (fail closed). For APIs where one extra call matters; needs `usage`.
   */
  readonly budget?: 'enforce';
  /**
   * This API's RFC 9728 metadata URL (see `resourceMetadataUrl`): every challenge names it
   * as `resource_metadata` (RFC 9728 §5.1), so a client that got a 401 or a 403 can find
   * the authorization server (Leash) and the resource identifier to ask it for.
   */
  readonly resourceMetadataUrl?: string;
}

/** The peer certificate of a TLS connection, if it presented one. */
function tlsPeerCertificate(req: Request): X509Certificate | undefined {
  const socket = req.socket;
  return socket instanceof TLSSocket ? socket.getPeerX509Certificate() : undefined;
}

/** A quoted-string value without the characters RFC 6750 §3 forbids in it. */
function quoted(value: string): string {
  return `"${value.replace(/[^\x20-\x21\x23-\x5B\x5D-\x7E]/g, '')}"`;
}

/**
 * RFC 6750 §3 / RFC 9449 §7.1 challenges for one failure, with RFC 9728 §5.1's
 * `resource_metadata` when the API publishes its metadata. Bearer comes first: clients
 * such as the MCP SDK read the first challenge only.
 */
export function challengesFor(err: LeashVerifyError, dpopAlgorithms: readonly string[], opts: { resourceMetadataUrl?: string | undefined } = {}): string[] {
  const algs = `algs=${quoted(dpopAlgorithms.join(' '))}`;
  const metadata = opts.resourceMetadataUrl !== undefined ? [`resource_metadata=${quoted(opts.resourceMetadataUrl)}`] : [];
  // No usable credentials: offer both schemes without an error code (RFC 6750 §3.1).
  if (err.missingCredentials) return [metadata.length > 0 ? `Bearer ${metadata.join(', ')}` : 'Bearer', [`DPoP ${algs}`, ...metadata].join(', ')];
  const params = [`error=${quoted(err.error)}`, `error_description=${quoted(err.error_description)}`];
  if (err.scope) params.push(`scope=${quoted(err.scope.join(' '))}`);
  params.push(...metadata);
  if (err.scheme === 'DPoP') params.push(algs);
  return [`${err.scheme} ${params.join(', ')}`];
}

/** Answers a failed check: status, challenges, and a JSON body without the token. */
export function sendVerifyError(res: Response, err: LeashVerifyError, dpopAlgorithms: readonly string[], opts: { resourceMetadataUrl?: string | undefined } = {}): void {
  for (const c of challengesFor(err, dpopAlgorithms, opts)) res.append('WWW-Authenticate', c);
  res
    .status(err.status)
    .set('cache-control', 'no-store')
    .json({ error: err.error, error_description: safeErrorDescription(err.error_description) });
}

/**
 * Express 5 middleware: verifies the Leash token on every request and sets `req.leash`
 * (typed by declaration merging on Express.Request; the same object is also put in
 * `res.locals.leash` for code that reads locals); on failure answers the RFC 6750 /
 * RFC 9449 status, `WWW-Authenticate` challenge and a JSON `{ error, error_description }`.
 */
export function requireLeashToken(verifier: LeashVerifier, opts: RequireLeashTokenOptions = {}): RequestHandler {
  const publicUrl = opts.publicUrl?.replace(/\/+$/, '');
  if (publicUrl !== undefined) new URL(publicUrl); // a malformed base is a programming error: fail at setup
  const verifyOpts = opts.requiredScopes ? { requiredScopes: opts.requiredScopes } : {};
  if (opts.resourceMetadataUrl !== undefined) new URL(opts.resourceMetadataUrl);
  const challengeOpts = { resourceMetadataUrl: opts.resourceMetadataUrl };

  const usage = opts.usage;
  if (opts.budget === 'enforce' && !usage) throw new TypeError("requireLeashToken: budget 'enforce' needs a usage reporter");
  const scopes = opts.requiredScopes ?? [];

  return async function leashAuth(req: Request, res: Response, next: NextFunction): Promise<void> {
    const url = publicUrl !== undefined ? `${publicUrl}${req.originalUrl}` : `${req.protocol}://${req.get('host') ?? 'localhost'}${req.originalUrl}`;
    const watch = usage ? watchResponse(req, res, (facts) => usage.report(facts), opts.route, verifier.audiences, scopes) : undefined;
    try {
      const principal = await verifier.verify(
        { authorization: req.headers.authorization, dpop: req.headers.dpop, method: req.method, url, clientCertificate: (opts.clientCertificate ?? tlsPeerCertificate)(req) },
        verifyOpts,
      );
      req.leash = principal;
      res.locals.leash = principal;
      watch?.served(principal);
      if (opts.budget === 'enforce' && usage) {
        const aud = typeof principal.claims.aud === 'string' ? principal.claims.aud : (verifier.audiences[0] as string);
        let allowed: boolean;
        try {
          allowed = (await usage.charge(principal.jti, aud)).allowed;
        } catch {
          watch?.refused('unavailable');
          res
            .status(503)
            .set('cache-control', 'no-store')
            .set('retry-after', '2')
            .json({ error: 'temporarily_unavailable', error_description: "the task's budget cannot be checked right now; retry later" });
          return;
        }
        if (!allowed) {
          watch?.refused('budget_exceeded');
          res.status(429).set('cache-control', 'no-store').json({ error: 'budget_exceeded', error_description: "the task's call budget is spent" });
          return;
        }
        watch?.charged();
      }
    } catch (err) {
      if (!(err instanceof LeashVerifyError)) {
        next(err);
        return;
      }
      watch?.refusedBy(err);
      sendVerifyError(res, err, verifier.dpopAlgorithms, challengeOpts);
      return;
    }
    next();
  };
}

type Facts = Parameters<UsageReporter['report']>[0];

function bytesOf(res: Response, socket: Request['socket'] | undefined, before: number): number {
  const declared = Number(res.getHeader('content-length'));
  if (Number.isSafeInteger(declared) && declared >= 0) return declared;
  return Math.max(0, (socket?.bytesWritten ?? before) - before);
}

/**
 * Follows one response to its end and reports it once: its size, the route template once
 * routing is done, and the status as sent.
 */
function watchResponse(req: Request, res: Response, report: (facts: Facts) => void, route: ((req: Request) => string) | undefined, audiences: readonly string[], scopes: readonly string[]) {
  const started = performance.now();
  // Response size without wrapping write/end: Content-Length when the handler set it (express's
  // json and send do), else what the socket wrote for this response (headers included).
  const socket = req.socket;
  const writtenBefore = socket?.bytesWritten ?? 0;
  let facts: { jti?: string; plugin?: string; task?: string; audience: string; jkt?: string; outcome: UsageRecordOutcome; charged?: boolean } = {
    audience: audiences[0] as string,
    outcome: 'invalid_token',
  };
  res.once('finish', () => {
    // `at` is stamped by the reporter, on its clock.
    report({
      ...facts,
      method: req.method,
      route: route ? route(req) : req.route ? `${req.baseUrl ?? ''}${(req.route as { path: string }).path}` : '(unmatched)',
      status: res.statusCode,
      durationMs: performance.now() - started,
      bytes: bytesOf(res, socket, writtenBefore),
      source: req.ip,
      scopes,
    });
  });
  return {
    served(p: LeashPrincipal) {
      const aud = typeof p.claims.aud === 'string' ? p.claims.aud : audiences.find((a) => (p.claims.aud as string[] | undefined)?.includes(a));
      facts = { jti: p.jti, plugin: p.plugin, task: p.task, audience: aud ?? (audiences[0] as string), ...(p.jkt ? { jkt: p.jkt } : {}), outcome: 'ok' };
    },
    charged() {
      facts = { ...facts, charged: true };
    },
    refused(outcome: UsageRecordOutcome) {
      facts = { ...facts, outcome };
    },
    refusedBy(err: LeashVerifyError) {
      const t = err.token;
      // A token for another audience is reported against this server's own (the audience it reached).
      facts = {
        audience: t?.aud !== undefined && audiences.includes(t.aud) ? t.aud : (audiences[0] as string),
        ...(t?.jti ? { jti: t.jti } : {}),
        ...(t?.plugin ? { plugin: t.plugin } : {}),
        ...(t?.task ? { task: t.task } : {}),
        ...(t?.jkt ? { jkt: t.jkt } : {}),
        outcome: err.reason,
      };
    },
  };
}
