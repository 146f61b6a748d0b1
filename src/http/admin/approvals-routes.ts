import { Router, type Request } from 'express';
import type { ApprovalDecisions } from '../../approvals/decisions.js';
import { LeashError } from '../../errors/leash-error.js';
import type { ApprovalState } from '../../store/records.js';
import type { AdminPrincipal } from './authenticate.js';
import { sendAdminError } from './errors.js';
import type { AdminRouteDeps } from './tasks-routes.js';

const STATES: ReadonlySet<string> = new Set<ApprovalState>(['pending', 'approved', 'denied', 'used']);
const MAX_REASON = 500;
const REASON = /^[^\p{Cc}]*$/u;

/**
 * `GET /admin/approvals[?state=&limit=]`, `GET /admin/approvals/{id}`,
 * `POST /admin/approvals/{id}/approve|deny` (body `{reason?}`). Who may call is decided
 * by ApprovalDecisions (role `security` or an approver group; separation of duties).
 */
export function approvalsRouter(deps: AdminRouteDeps & { approvals: ApprovalDecisions }): Router {
  const router = Router();

  /** Any authenticated admin gets past here; ApprovalDecisions checks role or group. */
  async function who(req: Request, route: string): Promise<AdminPrincipal> {
    try {
      return await deps.authenticator().authenticate(req.header('authorization'));
    } catch (err) {
      deps.metrics.adminRequests.inc({ route, outcome: 'unauthenticated' });
      await deps.audit.record('admin.denied', { route, method: req.method, reason: err instanceof LeashError ? err.code : 'ERR_INTERNAL' });
      throw err;
    }
  }

  async function refused(req: Request, route: string, principal: AdminPrincipal | undefined, err: unknown): Promise<void> {
    if (!(err instanceof LeashError)) return;
    const outcome = err.code === 'ERR_ADMIN_FORBIDDEN' ? 'forbidden' : err.code === 'ERR_ADMIN_INVALID' ? 'invalid' : undefined;
    if (outcome && principal) {
      deps.metrics.adminRequests.inc({ route, outcome });
      if (outcome === 'forbidden') await deps.audit.record('admin.denied', { route, method: req.method, reason: err.code, actor: principal.id, detail: err.detail });
    }
  }

  router.get('/', async (req, res) => {
    let principal: AdminPrincipal | undefined;
    try {
      principal = await who(req, 'approvals.list');
      const state = req.query.state;
      if (state !== undefined && (typeof state !== 'string' || !STATES.has(state))) {
        throw new LeashError('ERR_ADMIN_INVALID', `state must be one of ${[...STATES].join(', ')}`);
      }
      const rawLimit = req.query.limit;
      const limit = rawLimit === undefined ? 100 : typeof rawLimit === 'string' && /^[0-9]{1,4}$/.test(rawLimit) ? Number(rawLimit) : NaN;
      if (!(limit >= 1 && limit <= 1000)) throw new LeashError('ERR_ADMIN_INVALID', 'limit must be a whole number from 1 to 1000');
      const approvals = await deps.approvals.list(principal, state as ApprovalState | undefined, limit);
      deps.metrics.adminRequests.inc({ route: 'approvals.list', outcome: 'ok' });
      res.set('Cache-Control', 'no-store').json({ approvals });
    } catch (err) {
      await refused(req, 'approvals.list', principal, err).catch(() => undefined);
      sendAdminError(res, err);
    }
  });

  router.get('/:id', async (req, res) => {
    let principal: AdminPrincipal | undefined;
    try {
      principal = await who(req, 'approvals.get');
      const view = await deps.approvals.get(principal, req.params.id);
      deps.metrics.adminRequests.inc({ route: 'approvals.get', outcome: 'ok' });
      res.set('Cache-Control', 'no-store').json(view);
    } catch (err) {
      await refused(req, 'approvals.get', principal, err).catch(() => undefined);
      sendAdminError(res, err);
    }
  });

  for (const [verb, state] of [['approve', 'approved'], ['deny', 'denied']] as const) {
    router.post(`/:id/${verb}`, async (req, res) => {
      const route = `approvals.${verb}`;
      let principal: AdminPrincipal | undefined;
      try {
        principal = await who(req, route);
        const reason = readReason(req);
        const view = await deps.approvals.decide(principal, req.params.id, state, reason);
        deps.metrics.adminRequests.inc({ route, outcome: 'ok' });
        res.set('Cache-Control', 'no-store').json(view);
      } catch (err) {
        await refused(req, route, principal, err).catch(() => undefined);
        sendAdminError(res, err);
      }
    });
  }

  return router;
}

/** An empty body is fine; otherwise a JSON object with at most a printable `reason`. */
function readReason(req: Request): string | undefined {
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared === 0 && req.body === undefined) return undefined;
  if (!req.is('application/json')) throw new LeashError('ERR_ADMIN_INVALID', 'Content-Type must be application/json (or send no body)');
  const body = req.body as unknown;
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new LeashError('ERR_ADMIN_INVALID', 'the body must be a JSON object');
  const unknownKeys = Object.keys(body).filter((k) => k !== 'reason');
  if (unknownKeys.length > 0) throw new LeashError('ERR_ADMIN_INVALID', `unknown fields: ${unknownKeys.slice(0, 5).join(', ')}`);
  const reason = (body as { reason?: unknown }).reason;
  if (reason === undefined) return undefined;
  if (typeof reason !== 'string' || reason.trim().length === 0 || reason.length > MAX_REASON || !REASON.test(reason)) {
    throw new LeashError('ERR_ADMIN_INVALID', `reason must be 1 to ${MAX_REASON} printable characters`);
  }
  return reason;
}
