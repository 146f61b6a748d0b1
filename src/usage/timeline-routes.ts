import { Router } from 'express';
import { LeashError } from '../errors/leash-error.js';
import { admit, type AdminRouteDeps } from '../http/admin/tasks-routes.js';
import { sendAdminError } from '../http/admin/errors.js';
import type { AdminRole } from '../config/schema.js';
import type { TaskStore } from '../store/store.js';
import { buildTimeline, timelineJson, timelineText, type TimelineDeps } from './timeline.js';
import { timelineHtml } from './timeline-html.js';

const TASK_ID = /^tsk_[A-Za-z0-9_-]{10,64}$/;
const READERS: readonly AdminRole[] = ['orchestrator', 'security'];
const FORMATS = new Set(['json', 'text', 'html']);
/** The page is data only: no script, no external resource, not framable. */
const HTML_CSP = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/**
 * `GET /admin/tasks/{id}/timeline[?format=json|text|html]`: the task's timeline for the
 * orchestrator that opened it or a security admin (another orchestrator's task answers
 * like an unknown one, as `GET /tasks/{id}` does). JSON by default; `html` is one
 * self-contained page with the swim-lane picture.
 */
export function timelineRouter(deps: AdminRouteDeps & TimelineDeps & { readonly tasks: Pick<TaskStore, 'getTask'>; readonly flush?: () => Promise<void> }): Router {
  const router = Router();
  router.get('/:id/timeline', async (req, res) => {
    try {
      const principal = await admit(deps, req, 'tasks.timeline', READERS);
      const format = typeof req.query.format === 'string' ? req.query.format : 'json';
      if (!FORMATS.has(format)) throw new LeashError('ERR_ADMIN_INVALID', 'format must be json, text or html');
      const id = req.params.id as string;
      const task = TASK_ID.test(id) ? await deps.tasks.getTask(id) : undefined;
      if (!task) throw new LeashError('ERR_ADMIN_NOT_FOUND', 'no such task');
      if (task.createdBy !== principal.id && !principal.roles.has('security')) {
        deps.metrics.adminRequests.inc({ route: 'tasks.timeline', outcome: 'forbidden' });
        await deps.audit.record('admin.denied', { route: 'tasks.timeline', method: req.method, reason: 'ERR_TASK_NOT_OWNER', actor: principal.id, task: task.id });
        throw new LeashError('ERR_TASK_NOT_OWNER', 'no such task', { task: task.id, owner: task.createdBy });
      }
      // Events this replica recorded a moment ago are indexed first.
      await deps.flush?.();
      const timeline = await buildTimeline(deps, task);
      deps.metrics.adminRequests.inc({ route: 'tasks.timeline', outcome: 'ok' });
      if (format === 'text') res.type('text/plain; charset=utf-8').send(timelineText(timeline));
      else if (format === 'html') res.set('Content-Security-Policy', HTML_CSP).type('text/html; charset=utf-8').send(timelineHtml(timeline));
      else res.json(timelineJson(timeline));
    } catch (err) {
      sendAdminError(res, err);
    }
  });
  return router;
}
