import express, { Router, type Request, type Response } from 'express';
import type { AdminRole } from '../../config/schema.js';
import { LeashError } from '../../errors/leash-error.js';
import { recordKeyTransitions, type KeyTransitionCause } from '../../audit/key-events.js';
import { KeyOperationError, type KeyInfo, type KeyManager, type KeyTransition } from '../../keys/key-manager.js';
import type { RevocationService } from '../../revocation/revocation-service.js';
import type { AdminPrincipal } from './authenticate.js';
import { sendAdminError } from './errors.js';
import type { AdminRouteDeps } from './tasks-routes.js';

export interface KeysRouteDeps extends AdminRouteDeps {
  readonly keys: KeyManager;
  readonly revocation: RevocationService;
}

type KeyOperation = 'rotate' | 'retire' | 'revoke';

/** RFC 7638 thumbprints are 43 base64url characters; anything outside this cannot be a kid. */
const KID = /^[A-Za-z0-9_-]{1,128}$/;

const iso = (ms: number | undefined) => (ms === undefined ? null : new Date(ms).toISOString());

/** One key as the admin API shows it (times ISO-8601, null when not applicable). */
export function keyView(k: KeyInfo, now: number) {
  return {
    kid: k.kid,
    alg: k.alg,
    state: k.state,
    backend: k.backend,
    created_at: iso(k.createdAt),
    activated_at: iso(k.activatedAt),
    retired_at: iso(k.retiredAt),
    remove_at: iso(k.removeAt),
    signs_from: iso(k.signsFrom),
    age_seconds: Math.max(0, Math.floor((now - k.createdAt) / 1000)),
  };
}

const transitionView = (t: KeyTransition) => ({ action: t.action, kid: t.kid, from: t.from ?? null, to: t.to });

/** Like `admit`, for calls open to any of several roles (reading the key list). */
async function admitAny(deps: AdminRouteDeps, req: Request, route: string, roles: readonly AdminRole[]): Promise<AdminPrincipal> {
  let principal: AdminPrincipal | undefined;
  try {
    principal = await deps.authenticator().authenticate(req.header('authorization'));
    const p = principal;
    if (!roles.some((r) => p.roles.has(r))) {
      throw new LeashError('ERR_ADMIN_FORBIDDEN', roles.length === 1 ? `this call needs the '${roles[0]}' role` : `this call needs one of the roles ${roles.map((r) => `'${r}'`).join(', ')}`);
    }
    return principal;
  } catch (err) {
    const code = err instanceof LeashError ? err.code : 'ERR_INTERNAL';
    deps.metrics.adminRequests.inc({ route, outcome: code === 'ERR_ADMIN_FORBIDDEN' ? 'forbidden' : 'unauthenticated' });
    await deps.audit.record('admin.denied', { route, method: req.method, reason: code, actor: principal?.id });
    throw err;
  }
}

async function admitOne(deps: AdminRouteDeps, req: Request, route: string, role: AdminRole): Promise<AdminPrincipal> {
  return admitAny(deps, req, route, [role]);
}

/** The JSON object body (an empty body is `{}`); unknown members are refused so typos do not pass silently. */
function bodyOf(req: Request, allowed: readonly string[]): Record<string, unknown> {
  // `false`: a body came with another content type; `null`: no body at all.
  if (req.is('application/json') === false) throw new LeashError('ERR_ADMIN_INVALID', 'Content-Type must be application/json');
  const body = (req.body ?? {}) as unknown;
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new LeashError('ERR_ADMIN_INVALID', 'the body must be a JSON object');
  const unknown = Object.keys(body).filter((k) => !allowed.includes(k));
  if (unknown.length > 0) throw new LeashError('ERR_ADMIN_INVALID', `unknown fields: ${unknown.slice(0, 5).join(', ')} (allowed: ${allowed.join(', ')})`);
  return body as Record<string, unknown>;
}

function reasonIn(body: Record<string, unknown>, required: boolean): string | undefined {
  const reason = body.reason;
  if (reason === undefined && !required) return undefined;
  if (typeof reason !== 'string' || reason.trim().length < 3 || reason.length > 500) {
    throw new LeashError('ERR_ADMIN_INVALID', `${required ? 'a reason' : 'reason'} (3 to 500 characters) ${required ? 'is required: it goes into the audit trail' : 'must be a string'}`);
  }
  return reason.trim();
}

function kidOf(req: Request, keys: KeyManager): string {
  const kid = req.params.kid as string;
  if (!KID.test(kid) || !keys.list().some((k) => k.kid === kid)) throw new LeashError('ERR_ADMIN_NOT_FOUND', 'no such key in the JWKS');
  return kid;
}

/**
 * Signing-key operations: list (ops or security), rotate and retire (ops), emergency revoke
 * (security). Every change is audited per transition (key.*), every failure as
 * key.rotation_failed; a refusal by the rotation rules is a 409 with the rule's message,
 * a backend that cannot be reached a 503 that never carries the backend's own text.
 */
