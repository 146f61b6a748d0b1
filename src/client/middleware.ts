import type { X509Certificate } from 'node:crypto';
import { TLSSocket } from 'node:tls';
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { safeErrorDescription } from './error-description.js';
import { LeashVerifyError } from './errors.js';
import type { LeashPrincipal, LeashVerifier } from './verifier.js';

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

/** RFC 6750 §3 / RFC 9449 §7.1 challenges for one failure. */
export function challengesFor(err: LeashVerifyError, dpopAlgorithms: readonly string[]): string[] {
  const algs = `algs=${quoted(dpopAlgorithms.join(' '))}`;
  // No usable credentials: offer both schemes without an error code (RFC 6750 §3.1).
  if (err.missingCredentials) return ['Bearer', `DPoP ${algs}`];
  const params = [`error=${quoted(err.error)}`, `error_description=${quoted(err.error_description)}`];
  if (err.scope) params.push(`scope=${quoted(err.scope.join(' '))}`);
  if (err.scheme === 'DPoP') params.push(algs);
  return [`${err.scheme} ${params.join(', ')}`];
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

  return async function leashAuth(req: Request, res: Response, next: NextFunction): Promise<void> {
    const url = publicUrl !== undefined ? `${publicUrl}${req.originalUrl}` : `${req.protocol}://${req.get('host') ?? 'localhost'}${req.originalUrl}`;
    try {
      const principal = await verifier.verify(
        { authorization: req.headers.authorization, dpop: req.headers.dpop, method: req.method, url, clientCertificate: (opts.clientCertificate ?? tlsPeerCertificate)(req) },
        verifyOpts,
      );
      req.leash = principal;
      res.locals.leash = principal;
    } catch (err) {
      if (!(err instanceof LeashVerifyError)) {
        next(err);
        return;
      }
      for (const c of challengesFor(err, verifier.dpopAlgorithms)) res.append('WWW-Authenticate', c);
      res.status(err.status).set('cache-control', 'no-store').json({ error: err.error, error_description: safeErrorDescription(err.error_description) });
      return;
    }
    next();
  };
}
