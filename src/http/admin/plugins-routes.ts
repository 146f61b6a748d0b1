import express, { Router, type Request } from 'express';
import { LeashError } from '../../errors/leash-error.js';
import type { RevocationService } from '../../revocation/revocation-service.js';
import type { RevocationScope } from '../../store/records.js';
import type { SuspensionStore } from '../../store/store.js';
import { admit, type AdminRouteDeps } from './tasks-routes.js';
import { sendAdminError } from './errors.js';

const PLUGIN_ID = /^[a-z0-9][a-z0-9._-]{0,62}$/;
const SCOPES: readonly RevocationScope[] = ['token', 'task', 'plugin', 'key'];

function reasonOf(req: Request): string {
  if (!req.is('application/json')) throw new LeashError('ERR_ADMIN_INVALID', 'Content-Type must be application/json');
  const body = req.body as { reason?: unknown } | undefined;
  const reason = body?.reason;
  if (typeof reason !== 'string' || reason.trim().length < 3 || reason.length > 500) {
    throw new LeashError('ERR_ADMIN_INVALID', 'a reason (3 to 500 characters) is required: it goes into the audit trail');
  }
  return reason.trim();
}

/**
 * Security controls: the plugin kill switch and direct revocation. Role `security`;
 * every call says why, and the audit trail records who.
 */
export function securityRouter(
  deps: AdminRouteDeps & { revocation: RevocationService; suspensions: SuspensionStore; knownPlugin: (id: string) => boolean },
  limit: number,
): Router {
  const router = Router();
  router.use(express.json({ limit, strict: true }));

  router.post('/plugins/:id/suspend', async (req, res) => {
    try {
      const principal = await admit(deps, req, 'plugins.suspend', 'security');
      const id = req.params.id as string;
      if (!PLUGIN_ID.test(id) || !deps.knownPlugin(id)) throw new LeashError('ERR_ADMIN_NOT_FOUND', 'no such plugin');
      const reason = reasonOf(req);
      const { changed } = await deps.revocation.suspend(id, { actor: principal.id, reason });
      await deps.audit.record('plugin.suspended', { plugin: id, actor: principal.id, reason, already: !changed });
      deps.metrics.adminRequests.inc({ route: 'plugins.suspend', outcome: 'ok' });
      res.json({ plugin: id, suspended: true, changed });
    } catch (err) {
      sendAdminError(res, err);
    }
  });

  router.post('/plugins/:id/resume', async (req, res) => {
    try {
      const principal = await admit(deps, req, 'plugins.resume', 'security');
      const id = req.params.id as string;
      if (!PLUGIN_ID.test(id) || !deps.knownPlugin(id)) throw new LeashError('ERR_ADMIN_NOT_FOUND', 'no such plugin');
      const reason = reasonOf(req);
      const { changed } = await deps.revocation.resume(id, { actor: principal.id, reason });
      if (changed) await deps.audit.record('plugin.resumed', { plugin: id, actor: principal.id, reason });
      deps.metrics.adminRequests.inc({ route: 'plugins.resume', outcome: 'ok' });
      res.json({ plugin: id, suspended: false, changed });
    } catch (err) {
      sendAdminError(res, err);
    }
  });

  router.get('/plugins/suspended', async (req, res) => {
    try {
      await admit(deps, req, 'plugins.suspended', 'security');
      const list = await deps.suspensions.listSuspensions();
      res.json({ suspended: list.map((s) => ({ plugin: s.plugin, since: new Date(s.since).toISOString(), actor: s.actor, reason: s.reason })) });
    } catch (err) {
      sendAdminError(res, err);
    }
  });

  router.post('/revocations', async (req, res) => {
    try {
      const principal = await admit(deps, req, 'revocations.add', 'security');
      const reason = reasonOf(req);
      const { scope, id } = req.body as { scope?: unknown; id?: unknown };
      if (typeof scope !== 'string' || !SCOPES.includes(scope as RevocationScope)) throw new LeashError('ERR_ADMIN_INVALID', `scope must be one of ${SCOPES.join(', ')}`);
      if (typeof id !== 'string' || !/^[A-Za-z0-9._:-]{1,128}$/.test(id)) throw new LeashError('ERR_ADMIN_INVALID', 'id must be a jti, task id, plugin id or kid');
      const opts = { actor: principal.id, reason };
      const r =
        scope === 'token' ? await deps.revocation.revokeToken(id, opts)
        : scope === 'task' ? await deps.revocation.revokeTask(id, opts)
        : scope === 'plugin' ? await deps.revocation.revokePlugin(id, opts)
        : await deps.revocation.revokeKey(id, opts);
      deps.metrics.adminRequests.inc({ route: 'revocations.add', outcome: 'ok' });
      res.status(201).json({ seq: r.seq, scope: r.scope, id: r.id, revoked_at: new Date(r.revokedAt).toISOString() });
    } catch (err) {
      sendAdminError(res, err);
    }
  });

  return router;
}