export function keysRouter(deps: KeysRouteDeps, limit: number): Router {
  const router = Router();
  router.use(express.json({ limit, strict: true }));

  /** The operation failed after the caller was admitted: audit, count, answer. */
  async function failed(res: Response, err: unknown, op: KeyOperation, actor: string, kid: string | undefined): Promise<void> {
    const code = err instanceof KeyOperationError ? err.code : err instanceof LeashError ? err.code : 'ERR_INTERNAL';
    const refusedByInput = err instanceof LeashError && (err.code === 'ERR_ADMIN_INVALID' || err.code === 'ERR_ADMIN_NOT_FOUND');
    if (!refusedByInput) {
      deps.metrics.keyOperationFailures.inc({ operation: op });
      await deps.audit.record('key.rotation_failed', { operation: op, kid, actor, error: code }).catch(() => undefined);
    }
    if (err instanceof KeyOperationError) {
      deps.metrics.adminRequests.inc({ route: `keys.${op}`, outcome: err.code === 'unknown_kid' ? 'not_found' : 'conflict' });
      if (err.code === 'unknown_kid') return sendAdminError(res, new LeashError('ERR_ADMIN_NOT_FOUND', 'no such key in the JWKS'));
      // `conflict` names the rotation rule that refused, for scripts; the description says what to do.
      return sendAdminError(res, new LeashError('ERR_ADMIN_CONFLICT', err.message, { code: err.code }, { fields: { conflict: err.code } }));
    }
    deps.metrics.adminRequests.inc({ route: `keys.${op}`, outcome: refusedByInput ? 'invalid' : 'unavailable' });
    sendAdminError(res, err);
  }

  async function done(res: Response, op: KeyOperation, transitions: readonly KeyTransition[], extra: Record<string, unknown> = {}): Promise<void> {
    deps.metrics.adminRequests.inc({ route: `keys.${op}`, outcome: 'ok' });
    const now = deps.clock.now();
    res.set('Cache-Control', 'no-store').json({ ...extra, transitions: transitions.map(transitionView), keys: deps.keys.list().map((k) => keyView(k, now)) });
  }

  /**
   * Audits a change already made. If the audit store fails now, the change still happened:
   * the answer says so (a 503 would invite a retry that rotates a second time).
   */
  const record = async (transitions: readonly KeyTransition[], cause: KeyTransitionCause, actor: string, reason: string | undefined): Promise<Record<string, string>> => {
    try {
      await recordKeyTransitions(transitions, { audit: deps.audit, metrics: deps.metrics, cause, actor, reason, backend: deps.keys.backend });
      return {};
    } catch {
      return { warning: 'the change was made, but the audit trail could not record it (the store is unavailable)' };
    }
  };

  router.get('/', async (req, res) => {
    try {
      await admitAny(deps, req, 'keys.list', ['ops', 'security']);
      const now = deps.clock.now();
      deps.metrics.adminRequests.inc({ route: 'keys.list', outcome: 'ok' });
      res.set('Cache-Control', 'no-store').json({ backend: deps.keys.backend, keys: deps.keys.list().map((k) => keyView(k, now)) });
    } catch (err) {
      sendAdminError(res, err);
    }
  });

  router.post('/rotate', async (req, res) => {
    let principal: AdminPrincipal;
    try {
      principal = await admitOne(deps, req, 'keys.rotate', 'ops');
    } catch (err) {
      return sendAdminError(res, err);
    }
    try {
      const body = bodyOf(req, ['reason', 'force']);
      const reason = reasonIn(body, false);
      if (body.force !== undefined && typeof body.force !== 'boolean') throw new LeashError('ERR_ADMIN_INVALID', 'force must be true or false');
      const force = body.force === true;
      const transitions = await deps.keys.rotate({ actor: principal.id, reason, force });
      const warning = await record(transitions, 'api', principal.id, reason);
      await done(res, 'rotate', transitions, { forced: force, ...warning });
    } catch (err) {
      await failed(res, err, 'rotate', principal.id, undefined);
    }
  });

  router.post('/:kid/retire', async (req, res) => {
    let principal: AdminPrincipal;
    try {
      principal = await admitOne(deps, req, 'keys.retire', 'ops');
    } catch (err) {
      return sendAdminError(res, err);
    }
    let kid: string | undefined;
    try {
      kid = kidOf(req, deps.keys);
      const reason = reasonIn(bodyOf(req, ['reason']), false);
      const transitions = await deps.keys.retire(kid, { actor: principal.id, reason });
      const warning = await record(transitions, 'api', principal.id, reason);
      await done(res, 'retire', transitions, { kid, ...warning });
    } catch (err) {
      await failed(res, err, 'retire', principal.id, kid);
    }
  });

  router.post('/:kid/revoke', async (req, res) => {
    let principal: AdminPrincipal;
    try {
      principal = await admitOne(deps, req, 'keys.revoke', 'security');
    } catch (err) {
      return sendAdminError(res, err);
    }
    let kid: string | undefined;
    try {
      kid = kidOf(req, deps.keys);
      const reason = reasonIn(bodyOf(req, ['reason']), true) as string;
      const by = { actor: principal.id, reason };
      // Tokens first: once this is recorded every replica refuses the key's tokens, even if
      // withdrawing the key below fails (then a retry withdraws it; revoking twice is harmless).
      const revocation = await deps.revocation.revokeKey(kid, by);
      let transitions: KeyTransition[];
      try {
        transitions = await deps.keys.revoke(kid, by);
      } catch (err) {
        // Another replica withdrew it between our check and now: the outcome is the same.
        if (!(err instanceof KeyOperationError && err.code === 'unknown_kid')) throw err;
        transitions = [];
      }
      const warning = await record(transitions, 'emergency', principal.id, reason);
      await done(res, 'revoke', transitions, { kid, revocation: { seq: revocation.seq, revoked_at: new Date(revocation.revokedAt).toISOString() }, ...warning });
    } catch (err) {
      await failed(res, err, 'revoke', principal.id, kid);
    }
  });

  return router;
}
