import { Router, type Request } from 'express';
import { LeashError } from '../../errors/leash-error.js';
import type { AuditEventType } from '../../audit/events.js';
import type { Metrics } from '../../metrics/metrics.js';
import { taskView, type TaskService } from '../../tasks/task-service.js';
import type { Clock } from '../../time/clock.js';
import type { AdminRole } from '../../config/schema.js';
import { requireRole, type AdminAuthenticator, type AdminPrincipal } from './authenticate.js';
import { sendAdminError } from './errors.js';

export interface AdminRouteDeps {
  readonly authenticator: () => AdminAuthenticator;
  readonly audit: { record(type: AuditEventType, event: Record<string, unknown>): Promise<unknown> };
  readonly metrics: Metrics;
  readonly clock: Clock;
}

/** Authenticates, checks the role (any one of `roles`), and audits a refused admin call. */
export async function admit(deps: AdminRouteDeps, req: Request, route: string, roles: AdminRole | readonly AdminRole[]): Promise<AdminPrincipal> {
  let principal: AdminPrincipal | undefined;
  try {
    principal = await deps.authenticator().authenticate(req.header('authorization'));
    requireRole(principal, roles);
    return principal;
  } catch (err) {
    const code = err instanceof LeashError ? err.code : 'ERR_INTERNAL';
    deps.metrics.adminRequests.inc({ route, outcome: code === 'ERR_ADMIN_FORBIDDEN' ? 'forbidden' : 'unauthenticated' });
    await deps.audit.record('admin.denied', { route, method: req.method, reason: code, actor: principal?.id });
    throw err;
  }
}

const TASK_ID = /^tsk_[A-Za-z0-9_-]{10,64}$/;

/** Security admins may read and end any task (incident response); orchestrators only their own. */
const TASK_READERS: readonly AdminRole[] = ['orchestrator', 'security'];

/**
 * `POST /tasks` (orchestrator), `GET /tasks/{id}` and `DELETE /tasks/{id}` (the orchestrator
 * that opened the task, or security).
 */
export function tasksRouter(deps: AdminRouteDeps & { tasks: TaskService }): Router {
  const router = Router();

  /**
   * The task, if this caller may see it. Another orchestrator's task answers exactly like an
   * unknown id (404, same body), so task ids cannot be probed across orchestrators; the
   * refusal is audited with the real reason.
   */
  async function ownTask(req: Request, route: string, principal: AdminPrincipal) {
    const task = TASK_ID.test(req.params.id as string) ? await deps.tasks.get(req.params.id as string) : undefined;
    if (!task) throw new LeashError('ERR_ADMIN_NOT_FOUND', 'no such task');
    if (task.createdBy !== principal.id && !principal.roles.has('security')) {
      deps.metrics.adminRequests.inc({ route, outcome: 'forbidden' });
      await deps.audit.record('admin.denied', { route, method: req.method, reason: 'ERR_TASK_NOT_OWNER', actor: principal.id, task: task.id });
      throw new LeashError('ERR_TASK_NOT_OWNER', 'no such task', { task: task.id, owner: task.createdBy });
    }
    return task;
  }

  router.post('/', async (req, res) => {
    try {
      const principal = await admit(deps, req, 'tasks.open', 'orchestrator');
      if (!req.is('application/json')) throw new LeashError('ERR_ADMIN_INVALID', 'Content-Type must be application/json');
      const body = req.body as unknown;
      if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new LeashError('ERR_ADMIN_INVALID', 'the body must be a JSON object');
      const unknownKeys = Object.keys(body).filter((k) => !['plugins', 'ttl_seconds', 'attributes'].includes(k));
      if (unknownKeys.length > 0) throw new LeashError('ERR_ADMIN_INVALID', `unknown fields: ${unknownKeys.slice(0, 5).join(', ')}`);
      const task = await deps.tasks.open(body, principal.id);
      deps.metrics.tasksOpened.inc();
      deps.metrics.adminRequests.inc({ route: 'tasks.open', outcome: 'ok' });
      await deps.audit.record('task.opened', { task: task.id, plugins: task.plugins, expires_at: task.expiresAt, actor: principal.id });
      res.status(201).location(`/tasks/${task.id}`).json(taskView(task, deps.clock.now()));
    } catch (err) {
      sendAdminError(res, err);
    }
  });

  router.get('/:id', async (req, res) => {
    try {
      const principal = await admit(deps, req, 'tasks.get', TASK_READERS);
      const task = await ownTask(req, 'tasks.get', principal);
      res.json(taskView(task, deps.clock.now()));
    } catch (err) {
      sendAdminError(res, err);
    }
  });

  router.delete('/:id', async (req, res) => {
    try {
      const principal = await admit(deps, req, 'tasks.end', TASK_READERS);
      const existing = await ownTask(req, 'tasks.end', principal);
      // Ending revokes everything issued for the task and audits it (TaskService.onEnded).
      const task = await deps.tasks.end(existing.id, principal.id, 'ended');
      deps.metrics.adminRequests.inc({ route: 'tasks.end', outcome: 'ok' });
      res.json(taskView(task ?? existing, deps.clock.now()));
    } catch (err) {
      sendAdminError(res, err);
    }
  });

  return router;
}
