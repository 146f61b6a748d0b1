import { Router } from 'express';
import type { ApprovalDecisions } from '../../approvals/decisions.js';
import type { DenyRoleSessionsDeps } from '../../issuance/aws-sts/deny-role-sessions.js';
import type { TaskService } from '../../tasks/task-service.js';
import { APPROVAL_ROUTES, approvalRoutes } from './approvals-routes.js';
import { AWS_ROUTES, awsRoutes } from './aws-routes.js';
import { KEY_ROUTES, keyRoutes, type KeyRouteDeps } from './keys-routes.js';
import { PLUGIN_ROUTES, pluginRoutes, type PluginRouteDeps } from './plugins-routes.js';
import { serveAdminRoutes, type AdminRoute, type AdminRouteDeps, type AdminRouteSpec } from './route.js';
import { TASK_ROUTES, taskRoutes } from './tasks-routes.js';
import { REVIEW_ROUTES, reviewRoutes } from './review-routes.js';
import { TIMELINE_ROUTES, timelineRoutes, type TimelineRouteDeps } from './timeline-routes.js';
import type { ReviewReport } from '../../review/review.js';
import { EXPLAIN_ROUTES, explainRoutes, type ExplainRouteDeps } from './explain-routes.js';

/**
 * Every admin route (the orchestrators' `/tasks` included): method, path, roles, body and
 * query schemas. The one source for serving them, for `surface.ts` (the closed list of
 * routes) and for checking `docs/openapi.yaml`.
 */
export const ADMIN_ROUTES: readonly AdminRouteSpec[] = [
  ...Object.values(TASK_ROUTES),
  ...Object.values(PLUGIN_ROUTES),
  ...Object.values(AWS_ROUTES),
  ...Object.values(KEY_ROUTES),
  ...Object.values(APPROVAL_ROUTES),
  ...Object.values(REVIEW_ROUTES),
  ...Object.values(TIMELINE_ROUTES),
  ...Object.values(EXPLAIN_ROUTES),
];

export interface AdminApiDeps extends AdminRouteDeps, KeyRouteDeps, PluginRouteDeps, DenyRoleSessionsDeps, TimelineRouteDeps, ExplainRouteDeps {
  readonly tasks: TaskService;
  readonly approvals: ApprovalDecisions;
  /** The governance review of the running broker (`GET /admin/review`). */
  readonly review: (opts: { windowDays?: number }) => Promise<ReviewReport>;
}

/** The handlers of every route of ADMIN_ROUTES, each with its spec from the table. */
export function adminRoutes(deps: AdminApiDeps): AdminRoute[] {
  return [...taskRoutes(deps), ...pluginRoutes(deps), ...awsRoutes(deps), ...keyRoutes(deps), ...approvalRoutes(deps), ...reviewRoutes(deps), ...timelineRoutes(deps), ...explainRoutes(deps)];
}

/** The admin API as one router, with its one error middleware. */
export function adminRouter(deps: AdminApiDeps): Router {
  const routes = adminRoutes(deps);
  const unlisted = routes.filter((r) => !ADMIN_ROUTES.includes(r.spec));
  if (unlisted.length > 0 || routes.length !== ADMIN_ROUTES.length) throw new TypeError('every admin route is served from its spec in ADMIN_ROUTES, once');
  const router = Router();
  serveAdminRoutes(router, routes, deps);
  return router;
}
