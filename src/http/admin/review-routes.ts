import { Type } from '@sinclair/typebox';
import type { ReviewReport } from '../../review/review.js';
import { adminRoute, type AdminRoute, type AdminRouteSpec } from './route.js';

export const ReviewQuery = Type.Object({
  window_days: Type.Optional(Type.String({ pattern: '^[1-9][0-9]{0,3}$', description: 'a whole number of days from 1 to 9999' })),
});

/** `GET /admin/review` (role security): the governance review of the running broker, as `leash review --format json`. */
export const REVIEW_ROUTES = {
  get: { route: 'review.get', method: 'GET', path: '/admin/review', roles: ['security'], query: ReviewQuery },
} as const satisfies Record<string, AdminRouteSpec>;

export function reviewRoutes(deps: { review: (opts: { windowDays?: number }) => Promise<ReviewReport> }): AdminRoute[] {
  return [
    adminRoute(REVIEW_ROUTES.get, async ({ query }) => ({
      body: await deps.review({ windowDays: query.window_days === undefined ? undefined : Number(query.window_days) }),
    })),
  ];
}
