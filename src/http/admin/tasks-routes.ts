import { Type } from '@sinclair/typebox';
import { taskView, type TaskService } from '../../tasks/task-service.js';
import type { Clock } from '../../time/clock.js';
import { adminRoute, type AdminRoute, type AdminRouteSpec } from './route.js';

const ATTRIBUTES = Type.Record(Type.String({ pattern: '^[A-Za-z0-9_.-]{1,64}$' }), Type.String({ maxLength: 256 }), { maxProperties: 32, additionalProperties: false });

/** `POST /tasks`: the plugins allowed in the task, its lifetime (up to `settings.tasks.max_ttl`), attributes for conditions and budgets. */
export const OpenTaskBody = Type.Object(
  {
    plugins: Type.Array(Type.String({ minLength: 1, maxLength: 64 }), { minItems: 1, maxItems: 64 }),
    ttl_seconds: Type.Optional(Type.Integer({ minimum: 1 })),
    attributes: Type.Optional(ATTRIBUTES),
    /** Call and byte budgets: checked member by member by TaskService (usage/budgets.ts parseBudgets). */
    budgets: Type.Optional(Type.Unknown()),
  },
  { additionalProperties: false },
);

/**
 * `POST /tasks` (orchestrator), `GET /tasks/{id}` and `DELETE /tasks/{id}` (the orchestrator
 * that opened the task, or security: incident response).
 */
export const TASK_ROUTES = {
  open: { route: 'tasks.open', method: 'POST', path: '/tasks', roles: ['orchestrator'], body: OpenTaskBody },
  get: { route: 'tasks.get', method: 'GET', path: '/tasks/:id', roles: ['orchestrator', 'security'], ownedTask: { anyOwner: ['security'] } },
  end: { route: 'tasks.end', method: 'DELETE', path: '/tasks/:id', roles: ['orchestrator', 'security'], ownedTask: { anyOwner: ['security'] } },
} as const satisfies Record<string, AdminRouteSpec>;

export function taskRoutes(deps: { tasks: TaskService; clock: Clock }): AdminRoute[] {
  return [
    adminRoute(TASK_ROUTES.open, async ({ principal, body }) => {
      // Opening counts and audits the task (TaskService.onOpened).
      const task = await deps.tasks.open(body, principal.id);
      return { status: 201, location: `/tasks/${task.id}`, body: taskView(task, deps.clock.now()) };
    }),
    adminRoute(TASK_ROUTES.get, async ({ task }) => ({ body: taskView(task!, deps.clock.now()) })),
    adminRoute(TASK_ROUTES.end, async ({ principal, task }) => {
      // Ending revokes everything issued for the task and audits it (TaskService.onEnded).
      const ended = await deps.tasks.end(task!.id, principal.id, 'ended');
      return { body: taskView(ended ?? task!, deps.clock.now()) };
    }),
  ];
}
